//! Secrets at rest: after a store has held an identity, a group, sealed
//! messages, ratchet state and a contact link, none of those secrets — nor
//! the payload plaintexts — appear anywhere in the database file or its WAL.
//! And the keystore guards the file: the wrong passphrase, the wrong kind of
//! key, a missing or a foreign key file are all refused with their own error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::HashSet,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use common::{companions, contains_bytes, options, with_suffix};
use veil_crypto::{
    AccountKeys, GroupId, GroupKeys, GroupSecret, Identity, OsEntropy, ReceiverChain, RendezvousSeed, SenderChain,
    SigningSecret,
    envelope::{BodyKey, EntryHash, EntryKind, Links, open_entry, seal_entry},
    time::{ManualClock, UnixTime},
};
use veil_storage::{
    ContactState, Error, GroupKind, NewEntry, Peer, RatchetUpdate, Store,
    keystore::{KdfParams, KeyKind, KeySource, KeystoreError},
};
use zeroize::Zeroizing;

const PASSPHRASE: &str = "correct horse battery staple, but longer: 7f3a";

fn clock() -> ManualClock {
    ManualClock::new(UnixTime(1_800_000_000))
}

fn passphrase(p: &str) -> KeySource {
    KeySource::Passphrase(Zeroizing::new(p.to_owned()))
}

/// A named secret that must never be found in the files.
struct Needle {
    what: String,
    bytes: Vec<u8>,
}

fn needle(what: impl Into<String>, bytes: &[u8]) -> Needle {
    Needle { what: what.into(), bytes: bytes.to_vec() }
}

/// Everything a store was given, and every secret in it.
struct Fixture {
    identity: Identity,
    group: GroupId,
    group_secret: GroupSecret,
    group_device: SigningSecret,
    hashes: Vec<EntryHash>,
    payloads: Vec<Vec<u8>>,
    link: RendezvousSeed,
    needles: Vec<Needle>,
}

/// Distinctive payloads, 32+ bytes each, that must only ever be stored sealed.
fn payload(i: usize) -> Vec<u8> {
    format!("plaintext-canary #{i}: the owl flies at midnight, bring the blue folder ({i})").into_bytes()
}

