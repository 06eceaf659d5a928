//! Groups: the key schedule, contact-group derivation and per-group member keys.
//!
//! One 32-byte group secret feeds HKDF-SHA256 once; every primitive gets its
//! own output (Berty reuses one secret as secretbox key, signing seed and KDF
//! input; veil never uses one key in two roles):
//!
//! | output            | used for                                                |
//! |-------------------|---------------------------------------------------------|
//! | `group-id`        | local identifier; seeds member keys; never sent in clear |
//! | `header-key`      | AES-256-GCM over entry headers (author, counter, signature) |
//! | `metadata-key`    | AES-256-GCM over metadata-log bodies                    |
//! | `link-key`        | AES-256-GCM over entry position (parents, Lamport clock)   |
//! | `entry-auth-key`  | HMAC-SHA256 tag on every entry                          |
//! | `replication-id`  | names the group at a replication node                   |
//! | `rendezvous-seed` | the group's rotating rendezvous points                  |

use zeroize::Zeroizing;

use crate::{
    AccountKeys, AccountPublic, AgreementPublic, AgreementSecret, AliasKey, Result, Signature, SigningSecret,
    VerifyKey,
    kdf::{expand_prk, hkdf, label},
    rendezvous::RendezvousSeed,
    secret::secret32,
};

secret32!(
    /// The root secret of a group. Whoever holds it is (or can become) a member.
    GroupSecret
);
secret32!(
    /// An AES-256-GCM key derived by the group key schedule.
    GroupKey
);
secret32!(
    /// The HMAC-SHA256 key that authenticates entries towards replication nodes.
    EntryAuthKey
);

/// A group's identifier. Known to members (and derivable from the secret
/// only); it is never put on the network in clear.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(pub [u8; 32]);

impl core::fmt::Debug for GroupId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "GroupId({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

/// Names a group at a replication node without revealing its [`GroupId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplicationId(pub [u8; 32]);

/// Every key derived from one [`GroupSecret`].
#[derive(Debug, Clone)]
pub struct GroupKeys {
    /// Identifies the group locally and enters member keys and signatures; never sent in clear.
    pub id: GroupId,
    /// Encrypts entry headers.
    pub header_key: GroupKey,
    /// Encrypts metadata-log bodies.
    pub metadata_key: GroupKey,
    /// Encrypts entry position; shared with replication nodes.
    pub position_key: GroupKey,
    /// Authenticates entries; shared with replication nodes.
    pub entry_auth_key: EntryAuthKey,
    /// Names the group at replication nodes.
    pub replication_id: ReplicationId,
    /// Seeds the group's rotating rendezvous points.
    pub rendezvous_seed: RendezvousSeed,
}

impl GroupKeys {
    /// Runs the key schedule.
    pub fn derive(secret: &GroupSecret) -> Self {
        let prk: Zeroizing<[u8; 32]> = hkdf(label::GROUP_SCHEDULE, secret.expose_secret(), &[]);
        let out = |l: &[u8]| -> [u8; 32] { *expand_prk::<32>(&prk, &[l]) };
        Self {
            id: GroupId(out(label::GROUP_ID)),
            header_key: GroupKey::from_bytes(out(label::HEADER_KEY)),
            metadata_key: GroupKey::from_bytes(out(label::METADATA_KEY)),
            position_key: GroupKey::from_bytes(out(label::POSITION_KEY)),
            entry_auth_key: EntryAuthKey::from_bytes(out(label::ENTRY_AUTH_KEY)),
            replication_id: ReplicationId(out(label::REPLICATION_ID)),
            rendezvous_seed: RendezvousSeed::from_bytes(out(label::RENDEZVOUS_SEED)),
        }
    }

    /// What a blind replication node receives: enough to verify, store and
    /// serve the group's entries and walk their DAG, nothing to read them.
    pub fn replication_credential(&self) -> ReplicationCredential {
        ReplicationCredential {
            replication_id: self.replication_id,
            position_key: self.position_key.clone(),
            entry_auth_key: self.entry_auth_key.clone(),
        }
    }
}

