//! What travels inside a device-link session (docs/PROTOCOL.md §14.7): the
//! new device's requests and the first device's replies, each sealed in
//! one session message.
//!
//! The new device asks and the first device answers, one request at a
//! time: `Start` (who the new device is), then `Next` until the account
//! copy is whole, then `Done` once it is stored. Each reply carries the
//! copy's total length, so the new device knows how much is coming before
//! it stores any of it.

use prost::Message;
use veil_crypto::{AgreementPublic, VerifyKey, device_link::MAX_PLAINTEXT};
use zeroize::{Zeroize, Zeroizing};

use crate::{
    Error, Result,
    error::decode_err,
    fields::{fixed, version},
    pb,
};

/// The device-link request format version this build writes and reads.
pub const DEVICE_VERSION: u32 = 1;

/// The most bytes of the account copy one piece carries: what fits one
/// session message with the reply's own fields around it.
pub const PIECE_LEN: usize = MAX_PLAINTEXT - 79;

/// What the new device asks for.
// One request at a time, never kept in bulk: boxing `Start` would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceRequest {
    /// The first request: the new device's own device key.
    Start {
        /// Its Ed25519 device key (the account lists it among its devices).
        device: VerifyKey,
        /// Its device agreement key (docs/PROTOCOL.md §6.6).
        agreement: AgreementPublic,
    },
    /// The next piece of the account copy.
    Next,
    /// Every piece arrived and the copy is stored: the link is complete.
    Done,
}

impl DeviceRequest {
    /// Encodes the request.
    pub fn encode(&self) -> Vec<u8> {
        use pb::device_request::Request as R;
        let request = match self {
            Self::Start { device, agreement } => R::Start(pb::DeviceStart {
                version: DEVICE_VERSION,
                device_key: device.to_bytes().to_vec(),
                agreement_key: agreement.0.to_vec(),
            }),
            Self::Next => R::Next(true),
            Self::Done => R::Done(true),
        };
        pb::DeviceRequest { request: Some(request) }.encode_to_vec()
    }

    /// Decodes and validates a request (refusing oversize input, an unset
    /// or false flag, a wrong version and an invalid device key).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        use pb::device_request::Request as R;
        if bytes.len() > MAX_PLAINTEXT {
            return Err(Error::TooLarge { what: "device request", len: bytes.len(), max: MAX_PLAINTEXT });
        }
        let m = pb::DeviceRequest::decode(bytes).map_err(decode_err("device request"))?;
        match m.request {
            Some(R::Start(start)) => {
                version("device request", start.version, DEVICE_VERSION)?;
                Ok(Self::Start {
                    device: VerifyKey::from_bytes(&fixed("device key", &start.device_key)?)?,
                    agreement: AgreementPublic(fixed("device agreement key", &start.agreement_key)?),
                })
            }
            Some(R::Next(true)) => Ok(Self::Next),
            Some(R::Done(true)) => Ok(Self::Done),
            Some(R::Next(false) | R::Done(false)) | None => {
                Err(Error::Invalid { what: "device request", reason: "asks for nothing" })
            }
        }
    }
}

/// What the first device answers.
#[derive(Clone, PartialEq, Eq)]
pub enum DeviceReply {
    /// A piece of `storage key ‖ database copy`.
    Piece {
        /// The whole copy's length (the same in every piece).
        total_len: u64,
        /// At most [`PIECE_LEN`] bytes; empty only once everything was sent.
        data: Zeroizing<Vec<u8>>,
    },
    /// The answer to [`DeviceRequest::Done`].
    Farewell,
}

impl core::fmt::Debug for DeviceReply {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Piece { total_len, data } => {
                f.debug_struct("Piece").field("total_len", total_len).field("len", &data.len()).finish_non_exhaustive()
            }
            Self::Farewell => f.write_str("Farewell"),
        }
    }
}