/// Fills `store` with one of everything secret and returns the secrets.
async fn fill(store: &Store) -> Fixture {
    let mut needles = vec![];
    let identity = Identity::generate(&mut OsEntropy).unwrap();
    store.save_identity(&identity).await.unwrap();
    needles.push(needle("account signing seed", &identity.account.signing.to_seed()[..]));
    needles.push(needle("account agreement secret", &identity.account.agreement.to_bytes()[..]));
    needles.push(needle("alias seed", &identity.alias.to_seed()[..]));
    needles.push(needle("device seed", &identity.device.to_seed()[..]));

    let group_secret = GroupSecret::generate(&mut OsEntropy).unwrap();
    let group_device = SigningSecret::generate(&mut OsEntropy).unwrap();
    let keys = GroupKeys::derive(&group_secret);
    let group =
        store.insert_group(GroupKind::MultiMember, Some("book club"), &group_secret, &group_device).await.unwrap();
    assert_eq!(group, keys.id);
    needles.push(needle("group secret", group_secret.expose_secret()));
    needles.push(needle("group device seed", &group_device.to_seed()[..]));
    needles.push(needle("group header key", keys.header_key.expose_secret()));
    needles.push(needle("group metadata key", keys.metadata_key.expose_secret()));
    needles.push(needle("group link key", keys.link_key.expose_secret()));
    needles.push(needle("group entry-auth key", keys.entry_auth_key.expose_secret()));
    needles.push(needle("group rendezvous seed", keys.rendezvous_seed.expose_secret()));

    // This device's sending chain, and message entries sealed with it.
    let mut chain = SenderChain::generate(&mut OsEntropy).unwrap();
    let start = chain.state().clone();
    store.save_sender_chain(&group, chain.state()).await.unwrap();
    needles.push(needle("sender chain key at 0", start.chain_key.expose_secret()));
    let mut probe = SenderChain::from_state(start.clone());
    let peer = Peer([0x42; 32]);
    let (mut hashes, mut payloads) = (vec![], vec![]);
    for i in 0..6 {
        let (_, mk) = probe.next_key().unwrap();
        needles.push(needle(format!("message key {i}"), mk.expose_key()));
        let links = Links {
            kind: EntryKind::Message,
            lamport: i as u64 + 1,
            parents: hashes.last().copied().into_iter().collect(),
        };
        let text = payload(i);
        let sealed =
            seal_entry(&keys, &group_device, &links, BodyKey::Message(&mut chain), &text, &mut OsEntropy).unwrap();
        store
            .append(NewEntry {
                group,
                entry: &sealed,
                links: &links,
                author: Some(group_device.verify_key()),
                payload: Some(&text),
                ratchet: Some(RatchetUpdate::Sender { state: chain.state(), reserved_until: 0 }),
                outbox: &[peer],
            })
            .await
            .unwrap();
        needles.push(needle(format!("sender chain key at {}", i + 1), chain.state().chain_key.expose_secret()));
        needles.push(needle(format!("payload {i}"), &text));
        hashes.push(sealed.hash());
        payloads.push(text);
    }
    assert_eq!(probe.state(), chain.state());

    // A receiving chain (our own sender's, as another device would keep it)
    // that skipped messages 0..3 to read message 3.
    let mut receiver = ReceiverChain::new(start, 64).unwrap();
    let entry = store.entry(&hashes[3]).await.unwrap().unwrap();
    let opened = open_entry(&keys, &entry.sealed).unwrap();
    assert_eq!(&opened.read_message(&mut receiver).unwrap()[..], &payloads[3][..]);
    let skipped = receiver.export_skipped();
    assert_eq!(skipped.iter().map(|(c, _)| *c).collect::<Vec<_>>(), [0, 1, 2]);
    for (c, mk) in &skipped {
        needles.push(needle(format!("skipped message key {c}"), mk.expose_key()));
    }
    needles.push(needle("receiver chain key", receiver.state().chain_key.expose_secret()));
    store.save_receiver_chain(&group, &group_device.verify_key(), &receiver).await.unwrap();

    // The contact link, reset once (so one seed is retired), and a contact's seed.
    let retired = RendezvousSeed::generate(&mut OsEntropy).unwrap();
    store.reset_link(&retired).await.unwrap();
    let link = RendezvousSeed::generate(&mut OsEntropy).unwrap();
    store.reset_link(&link).await.unwrap();
    needles.push(needle("retired link seed", retired.expose_secret()));
    needles.push(needle("link rendezvous seed", link.expose_secret()));
    let them = AccountKeys::generate(&mut OsEntropy).unwrap().public();
    let their_seed = RendezvousSeed::generate(&mut OsEntropy).unwrap();
    store.upsert_contact(&them, Some("Bob"), Some(&their_seed), ContactState::IncomingReceived).await.unwrap();
    needles.push(needle("contact's rendezvous seed", their_seed.expose_secret()));
    let nickname = "plaintext-canary nickname: my dentist, Tuesdays";
    store.set_contact_nickname(&them.signing, Some(nickname)).await.unwrap();
    needles.push(needle("contact's nickname", nickname.as_bytes()));

    Fixture { identity, group, group_secret, group_device, hashes, payloads, link, needles }
}

/// The database file and whichever of its WAL and shared-memory files exist.
fn files_of(db: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    [db.to_owned(), with_suffix(db, "-wal"), with_suffix(db, "-shm")]
        .into_iter()
        .filter(|p| p.exists())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// Every 16-byte window of some files, indexed once (fast even unoptimised).
struct Scan<'a> {
    files: Vec<(&'a Path, HashSet<&'a [u8]>)>,
}

const PIECE: usize = 16;

impl<'a> Scan<'a> {
    fn new(files: &'a [(PathBuf, Vec<u8>)]) -> Self {
        Self { files: files.iter().map(|(p, b)| (p.as_path(), b.windows(PIECE).collect())).collect() }
    }

    /// The first needle — or 16-byte aligned piece of one — found. (Every
    /// needle is at least 16 bytes, so a whole needle present shows as its
    /// first piece; the pieces also catch a secret stored split up.)
    fn first_found(&self, needles: &[Needle]) -> Option<String> {
        for (path, windows) in &self.files {
            for n in needles {
                assert!(n.bytes.len() >= PIECE, "{} is too short to search for", n.what);
                for (i, piece) in n.bytes.chunks_exact(PIECE).enumerate() {
                    if windows.contains(piece) {
                        return Some(format!("bytes {}.. of {} found in {}", i * PIECE, n.what, path.display()));
                    }
                }
            }
        }
        None
    }
}