/// The credential handed to a blind replication node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationCredential {
    /// Names the group at the node.
    pub replication_id: ReplicationId,
    /// Decrypts entry position (parents, Lamport clock) so the node can walk the DAG.
    pub position_key: GroupKey,
    /// Verifies entry tags so the node stores nothing forged by outsiders.
    pub entry_auth_key: EntryAuthKey,
}

impl ReplicationCredential {
    fn seed(&self, l: &[u8]) -> RendezvousSeed {
        let okm: Zeroizing<[u8; 32]> =
            hkdf(label::REPLICA_SCHEDULE, self.entry_auth_key.expose_secret(), &[l, &self.replication_id.0]);
        RendezvousSeed::from_bytes(*okm)
    }

    /// Seeds the rotating points where the replication node announces itself
    /// and members look it up: `HKDF(salt = "veil/v1/replica", ikm =
    /// entry_auth_key, info = "replica-rendezvous-seed" ‖ replication_id)`.
    pub fn rendezvous_seed(&self) -> RendezvousSeed {
        self.seed(label::REPLICA_RENDEZVOUS)
    }

    /// Seeds the session tags between members and the replication node
    /// (`info = "replica-session-seed" ‖ replication_id`).
    pub fn session_seed(&self) -> RendezvousSeed {
        self.seed(label::REPLICA_SESSION)
    }
}

/// The secret of the 1:1 group between two accounts. Both sides compute it
/// alone from their own account and the other's public account:
///
/// `HKDF-SHA256(salt = "veil/v1/contact-group", ikm = X25519(a, B),
///              info = min(A, B) ‖ max(A, B))` where `A`, `B` are the 64-byte
/// public accounts, ordered bytewise.
pub fn contact_group_secret(mine: &AccountKeys, theirs: &AccountPublic) -> Result<GroupSecret> {
    let shared = mine.agreement.agree(&theirs.agreement)?;
    let (a, b) = (mine.public().to_bytes(), theirs.to_bytes());
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let okm: Zeroizing<[u8; 32]> = hkdf(label::CONTACT_GROUP, &shared[..], &[&lo, &hi]);
    Ok(GroupSecret::from_bytes(*okm))
}

/// The secret of the account's own group, where the account's devices keep
/// each other in step (contacts, links, groups; PROTOCOL.md §14.8). Every
/// device derives it from the alias key, which never leaves the account:
///
/// `HKDF-SHA256(salt = "veil/v1/account-group", ikm = alias_seed, info = "")`
pub fn account_group_secret(alias: &crate::AliasKey) -> GroupSecret {
    let okm: Zeroizing<[u8; 32]> = hkdf(label::ACCOUNT_GROUP, &alias.to_seed()[..], &[]);
    GroupSecret::from_bytes(*okm)
}

/// A member's keys in one group, derived from the private alias key:
/// `HKDF-SHA256(salt = "veil/v1/member-key", ikm = alias_seed, info = group_id)`
/// → 64 bytes = Ed25519 seed ‖ X25519 secret.
///
/// Every device of an account derives the same member keys without talking to
/// the others, and without the alias secret they cannot be linked to the
/// account or to the same account's member keys in other groups.
#[derive(Debug, Clone)]
pub struct MemberKeys {
    /// Signs membership entries and certifies this member's devices.
    pub signing: SigningSecret,
    /// Receives sender-chain states sealed to this member.
    pub agreement: AgreementSecret,
}

/// The public half of a member's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MemberPublic {
    /// Verifies the member's device certificates; shares and removals name the member by it.
    pub signing: VerifyKey,
    /// What sender-chain states and epoch secrets are sealed to for this member.
    pub agreement: AgreementPublic,
}

impl AliasKey {
    /// The member keys of this account in the group `group`.
    pub fn member_keys(&self, group: &GroupId) -> MemberKeys {
        let seed = self.0.to_seed();
        let okm: Zeroizing<[u8; 64]> = hkdf(label::MEMBER_KEY, &seed[..], &[&group.0]);
        let mut signing_seed = Zeroizing::new([0u8; 32]);
        let mut agreement = Zeroizing::new([0u8; 32]);
        signing_seed.copy_from_slice(&okm[..32]);
        agreement.copy_from_slice(&okm[32..]);
        MemberKeys {
            signing: SigningSecret::from_seed(&signing_seed),
            agreement: AgreementSecret::from_bytes(*agreement),
        }
    }
}

