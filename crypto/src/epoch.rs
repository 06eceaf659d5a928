//! Group epochs: re-keying a group when a member is removed or leaves.
//!
//! A group starts in its root epoch, whose keys come from the group secret
//! ([`GroupKeys::derive`]). Removing a member starts a new epoch: a fresh
//! random [`EpochSecret`] is sealed to each remaining member and replaces the
//! header and metadata keys:
//!
//! `prk = HKDF-SHA256-Extract(salt = "veil/v1/epoch", ikm = epoch_secret)`,
//! then `epoch-id`, `header-key` and `metadata-key` are expanded from `prk`
//! with `info = label ‖ group_id`.
//!
//! The position key, entry-auth key, replication id and rendezvous seed stay
//! those of the group: replication nodes and the DAG keep working across
//! epochs, and members who have not yet learned a new epoch still find the
//! others. Each device writes in a new epoch under a fresh signing key
//! ([`epoch_device_key`]) with a fresh sending chain, so a removed member,
//! which holds every older key, can open neither the headers, nor the
//! metadata, nor the messages of entries written in the new epoch.

use zeroize::Zeroizing;

use crate::{
    AgreementPublic, AgreementSecret, Error, GroupId, GroupKey, GroupKeys, Result, SigningSecret,
    kdf::{expand_prk, hkdf, label},
    seal::{open_sealed, seal_to},
    secret::{Entropy, secret32},
};

secret32!(
    /// The secret of one epoch of a group, shared with its members only.
    EpochSecret
);

/// Names an epoch. Readable by members (it is in removal events), derived
/// from the epoch secret so it cannot be chosen to collide with another.
/// The root epoch (keys from the group secret) is [`EpochId::ROOT`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EpochId(pub [u8; 32]);

impl EpochId {
    /// The group's first epoch, whose keys are the key schedule's own; its id is all zeros rather than derived.
    pub const ROOT: Self = Self([0; 32]);
}

impl core::fmt::Debug for EpochId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "EpochId({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

impl GroupKeys {
    /// The keys of the epoch `secret` opens in this group: the group's keys
    /// with its header and metadata keys replaced.
    pub fn epoch(&self, secret: &EpochSecret) -> (EpochId, GroupKeys) {
        let prk: Zeroizing<[u8; 32]> = hkdf(label::EPOCH_SCHEDULE, secret.expose_secret(), &[]);
        let out = |l: &[u8]| -> [u8; 32] { *expand_prk::<32>(&prk, &[l, &self.id.0]) };
        let mut keys = self.clone();
        keys.header_key = GroupKey::from_bytes(out(label::HEADER_KEY));
        keys.metadata_key = GroupKey::from_bytes(out(label::METADATA_KEY));
        (EpochId(out(label::EPOCH_ID)), keys)
    }
}

fn share_aad(group: &GroupId) -> Vec<u8> {
    aad_for(label::EPOCH_SHARE, group)
}

fn aad_for(prefix: &[u8], group: &GroupId) -> Vec<u8> {
    let mut aad = prefix.to_vec();
    aad.extend_from_slice(&group.0);
    aad
}

/// Seals `secret` to a member's agreement key (bound to the group).
pub fn seal_epoch_secret(
    group: &GroupId,
    secret: &EpochSecret,
    member: &AgreementPublic,
    entropy: &mut impl Entropy,
) -> Result<Vec<u8>> {
    seal_to(member, &share_aad(group), secret.expose_secret(), entropy)
}

/// Opens what [`seal_epoch_secret`] sealed to this member.
pub fn open_epoch_secret(group: &GroupId, member: &AgreementSecret, sealed: &[u8]) -> Result<EpochSecret> {
    open_secret(member, &share_aad(group), sealed)
}

/// An epoch secret sealed to `key` under `aad`.
fn open_secret(key: &AgreementSecret, aad: &[u8], sealed: &[u8]) -> Result<EpochSecret> {
    let plain = open_sealed(key, aad, sealed)?;
    let bytes: [u8; 32] =
        plain[..].try_into().map_err(|_| Error::Malformed { what: "epoch share", reason: "must be 32 bytes" })?;
    Ok(EpochSecret::from_bytes(bytes))
}

/// A device's agreement key: `X25519(HKDF-SHA256(salt =
/// "veil/v1/device-agreement", ikm = device_seed, info = ""))`, from the
/// device's own key (not a group device key). Only the account's devices
/// learn its public half; it receives epoch secrets when the account renews
/// an epoch to leave a removed device out ([`seal_epoch_secret_to_device`]),
/// which sealing to the member key could not do: every device of an account
/// holds its member keys.
pub fn device_agreement_key(device: &SigningSecret) -> AgreementSecret {
    let bytes: Zeroizing<[u8; 32]> = hkdf(label::DEVICE_AGREEMENT, &device.to_seed()[..], &[]);
    AgreementSecret::from_bytes(*bytes)
}