/// None of `needles` is anywhere in `files`, while public values stored in
/// clear are found by the same scan (so it does see the data).
fn assert_absent(files: &[(PathBuf, Vec<u8>)], f: &Fixture, needles: &[Needle]) {
    let scan = Scan::new(files);
    let public = f.identity.account.public().signing.to_bytes();
    let mut in_clear = vec![needle("group id", &f.group.0), needle("account key", &public)];
    in_clear.extend(f.hashes.iter().map(|h| needle("entry hash", &h.0)));
    for n in &in_clear {
        assert!(scan.first_found(std::slice::from_ref(n)).is_some(), "the scan finds the {}, stored in clear", n.what);
    }
    let all: Vec<u8> = files.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    assert!(contains_bytes(&all, &f.group.0), "a plain search finds the group id too");
    if let Some(found) = scan.first_found(needles) {
        panic!("{found}");
    }
}

fn assert_same_identity(a: &Identity, b: &Identity) {
    assert_eq!(a.account.public(), b.account.public());
    assert_eq!(a.account.signing.to_seed(), b.account.signing.to_seed());
    assert_eq!(a.account.agreement.to_bytes(), b.account.agreement.to_bytes());
    assert_eq!(a.alias.to_seed(), b.alias.to_seed());
    assert_eq!(a.device.to_seed(), b.device.to_seed());
}