impl DeviceReply {
    /// Encodes the reply (the copy's bytes are secret: so is the result).
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        use pb::device_reply::Reply as R;
        let reply = match self {
            Self::Piece { total_len, data } => {
                R::Piece(pb::DevicePiece { total_len: *total_len, data: data.as_slice().to_vec() })
            }
            Self::Farewell => R::Farewell(true),
        };
        let mut message = pb::DeviceReply { reply: Some(reply) };
        let bytes = Zeroizing::new(message.encode_to_vec());
        if let Some(R::Piece(p)) = &mut message.reply {
            p.data.zeroize();
        }
        bytes
    }

    /// Decodes and validates a reply (refusing oversize input and pieces
    /// longer than [`PIECE_LEN`]).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        use pb::device_reply::Reply as R;
        if bytes.len() > MAX_PLAINTEXT {
            return Err(Error::TooLarge { what: "device reply", len: bytes.len(), max: MAX_PLAINTEXT });
        }
        let m = pb::DeviceReply::decode(bytes).map_err(decode_err("device reply"))?;
        match m.reply {
            Some(R::Piece(p)) => {
                let data = Zeroizing::new(p.data);
                if data.len() > PIECE_LEN {
                    return Err(Error::TooLarge { what: "account-copy piece", len: data.len(), max: PIECE_LEN });
                }
                Ok(Self::Piece { total_len: p.total_len, data })
            }
            Some(R::Farewell(true)) => Ok(Self::Farewell),
            Some(R::Farewell(false)) | None => Err(Error::Invalid { what: "device reply", reason: "says nothing" }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_full_piece_fits_one_session_message() {
        let reply = DeviceReply::Piece { total_len: u64::MAX, data: Zeroizing::new(vec![0xff; PIECE_LEN]) };
        let bytes = reply.encode();
        assert!(bytes.len() <= MAX_PLAINTEXT, "{} bytes", bytes.len());
        assert_eq!(DeviceReply::decode(&bytes).unwrap(), reply);
        let long = pb::DeviceReply {
            reply: Some(pb::device_reply::Reply::Piece(pb::DevicePiece { total_len: 1, data: vec![0; PIECE_LEN + 1] })),
        };
        assert!(matches!(DeviceReply::decode(&long.encode_to_vec()), Err(Error::TooLarge { .. })));
    }

    #[test]
    fn requests_and_replies_round_trip_and_empty_ones_are_refused() {
        let device = veil_crypto::SigningSecret::generate(&mut veil_crypto::OsEntropy).unwrap().verify_key();
        let agreement = AgreementPublic([3; 32]);
        for r in [DeviceRequest::Start { device, agreement }, DeviceRequest::Next, DeviceRequest::Done] {
            assert_eq!(DeviceRequest::decode(&r.encode()).unwrap(), r);
        }
        assert_eq!(DeviceReply::decode(&DeviceReply::Farewell.encode()).unwrap(), DeviceReply::Farewell);
        assert!(DeviceRequest::decode(&[]).is_err());
        assert!(DeviceReply::decode(&[]).is_err());
        let next_false = pb::DeviceRequest { request: Some(pb::device_request::Request::Next(false)) };
        assert!(DeviceRequest::decode(&next_false.encode_to_vec()).is_err());
        let old = pb::DeviceRequest {
            request: Some(pb::device_request::Request::Start(pb::DeviceStart {
                version: 2,
                device_key: device.to_bytes().to_vec(),
                agreement_key: agreement.0.to_vec(),
            })),
        };
        assert!(DeviceRequest::decode(&old.encode_to_vec()).is_err());
        let keyless = pb::DeviceRequest {
            request: Some(pb::device_request::Request::Start(pb::DeviceStart {
                version: DEVICE_VERSION,
                device_key: device.to_bytes().to_vec(),
                agreement_key: vec![],
            })),
        };
        assert!(DeviceRequest::decode(&keyless.encode_to_vec()).is_err());
    }
}
