//! The plaintext of metadata-log entries (`MetadataEvent`, docs/PROTOCOL.md §6.4).

use prost::Message;
use veil_crypto::{AgreementPublic, EpochId, MemberPublic, Name, Signature, VerifyKey};

use crate::{
    Error, Result,
    error::decode_err,
    fields::{fixed, name_text, optional_name},
    pb,
};

/// Most chain shares in one announcement.
pub const MAX_CHAIN_SHARES: usize = 256;
/// Largest sealed chain share (a sealed 72-byte chain state is 120 bytes).
pub const MAX_SEALED_SHARE: usize = 256;
/// Size of a sealed epoch secret (ephemeral key, 32-byte secret, GCM tag).
pub const SEALED_EPOCH_SHARE: usize = 32 + 32 + 16;
/// Largest encoded metadata event (the largest metadata payload).
pub const MAX_METADATA_EVENT: usize = 65_532;

/// A sender chain sealed to one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainShare {
    /// The member it is for (its member signing key).
    pub recipient: VerifyKey,
    /// `veil_crypto::ratchet::seal_chain_state` output.
    pub sealed_state: Vec<u8>,
}

/// A member device announces itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberJoined {
    /// The member's public keys: the account keys in a contact group, the alias-derived member keys otherwise.
    pub member: MemberPublic,
    /// The device; must be the author of the entry carrying this.
    pub device: VerifyKey,
    /// The member's certificate for the device (docs/PROTOCOL.md §6.3).
    pub device_cert: Signature,
    /// The device's sending chain, sealed to each member that may read it.
    pub chain_shares: Vec<ChainShare>,
    /// The epoch the device writes in (its key is that epoch's); must be
    /// the epoch the announcing entry is sealed in.
    pub epoch: EpochId,
    /// In a contact group, the name the member introduces itself by (the
    /// acceptor's answer to a request that named the requester); never in
    /// a multi-member group, where members are known by their aliases.
    pub display_name: Option<Name>,
}

/// An epoch secret sealed to one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochShare {
    /// The member it is for (its member signing key).
    pub recipient: VerifyKey,
    /// `veil_crypto::epoch::seal_epoch_secret` output.
    pub sealed_secret: Vec<u8>,
}

/// A member is removed, or leaves when it names itself; the group moves to
/// a new epoch shared with the remaining members only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRemoved {
    /// Who is removed (member signing key).
    pub member: VerifyKey,
    /// The id of the epoch this removal starts (derived from its secret, PROTOCOL.md §6.5).
    pub epoch: EpochId,
    /// The new epoch's secret, sealed to each remaining member.
    pub shares: Vec<EpochShare>,
}

/// The author's account removed devices: a new epoch, removing no member,
/// shared with every other member and each remaining device of the
/// author's account (docs/PROTOCOL.md §6.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochRenewed {
    /// The id of the epoch this starts.
    pub epoch: EpochId,
    /// The new epoch's secret, sealed to each other member.
    pub shares: Vec<EpochShare>,
    /// The new epoch's secret, sealed to each remaining device of the
    /// author's account (`veil_crypto::epoch::seal_epoch_secret_to_device`),
    /// the recipient unnamed.
    pub device_shares: Vec<Vec<u8>>,
}

/// What a metadata entry says.
// Events are decoded one at a time, never kept in bulk: boxing the larger
// variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataEvent {
    /// A device announces itself for a member, with its certificate and chain shares; written again to share the chain
    /// with newcomers.
    MemberJoined(MemberJoined),
    /// A member was removed or left.
    MemberRemoved(MemberRemoved),
    /// The author's account renewed the epoch without some of its devices.
    EpochRenewed(EpochRenewed),
}

impl MetadataEvent {
    /// Encodes the event.
    pub fn encode(&self) -> Vec<u8> {
        use pb::metadata_event::Event;
        let event = match self {
            Self::MemberJoined(j) => Event::MemberJoined(pb::MemberJoined {
                member_signing_key: j.member.signing.to_bytes().to_vec(),
                member_agreement_key: j.member.agreement.0.to_vec(),
                device_key: j.device.to_bytes().to_vec(),
                device_cert: j.device_cert.0.to_vec(),
                chain_shares: j
                    .chain_shares
                    .iter()
                    .map(|s| pb::ChainKeyShare {
                        member_signing_key: s.recipient.to_bytes().to_vec(),
                        sealed_state: s.sealed_state.clone(),
                    })
                    .collect(),
                epoch_id: if j.epoch == EpochId::ROOT { Vec::new() } else { j.epoch.0.to_vec() },
                display_name: name_text(j.display_name.as_ref()),
            }),
            Self::MemberRemoved(r) => Event::MemberRemoved(pb::MemberRemoved {
                member_signing_key: r.member.to_bytes().to_vec(),
                epoch_id: r.epoch.0.to_vec(),
                epoch_shares: encode_shares(&r.shares),
            }),
            Self::EpochRenewed(r) => Event::EpochRenewed(pb::EpochRenewed {
                epoch_id: r.epoch.0.to_vec(),
                epoch_shares: encode_shares(&r.shares),
                device_shares: r.device_shares.clone(),
            }),
        };
        pb::MetadataEvent { event: Some(event) }.encode_to_vec()
    }