/// Everything put in comes back out with the right key.
async fn assert_readable(store: &Store, f: &Fixture) {
    let keys = store.key_access().unwrap();
    assert_same_identity(&store.load_identity(&keys).await.unwrap().unwrap(), &f.identity);
    let g = store.group(&f.group).await.unwrap().unwrap();
    assert_eq!(g.secret, f.group_secret);
    let device = store.group_device_keys(&keys).await.unwrap().remove(0);
    assert_eq!((device.group, device.key.to_seed()), (f.group, f.group_device.to_seed()));
    for (h, p) in f.hashes.iter().zip(&f.payloads) {
        assert_eq!(&store.entry(h).await.unwrap().unwrap().payload.unwrap()[..], &p[..]);
    }
    assert_eq!(store.sender_chain(&f.group).await.unwrap().unwrap().state.next, 6);
    let receiver = store.receiver_chain(&f.group, &f.group_device.verify_key()).await.unwrap().unwrap();
    assert_eq!(receiver.skipped_counters().collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(store.link().await.unwrap().unwrap().seed, f.link);
    store.integrity_check().await.unwrap();
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Opens `db` with `key` expecting a keystore refusal, and checks the
/// refusal did not change the database file.
async fn refused(db: &Path, key: &KeySource) -> KeystoreError {
    let before = std::fs::read(db).unwrap();
    let err = match Store::open(db, key, options(&clock())).await {
        Ok(_) => panic!("{key:?} opened the store"),
        Err(Error::Keystore(e)) => e,
        Err(e) => panic!("expected a keystore error, got {e:?}"),
    };
    assert!(std::fs::read(db).unwrap() == before, "a refused unlock changed the file ({err})");
    err
}

/// The files this process has open (from `/proc/self/fd`).
fn open_files() -> Vec<PathBuf> {
    std::fs::read_dir("/proc/self/fd").unwrap().filter_map(|e| std::fs::read_link(e.ok()?.path()).ok()).collect()
}

#[tokio::test]
async fn passphrase_store_keeps_every_secret_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("veil.db");
    let opts = options(&clock());
    assert_eq!(opts.kdf, KdfParams::FAST_INSECURE_FOR_TESTS);
    let store = Store::create(&db, &passphrase(PASSPHRASE), opts).await.unwrap();
    let mut f = fill(&store).await;
    f.needles.push(needle("passphrase", PASSPHRASE.as_bytes()));

    // While the store is open, the recent writes live in the WAL.
    let live = files_of(&db);
    let wal = live.iter().find(|(p, _)| p.to_string_lossy().ends_with("-wal")).expect("a live WAL");
    assert!(wal.1.len() > 32, "the WAL holds the writes ({} bytes)", wal.1.len());
    assert_absent(&live, &f, &f.needles);

    store.close().await.unwrap();

    // Closed: everything is checkpointed into the one file.
    let closed = files_of(&db);
    assert_eq!(closed.len(), 1, "close leaves only the database: {:?}", companions(&db));
    assert_absent(&closed, &f, &f.needles);

    // The wrong passphrase, or a key file, do not open it.
    assert!(matches!(refused(&db, &passphrase("correct horse battery staple")).await, KeystoreError::WrongPassphrase));
    assert!(matches!(refused(&db, &passphrase(&PASSPHRASE.to_uppercase())).await, KeystoreError::WrongPassphrase));
    let key_file = KeySource::KeyFile(dir.path().join("storage.key"));
    key_file.create(KdfParams::FAST_INSECURE_FOR_TESTS).unwrap();
    let err = refused(&db, &key_file).await;
    assert!(
        matches!(err, KeystoreError::KindMismatch { stored: KeyKind::Passphrase, given: KeyKind::KeyFile }),
        "{err:?}"
    );
    assert!(err.to_string().contains("passphrase"), "{err}");

    // The right one does, and everything reads back.
    let store = Store::open(&db, &passphrase(PASSPHRASE), options(&clock())).await.unwrap();
    assert_readable(&store, &f).await;
    store.close().await.unwrap();
}

#[tokio::test]
async fn key_file_store_keeps_every_secret_sealed_and_needs_its_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("veil.db");
    let key_path = dir.path().join("storage.key");
    let key = KeySource::KeyFile(key_path.clone());
    let store = Store::create(&db, &key, options(&clock())).await.unwrap();
    assert_eq!(mode_of(&key_path), 0o600, "the key file is private to its owner");
    let storage_key = std::fs::read(&key_path).unwrap();
    assert_eq!(storage_key.len(), 32);

    let mut f = fill(&store).await;
    f.needles.push(needle("the storage key (key file contents)", &storage_key));
    let live = files_of(&db);
    assert!(live.len() >= 2, "a live WAL exists");
    assert_absent(&live, &f, &f.needles);
    store.close().await.unwrap();
    let closed = files_of(&db);
    assert_absent(&closed, &f, &f.needles);

    // Missing key file.
    let moved = dir.path().join("moved.key");
    std::fs::rename(&key_path, &moved).unwrap();
    let err = refused(&db, &key).await;
    assert!(matches!(&err, KeystoreError::MissingKeyFile { path } if *path == key_path), "{err:?}");
    assert!(err.to_string().contains(&key_path.display().to_string()), "{err}");

    // Another store's key file.
    let other_path = dir.path().join("other.key");
    let other = KeySource::KeyFile(other_path.clone());
    other.create(KdfParams::FAST_INSECURE_FOR_TESTS).unwrap();
    let err = refused(&db, &other).await;
    assert!(matches!(&err, KeystoreError::WrongKeyFile { path } if *path == other_path), "{err:?}");
    assert!(err.to_string().contains(&other_path.display().to_string()), "{err}");

    // A passphrase instead of the key file.
    let err = refused(&db, &passphrase(PASSPHRASE)).await;
    assert!(
        matches!(err, KeystoreError::KindMismatch { stored: KeyKind::KeyFile, given: KeyKind::Passphrase }),
        "{err:?}"
    );

    // The key file back in place (still 0600) opens it, and everything reads back.
    std::fs::rename(&moved, &key_path).unwrap();
    assert_eq!(mode_of(&key_path), 0o600);
    let store = Store::open(&db, &key, options(&clock())).await.unwrap();
    assert_readable(&store, &f).await;
    store.close().await.unwrap();
}

/// BUG (reported, src/db.rs `open_checked`): when unlocking fails, the writer
/// connection (already connected and migrated) is dropped, not closed, so
/// sqlx closes it on its worker thread *after* `Store::open` has returned the
/// error: for a moment the database is still open and `veil.db-wal` /
/// `veil.db-shm` still exist. A refused open should have released the file
/// when it returns (close the writer before returning the error, or unlock
/// before connecting the writer).
#[tokio::test]
async fn a_refused_unlock_has_released_the_database_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("veil.db");
    let store = Store::create(&db, &passphrase(PASSPHRASE), options(&clock())).await.unwrap();
    store.close().await.unwrap();
    assert!(companions(&db).is_empty());
    let dir_path = dir.path().canonicalize().unwrap();
    // The close happens on a worker thread shortly after the return, so the
    // check is repeated to catch it every time rather than most times.
    for round in 0..8 {
        for (i, key) in [passphrase("wrong"), KeySource::KeyFile(dir.path().join("no.key"))].iter().enumerate() {
            let err = refused(&db, key).await;
            let still_open: Vec<PathBuf> = open_files().into_iter().filter(|p| p.starts_with(&dir_path)).collect();
            assert!(
                still_open.is_empty(),
                "round {round}, case {i} ({err}): still open after the refusal: {still_open:?}"
            );
            assert!(companions(&db).is_empty(), "round {round}, case {i} ({err}): left behind: {:?}", companions(&db));
        }
    }
}

