//! Contacts and groups set up between nodes, and what a node reads.

use tokio::sync::broadcast;
use veil_actors::{
    Node, NodeEvent,
    crypto::{AccountPublic, GroupId, ReplicationId, VerifyKey, time::ManualClock, time::UnixTime},
    messages::contacts::Contact,
    storage::ContactState,
    transports::libp2p::Multiaddr,
};

use super::spawn::{T0, Transports, memory, peer, peer_on, rendezvous_server, schedule};
use super::wait::{WAIT, until_within, wait_for};

/// The account `node` runs.
pub async fn account(node: &Node) -> AccountPublic {
    node.identity().await.unwrap().account
}

/// A rendezvous node and two peers, A and B, who are contacts.
#[derive(Debug)]
pub struct TwoContacts {
    /// The rendezvous node's, A's and B's data directories.
    pub dirs: Vec<tempfile::TempDir>,
    /// The peers' clock, set five seconds into a period.
    pub clock: ManualClock,
    /// The rendezvous node.
    pub server: Node,
    /// Its addresses.
    pub addr: Vec<Multiaddr>,
    /// The peer who asked.
    pub a: Node,
    /// The peer who accepted.
    pub b: Node,
    /// Their 1:1 group.
    pub group: GroupId,
}

/// Starts a rendezvous node and two peers on the memory transport, and
/// befriends them.
pub async fn two_contacts() -> TwoContacts {
    two_contacts_on(memory).await
}

/// [`two_contacts`], the peers on the transports `transports` makes (one
/// set each), e.g. [`tcp`](super::tcp) for a test that needs sockets.
pub async fn two_contacts_on(transports: fn() -> Transports) -> TwoContacts {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let clock = ManualClock::new(UnixTime(T0 + 5));
    let (server, addr) = rendezvous_server(&dirs[0]).await;
    let a = peer_on(&dirs[1], &clock, &addr, transports(), schedule()).await;
    let b = peer_on(&dirs[2], &clock, &addr, transports(), schedule()).await;
    let link = b.share_link().await.unwrap().uri;
    let group = befriend(&a, &b, &link).await;
    TwoContacts { dirs, clock, server, addr, a, b, group }
}

/// A requests B's contact through `link` (as "Alice"), B accepts; returns
/// their 1:1 group once A knows it too.
pub async fn befriend(a: &Node, b: &Node, link: &str) -> GroupId {
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

/// The state of the contact whose account signs with `who`, if listed.
pub fn state_of(contacts: &[Contact], who: &VerifyKey) -> Option<ContactState> {
    contacts.iter().find(|c| &c.account.signing == who).map(|c| c.state)
}

/// A rendezvous node and two members of one multi-member group.
#[derive(Debug)]
pub struct GroupOfTwo {
    /// The rendezvous node.
    pub server: Node,
    /// Its addresses.
    pub addr: Vec<Multiaddr>,
    /// The member who created the group.
    pub a: Node,
    /// The member who joined.
    pub b: Node,
    /// The group.
    pub group: GroupId,
    /// The invitation B joined with.
    pub invitation: String,
}

/// The rendezvous node on `dirs[0]`, A on `dirs[1]` creating a group, B on
/// `dirs[2]` joining it; returns once each knows the other.
pub async fn group_of_two(dirs: &[tempfile::TempDir], clock: &ManualClock) -> GroupOfTwo {
    let (server, addr) = rendezvous_server(&dirs[0]).await;
    let (a, b) = (peer(&dirs[1], clock, &addr).await, peer(&dirs[2], clock, &addr).await);
    let (group, invitation) = group_between(&a, &b).await;
    GroupOfTwo { server, addr, a, b, group, invitation }
}

/// A creates a group and B joins it; returns the group and the invitation
/// once each knows the other.
pub async fn group_between(a: &Node, b: &Node) -> (GroupId, String) {
    group_between_within(WAIT, a, b).await
}

/// [`group_between`], each wait bounded by `limit`.
pub async fn group_between_within(limit: std::time::Duration, a: &Node, b: &Node) -> (GroupId, String) {
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
pub async fn until_replicated(r: &Node, replication: &ReplicationId, a: &Node, group: &GroupId) {
    until_replicated_within(WAIT, r, replication, a, group).await;
}

/// [`until_replicated`], bounded by `limit`.
pub async fn until_replicated_within(
    limit: std::time::Duration,
    r: &Node,
    replication: &ReplicationId,
    a: &Node,
    group: &GroupId,
) {
    let mut events: broadcast::Receiver<NodeEvent> = r.events();
    until_within(limit, &mut events, || async {
        r.replicated_entries(replication).await.unwrap() == a.stored_entries(group).await.unwrap()
    })
    .await;
}

/// The texts `node` reads in `group`, in log order (the latest thousand).
pub async fn texts(node: &Node, group: &GroupId) -> Vec<String> {
    let history = node.history(group, None, 1000).await.unwrap();
    history.into_iter().map(|h| String::from_utf8(h.payload).unwrap()).collect()
}