    /// Decodes and validates an event.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        use pb::metadata_event::Event;
        if bytes.len() > MAX_METADATA_EVENT {
            return Err(Error::TooLarge { what: "metadata event", len: bytes.len(), max: MAX_METADATA_EVENT });
        }
        let m = pb::MetadataEvent::decode(bytes).map_err(decode_err("metadata event"))?;
        match m.event {
            Some(Event::MemberJoined(j)) => {
                if j.chain_shares.len() > MAX_CHAIN_SHARES {
                    return Err(Error::Invalid { what: "member announcement", reason: "too many chain shares" });
                }
                let chain_shares = j
                    .chain_shares
                    .into_iter()
                    .map(|s| {
                        if s.sealed_state.is_empty() || s.sealed_state.len() > MAX_SEALED_SHARE {
                            return Err(Error::Invalid { what: "chain share", reason: "bad sealed state length" });
                        }
                        Ok(ChainShare {
                            recipient: VerifyKey::from_bytes(&fixed("share recipient", &s.member_signing_key)?)?,
                            sealed_state: s.sealed_state,
                        })
                    })
                    .collect::<Result<_>>()?;
                Ok(Self::MemberJoined(MemberJoined {
                    member: MemberPublic {
                        signing: VerifyKey::from_bytes(&fixed("member signing key", &j.member_signing_key)?)?,
                        agreement: AgreementPublic(fixed("member agreement key", &j.member_agreement_key)?),
                    },
                    device: VerifyKey::from_bytes(&fixed("device key", &j.device_key)?)?,
                    device_cert: Signature(fixed("device certificate", &j.device_cert)?),
                    chain_shares,
                    epoch: if j.epoch_id.is_empty() { EpochId::ROOT } else { EpochId(fixed("epoch id", &j.epoch_id)?) },
                    display_name: optional_name(&j.display_name)?,
                }))
            }
            Some(Event::MemberRemoved(r)) => Ok(Self::MemberRemoved(MemberRemoved {
                member: VerifyKey::from_bytes(&fixed("removed member", &r.member_signing_key)?)?,
                epoch: EpochId(fixed("epoch id", &r.epoch_id)?),
                shares: decode_shares("member removal", r.epoch_shares)?,
            })),
            Some(Event::EpochRenewed(r)) => {
                if r.device_shares.len() > MAX_CHAIN_SHARES {
                    return Err(Error::Invalid { what: "epoch renewal", reason: "too many device shares" });
                }
                if r.device_shares.iter().any(|s| s.len() != SEALED_EPOCH_SHARE) {
                    return Err(Error::Invalid { what: "device share", reason: "bad sealed secret length" });
                }
                Ok(Self::EpochRenewed(EpochRenewed {
                    epoch: EpochId(fixed("epoch id", &r.epoch_id)?),
                    shares: decode_shares("epoch renewal", r.epoch_shares)?,
                    device_shares: r.device_shares,
                }))
            }
            None => Err(Error::Invalid { what: "metadata event", reason: "carries nothing" }),
        }
    }
}

fn encode_shares(shares: &[EpochShare]) -> Vec<pb::EpochKeyShare> {
    shares
        .iter()
        .map(|s| pb::EpochKeyShare {
            member_signing_key: s.recipient.to_bytes().to_vec(),
            sealed_secret: s.sealed_secret.clone(),
        })
        .collect()
}

fn decode_shares(what: &'static str, shares: Vec<pb::EpochKeyShare>) -> Result<Vec<EpochShare>> {
    if shares.len() > MAX_CHAIN_SHARES {
        return Err(Error::Invalid { what, reason: "too many epoch shares" });
    }
    shares
        .into_iter()
        .map(|s| {
            if s.sealed_secret.len() != SEALED_EPOCH_SHARE {
                return Err(Error::Invalid { what: "epoch share", reason: "bad sealed secret length" });
            }
            Ok(EpochShare {
                recipient: VerifyKey::from_bytes(&fixed("share recipient", &s.member_signing_key)?)?,
                sealed_secret: s.sealed_secret,
            })
        })
        .collect()
}