/// Seals `secret` to one device of the author's account (bound to the
/// group; the recipient is not named, and the fresh ephemeral key of each
/// seal links nothing across groups).
pub fn seal_epoch_secret_to_device(
    group: &GroupId,
    secret: &EpochSecret,
    device: &AgreementPublic,
    entropy: &mut impl Entropy,
) -> Result<Vec<u8>> {
    seal_to(device, &aad_for(label::EPOCH_DEVICE_SHARE, group), secret.expose_secret(), entropy)
}

/// Opens what [`seal_epoch_secret_to_device`] sealed to this device.
pub fn open_device_epoch_secret(group: &GroupId, device: &AgreementSecret, sealed: &[u8]) -> Result<EpochSecret> {
    open_secret(device, &aad_for(label::EPOCH_DEVICE_SHARE, group), sealed)
}

/// A device's signing key in `epoch`: its group device key in the root
/// epoch, otherwise `Ed25519(HKDF-SHA256(salt = "veil/v1/epoch-device",
/// ikm = device_seed, info = epoch_id))`. Nobody without the device's secret
/// can link its keys across epochs.
pub fn epoch_device_key(device: &SigningSecret, epoch: &EpochId) -> SigningSecret {
    if *epoch == EpochId::ROOT {
        return device.clone();
    }
    let seed: Zeroizing<[u8; 32]> = hkdf(label::EPOCH_DEVICE, &device.to_seed()[..], &[&epoch.0]);
    SigningSecret::from_seed(&seed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GroupSecret, secret::OsEntropy};

    #[test]
    fn an_epoch_replaces_header_and_metadata_keys_only() {
        let root = GroupKeys::derive(&GroupSecret::from_bytes([3; 32]));
        let (id, keys) = root.epoch(&EpochSecret::from_bytes([4; 32]));
        assert_ne!(id, EpochId::ROOT);
        assert_ne!(keys.header_key, root.header_key);
        assert_ne!(keys.metadata_key, root.metadata_key);
        assert_ne!(keys.header_key, keys.metadata_key);
        assert_eq!(keys.position_key, root.position_key);
        assert_eq!(keys.entry_auth_key, root.entry_auth_key);
        assert_eq!(keys.id, root.id);
        // Bound to the group: the same epoch secret elsewhere gives other keys.
        let other = GroupKeys::derive(&GroupSecret::from_bytes([5; 32]));
        let (other_id, other_keys) = other.epoch(&EpochSecret::from_bytes([4; 32]));
        assert_ne!(other_id, id);
        assert_ne!(other_keys.header_key, keys.header_key);
    }

    #[test]
    fn epoch_shares_open_for_their_member_and_group_only() {
        let member = AgreementSecret::generate(&mut OsEntropy).unwrap();
        let stranger = AgreementSecret::generate(&mut OsEntropy).unwrap();
        let (g1, g2) = (GroupId([1; 32]), GroupId([2; 32]));
        let secret = EpochSecret::generate(&mut OsEntropy).unwrap();
        let sealed = seal_epoch_secret(&g1, &secret, &member.public(), &mut OsEntropy).unwrap();
        assert_eq!(open_epoch_secret(&g1, &member, &sealed).unwrap(), secret);
        assert!(open_epoch_secret(&g1, &stranger, &sealed).is_err());
        assert!(open_epoch_secret(&g2, &member, &sealed).is_err());
    }

    #[test]
    fn device_shares_open_for_their_device_and_group_only_and_not_as_member_shares() {
        let (d1, d2) = (SigningSecret::generate(&mut OsEntropy).unwrap(), SigningSecret::from_seed(&[9; 32]));
        let (a1, a2) = (device_agreement_key(&d1), device_agreement_key(&d2));
        assert_ne!(a1.public(), a2.public());
        assert_eq!(device_agreement_key(&d1).public(), a1.public());
        let (g1, g2) = (GroupId([1; 32]), GroupId([2; 32]));
        let secret = EpochSecret::generate(&mut OsEntropy).unwrap();
        let sealed = seal_epoch_secret_to_device(&g1, &secret, &a1.public(), &mut OsEntropy).unwrap();
        assert_eq!(open_device_epoch_secret(&g1, &a1, &sealed).unwrap(), secret);
        assert!(open_device_epoch_secret(&g1, &a2, &sealed).is_err());
        assert!(open_device_epoch_secret(&g2, &a1, &sealed).is_err());
        // Another label: a device share is no member share, nor the reverse.
        assert!(open_epoch_secret(&g1, &a1, &sealed).is_err());
        let member = seal_epoch_secret(&g1, &secret, &a1.public(), &mut OsEntropy).unwrap();
        assert!(open_device_epoch_secret(&g1, &a1, &member).is_err());
    }

    #[test]
    fn device_keys_differ_per_epoch() {
        let device = SigningSecret::generate(&mut OsEntropy).unwrap();
        assert_eq!(epoch_device_key(&device, &EpochId::ROOT).verify_key(), device.verify_key());
        let (e1, e2) = (EpochId([1; 32]), EpochId([2; 32]));
        let k1 = epoch_device_key(&device, &e1).verify_key();
        assert_ne!(k1, device.verify_key());
        assert_ne!(k1, epoch_device_key(&device, &e2).verify_key());
        assert_eq!(k1, epoch_device_key(&device, &e1).verify_key());
    }
}
