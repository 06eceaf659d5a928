//! What one device of an account tells the others (docs/PROTOCOL.md
//! §14.8): messages of the account's own group, which only the account's
//! devices read. They carry secrets (group secrets, link seeds), so every
//! decoded value zeroizes its secrets on drop.

use prost::Message;
use veil_crypto::{
    AccountPublic, AgreementPublic, EpochSecret, GroupSecret, Name, RendezvousSeed, VerifyKey, time::UnixTime,
};

use crate::{
    Error, Result,
    error::decode_err,
    fields::{fixed, name_text, optional_name},
    pb,
};

/// The largest encoded event: a group with the most epochs.
pub const MAX_ACCOUNT_EVENT: usize = 16 * 1024;
/// The most epochs a group event carries.
pub const MAX_EPOCHS: usize = 256;

/// What happened to a contact on one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactChangeKind {
    /// Accepted (by this account or by them).
    Accepted,
    /// Its request was discarded.
    Discarded,
    /// Blocked.
    Blocked,
    /// Removed, with its conversation.
    Removed,
}

/// One device's news for the account's other devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountEvent {
    /// A contact's state changed.
    Contact {
        /// The contact's account.
        account: AccountPublic,
        /// What happened.
        change: ContactChangeKind,
        /// The name it introduced itself by, if any.
        display_name: Option<Name>,
    },
    /// The contact link: its seed now, and whether and how it answers.
    Link {
        /// The seed of the link's points.
        seed: RendezvousSeed,
        /// Whether it answers requests.
        enabled: bool,
        /// When it stops answering.
        expires_at: Option<UnixTime>,
        /// How many completed requests it answers.
        uses: Option<u32>,
    },
    /// A multi-member group this account is in.
    Group {
        /// Its secret.
        secret: GroupSecret,
        /// Its name, if any.
        name: Option<String>,
        /// The epochs this device holds.
        epochs: Vec<EpochSecret>,
    },
    /// A device linked to the account (by the device that showed the offer).
    Device {
        /// Its own key.
        device: VerifyKey,
        /// Its device agreement key (docs/PROTOCOL.md §6.6).
        agreement: AgreementPublic,
    },
    /// A device removed from the account: the others renew every group's
    /// epoch without it.
    DeviceRemoved {
        /// Its own key.
        device: VerifyKey,
    },
}

impl AccountEvent {
    /// Encodes the event.
    pub fn encode(&self) -> zeroize::Zeroizing<Vec<u8>> {
        use pb::account_event::Event as E;
        let event = match self {
            Self::Contact { account, change, display_name } => E::Contact(pb::ContactChange {
                account_signing_key: account.signing.to_bytes().to_vec(),
                account_agreement_key: account.agreement.0.to_vec(),
                state: match change {
                    ContactChangeKind::Accepted => 1,
                    ContactChangeKind::Discarded => 2,
                    ContactChangeKind::Blocked => 3,
                    ContactChangeKind::Removed => 4,
                },
                display_name: name_text(display_name.as_ref()),
            }),
            Self::Link { seed, enabled, expires_at, uses } => E::Link(pb::LinkChange {
                rendezvous_seed: seed.expose_secret().to_vec(),
                enabled: *enabled,
                expires_at: expires_at.map_or(0, |t| t.0),
                uses: uses.unwrap_or(0),
            }),
            Self::Group { secret, name, epochs } => E::Group(pb::GroupJoined {
                group_secret: secret.expose_secret().to_vec(),
                name: name.clone().unwrap_or_default(),
                epoch_secrets: epochs.iter().map(|e| e.expose_secret().to_vec()).collect(),
            }),
            Self::Device { device, agreement } => E::Device(pb::DeviceAdded {
                device_key: device.to_bytes().to_vec(),
                agreement_key: agreement.0.to_vec(),
            }),
            Self::DeviceRemoved { device } => {
                E::DeviceRemoved(pb::DeviceRemoved { device_key: device.to_bytes().to_vec() })
            }
        };
        let mut message = pb::AccountEvent { event: Some(event) };
        let bytes = zeroize::Zeroizing::new(message.encode_to_vec());
        wipe(&mut message);
        bytes
    }

