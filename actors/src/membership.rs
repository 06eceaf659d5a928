//! Who is in a group, in which epoch, and which epoch keys this member
//! holds: the state a `GroupLog` rebuilds from its metadata log.
//!
//! Every member device announces itself in one epoch (its signing key is
//! that epoch's). A removal names a member and starts a new epoch whose
//! secret is sealed to the remaining members; a renewal removes no member
//! but leaves out devices its author's account removed (the secret sealed
//! to the author's remaining devices, not to its member key). The members
//! of an epoch are those who received its secret in the event that started
//! it (a renewal's author included), plus those who announced themselves
//! in it (joined with an invitation carrying it); never a removed member.
//! Chains and epoch secrets are only ever shared with the members of the
//! current epoch.

use std::collections::{HashMap, HashSet};

use veil_crypto::{
    EpochId, EpochSecret, GroupKeys, MemberPublic, VerifyKey,
    envelope::{AuthorKeys, EntryHash, OpenedEntry, SealedEntry, SignatureCheck, open_header_unchecked},
};
use veil_proto::metadata::{EpochShare, MemberJoined, MetadataEvent};

pub(crate) use crate::messages::vault::SealedEpochShare as SealedShare;

/// A metadata event that starts a new epoch: a member's removal (or
/// departure), or a renewal without some devices of its author's account.
#[derive(Debug, Clone)]
pub(crate) struct EpochStart {
    /// The epoch it starts.
    pub(crate) epoch: EpochId,
    /// The member removed, if any (a renewal removes none).
    pub(crate) removed: Option<VerifyKey>,
    /// The new secret, sealed to members.
    pub(crate) shares: Vec<EpochShare>,
    /// The new secret, sealed to the remaining devices of the author's account.
    pub(crate) device_shares: Vec<Vec<u8>>,
}

impl EpochStart {
    /// The epoch start `event` is, if it is one.
    pub(crate) fn of(event: &MetadataEvent) -> Option<Self> {
        match event {
            MetadataEvent::MemberJoined(_) => None,
            MetadataEvent::MemberRemoved(r) => Some(Self {
                epoch: r.epoch,
                removed: Some(r.member),
                shares: r.shares.clone(),
                device_shares: Vec::new(),
            }),
            MetadataEvent::EpochRenewed(r) => Some(Self {
                epoch: r.epoch,
                removed: None,
                shares: r.shares.clone(),
                device_shares: r.device_shares.clone(),
            }),
        }
    }

    /// What `me` may open of it, written by a device of `author`: its
    /// member share, or, when its own account renewed, the device shares.
    pub(crate) fn share_for(&self, me: &VerifyKey, author: Option<&VerifyKey>) -> Option<SealedShare> {
        if let Some(share) = self.shares.iter().find(|s| s.recipient == *me) {
            return Some(SealedShare::Member(share.sealed_secret.clone()));
        }
        (self.removed.is_none() && author == Some(me) && !self.device_shares.is_empty())
            .then(|| SealedShare::Devices(self.device_shares.clone()))
    }
}

/// The epochs whose keys this member holds, in the order it learned them
/// (the root epoch first).
#[derive(Debug, Clone)]
pub(crate) struct Epochs {
    list: Vec<(EpochId, GroupKeys)>,
}

/// Why an entry did not open.
pub(crate) enum Unopened {
    /// Not the group's (bad tag), or a bad signature: forged.
    Forged,
    /// Authentic but sealed in an epoch whose keys this member lacks.
    NoKey,
}

impl Epochs {
    /// The root epoch and the secrets of later ones.
    pub(crate) fn new(root: GroupKeys, secrets: &[EpochSecret]) -> Self {
        let mut epochs = Self { list: vec![(EpochId::ROOT, root)] };
        for secret in secrets {
            epochs.add(secret);
        }
        epochs
    }

    /// Adds an epoch; returns its id.
    pub(crate) fn add(&mut self, secret: &EpochSecret) -> EpochId {
        let (id, keys) = self.root().epoch(secret);
        if !self.list.iter().any(|(e, _)| *e == id) {
            self.list.push((id, keys));
        }
        id
    }

    /// The root epoch's keys (the group's).
    pub(crate) fn root(&self) -> &GroupKeys {
        &self.list[0].1
    }

    /// The keys of `epoch`, if held.
    pub(crate) fn keys(&self, epoch: &EpochId) -> Option<&GroupKeys> {
        self.list.iter().find(|(e, _)| e == epoch).map(|(_, k)| k)
    }