fn device_cert_message(group: &GroupId, device: &VerifyKey) -> Vec<u8> {
    let mut m = label::DEVICE_CERT.to_vec();
    m.extend_from_slice(&group.0);
    m.extend_from_slice(&device.to_bytes());
    m
}

impl MemberKeys {
    /// The public keys, as this member's device announcements give them to the other members.
    pub fn public(&self) -> MemberPublic {
        MemberPublic { signing: self.signing.verify_key(), agreement: self.agreement.public() }
    }

    /// Certifies that `device` writes for this member in `group`. The
    /// signature covers the group id, so it cannot be replayed in another group
    /// (Berty's member signature covers the device key only).
    pub fn certify_device(&self, group: &GroupId, device: &VerifyKey) -> Signature {
        self.signing.sign(&device_cert_message(group, device))
    }
}

impl MemberPublic {
    /// Checks a device certificate made by [`MemberKeys::certify_device`].
    pub fn verify_device(&self, group: &GroupId, device: &VerifyKey, cert: &Signature) -> Result<()> {
        self.signing.verify(&device_cert_message(group, device), cert)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::{OsEntropy, TestEntropy};

    #[test]
    fn both_sides_derive_the_same_contact_group() {
        let a = AccountKeys::generate(&mut OsEntropy).unwrap();
        let b = AccountKeys::generate(&mut OsEntropy).unwrap();
        let c = AccountKeys::generate(&mut OsEntropy).unwrap();
        let ab = contact_group_secret(&a, &b.public()).unwrap();
        assert_eq!(ab, contact_group_secret(&b, &a.public()).unwrap());
        assert_ne!(ab, contact_group_secret(&a, &c.public()).unwrap());
    }

    #[test]
    fn schedule_outputs_are_distinct() {
        let keys = GroupKeys::derive(&GroupSecret::from_bytes([9; 32]));
        let outs = [
            keys.id.0,
            *keys.header_key.expose_secret(),
            *keys.metadata_key.expose_secret(),
            *keys.position_key.expose_secret(),
            *keys.entry_auth_key.expose_secret(),
            keys.replication_id.0,
            *keys.rendezvous_seed.expose_secret(),
        ];
        for i in 0..outs.len() {
            for j in i + 1..outs.len() {
                assert_ne!(outs[i], outs[j]);
            }
        }
    }

    #[test]
    fn replica_seeds_are_distinct_and_not_the_groups() {
        let keys = GroupKeys::derive(&GroupSecret::from_bytes([9; 32]));
        let credential = keys.replication_credential();
        let (rdv, session) = (credential.rendezvous_seed(), credential.session_seed());
        assert_ne!(rdv, session);
        assert_ne!(rdv, keys.rendezvous_seed);
        assert_ne!(session, keys.rendezvous_seed);
    }

    #[test]
    fn member_keys_are_per_group_and_shared_by_devices() {
        let mut e = TestEntropy::new(b"member");
        let alias = AliasKey::generate(&mut e).unwrap();
        let other_device_copy = AliasKey::from_seed(&alias.to_seed());
        let (g1, g2) = (GroupId([1; 32]), GroupId([2; 32]));
        let m1 = alias.member_keys(&g1).public();
        assert_eq!(m1, other_device_copy.member_keys(&g1).public());
        assert_ne!(m1.signing, alias.member_keys(&g2).public().signing);
        assert_ne!(m1.signing, alias.0.verify_key());
    }

    #[test]
    fn device_certificate_is_bound_to_the_group() {
        let alias = AliasKey::generate(&mut OsEntropy).unwrap();
        let device = SigningSecret::generate(&mut OsEntropy).unwrap().verify_key();
        let (g1, g2) = (GroupId([1; 32]), GroupId([2; 32]));
        let member = alias.member_keys(&g1);
        let cert = member.certify_device(&g1, &device);
        assert!(member.public().verify_device(&g1, &device, &cert).is_ok());
        assert!(member.public().verify_device(&g2, &device, &cert).is_err());
    }
}