    /// Decodes and validates an event (refusing oversize input, unknown
    /// states, keys and secrets of the wrong length, invalid keys).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        use pb::account_event::Event as E;
        if bytes.len() > MAX_ACCOUNT_EVENT {
            return Err(Error::TooLarge { what: "account event", len: bytes.len(), max: MAX_ACCOUNT_EVENT });
        }
        let mut m = pb::AccountEvent::decode(bytes).map_err(decode_err("account event"))?;
        let decoded = match &m.event {
            Some(E::Contact(c)) => Self::contact(c),
            Some(E::Link(l)) => Ok(Self::Link {
                seed: RendezvousSeed::from_bytes(fixed("rendezvous seed", &l.rendezvous_seed)?),
                enabled: l.enabled,
                expires_at: (l.expires_at != 0).then_some(UnixTime(l.expires_at)),
                uses: (l.uses != 0).then_some(l.uses),
            }),
            Some(E::Group(g)) => Self::group(g),
            Some(E::Device(d)) => Ok(Self::Device {
                device: VerifyKey::from_bytes(&fixed("device key", &d.device_key)?)?,
                agreement: AgreementPublic(fixed("device agreement key", &d.agreement_key)?),
            }),
            Some(E::DeviceRemoved(d)) => {
                Ok(Self::DeviceRemoved { device: VerifyKey::from_bytes(&fixed("device key", &d.device_key)?)? })
            }
            None => Err(Error::Invalid { what: "account event", reason: "carries no event" }),
        };
        wipe(&mut m);
        decoded
    }

    fn contact(c: &pb::ContactChange) -> Result<Self> {
        let change = match c.state {
            1 => ContactChangeKind::Accepted,
            2 => ContactChangeKind::Discarded,
            3 => ContactChangeKind::Blocked,
            4 => ContactChangeKind::Removed,
            _ => return Err(Error::Invalid { what: "account event", reason: "unknown contact state" }),
        };
        Ok(Self::Contact {
            account: AccountPublic {
                signing: VerifyKey::from_bytes(&fixed("account signing key", &c.account_signing_key)?)?,
                agreement: AgreementPublic(fixed("account agreement key", &c.account_agreement_key)?),
            },
            change,
            display_name: optional_name(&c.display_name)?,
        })
    }

    fn group(g: &pb::GroupJoined) -> Result<Self> {
        if g.epoch_secrets.len() > MAX_EPOCHS {
            return Err(Error::Invalid { what: "account event", reason: "too many epochs" });
        }
        if g.name.len() > 256 {
            return Err(Error::Invalid { what: "account event", reason: "group name too long" });
        }
        Ok(Self::Group {
            secret: GroupSecret::from_bytes(fixed("group secret", &g.group_secret)?),
            name: (!g.name.is_empty()).then(|| g.name.clone()),
            epochs: g
                .epoch_secrets
                .iter()
                .map(|e| Ok(EpochSecret::from_bytes(fixed("epoch secret", e)?)))
                .collect::<Result<_>>()?,
        })
    }
}

/// Zeroizes the secrets a protobuf value holds.
fn wipe(m: &mut pb::AccountEvent) {
    use pb::account_event::Event as E;
    use zeroize::Zeroize;
    match &mut m.event {
        Some(E::Link(l)) => l.rendezvous_seed.zeroize(),
        Some(E::Group(g)) => {
            g.group_secret.zeroize();
            g.epoch_secrets.iter_mut().for_each(Zeroize::zeroize);
        }
        Some(E::Contact(_) | E::Device(_) | E::DeviceRemoved(_)) | None => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use veil_crypto::{Identity, OsEntropy};

    use super::*;

    #[test]
    fn events_round_trip_and_malformed_ones_are_refused() {
        let them = Identity::generate(&mut OsEntropy).unwrap().account.public();
        let events = [
            AccountEvent::Contact {
                account: them,
                change: ContactChangeKind::Blocked,
                display_name: Some(Name::new("Bob").unwrap()),
            },
            AccountEvent::Link {
                seed: RendezvousSeed::generate(&mut OsEntropy).unwrap(),
                enabled: true,
                expires_at: Some(UnixTime(5)),
                uses: Some(1),
            },
            AccountEvent::Group {
                secret: GroupSecret::generate(&mut OsEntropy).unwrap(),
                name: Some("friends".into()),
                epochs: vec![EpochSecret::generate(&mut OsEntropy).unwrap()],
            },
            AccountEvent::Device {
                device: Identity::generate(&mut OsEntropy).unwrap().device.verify_key(),
                agreement: AgreementPublic([7; 32]),
            },
            AccountEvent::DeviceRemoved { device: Identity::generate(&mut OsEntropy).unwrap().device.verify_key() },
        ];
        for e in events {
            assert_eq!(AccountEvent::decode(&e.encode()).unwrap(), e);
        }
        assert!(AccountEvent::decode(&[]).is_err());
        assert!(AccountEvent::decode(&vec![0; MAX_ACCOUNT_EVENT + 1]).is_err());
        let unknown = pb::AccountEvent {
            event: Some(pb::account_event::Event::Contact(pb::ContactChange {
                account_signing_key: them.signing.to_bytes().to_vec(),
                account_agreement_key: them.agreement.0.to_vec(),
                state: 9,
                display_name: String::new(),
            })),
        };
        assert!(AccountEvent::decode(&unknown.encode_to_vec()).is_err());
    }
}