    /// Whether the keys of `epoch` are held.
    pub(crate) fn holds(&self, epoch: &EpochId) -> bool {
        self.keys(epoch).is_some()
    }

    /// Opens an entry with whichever held epoch sealed it, newest first;
    /// author keys are parsed through `authors`.
    pub(crate) fn open(
        &self,
        entry: &SealedEntry,
        authors: &mut AuthorKeys,
    ) -> Result<(EpochId, OpenedEntry), Unopened> {
        let (epoch, opened, check) = self.open_unchecked(entry, authors)?;
        check.verify().map_err(|_| Unopened::Forged)?;
        Ok((epoch, opened))
    }

    /// [`Epochs::open`] but for the author's signature, which is returned
    /// to be checked (in a batch with others: `failed_signatures`).
    pub(crate) fn open_unchecked(
        &self,
        entry: &SealedEntry,
        authors: &mut AuthorKeys,
    ) -> Result<(EpochId, OpenedEntry, SignatureCheck), Unopened> {
        let root = self.root();
        if entry.verify_tag(&root.entry_auth_key).is_err() {
            return Err(Unopened::Forged);
        }
        let Ok(position) = entry.open_position(&root.position_key) else { return Err(Unopened::Forged) };
        for (epoch, keys) in self.list.iter().rev() {
            match open_header_unchecked(keys, entry, position.clone(), authors) {
                Ok((opened, check)) => return Ok((*epoch, opened, check)),
                Err(veil_crypto::Error::Decrypt) => continue,
                Err(_) => return Err(Unopened::Forged),
            }
        }
        Err(Unopened::NoKey)
    }

    /// The current epoch: the held epoch whose removal comes last in log
    /// order. Epochs learned from an invitation before their removal entry
    /// arrived rank above the rest, newest learned first (the inviter
    /// listed them in order).
    pub(crate) fn current(&self, membership: &Membership) -> EpochId {
        let rank = |(i, (id, _)): (usize, &(EpochId, GroupKeys))| match membership.starts.get(id) {
            _ if *id == EpochId::ROOT => (0, EntryHash([0; 32]), i),
            Some((lamport, hash)) => (*lamport, *hash, i),
            None => (u64::MAX, EntryHash([0; 32]), i),
        };
        self.list.iter().enumerate().max_by_key(|e| rank(*e)).map_or(EpochId::ROOT, |(_, (id, _))| *id)
    }
}

/// The group's members as its metadata log says.
#[derive(Debug, Clone, Default)]
pub(crate) struct Membership {
    /// Member devices, their member and the epoch they write in.
    devices: HashMap<VerifyKey, (MemberPublic, EpochId)>,
    /// Removed (or departed) members' signing keys.
    removed: HashSet<VerifyKey>,
    /// For each epoch after the root: who received its secret.
    recipients: HashMap<EpochId, HashSet<VerifyKey>>,
    /// For each epoch after the root: where its removal sits in log order.
    starts: HashMap<EpochId, (u64, EntryHash)>,
    /// For each epoch after the root: the epoch its start was written in,
    /// if known, and whether it is a renewal by that member.
    origins: HashMap<EpochId, (EpochId, Option<VerifyKey>, bool)>,
    /// (member, epoch) where the member renewed without some of its
    /// devices: what those devices read of that epoch, they read too.
    renewed: HashSet<(VerifyKey, EpochId)>,
}

impl Membership {
    /// Records an announcement; `true` if it names a member not known before.
    pub(crate) fn joined(&mut self, joined: &MemberJoined) -> bool {
        let new = !self.devices.values().any(|(m, _)| *m == joined.member);
        self.devices.insert(joined.device, (joined.member, joined.epoch));
        new
    }

    /// Records an epoch start by a device of `author`, written in
    /// `written_in` at `(lamport, hash)`.
    pub(crate) fn started(
        &mut self,
        start: &EpochStart,
        author: Option<VerifyKey>,
        written_in: Option<EpochId>,
        (lamport, hash): (u64, EntryHash),
    ) {
        let renewal = start.removed.is_none();
        if let Some(written_in) = written_in {
            self.origins.insert(start.epoch, (written_in, author, renewal));
            if let (true, Some(author)) = (renewal, author) {
                self.renewed.insert((author, written_in));
            }
        }
        let mut recipients: HashSet<VerifyKey> = start.shares.iter().map(|s| s.recipient).collect();
        if let Some(member) = start.removed {
            self.removed.insert(member);
        } else if let Some(author) = author {
            // A renewal's author stays a member: its devices hold the secret.
            recipients.insert(author);
        }
        self.recipients.insert(start.epoch, recipients);
        self.starts.insert(start.epoch, (lamport, hash));
    }

