//! Frames of the contact-request protocol (which also carries device
//! linking, docs/PROTOCOL.md §14.7) and the request payload.

use prost::Message;
use veil_crypto::{
    Name, RendezvousSeed,
    handshake::{MAX_MESSAGE_LEN, MAX_REQUEST_PAYLOAD},
};

use crate::{
    Error, Result,
    error::decode_err,
    fields::{fixed, name_text, optional_name, version},
    pb,
};

/// Largest Noise message a frame carries: 65 535 bytes, the limit of both
/// the contact handshake and device linking.
pub const MAX_NOISE_MESSAGE: usize = MAX_MESSAGE_LEN;
const _: () = assert!(veil_crypto::device_link::MAX_MESSAGE_LEN == MAX_NOISE_MESSAGE);
/// Largest encoded handshake frame.
pub const MAX_FRAME: usize = MAX_NOISE_MESSAGE + 8;
/// The request format version this build writes and reads.
pub const REQUEST_VERSION: u32 = 1;

/// One step of the handshake as it travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeFrame {
    /// Noise message 1, with the proof that the requester knows the link's
    /// current rendezvous point (`veil_crypto::rendezvous::point_proof`).
    RequestStart {
        /// Noise message 1.
        message: Vec<u8>,
        /// `point_proof(point, message)`.
        point_proof: [u8; 32],
    },
    /// Noise message 2.
    Response(Vec<u8>),
    /// Noise message 3.
    RequestFinish(Vec<u8>),
    /// Device linking's message 1, with the proof that the new device
    /// knows the offer's current rendezvous point.
    DeviceHello {
        /// Noise NNpsk0 message 1.
        message: Vec<u8>,
        /// `point_proof(point, message)`.
        point_proof: [u8; 32],
    },
    /// Device linking's message 2.
    DeviceWelcome(Vec<u8>),
    /// A device-link session message.
    DeviceSealed(Vec<u8>),
    /// The first device's answer to a session message while its user has
    /// not confirmed the code: ask again later, with the same message.
    DeviceWaiting,
}

impl HandshakeFrame {
    /// Encodes the frame.
    pub fn encode(&self) -> Vec<u8> {
        use pb::handshake_frame::Message as M;
        let (message, point_proof) = match self {
            Self::RequestStart { message, point_proof } => (M::RequestStart(message.clone()), point_proof.to_vec()),
            Self::Response(b) => (M::Response(b.clone()), Vec::new()),
            Self::RequestFinish(b) => (M::RequestFinish(b.clone()), Vec::new()),
            Self::DeviceHello { message, point_proof } => (M::DeviceHello(message.clone()), point_proof.to_vec()),
            Self::DeviceWelcome(b) => (M::DeviceWelcome(b.clone()), Vec::new()),
            Self::DeviceSealed(b) => (M::DeviceSealed(b.clone()), Vec::new()),
            Self::DeviceWaiting => (M::DeviceWaiting(true), Vec::new()),
        };
        pb::HandshakeFrame { message: Some(message), point_proof }.encode_to_vec()
    }

    /// Decodes a frame, refusing oversize input, empty frames, point
    /// proofs missing from a message 1 or present on the others, and Noise
    /// messages longer than the handshake allows.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        use pb::handshake_frame::Message as M;
        if bytes.len() > MAX_FRAME {
            return Err(Error::TooLarge { what: "handshake frame", len: bytes.len(), max: MAX_FRAME });
        }
        let m = pb::HandshakeFrame::decode(bytes).map_err(decode_err("handshake frame"))?;
        let no_proof = |frame: Self| {
            if m.point_proof.is_empty() {
                Ok(frame)
            } else {
                Err(Error::Invalid { what: "handshake frame", reason: "only message 1 carries a point proof" })
            }
        };
        let body_len = match &m.message {
            Some(
                M::RequestStart(b)
                | M::Response(b)
                | M::RequestFinish(b)
                | M::DeviceHello(b)
                | M::DeviceWelcome(b)
                | M::DeviceSealed(b),
            ) => b.len(),
            _ => 0,
        };
        if body_len > MAX_NOISE_MESSAGE {
            return Err(Error::TooLarge { what: "Noise message", len: body_len, max: MAX_NOISE_MESSAGE });
        }
        match m.message {
            Some(M::RequestStart(message)) => {
                Ok(Self::RequestStart { message, point_proof: fixed("point proof", &m.point_proof)? })
            }
            Some(M::Response(b)) => no_proof(Self::Response(b)),
            Some(M::RequestFinish(b)) => no_proof(Self::RequestFinish(b)),
            Some(M::DeviceHello(message)) => {
                Ok(Self::DeviceHello { message, point_proof: fixed("point proof", &m.point_proof)? })
            }
            Some(M::DeviceWelcome(b)) => no_proof(Self::DeviceWelcome(b)),
            Some(M::DeviceSealed(b)) => no_proof(Self::DeviceSealed(b)),
            Some(M::DeviceWaiting(true)) => no_proof(Self::DeviceWaiting),
            Some(M::DeviceWaiting(false)) => {
                Err(Error::Invalid { what: "handshake frame", reason: "device_waiting is set to true or absent" })
            }
            None => Err(Error::Invalid { what: "handshake frame", reason: "carries no message" }),
        }
    }
}

/// What a requester tells the responder, encrypted in handshake message 3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactRequest {
    /// How the requester would like to be called.
    pub display_name: Option<Name>,
    /// The requester's current rendezvous seed, so the responder can reach back.
    pub seed: RendezvousSeed,
}

impl ContactRequest {
    /// Encodes the request (always well under `MAX_REQUEST_PAYLOAD`).
    pub fn encode(&self) -> Vec<u8> {
        pb::ContactRequest {
            version: REQUEST_VERSION,
            display_name: name_text(self.display_name.as_ref()),
            rendezvous_seed: self.seed.expose_secret().to_vec(),
        }
        .encode_to_vec()
    }

    /// Decodes and validates a request.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_REQUEST_PAYLOAD {
            return Err(Error::TooLarge { what: "contact request", len: bytes.len(), max: MAX_REQUEST_PAYLOAD });
        }
        let m = pb::ContactRequest::decode(bytes).map_err(decode_err("contact request"))?;
        version("contact request", m.version, REQUEST_VERSION)?;
        Ok(Self {
            display_name: optional_name(&m.display_name)?,
            seed: RendezvousSeed::from_bytes(fixed("rendezvous seed", &m.rendezvous_seed)?),
        })
    }
}