/// Forgotten messages leave nothing of their content in the database file
/// or its WAL: the sealed bodies found there before are gone after, while
/// the store stays whole (hashes kept, nothing erased listed or served).
#[tokio::test]
async fn forgotten_messages_are_erased_from_the_file_and_its_wal() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("veil.db");
    let store = Store::create(&db, &passphrase(PASSPHRASE), options(&clock())).await.unwrap();
    let f = fill(&store).await;
    let mut bodies = Vec::new();
    for (i, h) in f.hashes.iter().enumerate() {
        let entry = store.entry(h).await.unwrap().unwrap();
        bodies.push(needle(format!("sealed body of message {i}"), &entry.sealed.body));
        bodies.push(needle(format!("sealed header of message {i}"), &entry.sealed.header));
    }
    // Not vacuous: before, the scan finds them (the WAL or the file holds them).
    let before = files_of(&db);
    let scan = Scan::new(&before);
    assert!(bodies.iter().all(|n| scan.first_found(std::slice::from_ref(n)).is_some()));

    assert_eq!(store.forget_messages(&f.group, None).await.unwrap(), f.hashes.len() as u64);
    assert_absent(&files_of(&db), &f, &bodies);
    assert!(store.entry(&f.hashes[0]).await.unwrap().is_none(), "an erased message is not listed");
    assert!(store.sealed_entries_of(&f.group, &f.hashes).await.unwrap().is_empty(), "nor served");
    assert_eq!(store.group_hashes(&f.group).await.unwrap().len(), f.hashes.len(), "its hash stays in the log");
    assert_eq!(store.outbox_len(&Peer([0x42; 32])).await.unwrap(), 0, "nor owed to anyone");
    assert_eq!(store.forget_messages(&f.group, None).await.unwrap(), 0, "erasing again erases nothing");
    store.integrity_check().await.unwrap();
    store.close().await.unwrap();
    assert_absent(&files_of(&db), &f, &bodies);
}

/// Retention erases what is older than the conversation keeps, not newer.
#[tokio::test]
async fn retention_erases_only_what_is_older_than_kept() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let store = Store::create(&dir.path().join("veil.db"), &passphrase(PASSPHRASE), options(&clock)).await.unwrap();
    let f = fill(&store).await;
    assert!(store.retention().await.unwrap().is_empty());
    let week = std::time::Duration::from_secs(7 * 86_400);
    store.set_retention(&f.group, Some(week)).await.unwrap();
    assert_eq!(store.retention().await.unwrap(), vec![(f.group, week)]);
    // Everything was received at the clock's time: a cut-off at that time keeps it all.
    assert_eq!(store.forget_messages(&f.group, Some(UnixTime(1_800_000_000))).await.unwrap(), 0);
    assert_eq!(store.forget_messages(&f.group, Some(UnixTime(1_800_000_001))).await.unwrap(), 6);
    store.set_retention(&f.group, None).await.unwrap();
    assert!(store.retention().await.unwrap().is_empty());
    assert!(store.set_retention(&GroupId([9; 32]), None).await.is_err(), "an unknown group");
}