    /// Whether `member` must renew `current` again: it was started by an
    /// event (not `member`'s own renewal) written in an epoch `member` had
    /// renewed away from, which devices it removed still read, so they
    /// may hold the secret it sealed to `member`'s key (concurrent starts).
    pub(crate) fn must_renew(&self, member: &VerifyKey, current: &EpochId) -> bool {
        let Some((written_in, author, renewal)) = self.origins.get(current) else { return false };
        let own_renewal = *renewal && author.as_ref() == Some(member);
        !own_renewal && self.renewed.contains(&(*member, *written_in))
    }

    /// The member a device writes for, and the epoch it writes in.
    pub(crate) fn device(&self, device: &VerifyKey) -> Option<&(MemberPublic, EpochId)> {
        self.devices.get(device)
    }

    /// Every device `member` announced, in a stable order.
    pub(crate) fn devices_of(&self, member: &MemberPublic) -> Vec<VerifyKey> {
        let mut out: Vec<VerifyKey> = self.devices.iter().filter(|(_, (m, _))| m == member).map(|(d, _)| *d).collect();
        out.sort_by_key(VerifyKey::to_bytes);
        out
    }

    /// Whether `member` was removed or left.
    pub(crate) fn is_removed(&self, member: &VerifyKey) -> bool {
        self.removed.contains(member)
    }

    /// Whether some device announced `member`.
    pub(crate) fn knows(&self, member: &VerifyKey) -> bool {
        self.devices.values().any(|(m, _)| m.signing == *member)
    }

