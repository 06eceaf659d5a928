//! Shared fixtures: a rendezvous server node, peers with a manual clock and
//! a one-minute rendezvous period, waits on node events, befriending.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use tokio::{sync::broadcast, time::timeout};
use veil_actors::{Node, NodeBuilder, NodeEvent, RetryPolicy, messages::contacts::Contact};
use veil_crypto::{AccountPublic, GroupId, VerifyKey, rendezvous::Schedule, time::ManualClock};
use veil_storage::{ContactState, keystore::KdfParams};
use veil_transports::{NetworkConfig, Quic, Tcp, TransportPlugin, libp2p::Multiaddr};

pub(crate) const WAIT: Duration = Duration::from_secs(60);
pub(crate) const PERIOD: u64 = 60;
pub(crate) const GRACE: u64 = 10;
/// A period start: tests move the clock relative to it.
pub(crate) const T0: u64 = 1_800_000_000 - 1_800_000_000 % PERIOD;

/// A node serving rendezvous on loopback TCP and QUIC; returns it and its
/// dialable addresses.
pub(crate) async fn rendezvous_server(dir: &tempfile::TempDir) -> (Node, Vec<Multiaddr>) {
    let mut config = NetworkConfig::default();
    config.mdns = false;
    config.rendezvous_server = true;
    // A server keeps its peer id: clients address it by it.
    let mut builder = Node::builder()
        .data_dir(dir.path())
        .kdf(KdfParams::FAST_INSECURE_FOR_TESTS)
        .network_config(config)
        .rotate_network_key_each_period(false);
    for (transport, addr) in both_transports() {
        builder = builder.transport(transport).listen(addr);
    }
    let node = builder.spawn().await.unwrap();
    let status = node.network_status().await.unwrap();
    let p2p = veil_transports::libp2p::multiaddr::Protocol::P2p(status.peer_id);
    (node, status.listen_addrs.into_iter().map(|a| a.with(p2p.clone())).collect())
}

