//! A first device's store: an identity, a contact, groups it wrote in (one
//! in a later epoch), entries received, sending chains and an outbox.

use veil_crypto::{
    AccountKeys, AccountPublic, ChainState, EpochSecret, GroupId, GroupKeys, Identity, OsEntropy, SenderChain,
    SigningSecret, VerifyKey,
    envelope::{BodyKey, EntryHash, EntryKind, Position, SealedEntry, seal_entry},
    epoch::epoch_device_key,
};
use veil_storage::{
    Addressee, ContactState, DeviceCopy, KeyAccess, NewEntry, RatchetUpdate, ReceivedCopy, Store, StoreOptions,
};

use crate::common::{TempStore, bare, inserted_group, metadata_entry, options, temp_store};

pub(crate) const PEER: Addressee = Addressee([0x42; 32]);

/// The first device's store and what the linked copy must show of it.
pub(crate) struct First {
    pub(crate) t: TempStore,
    pub(crate) access: KeyAccess,
    pub(crate) identity: Identity,
    pub(crate) contact: AccountPublic,
    /// Every group, in the order they were joined.
    pub(crate) groups: Vec<GroupId>,
    /// The first device's key in each group (root epoch).
    pub(crate) group_devices: Vec<VerifyKey>,
    /// For each group it wrote in: the key it last wrote with and its sending chain.
    pub(crate) authors: Vec<(GroupId, VerifyKey, ChainState)>,
    /// Every entry and its payload.
    pub(crate) entries: Vec<(EntryHash, Option<Vec<u8>>)>,
    /// Group A: its keys and the first device's key in it, to write on after the copy.
    pub(crate) a_keys: GroupKeys,
    pub(crate) a_device: SigningSecret,
}

/// A message by `author` with `chain`, sent to [`PEER`], appended.
async fn write(
    store: &Store,
    (group, keys): (GroupId, &GroupKeys),
    author: &SigningSecret,
    chain: &mut SenderChain,
    (lamport, parents): (u64, Vec<EntryHash>),
    text: &[u8],
) -> SealedEntry {
    let position = Position { kind: EntryKind::Message, lamport, parents };
    let sealed = seal_entry(keys, author, &position, BodyKey::Message(chain), text, &mut OsEntropy).unwrap();
    store
        .append(NewEntry {
            group,
            entry: &sealed,
            position: &position,
            author: Some(author.verify_key()),
            payload: Some(text),
            ratchet: Some(RatchetUpdate::Sender { state: chain.state(), reserved_until: 0 }),
            outbox: &[PEER],
        })
        .await
        .unwrap();
    sealed
}

/// A metadata entry by `author` appended as received.
async fn receive(store: &Store, group: GroupId, keys: &GroupKeys, author: &SigningSecret, lamport: u64) -> EntryHash {
    let (sealed, position) = metadata_entry(keys, author, lamport, vec![], format!("by {lamport}").as_bytes());
    store.append(NewEntry { author: Some(author.verify_key()), ..bare(group, &sealed, &position) }).await.unwrap();
    sealed.hash()
}

/// Groups: A (written in, then a later entry by another member), B (written
/// in its root epoch, then in a later one), C (a sending chain, nothing
/// written), D (only entries received, no sending chain).
pub(crate) async fn first_store() -> First {
    let t = temp_store().await;
    let access = t.store.key_access().unwrap();
    let identity = Identity::generate(&mut OsEntropy).unwrap();
    t.store.save_identity(&identity).await.unwrap();
    let contact = AccountKeys::generate(&mut OsEntropy).unwrap().public();
    t.store.upsert_contact(&contact, Some("Bob"), None, ContactState::Accepted).await.unwrap();
    let other = SigningSecret::from_seed(&[0x77; 32]);
    let (mut entries, mut authors) = (vec![], vec![]);

    let (a, a_keys, a_device) = inserted_group(&t.store, 1).await;
    let mut chain = SenderChain::generate(&mut OsEntropy).unwrap();
    t.store.save_sender_chain(&a, chain.state()).await.unwrap();
    let mut parents = vec![];
    for i in 0..3 {
        let text = format!("message {i} in A").into_bytes();
        let sealed = write(&t.store, (a, &a_keys), &a_device, &mut chain, (i + 1, parents), &text).await;
        parents = vec![sealed.hash()];
        entries.push((sealed.hash(), Some(text)));
    }
    entries.push((receive(&t.store, a, &a_keys, &other, 10).await, None));
    authors.push((a, a_device.verify_key(), chain.state().clone()));

    let (b, b_keys, b_device) = inserted_group(&t.store, 2).await;
    entries.push((receive(&t.store, b, &b_keys, &b_device, 1).await, None));
    let epoch = EpochSecret::from_bytes([0x33; 32]);
    assert!(t.store.add_epoch(&b, &epoch).await.unwrap());
    let (epoch_id, epoch_keys) = b_keys.epoch(&epoch);
    let b_epoch_device = epoch_device_key(&b_device, &epoch_id);
    let mut chain = SenderChain::generate(&mut OsEntropy).unwrap();
    t.store.save_sender_chain(&b, chain.state()).await.unwrap();
    let sealed = write(&t.store, (b, &epoch_keys), &b_epoch_device, &mut chain, (2, vec![]), b"in epoch 2").await;
    entries.push((sealed.hash(), Some(b"in epoch 2".to_vec())));
    entries.push((receive(&t.store, b, &b_keys, &other, 5).await, None));
    authors.push((b, b_epoch_device.verify_key(), chain.state().clone()));

    let (c, _, _) = inserted_group(&t.store, 3).await;
    t.store.save_sender_chain(&c, SenderChain::generate(&mut OsEntropy).unwrap().state()).await.unwrap();
    let (d, d_keys, _) = inserted_group(&t.store, 4).await;
    entries.push((receive(&t.store, d, &d_keys, &other, 1).await, None));

    let group_devices = t.store.group_device_keys(&access).await.unwrap().iter().map(|k| k.key.verify_key()).collect();
    First { t, access, identity, contact, groups: vec![a, b, c, d], group_devices, authors, entries, a_keys, a_device }
}

impl First {
    pub(crate) fn options(&self) -> StoreOptions {
        options(&self.t.clock)
    }

    /// A device copy of the first store, its file in `dir`.
    pub(crate) async fn copy_into(&self, dir: &std::path::Path) -> DeviceCopy {
        self.t.store.device_copy(&self.access, dir).await.unwrap()
    }

    /// The whole stream of a device copy, in one piece.
    pub(crate) async fn stream(&self) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let mut copy = self.copy_into(dir.path()).await;
        let whole = copy.next_piece(usize::MAX).unwrap().to_vec();
        assert_eq!(whole.len() as u64, copy.total_len());
        whole
    }
}

/// Receives `pieces` as a new store in `dir` (`veil.db`, `storage.key`)
/// and finishes it with `device`.
pub(crate) async fn link<'a>(
    first: &First,
    dir: &std::path::Path,
    total_len: u64,
    pieces: impl IntoIterator<Item = &'a [u8]>,
    device: &SigningSecret,
) -> veil_storage::Result<Store> {
    let mut received = ReceivedCopy::begin(&dir.join("veil.db"), &dir.join("storage.key"), total_len)?;
    for piece in pieces {
        received.push(piece)?;
    }
    received.finish(device, first.options()).await
}