    /// The members of `epoch`, each once, in a stable order.
    pub(crate) fn members_of(&self, epoch: &EpochId) -> Vec<MemberPublic> {
        let recipients = self.recipients.get(epoch);
        let mut out: Vec<MemberPublic> = Vec::new();
        for (member, announced_in) in self.devices.values() {
            let in_epoch = announced_in == epoch || recipients.is_some_and(|r| r.contains(&member.signing));
            if in_epoch && !self.removed.contains(&member.signing) && !out.contains(member) {
                out.push(*member);
            }
        }
        out.sort_by_key(|m| m.signing.to_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use veil_crypto::{AliasKey, GroupSecret, OsEntropy, SigningSecret};

    use super::*;

    fn joined(member: &MemberPublic, epoch: EpochId) -> MemberJoined {
        let device = SigningSecret::generate(&mut OsEntropy).unwrap().verify_key();
        MemberJoined {
            member: *member,
            device,
            device_cert: veil_crypto::Signature([0; 64]),
            chain_shares: vec![],
            epoch,
            display_name: None,
        }
    }

    #[test]
    fn a_removed_member_is_in_no_later_epoch_and_late_root_joiners_are_not_either() {
        let keys = GroupKeys::derive(&GroupSecret::from_bytes([1; 32]));
        let member = |_| AliasKey::generate(&mut OsEntropy).unwrap().member_keys(&keys.id).public();
        let (a, b, c, late) = (member(0), member(1), member(2), member(3));
        let mut m = Membership::default();
        for x in [&a, &b, &c] {
            m.joined(&joined(x, EpochId::ROOT));
        }
        assert_eq!(m.members_of(&EpochId::ROOT).len(), 3);
        let mut epochs = Epochs::new(keys.clone(), &[]);
        let e1 = epochs.add(&EpochSecret::from_bytes([7; 32]));
        let share = |x: &MemberPublic| EpochShare { recipient: x.signing, sealed_secret: vec![] };
        let removal = EpochStart {
            epoch: e1,
            removed: Some(c.signing),
            shares: vec![share(&a), share(&b)],
            device_shares: vec![],
        };
        m.started(&removal, Some(a.signing), Some(EpochId::ROOT), (9, EntryHash([1; 32])));
        assert_eq!(epochs.current(&m), e1);
        let in_e1 = m.members_of(&e1);
        assert!(in_e1.contains(&a) && in_e1.contains(&b) && !in_e1.contains(&c));
        assert!(!m.members_of(&EpochId::ROOT).contains(&c));
        // Someone let in with the root secret alone is not a member of e1.
        m.joined(&joined(&late, EpochId::ROOT));
        assert!(!m.members_of(&e1).contains(&late));
        m.joined(&joined(&late, e1));
        assert!(m.members_of(&e1).contains(&late));

        // b renews without some of its devices: nobody is removed, b is in
        // e2 with the members it sealed to, and e2 is current.
        let e2 = epochs.add(&EpochSecret::from_bytes([8; 32]));
        let renewal =
            EpochStart { epoch: e2, removed: None, shares: vec![share(&a)], device_shares: vec![vec![1; 80]] };
        m.started(&renewal, Some(b.signing), Some(e1), (12, EntryHash([2; 32])));
        assert_eq!(epochs.current(&m), e2);
        let in_e2 = m.members_of(&e2);
        assert!(in_e2.contains(&a) && in_e2.contains(&b) && !in_e2.contains(&c));
        assert!(!m.is_removed(&b.signing));
        assert!(!m.must_renew(&b.signing, &e2), "its own renewal");

        // Meanwhile a, not knowing of it, removed someone in e1, sealing the
        // secret to b's member key, which b's removed devices derive: once
        // that epoch is current, b renews again; a need not.
        let e3 = epochs.add(&EpochSecret::from_bytes([9; 32]));
        let concurrent = EpochStart {
            epoch: e3,
            removed: Some(late.signing),
            shares: vec![share(&a), share(&b)],
            device_shares: vec![],
        };
        m.started(&concurrent, Some(a.signing), Some(e1), (13, EntryHash([3; 32])));
        assert_eq!(epochs.current(&m), e3);
        assert!(m.must_renew(&b.signing, &e3));
        assert!(!m.must_renew(&a.signing, &e3));
        // b's renewal of e3, written in e3, settles it.
        let e4 = epochs.add(&EpochSecret::from_bytes([10; 32]));
        let again = EpochStart { epoch: e4, removed: None, shares: vec![share(&a)], device_shares: vec![] };
        m.started(&again, Some(b.signing), Some(e3), (14, EntryHash([4; 32])));
        assert!(!m.must_renew(&b.signing, &epochs.current(&m)));
    }

    #[test]
    fn a_renewal_gives_device_shares_only_to_its_authors_member() {
        let (me, other) =
            (SigningSecret::from_seed(&[1; 32]).verify_key(), SigningSecret::from_seed(&[2; 32]).verify_key());
        let renewal = EpochStart {
            epoch: EpochId([3; 32]),
            removed: None,
            shares: vec![EpochShare { recipient: other, sealed_secret: vec![5; 80] }],
            device_shares: vec![vec![6; 80]],
        };
        assert!(matches!(renewal.share_for(&me, Some(&me)), Some(SealedShare::Devices(d)) if d == vec![vec![6; 80]]));
        assert!(matches!(renewal.share_for(&other, Some(&me)), Some(SealedShare::Member(s)) if s == vec![5; 80]));
        let stranger = SigningSecret::from_seed(&[4; 32]).verify_key();
        assert!(renewal.share_for(&stranger, Some(&me)).is_none());
        // A removal's device shares are nobody's.
        let removal = EpochStart { removed: Some(other), ..renewal };
        assert!(removal.share_for(&me, Some(&me)).is_none());
    }

    #[test]
    fn invitation_epochs_rank_above_until_their_removals_arrive() {
        let keys = GroupKeys::derive(&GroupSecret::from_bytes([2; 32]));
        let (s1, s2) = (EpochSecret::from_bytes([1; 32]), EpochSecret::from_bytes([2; 32]));
        let ids = [EpochId::ROOT, keys.epoch(&s1).0, keys.epoch(&s2).0];
        let epochs = Epochs::new(keys, &[s1, s2]);
        let mut m = Membership::default();
        assert_eq!(epochs.current(&m), ids[2]);
        let gone = SigningSecret::generate(&mut OsEntropy).unwrap().verify_key();
        let removal = |epoch| EpochStart { epoch, removed: Some(gone), shares: vec![], device_shares: vec![] };
        m.started(&removal(ids[2]), None, None, (5, EntryHash([0; 32])));
        m.started(&removal(ids[1]), None, None, (3, EntryHash([0; 32])));
        assert_eq!(epochs.current(&m), ids[2]);
    }
}