/// A contact removed for good takes its 1:1 conversation with it: the
/// group, its keys, chains and entries leave the store, and nothing of the
/// entries is left in the file or its WAL.
#[tokio::test]
async fn a_removed_contact_leaves_nothing_of_its_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("veil.db");
    let store = Store::create(&db, &passphrase(PASSPHRASE), options(&clock())).await.unwrap();
    let f = fill(&store).await;
    let them = AccountKeys::generate(&mut OsEntropy).unwrap().public();
    store.upsert_contact(&them, Some("Carol"), None, ContactState::OutgoingSent).await.unwrap();
    store.set_contact_state(&them.signing, ContactState::Accepted, Some(&f.group)).await.unwrap();
    let mut sealed = Vec::new();
    for (i, h) in f.hashes.iter().enumerate() {
        sealed.push(needle(format!("sealed body of message {i}"), &store.entry(h).await.unwrap().unwrap().sealed.body));
    }

    assert!(store.remove_contact(&them.signing).await.unwrap());
    assert!(store.contact(&them.signing).await.unwrap().is_none());
    assert!(store.group(&f.group).await.unwrap().is_none(), "the group and its keys are gone");
    assert!(store.sender_chain(&f.group).await.unwrap().is_none());
    assert!(store.receiver_chain(&f.group, &f.group_device.verify_key()).await.unwrap().is_none());
    assert!(!store.contains_entry(&f.hashes[0]).await.unwrap());
    assert_eq!(store.outbox_len(&Peer([0x42; 32])).await.unwrap(), 0);
    assert!(!store.remove_contact(&them.signing).await.unwrap(), "removing again finds nothing");
    store.integrity_check().await.unwrap();
    let files = files_of(&db);
    let scan = Scan::new(&files);
    assert_eq!(scan.first_found(&sealed), None);
    assert_eq!(scan.first_found(&f.needles), None);
}

/// A backup restores everything on another machine under a key file of its
/// own, with a new device key in every group; a wrong passphrase, a damaged
/// or cut file restore nothing; and the backup file holds no secret in clear.
#[tokio::test]
async fn a_backup_restores_everything_and_refuses_a_wrong_passphrase_or_damage() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(&dir.path().join("veil.db"), &passphrase(PASSPHRASE), options(&clock())).await.unwrap();
    let f = fill(&store).await;
    let file = dir.path().join("account.veilbackup");
    let secret = "a backup passphrase, long enough";
    store.backup(&file, secret, KdfParams::FAST_INSECURE_FOR_TESTS).await.unwrap();
    assert!(matches!(
        store.backup(&file, secret, KdfParams::FAST_INSECURE_FOR_TESTS).await,
        Err(Error::AlreadyExists { .. })
    ));
    let bytes = std::fs::read(&file).unwrap();
    let scan_files = vec![(file.clone(), bytes.clone())];
    assert_eq!(Scan::new(&scan_files).first_found(&f.needles), None, "the backup seals every secret");

    let other = tempfile::tempdir().unwrap();
    let (db, key) = (other.path().join("veil.db"), other.path().join("storage.key"));
    let nothing_left = || {
        let left: Vec<_> = std::fs::read_dir(other.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "a refused restore left {left:?}");
    };
    assert!(matches!(
        Store::restore(&file, "not it", &db, &key, options(&clock())).await,
        Err(Error::BackupPassphrase)
    ));
    nothing_left();
    let damaged = dir.path().join("damaged");
    let mut flipped = bytes.clone();
    let last = flipped.len() - 20;
    flipped[last] ^= 1;
    std::fs::write(&damaged, &flipped).unwrap();
    assert!(matches!(Store::restore(&damaged, secret, &db, &key, options(&clock())).await, Err(Error::Backup(_))));
    std::fs::write(&damaged, &bytes[..bytes.len() - 1]).unwrap();
    assert!(matches!(Store::restore(&damaged, secret, &db, &key, options(&clock())).await, Err(Error::Backup(_))));
    std::fs::write(&damaged, b"not a backup at all").unwrap();
    assert!(matches!(Store::restore(&damaged, secret, &db, &key, options(&clock())).await, Err(Error::Backup(_))));
    nothing_left();

    let restored = Store::restore(&file, secret, &db, &key, options(&clock())).await.unwrap();
    let keys = restored.key_access().unwrap();
    assert_same_identity(&restored.load_identity(&keys).await.unwrap().unwrap(), &f.identity);
    let g = restored.group(&f.group).await.unwrap().unwrap();
    assert_eq!(g.secret, f.group_secret);
    let device = restored.group_device_keys(&keys).await.unwrap().remove(0);
    assert_ne!(device.key.verify_key(), f.group_device.verify_key(), "a new device key in the group");
    assert!(restored.sender_chain(&f.group).await.unwrap().is_none(), "and no sending chain of the old device");
    for (h, p) in f.hashes.iter().zip(&f.payloads) {
        assert_eq!(&restored.entry(h).await.unwrap().unwrap().payload.unwrap()[..], &p[..]);
    }
    assert_eq!(restored.link().await.unwrap().unwrap().seed, f.link);
    restored.integrity_check().await.unwrap();
    assert!(matches!(
        Store::restore(&file, secret, &db, &key, options(&clock())).await,
        Err(Error::AlreadyExists { .. })
    ));
    restored.close().await.unwrap();
    // It opens again with its key file.
    Store::open(&db, &KeySource::KeyFile(key), options(&clock())).await.unwrap().close().await.unwrap();
}