/// TCP and QUIC on loopback.
pub(crate) fn both_transports() -> Vec<(Arc<dyn TransportPlugin>, Multiaddr)> {
    vec![
        (Arc::new(Tcp::new()), "/ip4/127.0.0.1/tcp/0".parse().unwrap()),
        (Arc::new(Quic::new()), "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()),
    ]
}

/// The tests' rendezvous schedule: one-minute periods, ten seconds of grace.
pub(crate) fn schedule() -> Schedule {
    Schedule::new(PERIOD, GRACE).unwrap()
}

/// A peer on loopback TCP.
pub(crate) async fn peer(dir: &tempfile::TempDir, clock: &ManualClock, server: &[Multiaddr]) -> Node {
    peer_on(dir, clock, server, tcp(), schedule()).await
}

/// Loopback TCP only.
pub(crate) fn tcp() -> Vec<(Arc<dyn TransportPlugin>, Multiaddr)> {
    vec![(Arc::new(Tcp::new()), "/ip4/127.0.0.1/tcp/0".parse().unwrap())]
}

/// A peer on the given transports and schedule, using `server` for rendezvous.
pub(crate) async fn peer_on(
    dir: &tempfile::TempDir,
    clock: &ManualClock,
    server: &[Multiaddr],
    transports: Vec<(Arc<dyn TransportPlugin>, Multiaddr)>,
    schedule: Schedule,
) -> Node {
    peer_builder(dir, clock, server, transports, schedule).spawn().await.unwrap()
}

/// The builder of [`peer_on`], for tests that set more.
pub(crate) fn peer_builder(
    dir: &tempfile::TempDir,
    clock: &ManualClock,
    server: &[Multiaddr],
    transports: Vec<(Arc<dyn TransportPlugin>, Multiaddr)>,
    schedule: Schedule,
) -> NodeBuilder {
    let mut config = NetworkConfig::default();
    config.mdns = false;
    config.rendezvous_servers = server.to_vec();
    let mut builder = Node::builder()
        .data_dir(dir.path())
        .kdf(KdfParams::FAST_INSECURE_FOR_TESTS)
        .clock(Arc::new(clock.clone()))
        .rendezvous_schedule(schedule)
        .rotation_check_interval(Duration::from_millis(50))
        .contact_retry(RetryPolicy { base: Duration::from_millis(100), max: Duration::from_secs(1) })
        .sync_interval(Duration::from_millis(100))
        .network_config(config);
    for (transport, addr) in transports {
        builder = builder.transport(transport).listen(addr);
    }
    builder
}

/// Waits for the first event `pick` maps to something.
pub(crate) async fn wait_for<T>(
    events: &mut broadcast::Receiver<NodeEvent>,
    mut pick: impl FnMut(NodeEvent) -> Option<T>,
) -> T {
    timeout(WAIT, async {
        loop {
            match events.recv().await {
                Ok(e) => {
                    if let Some(t) = pick(e) {
                        return t;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("event channel closed: {e}"),
            }
        }
    })
    .await
    .expect("the event came in time")
}

pub(crate) async fn account(node: &Node) -> AccountPublic {
    node.identity().await.unwrap().account
}

/// A rendezvous server and two peers, A and B, who are contacts.
pub(crate) struct TwoContacts {
    /// The server's, A's and B's data directories.
    pub dirs: Vec<tempfile::TempDir>,
    pub clock: ManualClock,
    pub server: Node,
    pub addr: Vec<Multiaddr>,
    pub a: Node,
    pub b: Node,
    /// Their 1:1 group.
    pub group: GroupId,
}

/// Starts a server and two peers on loopback TCP, and befriends them.
pub(crate) async fn two_contacts() -> TwoContacts {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let clock = ManualClock::new(veil_crypto::time::UnixTime(T0 + 5));
    let (server, addr) = rendezvous_server(&dirs[0]).await;
    let a = peer(&dirs[1], &clock, &addr).await;
    let b = peer(&dirs[2], &clock, &addr).await;
    let link = b.share_link().await.unwrap().uri;
    let group = befriend(&a, &b, &link).await;
    TwoContacts { dirs, clock, server, addr, a, b, group }
}

/// A requests B's contact through `link`, B accepts; returns their 1:1 group.
pub(crate) async fn befriend(a: &Node, b: &Node, link: &str) -> GroupId {
    let (mut a_events, mut b_events) = (a.events(), b.events());
    let a_account = account(a).await;
    a.send_request(link, Some("Alice")).await.unwrap();
    let (from, name) = wait_for(&mut b_events, |e| match e {
        NodeEvent::ContactRequestReceived { account, display_name } => Some((account, display_name)),
        _ => None,
    })
    .await;
    assert_eq!((from, name.as_deref()), (a_account, Some("Alice")));
    let accepted = b.accept_contact(&from.signing).await.unwrap();
    let group = accepted.group.unwrap();
    let b_signing = account(b).await.signing;
    let a_group = wait_for(&mut a_events, |e| match e {
        NodeEvent::ContactAccepted { account, group } if account == b_signing => group,
        _ => None,
    })
    .await;
    assert_eq!(a_group, group, "both sides derive the same 1:1 group");
    group
}

pub(crate) fn state_of(contacts: &[Contact], who: &VerifyKey) -> Option<ContactState> {
    contacts.iter().find(|c| &c.account.signing == who).map(|c| c.state)
}

/// How often [`until`] checks again when no event came.
const RECHECK: Duration = Duration::from_millis(100);

/// Waits until `check` holds, checking again after every event and at
/// least every [`RECHECK`] (a condition may turn true without an event,
/// or on an event that came before the wait began).
pub(crate) async fn until<F, Fut>(events: &mut broadcast::Receiver<NodeEvent>, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    until_within(WAIT, events, check).await;
}

/// [`until`], bounded by `limit` instead of [`WAIT`] (for slow paths such
/// as Tor; a bound, never a pause).
pub(crate) async fn until_within<F, Fut>(limit: Duration, events: &mut broadcast::Receiver<NodeEvent>, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    timeout(limit, async {
        while !check().await {
            // No event within RECHECK is fine: check again.
            if let Ok(Err(broadcast::error::RecvError::Closed)) = timeout(RECHECK, events.recv()).await {
                panic!("event channel closed");
            }
        }
    })
    .await
    .expect("the condition held in time");
}

/// A rendezvous server and two members of one multi-member group.
pub(crate) struct GroupOfTwo {
    pub server: Node,
    pub addr: Vec<Multiaddr>,
    pub a: Node,
    pub b: Node,
    pub group: GroupId,
    pub invitation: String,
}

/// The server on `dirs[0]`, A on `dirs[1]` creating a group, B on `dirs[2]`
/// joining it; returns once each knows the other.
pub(crate) async fn group_of_two(dirs: &[tempfile::TempDir], clock: &ManualClock) -> GroupOfTwo {
    let (server, addr) = rendezvous_server(&dirs[0]).await;
    let (a, b) = (peer(&dirs[1], clock, &addr).await, peer(&dirs[2], clock, &addr).await);
    let (group, invitation) = group_between(&a, &b).await;
    GroupOfTwo { server, addr, a, b, group, invitation }
}

/// A creates a group and B joins it; returns the group and the invitation
/// once each knows the other.
pub(crate) async fn group_between(a: &Node, b: &Node) -> (GroupId, String) {
    group_between_within(WAIT, a, b).await
}

/// [`group_between`], each wait bounded by `limit`.
pub(crate) async fn group_between_within(limit: Duration, a: &Node, b: &Node) -> (GroupId, String) {
    let group = a.create_group(None).await.unwrap();
    let invitation = a.invite(&group, None).await.unwrap();
    b.join(&invitation).await.unwrap();
    for n in [a, b] {
        let mut events = n.events();
        until_within(limit, &mut events, || async { n.members(&group).await.unwrap().len() == 2 }).await;
    }
    (group, invitation)
}

/// Waits until replication node `r` holds every entry member `a` stores of `group`.
pub(crate) async fn until_replicated(r: &Node, replication: &veil_crypto::ReplicationId, a: &Node, group: &GroupId) {
    until_replicated_within(WAIT, r, replication, a, group).await;
}

/// [`until_replicated`], bounded by `limit`.
pub(crate) async fn until_replicated_within(
    limit: Duration,
    r: &Node,
    replication: &veil_crypto::ReplicationId,
    a: &Node,
    group: &GroupId,
) {
    let mut events = r.events();
    until_within(limit, &mut events, || async {
        r.replicated_entries(replication).await.unwrap() == a.stored_entries(group).await.unwrap()
    })
    .await;
}

/// The texts `node` reads in `group`, in log order.
pub(crate) async fn texts(node: &Node, group: &GroupId) -> Vec<String> {
    let history = node.history(group, None, 1000).await.unwrap();
    history.into_iter().map(|h| String::from_utf8(h.payload).unwrap()).collect()
}
