//! Multi-member groups: invitations, aliased member keys, members meeting at
//! the group's rotating point and converging by pulling what they lack.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use veil_actors::{Node, NodeEvent};
use veil_crypto::{
    EpochSecret, GroupId, GroupKeys,
    envelope::{EntryHash, EntryKind, SealedEntry, open_entry},
    epoch::open_epoch_secret,
    rendezvous::Topic,
    time::{ManualClock, UnixTime},
};
use veil_proto::metadata::MetadataEvent;
use veil_storage::{Store, StoreOptions, keystore::KeySource};
use veil_testkit::node::{self, GRACE, PERIOD, T0, account, peer, rendezvous_server, until, wait_for};

/// The message log as (Lamport clock, hash, payload), in its total order.
async fn log(node: &Node, group: &GroupId) -> Vec<(u64, EntryHash, Vec<u8>)> {
    node.history(group, None, 10_000).await.unwrap().into_iter().map(|h| (h.lamport, h.hash, h.payload)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_members_write_concurrently_and_converge_to_one_order() {
    converge(6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_members_write_concurrently_and_converge_to_one_order() {
    converge(10).await;
}

/// `n` members on loopback: one creates the group and invites, the others
/// join; everyone writes at once; every replica ends with the same log.
async fn converge(size: usize) {
    const EACH: usize = 3;
    let dirs: Vec<_> = (0..=size).map(|_| tempfile::tempdir().unwrap()).collect();
    let clock = ManualClock::new(UnixTime(T0 + 20));
    let (server, addr) = rendezvous_server(&dirs[0]).await;
    let mut nodes = Vec::new();
    for dir in &dirs[1..] {
        nodes.push(peer(dir, &clock, &addr).await);
    }
    let group = nodes[0].create_group(Some("ten")).await.unwrap();
    let invitation = nodes[0].invite(&group, Some(Duration::from_secs(3600))).await.unwrap();
    for n in &nodes[1..] {
        assert_eq!(n.join(&invitation).await.unwrap(), group);
    }

    // Everyone learns everyone (member keys only: no account key inside).
    let accounts: HashSet<[u8; 32]> =
        futures::future::join_all(nodes.iter().map(account)).await.iter().map(|a| a.signing.to_bytes()).collect();
    for n in &nodes {
        let mut events = n.events();
        until(&mut events, || async { n.members(&group).await.unwrap().len() == size }).await;
        let members = n.members(&group).await.unwrap();
        assert!(members.iter().all(|m| !accounts.contains(&m.signing.to_bytes())), "an account key leaked");
    }

    // Everyone writes at once.
    futures::future::join_all(nodes.iter().enumerate().map(|(i, n)| async move {
        for k in 0..EACH {
            n.send(&group, format!("{i}:{k}").as_bytes()).await.unwrap();
        }
    }))
    .await;

    // Every replica holds every message, readable, in the same order.
    for n in &nodes {
        let mut events = n.events();
        until(&mut events, || async {
            let l = log(n, &group).await;
            l.len() == size * EACH && l.iter().all(|(_, _, p)| !p.is_empty())
        })
        .await;
    }
    let reference = log(&nodes[0], &group).await;
    for n in &nodes[1..] {
        assert_eq!(log(n, &group).await, reference, "replicas disagree on the order");
    }
    let texts: HashSet<Vec<u8>> = reference.iter().map(|(_, _, p)| p.clone()).collect();
    assert_eq!(texts.len(), size * EACH);
    for n in nodes {
        n.shutdown().await.unwrap();
    }
    server.shutdown().await.unwrap();
}

/// Bad entries pushed by a connected member are refused and counted, and
/// nothing of them is stored: forged ones (a foreign group's keys, a device
/// its member never certified), one naming a parent not earlier in the log
/// (what a cycle needs), an oversize one (its whole frame). One naming a
/// parent never seen is held back, not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_entries_are_refused_counted_and_never_stored() {
    use veil_crypto::{
        GroupKeys, GroupSecret, OsEntropy, Signature, SigningSecret,
        envelope::{BodyKey, EntryKind, Position, seal_entry},
        rendezvous::session_tag,
    };
    use veil_proto::{
        metadata::{MemberJoined, MetadataEvent},
        sync::{GroupBody, GroupFrame},
    };

    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let clock = ManualClock::new(UnixTime(T0 + 20));
    let node::GroupOfTwo { server, a, b, group, invitation, .. } = node::group_of_two(&dirs, &clock).await;
    let before = b.history(&group, None, 100).await.unwrap().len();

    // What a member knows: the group's keys, hence the session tag.
    let keys = GroupKeys::derive(&veil_proto::link::parse_invitation(&invitation).unwrap().secret);
    let (a_id, b_id) = (a.network_status().await.unwrap().peer_id, b.network_status().await.unwrap().peer_id);
    let tag = session_tag(&keys.rendezvous_seed, &a_id.to_bytes(), &b_id.to_bytes());
    let stranger = SigningSecret::generate(&mut OsEntropy).unwrap();
    let position = Position { kind: EntryKind::Metadata, lamport: 1, parents: vec![] };
    let foreign_keys = GroupKeys::derive(&GroupSecret::from_bytes([9; 32]));
    let foreign = seal_entry(&foreign_keys, &stranger, &position, BodyKey::Metadata, b"x", &mut OsEntropy).unwrap();
    let uncertified = MetadataEvent::MemberJoined(MemberJoined {
        member: veil_crypto::MemberPublic {
            signing: SigningSecret::generate(&mut OsEntropy).unwrap().verify_key(),
            agreement: veil_crypto::AgreementPublic([7; 32]),
        },
        device: stranger.verify_key(),
        device_cert: Signature([1; 64]),
        chain_shares: vec![],
        epoch: veil_crypto::EpochId::ROOT,
        display_name: None,
    });
    let uncertified =
        seal_entry(&keys, &stranger, &position, BodyKey::Metadata, &uncertified.encode(), &mut OsEntropy).unwrap();
    let forged = [foreign.hash(), uncertified.hash()];

    let mut events = b.events();
    let frame = GroupFrame { session_tag: tag, body: GroupBody::Entries(vec![foreign, uncertified]) };
    a.send_frame(b_id, frame.encode()).await.unwrap();
    let mut refused = HashSet::new();
    node::wait_for(&mut events, |e| match e {
        veil_actors::NodeEvent::EntryRefused { hash, .. } => {
            refused.insert(hash);
            (refused.len() == forged.len()).then_some(())
        }
        _ => None,
    })
    .await;
    assert_eq!(refused, forged.into_iter().collect());
    assert_eq!(b.history(&group, None, 100).await.unwrap().len(), before);
    assert_eq!(b.members(&group).await.unwrap().len(), 2, "no member was added");

    // Parents: one B has never seen (held back, asked for, not stored), and
    // one it has, but not earlier in the log (a cycle would need that):
    // refused.
    let mut events = b.events();
    let real = a.send(&group, b"real").await.unwrap();
    node::wait_for(&mut events, |e| {
        matches!(e, veil_actors::NodeEvent::MessageReceived { hash, .. } if hash == real).then_some(())
    })
    .await;
    let lamport = b.history(&group, None, 100).await.unwrap().iter().find(|h| h.hash == real).unwrap().lamport;
    let mut chain = veil_crypto::SenderChain::generate(&mut OsEntropy).unwrap();
    let mut message = |parents, lamport| {
        let position = Position { kind: EntryKind::Message, lamport, parents };
        seal_entry(&keys, &stranger, &position, BodyKey::Message(&mut chain), b"y", &mut OsEntropy).unwrap()
    };
    let orphan = message(vec![EntryHash([7; 32])], lamport + 1);
    let looping = message(vec![real], lamport);
    let frame = GroupFrame { session_tag: tag, body: GroupBody::Entries(vec![orphan.clone(), looping.clone()]) };
    a.send_frame(b_id, frame.encode()).await.unwrap();
    let (mut held, mut out_of_order) = (None, None);
    node::wait_for(&mut events, |e| {
        match e {
            veil_actors::NodeEvent::EntryHeldBack { hash, reason, .. } => held = Some((hash, reason)),
            veil_actors::NodeEvent::EntryRefused { hash, reason, .. } => out_of_order = Some((hash, reason)),
            _ => {}
        }
        (held.is_some() && out_of_order.is_some()).then_some(())
    })
    .await;
    assert_eq!(held, Some((orphan.hash(), "a parent")));
    assert_eq!(out_of_order, Some((looping.hash(), "parents out of order")));

    // An oversize entry: the frame is dropped whole, and counted.
    let mut huge = orphan;
    huge.body = vec![0; veil_crypto::envelope::MAX_BODY_LEN + 1];
    let frame = GroupFrame { session_tag: tag, body: GroupBody::Entries(vec![huge]) };
    a.send_frame(b_id, frame.encode()).await.unwrap();
    let reason = node::wait_for(&mut events, |e| match e {
        veil_actors::NodeEvent::FrameRefused { peer, reason } if peer == a_id => Some(reason),
        _ => None,
    })
    .await;
    assert!(reason.contains("body"), "{reason}");
    let history: Vec<EntryHash> = b.history(&group, None, 100).await.unwrap().iter().map(|h| h.hash).collect();
    assert_eq!(history.len(), before + 1, "only the real message was stored");
    for n in [a, b, server] {
        n.shutdown().await.unwrap();
    }
}

/// A member offline while a thousand messages are written gets all of them,
/// readable and in the writer's order, when it comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_back_from_offline_catches_up_on_a_thousand_messages() {
    const COUNT: usize = 1000;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let clock = ManualClock::new(UnixTime(T0 + 20));
    let node::GroupOfTwo { server, addr, a, b, group, .. } = node::group_of_two(&dirs, &clock).await;
    b.shutdown().await.unwrap();
    drop(b);

    for i in 0..COUNT {
        a.send(&group, format!("while you were away {i}").as_bytes()).await.unwrap();
    }
    let written = log(&a, &group).await;
    assert_eq!(written.len(), COUNT);

    let b = peer(&dirs[2], &clock, &addr).await;
    let mut events = b.events();
    until(&mut events, || async { log(&b, &group).await.len() == COUNT }).await;
    assert_eq!(log(&b, &group).await, written, "every message, readable, in the same order");
    for n in [a, b, server] {
        n.shutdown().await.unwrap();
    }
}

/// What a member's store holds of a group once its node is stopped: the
/// group's root keys, every epoch secret it kept, its member keys there,
/// and the group's entries as (hash, sealed entry, payload).
struct Holdings {
    root: GroupKeys,
    epochs: Vec<EpochSecret>,
    member: veil_crypto::MemberKeys,
    entries: Vec<(EntryHash, SealedEntry, Option<Vec<u8>>)>,
}

async fn holdings(dir: &tempfile::TempDir, group: &GroupId) -> Holdings {
    let key = KeySource::KeyFile(dir.path().join("storage.key"));
    let store = Store::open(&dir.path().join("veil.db"), &key, StoreOptions::default()).await.unwrap();
    let record = store.group(group).await.unwrap().unwrap();
    let identity = store.load_identity(&store.key_access().unwrap()).await.unwrap().unwrap();
    let mut entries = Vec::new();
    for kind in [EntryKind::Metadata, EntryKind::Message] {
        for e in store.entries_after(group, kind, None, 100_000).await.unwrap() {
            entries.push((e.hash, e.sealed, e.payload.map(|p| p.to_vec())));
        }
    }
    Holdings {
        root: GroupKeys::derive(&record.secret),
        epochs: store.epochs(group).await.unwrap(),
        member: identity.alias.member_keys(group),
        entries,
    }
}

impl Holdings {
    /// Whether any key held opens the entry's header (who wrote it, and
    /// the way to its body).
    fn opens(&self, entry: &SealedEntry) -> bool {
        let keys = std::iter::once(self.root.clone()).chain(self.epochs.iter().map(|e| self.root.epoch(e).1));
        keys.into_iter().any(|k| open_entry(&k, entry).is_ok())
    }

    /// The epoch secrets sealed to this member in removals of `entries`
    /// (read with `reader`'s keys) that its member key opens.
    fn epoch_shares_opened(&self, reader: &Holdings, group: &GroupId) -> usize {
        let mut opened = 0;
        for (_, _, payload) in &reader.entries {
            if let Some(Ok(MetadataEvent::MemberRemoved(r))) = payload.as_deref().map(MetadataEvent::decode) {
                opened += r
                    .shares
                    .iter()
                    .filter(|s| open_epoch_secret(group, &self.member.agreement, &s.sealed_secret).is_ok())
                    .count();
            }
        }
        opened
    }
}

/// Removal and leaving: A removes C, D joins in the new epoch, then B
/// leaves. Whatever is written
/// after a member's removal opens with none of the keys it holds (its
/// store is read once its node stops: the group secret, the epochs it
/// kept, its member key), while what came before still does (the control
/// that shows the check can fail), and the remaining members read each
/// other throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_and_departed_members_cannot_read_what_is_written_after() {
    let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let clock = ManualClock::new(UnixTime(T0 + 20));
    let node::GroupOfTwo { server, addr, a, b, group, invitation } = node::group_of_two(&dirs, &clock).await;
    let c = peer(&dirs[3], &clock, &addr).await;
    c.join(&invitation).await.unwrap();
    let nodes = [&a, &b, &c];
    for n in nodes {
        let mut events = n.events();
        until(&mut events, || async { n.members(&group).await.unwrap().len() == 3 }).await;
        n.send(&group, b"before").await.unwrap();
    }
    for n in nodes {
        let mut events = n.events();
        until(&mut events, || async { log(n, &group).await.len() == 3 }).await;
    }

    let c_key = c.member_key(&group).await.unwrap();
    a.remove_member(&group, &c_key.signing).await.unwrap();
    let mut events = c.events();
    until(&mut events, || async { !c.members(&group).await.unwrap().contains(&c_key) }).await;
    assert!(c.send(&group, b"still here?").await.is_err(), "a removed member writes nothing more");
    for n in [&a, &b] {
        let mut events = n.events();
        until(&mut events, || async { n.members(&group).await.unwrap().len() == 2 }).await;
        n.send(&group, b"after C").await.unwrap();
    }
    for n in [&a, &b] {
        let mut events = n.events();
        until(&mut events, || async { log(n, &group).await.len() == 5 }).await;
    }

    // A newcomer invited now joins in the new epoch and reads from there on.
    let d = peer(&dirs[4], &clock, &addr).await;
    d.join(&a.invite(&group, None).await.unwrap()).await.unwrap();
    for n in [&a, &b, &d] {
        let mut events = n.events();
        until(&mut events, || async { n.members(&group).await.unwrap().len() == 3 }).await;
    }
    a.send(&group, b"welcome D").await.unwrap();
    let mut events = d.events();
    until(&mut events, || async { log(&d, &group).await.iter().any(|(_, _, p)| p == b"welcome D") }).await;

    let b_key = b.member_key(&group).await.unwrap();
    b.leave(&group).await.unwrap();
    let mut events = a.events();
    until(&mut events, || async { !a.members(&group).await.unwrap().contains(&b_key) }).await;
    a.send(&group, b"after B").await.unwrap();
    let mut events = d.events();
    until(&mut events, || async { log(&d, &group).await.iter().any(|(_, _, p)| p == b"after B") }).await;
    assert!(b.send(&group, b"gone").await.is_err(), "a member that left writes nothing more");
    assert!(log(&b, &group).await.iter().all(|(_, _, p)| p != b"after B"));
    assert!(!a.members(&group).await.unwrap().contains(&b_key));

    for n in [a, b, c, d, server] {
        n.shutdown().await.unwrap();
    }
    let [a, b, c] = [&dirs[1], &dirs[2], &dirs[3]];
    let (a, b, c) = (holdings(a, &group).await, holdings(b, &group).await, holdings(c, &group).await);
    let written = |text: &[u8]| -> Vec<&SealedEntry> {
        a.entries.iter().filter(|(_, _, p)| p.as_deref() == Some(text)).map(|(_, e, _)| e).collect()
    };
    assert_eq!((written(b"before").len(), written(b"after C").len(), written(b"after B").len()), (3, 2, 1));
    for entry in written(b"before") {
        assert!(c.opens(entry) && b.opens(entry), "the control: older entries open");
    }
    for entry in written(b"after C").into_iter().chain(written(b"after B")) {
        assert!(!c.opens(entry), "C opened an entry written after its removal");
    }
    assert!(b.opens(written(b"after C")[0]));
    assert!(!b.opens(written(b"after B")[0]), "B opened an entry written after it left");
    // Nothing after the removals opens, metadata included: every entry A
    // holds that C (or B) can open is one it could before leaving.
    let after_c: Vec<&SealedEntry> = a.entries.iter().filter(|(_, e, _)| !c.opens(e)).map(|(_, e, _)| e).collect();
    assert!(after_c.len() >= 3, "the removal's epoch holds the later entries");
    assert!(c.epochs.is_empty(), "C kept no epoch secret");
    assert_eq!(c.epoch_shares_opened(&a, &group), 0, "no epoch secret was sealed to C");
    assert_eq!(
        b.epoch_shares_opened(&a, &group),
        1,
        "B got the epoch after C's removal, not the one after its leaving"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a recorder of every rendezvous namespace and of every frame the
/// group sends learns over several periods. The rendezvous server sees the
/// group's point of each period, each new; B's recorder sees every frame A
/// sent it. No namespace and no frame carries the group id, the
/// replication id, a member key or an account key, and the session tags
/// naming the group in frames never repeat across periods (peer ids
/// rotate) — while the members keep talking across the boundaries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rendezvous_server_sees_a_new_point_each_period_and_no_identifier() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let clock = ManualClock::new(UnixTime(T0 + 20));
    let node::GroupOfTwo { server, a, b, group, invitation, .. } = node::group_of_two(&dirs, &clock).await;
    let mut observed = server.events();
    let keys = GroupKeys::derive(&veil_proto::link::parse_invitation(&invitation).unwrap().secret);
    let mut raw: Vec<[u8; 32]> = vec![group.0, keys.replication_id.0];
    for n in [&a, &b] {
        let (account, member) = (account(n).await, n.member_key(&group).await.unwrap());
        raw.extend([account.signing.to_bytes(), account.agreement.0, member.signing.to_bytes(), member.agreement.0]);
    }
    let identifiers: Vec<String> = raw.iter().map(|id| hex(id)).collect();
    // Every frame B receives, with the period it came in.
    let recorded = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorder = {
        let (mut frames, recorded) = (b.events(), recorded.clone());
        tokio::spawn(async move {
            loop {
                match frames.recv().await {
                    Ok(NodeEvent::FrameReceived { peer, frame }) => recorded.lock().unwrap().push((peer, frame)),
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                }
            }
        })
    };

    // Every registration the server sees, by namespace and registering peer.
    let point_of = |period: u64| {
        let t = UnixTime(T0 + period * PERIOD + GRACE + 1);
        node::schedule().point_at(&Topic::group(), &keys.rendezvous_seed, t).to_hex()
    };
    let mut registrations = Vec::new();
    for period in 1..6 {
        // A writes once it has its new peer id and registered the new
        // point under it.
        let mut a_events = a.events();
        clock.set(UnixTime(T0 + period * PERIOD + GRACE + 1));
        let a_id = wait_for(&mut a_events, |e| match e {
            NodeEvent::NetworkRestarted { peer_id } => Some(peer_id),
            _ => None,
        })
        .await;
        let expected = point_of(period);
        while !registrations.iter().any(|(namespace, peer)| *namespace == expected && *peer == a_id) {
            let (namespace, peer) = wait_for(&mut observed, |e| match e {
                NodeEvent::RendezvousRegistered { namespace, peer } => Some((namespace, peer)),
                _ => None,
            })
            .await;
            assert!(
                identifiers.iter().all(|id| !namespace.contains(&id[..16])),
                "namespace {namespace} carries an identifier"
            );
            registrations.push((namespace, peer));
        }
        let text = format!("period {period}");
        a.send(&group, text.as_bytes()).await.unwrap();
        let mut events = b.events();
        until(&mut events, || async { log(&b, &group).await.iter().any(|(_, _, p)| p == text.as_bytes()) }).await;
    }
    for n in [a, b, server] {
        n.shutdown().await.unwrap();
    }
    recorder.await.unwrap();

    // Each peer id registered the group's point of one period only, and
    // each period's point is new: the server cannot link periods.
    let periods: HashMap<String, u64> = (0..6).map(|p| (point_of(p), p)).collect();
    assert_eq!(periods.len(), 6, "points repeat across periods");
    let mut by_peer: HashMap<_, HashSet<u64>> = HashMap::new();
    for (namespace, peer) in &registrations {
        if let Some(p) = periods.get(namespace) {
            by_peer.entry(*peer).or_default().insert(*p);
        }
    }
    assert!(by_peer.values().all(|p| p.len() == 1), "a peer id registered points of two periods: {by_peer:?}");

    // Frames: no identifier anywhere in them; each session tag naming the
    // group came from one peer id only, and A's peer id changed each period.
    let recorded = recorded.lock().unwrap();
    let mut senders_of: HashMap<[u8; 32], HashSet<_>> = HashMap::new();
    for (peer, frame) in recorded.iter() {
        assert!(raw.iter().all(|id| !frame.windows(32).any(|w| w == id)), "a frame carries an identifier");
        let tag = veil_proto::sync::GroupFrame::decode(frame).unwrap().session_tag;
        senders_of.entry(tag).or_default().insert(*peer);
    }
    assert!(senders_of.values().all(|s| s.len() == 1), "a session tag was used by two peer ids");
    let senders: HashSet<_> = recorded.iter().map(|(peer, _)| *peer).collect();
    assert!(senders.len() >= 5, "frames came from {} peer ids over five periods", senders.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_invitation_is_refused_and_joins_nothing() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let clock = ManualClock::new(UnixTime(T0 + 20));
    let (server, addr) = rendezvous_server(&dirs[0]).await;
    let (owner, late) = (peer(&dirs[1], &clock, &addr).await, peer(&dirs[2], &clock, &addr).await);
    let group = owner.create_group(Some("short-lived")).await.unwrap();
    let invitation = owner.invite(&group, Some(Duration::from_secs(60))).await.unwrap();
    clock.set(UnixTime(T0 + 20 + 61));
    let refused = late.join(&invitation).await.unwrap_err();
    assert!(refused.to_string().contains("expired"), "{refused}");
    assert!(late.groups().await.unwrap().is_empty());
    for n in [owner, late, server] {
        n.shutdown().await.unwrap();
    }
}