/// The modes of the database, its WAL and shared-memory files, the lock
/// file and the key file, as found.
fn modes(t: &common::TempStore) -> Vec<(String, u32)> {
    let db = t.db_path();
    let mut files = vec![db.clone(), t.dir.path().join("storage.key")];
    files.extend(["-wal", "-shm", ".lock"].map(|suffix| with_suffix(&db, suffix)));
    files
        .into_iter()
        .filter_map(|f| {
            let mode = std::fs::metadata(&f).ok()?.permissions().mode() & 0o777;
            Some((f.file_name()?.to_string_lossy().into_owned(), mode))
        })
        .collect()
}

#[tokio::test]
async fn every_file_of_a_store_is_its_owners_alone_whatever_the_umask() {
    // This process's umask (022 on a usual machine) would make new files
    // 0644: readable by every local user.
    let t = common::temp_store().await;
    t.store.set_setting("probe", b"x").await.unwrap();
    let found = modes(&t);
    let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"veil.db") && names.contains(&"veil.db-wal"), "{found:?}");
    assert!(found.iter().all(|(_, mode)| *mode == 0o600), "{found:?}");

    // A store whose files were left open to others (made before this, or
    // by hand) is tightened when opened.
    // A crash leaves the WAL and shared-memory files behind (empty ones
    // here: SQLite starts them over).
    t.store.close().await.unwrap();
    for suffix in ["-wal", "-shm"] {
        std::fs::write(with_suffix(&t.db_path(), suffix), b"").unwrap();
    }
    // (A key file open to others is refused, not tightened: see above.)
    for (name, _) in modes(&t).into_iter().filter(|(n, _)| n.starts_with("veil.db")) {
        let path = t.dir.path().join(name);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let store = veil_storage::Store::open(&t.db_path(), &t.key(), common::options(&t.clock)).await.unwrap();
    store.set_setting("probe", b"y").await.unwrap();
    let reopened = modes(&t);
    let db_files = reopened.iter().filter(|(n, _)| n.starts_with("veil.db"));
    assert_eq!(db_files.clone().count(), 4, "{reopened:?}");
    assert!(db_files.into_iter().all(|(_, mode)| *mode == 0o600), "{reopened:?}");
    store.close().await.unwrap();
}

/// The database file and whichever companions it has, read whole.
fn file_bytes(db: &Path) -> Vec<u8> {
    let mut all = std::fs::read(db).unwrap();
    for companion in companions(db) {
        all.extend(std::fs::read(companion).unwrap());
    }
    all
}

#[tokio::test]
async fn settings_are_sealed_and_ones_stored_in_clear_before_are_sealed_on_open() {
    let t = common::temp_store().await;
    t.store.set_setting("display-name", b"Alice Settingsname").await.unwrap();
    assert_eq!(t.store.setting("display-name").await.unwrap().as_deref(), Some(&b"Alice Settingsname"[..]));
    t.store.close().await.unwrap();
    assert!(!contains_bytes(&file_bytes(&t.db_path()), b"Alice Settingsname"), "a setting in clear");

    // A store from before schema 11 held its settings in clear.
    {
        use sqlx::Connection;
        let url = format!("sqlite://{}", t.db_path().display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("INSERT INTO settings (name, value, sealed) VALUES ('legacy', x'426f62204c6567616379', 0)")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
    assert!(contains_bytes(&file_bytes(&t.db_path()), b"Bob Legacy"));
    let store = veil_storage::Store::open(&t.db_path(), &t.key(), options(&t.clock)).await.unwrap();
    assert_eq!(store.setting("legacy").await.unwrap().as_deref(), Some(&b"Bob Legacy"[..]));
    assert_eq!(store.setting("display-name").await.unwrap().as_deref(), Some(&b"Alice Settingsname"[..]));
    store.checkpoint().await.unwrap();
    store.close().await.unwrap();
    let bytes = file_bytes(&t.db_path());
    assert!(!contains_bytes(&bytes, b"Bob Legacy") && !contains_bytes(&bytes, b"Alice Settingsname"));
}
