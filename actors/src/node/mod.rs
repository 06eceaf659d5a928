//! The `Node` facade: what app builders use. It runs the actor system on its
//! own thread and exposes plain async methods and an event stream; no actix
//! type appears in its API.

mod builder;
mod devices;
mod start;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::{broadcast, oneshot};
use veil_crypto::{
    GroupId, GroupKeys, GroupSecret, OsEntropy, VerifyKey, envelope::EntryHash, rendezvous::ActivePoints,
    time::UnixTime,
};
use veil_storage::{GroupKind, LinkLimits};
use zeroize::Zeroizing;

use veil_transports::{
    KnownRelay, LearnedAddress, Policy, TransportId, TransportPlugin,
    libp2p::{Multiaddr, PeerId},
};

use crate::time::within;
use crate::{
    AttachTransport, DetachTransport, Dial, Error, GetNetworkStatus, Listen, NetworkStatus, NodeEvent, Result, Rotate,
    SendFrame, SetPolicy,
    audit::Audit,
    messages::{
        contacts::{
            Contact, Decide, Decision, GetContacts, LinkInfo, RemoveContact, RenameContact, ResetLink, SendRequest,
            SetDisplayName, SetLinkEnabled, ShareLink,
        },
        courier::StartGroup,
        group::{
            AppendMessage, AwaitAnnounced, Conversation, ForgetHistory, GetEntry, GetHistory, GetMembers, GetUnread,
            HistoryEntry, MarkRead, Page, RemoveMember, SetRetention,
        },
        registry::Running,
        rendezvous::{GetActivePoints, WatchKey},
        replica::AddReplica,
        vault::{AddGroup, GetIdentity, GetMemberKeys, IssueInvitation, PublicIdentity, RotateNetworkKey},
    },
    supervision::mailbox,
};
pub use builder::NodeBuilder;
use start::Inner;

type Control = Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>;

/// A running veil node. Cheap to clone; every clone talks to the same actors.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
    control: Arc<Mutex<Control>>,
}

impl core::fmt::Debug for Node {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Node").finish_non_exhaustive()
    }
}

impl Node {
    /// Starts configuring a node.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    /// Runs `fut` on the node's own runtime (where its store lives) and
    /// returns its output.
    async fn on_node<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        let spawned = self.inner.arbiter.spawn(async move {
            let _ = tx.send(fut.await);
        });
        if !spawned {
            return Err(Error::Unavailable("node"));
        }
        rx.await.map_err(|_| Error::Unavailable("node"))
    }

    /// This node's public identity.
    pub async fn identity(&self) -> Result<PublicIdentity> {
        self.inner.vault.send(GetIdentity).await.map_err(mailbox("identity-vault"))?
    }

    /// The current contact link (created on first use).
    pub async fn share_link(&self) -> Result<LinkInfo> {
        self.inner.contacts.send(ShareLink).await.map_err(mailbox("contact-book"))?
    }

    /// Sets the name this account introduces itself by: in contact
    /// requests, and to whoever's request it accepts (inside the sealed
    /// answer). `None` introduces it by no name.
    pub async fn set_display_name(&self, name: Option<&str>) -> Result<()> {
        let msg = SetDisplayName(name.map(str::to_owned));
        self.inner.contacts.send(msg).await.map_err(mailbox("contact-book"))?
    }

    /// Draws a new link seed: every earlier link stops working.
    pub async fn reset_link(&self) -> Result<LinkInfo> {
        self.reset_link_with(LinkLimits::default()).await
    }

    /// Draws a new link seed that answers only until `limits.expires_at`
    /// and for `limits.uses` completed requests (a one-time link has one);
    /// spent, it answers nothing, like a reset link, and is no longer
    /// announced. Every earlier link stops working.
    pub async fn reset_link_with(&self, limits: LinkLimits) -> Result<LinkInfo> {
        self.inner.contacts.send(ResetLink(limits)).await.map_err(mailbox("contact-book"))?
    }

    /// Enables or disables the link.
    pub async fn set_link_enabled(&self, enabled: bool) -> Result<LinkInfo> {
        self.inner.contacts.send(SetLinkEnabled(enabled)).await.map_err(mailbox("contact-book"))?
    }

    /// Sends a contact request to the owner of `link` (a `veil://contact/…`
    /// link or its QR form), introducing ourselves as `display_name`. The
    /// request is stored and retried until delivered, across restarts.
    pub async fn send_request(&self, link: &str, display_name: Option<&str>) -> Result<Contact> {
        let msg = SendRequest { link: link.to_owned(), display_name: display_name.map(str::to_owned) };
        self.inner.contacts.send(msg).await.map_err(mailbox("contact-book"))?
    }

    /// Accepts `account`'s request: the 1:1 group is created.
    pub async fn accept_contact(&self, account: &VerifyKey) -> Result<Contact> {
        self.decide(account, Decision::Accept).await
    }

    /// Discards `account`'s request silently.
    pub async fn discard_contact(&self, account: &VerifyKey) -> Result<Contact> {
        self.decide(account, Decision::Discard).await
    }

    /// Refuses `account`'s requests from now on (silently).
    pub async fn block_contact(&self, account: &VerifyKey) -> Result<Contact> {
        self.decide(account, Decision::Block).await
    }

    async fn decide(&self, account: &VerifyKey, decision: Decision) -> Result<Contact> {
        self.inner.contacts.send(Decide { account: *account, decision }).await.map_err(mailbox("contact-book"))?
    }

    /// Sets (or with `None` clears) what this user calls a contact: a local
    /// nickname, never sent, that overrides the name the contact gave.
    pub async fn rename_contact(&self, account: &VerifyKey, nickname: Option<&str>) -> Result<Contact> {
        let msg = RenameContact { account: *account, nickname: nickname.map(str::to_owned) };
        self.inner.contacts.send(msg).await.map_err(mailbox("contact-book"))?
    }

    /// Removes a contact (or a request to or from one) for good: its 1:1
    /// conversation stops, and the conversation's keys, chains and messages
    /// are erased from the store and its WAL. A later request from them is
    /// a new one. `false` if there was no such contact.
    pub async fn remove_contact(&self, account: &VerifyKey) -> Result<bool> {
        self.inner.contacts.send(RemoveContact { account: *account }).await.map_err(mailbox("contact-book"))?
    }

    /// Every contact and contact request.
    pub async fn contacts(&self) -> Result<Vec<Contact>> {
        self.inner.contacts.send(GetContacts).await.map_err(mailbox("contact-book"))?
    }

    /// The rendezvous points this node currently answers to or looks up.
    pub async fn active_points(&self) -> Result<Vec<(WatchKey, ActivePoints)>> {
        self.inner.rotator.send(GetActivePoints).await.map_err(mailbox("rendezvous-rotator"))?
    }

    /// Creates a multi-member group with a fresh secret and this device's
    /// key in it, and starts its log.
    pub async fn create_group(&self, name: Option<&str>) -> Result<GroupId> {
        let secret = GroupSecret::generate(&mut OsEntropy)?;
        let add = AddGroup { kind: GroupKind::MultiMember, name: name.map(str::to_owned), secret, epochs: Vec::new() };
        let group = self.inner.vault.send(add).await.map_err(mailbox("identity-vault"))??;
        self.inner.courier.send(StartGroup { group }).await.map_err(mailbox("courier"))??;
        let _ = self.inner.events.send(NodeEvent::GroupCreated { group });
        self.inner.account_sync.do_send(crate::account_sync::GroupAdded(group));
        Ok(group)
    }

    /// An invitation link (`veil://group/…`) to a multi-member group,
    /// valid for `valid_for` if given. It carries the group's secret: anyone
    /// holding it can join until it expires.
    pub async fn invite(&self, group: &GroupId, valid_for: Option<Duration>) -> Result<String> {
        let (store, group) = (self.inner.store.clone(), *group);
        let (record, epochs) = self
            .on_node(async move { Ok::<_, Error>((store.group(&group).await?, store.epochs(&group).await?)) })
            .await??;
        let record = record.ok_or(Error::UnknownGroup)?;
        if record.kind != GroupKind::MultiMember {
            return Err(Error::Refused("only multi-member groups take invitations"));
        }
        let expires_at = valid_for.map(|d| UnixTime(self.inner.clock.now().0.saturating_add(d.as_secs())));
        let name = record.name.as_deref().map(veil_crypto::Name::new).transpose()?;
        let invitation = self
            .inner
            .vault
            .send(IssueInvitation { group, secret: record.secret, name, expires_at, epochs })
            .await
            .map_err(mailbox("identity-vault"))??;
        Ok(veil_proto::link::invitation_uri(&invitation))
    }

    /// Joins the group an invitation link names (checking its signature and
    /// expiry), under this account's member key for that group.
    ///
    /// Returns once another node — a member or a replication node — holds
    /// this device's announcement, so the node may stop right after: the
    /// members share their chains with it as they learn of it, and it reads
    /// what they write from then on when it comes back. If none holds it
    /// within the join timeout, [`Error::JoinUnconfirmed`]: the group is
    /// joined here and the announcement goes out when a member or
    /// replication node is reachable; calling `join` again waits again.
    pub async fn join(&self, invitation: &str) -> Result<GroupId> {
        let invitation = veil_proto::link::parse_invitation(invitation)?;
        invitation.verify(self.inner.clock.now())?;
        let add = AddGroup {
            kind: GroupKind::MultiMember,
            name: invitation.name.as_ref().map(|n| n.as_str().to_owned()),
            secret: invitation.secret,
            epochs: invitation.epochs,
        };
        let group = self.inner.vault.send(add).await.map_err(mailbox("identity-vault"))??;
        self.inner.courier.send(StartGroup { group }).await.map_err(mailbox("courier"))??;
        let _ = self.inner.events.send(NodeEvent::GroupCreated { group });
        self.inner.account_sync.do_send(crate::account_sync::GroupAdded(group));
        let held = self.inner.group(&group).await?.send(AwaitAnnounced);
        match within(&*self.inner.time, self.inner.join_timeout, held).await {
            Some(held) => held.map_err(mailbox("group-log"))??,
            None => return Err(Error::JoinUnconfirmed),
        }
        Ok(group)
    }

    /// Appends a message to a group's log.
    pub async fn send(&self, group: &GroupId, payload: &[u8]) -> Result<EntryHash> {
        let log = self.inner.group(group).await?;
        log.send(AppendMessage { payload: payload.to_vec() }).await.map_err(mailbox("group-log"))?
    }

    /// [`send`](Self::send), returning the message as history shows it
    /// (its hash, Lamport clock, delivery). `None` only if it was erased
    /// before it could be read back (a retention of seconds).
    pub async fn post(&self, group: &GroupId, payload: &[u8]) -> Result<Option<HistoryEntry>> {
        let log = self.inner.group(group).await?;
        let hash = log.send(AppendMessage { payload: payload.to_vec() }).await.map_err(mailbox("group-log"))??;
        log.send(GetEntry { hash }).await.map_err(mailbox("group-log"))?
    }

    /// The credential a blind replication node needs to store and serve
    /// `group`'s entries (`veil://replica/…`): it verifies and orders them,
    /// it reads nothing. Members find the node at rotating points derived
    /// from it.
    pub async fn replication_credential(&self, group: &GroupId) -> Result<String> {
        let (store, group) = (self.inner.store.clone(), *group);
        let record = self.on_node(async move { store.group(&group).await }).await??.ok_or(Error::UnknownGroup)?;
        if record.kind != GroupKind::MultiMember {
            return Err(Error::Refused("only multi-member groups are replicated"));
        }
        let credential = GroupKeys::derive(&record.secret).replication_credential();
        Ok(veil_proto::link::replication_uri(&credential))
    }

    /// Serves as a blind replication node for the group a credential
    /// (`veil://replica/…`) names; kept across restarts. Returns the group's
    /// replication id; `Ok` also if it was replicated already.
    pub async fn replicate(&self, credential: &str) -> Result<veil_crypto::ReplicationId> {
        let credential = veil_proto::link::parse_replication(credential)?;
        let id = credential.replication_id;
        self.inner.replica.send(AddReplica { credential }).await.map_err(mailbox("replica"))??;
        Ok(id)
    }

    /// How many entries (both logs, readable or not) this node holds of a
    /// group it is a member of: what its replica has to offer.
    pub async fn stored_entries(&self, group: &GroupId) -> Result<usize> {
        let (store, group) = (self.inner.store.clone(), *group);
        Ok(self.on_node(async move { store.group_hashes(&group).await }).await??.len())
    }

    /// Writes a backup of everything this node holds — account, contacts,
    /// groups, history — to `dest` (which must not exist), sealed under
    /// `passphrase` (Argon2id). `veil_storage::Store::restore` brings it
    /// back on another machine as a new device of the same account.
    pub async fn backup(&self, dest: &std::path::Path, passphrase: &str) -> Result<()> {
        let (store, dest, passphrase, kdf) =
            (self.inner.store.clone(), dest.to_owned(), Zeroizing::new(passphrase.to_owned()), self.inner.kdf);
        Ok(self.on_node(async move { store.backup(&dest, &passphrase, kdf).await }).await??)
    }

    /// Erases this device's copy of a group's messages: their content
    /// leaves the store and its WAL (the entries stay as hashes, so sync
    /// does not fetch them again). Other members keep theirs. Returns how
    /// many were erased.
    pub async fn forget_history(&self, group: &GroupId) -> Result<u64> {
        let log = self.inner.group(group).await?;
        log.send(ForgetHistory).await.map_err(mailbox("group-log"))?
    }

    /// Keeps a group's messages on this device for `keep` only (for ever
    /// with `None`): older ones are erased now and from then on, as by
    /// [`Node::forget_history`].
    pub async fn set_retention(&self, group: &GroupId, keep: Option<Duration>) -> Result<()> {
        let log = self.inner.group(group).await?;
        log.send(SetRetention { keep, now: self.inner.clock.now() }).await.map_err(mailbox("group-log"))?
    }

    /// Every group with a retention period, and that period.
    pub async fn retention(&self) -> Result<std::collections::HashMap<GroupId, Duration>> {
        let store = self.inner.store.clone();
        Ok(self.on_node(async move { store.retention().await }).await??.into_iter().collect())
    }

    /// How many entries this node holds of a group it replicates.
    pub async fn replicated_entries(&self, id: &veil_crypto::ReplicationId) -> Result<usize> {
        let (store, id) = (self.inner.store.clone(), *id);
        Ok(self.on_node(async move { store.replica_hashes(&id).await }).await??.len())
    }

    /// Removes a member (by its member key in the group) from a
    /// multi-member group: the group moves to a new epoch whose keys only
    /// the remaining members get, so the removed member cannot read
    /// anything written after this.
    pub async fn remove_member(&self, group: &GroupId, member: &veil_crypto::VerifyKey) -> Result<()> {
        let log = self.inner.group(group).await?;
        log.send(RemoveMember { member: *member }).await.map_err(mailbox("group-log"))?
    }

    /// Leaves a multi-member group: this account removes itself, handing
    /// the remaining members a new epoch it does not keep. The node still
    /// serves the group's entries it holds, and writes nothing more there.
    pub async fn leave(&self, group: &GroupId) -> Result<()> {
        let me = self.member_key(group).await?;
        self.remove_member(group, &me.signing).await
    }

    /// This account's member key in `group` (how the others see it there).
    pub async fn member_key(&self, group: &GroupId) -> Result<veil_crypto::MemberPublic> {
        self.inner.vault.send(GetMemberKeys { group: *group }).await.map_err(mailbox("identity-vault"))?
    }

    /// A group's members in its current epoch, as its metadata log knows
    /// them (this account included unless it left), by their per-group
    /// member keys.
    pub async fn members(&self, group: &GroupId) -> Result<Vec<veil_crypto::MemberPublic>> {
        let log = self.inner.group(group).await?;
        log.send(GetMembers).await.map_err(mailbox("group-log"))?
    }

    /// A group's messages in the log's total order, after `after`.
    pub async fn history(
        &self,
        group: &GroupId,
        after: Option<(u64, EntryHash)>,
        limit: u32,
    ) -> Result<Vec<HistoryEntry>> {
        let log = self.inner.group(group).await?;
        log.send(GetHistory { page: Page::After(after), limit }).await.map_err(mailbox("group-log"))?
    }

    /// Marks a group's messages read up to `up_to` (a message's Lamport
    /// clock and hash) included, or all of them (`None`). Read positions
    /// only move forward; they are kept in the store.
    pub async fn mark_read(&self, group: &GroupId, up_to: Option<(u64, EntryHash)>) -> Result<()> {
        let log = self.inner.group(group).await?;
        log.send(MarkRead { up_to }).await.map_err(mailbox("group-log"))?
    }

    /// How many messages of a group others wrote after its read position.
    pub async fn unread(&self, group: &GroupId) -> Result<u64> {
        let log = self.inner.group(group).await?;
        log.send(GetUnread).await.map_err(mailbox("group-log"))?
    }

    /// A group's messages in the log's total order, the `limit` just before
    /// `before` (`None`: the latest ones); page back with the first one's
    /// position.
    pub async fn history_before(
        &self,
        group: &GroupId,
        before: Option<(u64, EntryHash)>,
        limit: u32,
    ) -> Result<Vec<HistoryEntry>> {
        let log = self.inner.group(group).await?;
        log.send(GetHistory { page: Page::Before(before), limit }).await.map_err(mailbox("group-log"))?
    }

    /// How many of this node's entries in `group` a member has not
    /// acknowledged yet (0: everything was delivered).
    pub async fn undelivered(&self, group: &GroupId) -> Result<u64> {
        let (store, group) = (self.inner.store.clone(), *group);
        self.on_node(async move {
            let mut owed = 0;
            for member in crate::courier::members_of(&store, &group).await? {
                owed += store.outbox_len(&member).await?;
            }
            Ok::<_, Error>(owed)
        })
        .await?
    }

    /// The names of the groups that have one (given at creation, or by the
    /// invitation joined with); kept in the store across restarts.
    pub async fn group_names(&self) -> Result<std::collections::HashMap<GroupId, String>> {
        let store = self.inner.store.clone();
        let names = self.on_node(async move { store.group_names().await }).await??;
        Ok(names.into_iter().filter(|(g, _)| *g != self.inner.account_group).collect())
    }

    /// The conversations among `groups` (every group this node runs a log
    /// for when `None`), in that order: which is a contact's and which a
    /// named group, and how long each keeps its messages.
    pub async fn conversations(&self, groups: Option<&[GroupId]>) -> Result<Vec<Conversation>> {
        let groups = match groups {
            Some(groups) => groups.to_vec(),
            None => self.groups().await?,
        };
        let contacts = self.contacts().await?;
        let (mut names, retention) = (self.group_names().await?, self.retention().await?);
        Ok(groups
            .into_iter()
            .map(|group| {
                let contact = contacts.iter().find(|c| c.group == Some(group)).cloned();
                let name = if contact.is_some() { None } else { names.remove(&group) };
                Conversation { group, contact, name, retention: retention.get(&group).copied() }
            })
            .collect())
    }

    /// The groups this node runs a log for (but the account's own group,
    /// which only its devices read: see [`Node::link_device`]).
    pub async fn groups(&self) -> Result<Vec<GroupId>> {
        let running = self.inner.registry.send(Running).await.map_err(mailbox("group-registry"))?;
        Ok(running.into_iter().filter(|g| *g != self.inner.account_group).collect())
    }

    /// What the node refused from the network since it started (`veil
    /// status`): frames, entries and contact-protocol messages.
    pub fn refusals(&self) -> crate::Refusals {
        self.inner.refusals.snapshot()
    }

    /// Subscribes to the node's events.
    pub fn events(&self) -> broadcast::Receiver<NodeEvent> {
        self.inner.events.subscribe()
    }

    /// Stops the node: every actor stops and the store is closed.
    pub async fn shutdown(&self) -> Result<()> {
        let control = self.control.lock().ok().and_then(|mut c| c.take());
        if let Some((stop, done)) = control {
            let _ = stop.send(());
            done.await.map_err(|_| Error::Runtime("the node thread ended abnormally".into()))?;
        }
        Ok(())
    }

    /// Listens on an address (refused if the policy forbids it).
    pub async fn listen(&self, addr: Multiaddr) -> Result<Multiaddr> {
        self.inner.transport.send(Listen(addr)).await.map_err(mailbox("transport-manager"))?
    }

    /// Connects to a peer's address (refused if the policy forbids it).
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId> {
        self.inner.transport.send(Dial(addr)).await.map_err(mailbox("transport-manager"))?
    }

    /// Sends a frame to a connected peer; resolves once the peer acknowledged it.
    pub async fn send_frame(&self, peer: PeerId, frame: Vec<u8>) -> Result<()> {
        self.inner.transport.send(SendFrame { peer, frame }).await.map_err(mailbox("transport-manager"))?
    }

    /// Attaches a transport while the node runs.
    pub async fn attach_transport(&self, plugin: Arc<dyn TransportPlugin>) -> Result<()> {
        self.inner.transport.send(AttachTransport(plugin)).await.map_err(mailbox("transport-manager"))?
    }

    /// Detaches a transport while the node runs; its connections close.
    pub async fn detach_transport(&self, id: TransportId) -> Result<()> {
        self.inner.transport.send(DetachTransport(id)).await.map_err(mailbox("transport-manager"))?
    }

    /// Changes the privacy policy.
    pub async fn set_policy(&self, policy: Policy) -> Result<()> {
        self.inner.transport.send(SetPolicy(policy)).await.map_err(mailbox("transport-manager"))??;
        if let Some((ble, _)) = &self.inner.ble {
            ble.send(crate::ble::BleAllowed(policy.proximity())).await.map_err(mailbox("ble-transport"))?;
        }
        Ok(())
    }

    /// Enables BLE (`veil transport attach ble`: the plug-in, a token on
    /// the air, scans and connections, whenever the radio is ready and the
    /// policy allows it) or disables it. Refused without a radio
    /// ([`NodeBuilder::ble`]).
    pub async fn set_ble(&self, enabled: bool) -> Result<()> {
        let (ble, _) = self.inner.ble.as_ref().ok_or(Error::Config("this node has no BLE radio"))?;
        ble.send(crate::ble::EnableBle(enabled)).await.map_err(mailbox("ble-transport"))
    }

    /// BLE's state: the radio, whether enabled and advertising, the peers
    /// in range. Refused without a radio ([`NodeBuilder::ble`]).
    pub async fn ble_status(&self) -> Result<crate::ble::BleStatus> {
        let (ble, _) = self.inner.ble.as_ref().ok_or(Error::Config("this node has no BLE radio"))?;
        ble.send(crate::ble::GetBleStatus).await.map_err(mailbox("ble-transport"))?
    }

    /// The network's status: peer id, policy, transports, addresses, peers.
    pub async fn network_status(&self) -> Result<NetworkStatus> {
        self.inner.transport.send(GetNetworkStatus).await.map_err(mailbox("transport-manager"))?
    }

    /// Replaces the network key (and so the peer id) with a fresh one.
    pub async fn rotate_network_key(&self) -> Result<PeerId> {
        let key = self.inner.vault.send(RotateNetworkKey).await.map_err(mailbox("identity-vault"))??;
        self.inner.transport.send(Rotate(key)).await.map_err(mailbox("transport-manager"))?
    }

    /// Reports `peer` as nearby at `addrs`, found by a proximity transport
    /// of the caller's (BLE, a LAN beacon…) rather than by mDNS: it is
    /// offered this node's membership tokens and served every conversation
    /// it shares, exactly like a LAN peer mDNS found (docs/PROTOCOL.md
    /// §11.4). Refused under `relayed` and `anonymous`.
    pub async fn found_nearby(&self, peer: PeerId, addrs: Vec<Multiaddr>) -> Result<()> {
        Ok(self.inner.network.found_nearby(peer, addrs).await?)
    }

    /// Every address this node learned for each peer, and where from
    /// (connections, identify, address book, DHT, rendezvous records, mDNS),
    /// since it started.
    pub async fn learned_addresses(&self) -> Result<Vec<LearnedAddress>> {
        Ok(self.inner.network.learned_addresses().await?)
    }

    /// The relays this node may reserve on under `Relayed`: the configured
    /// ones, then those learned from contacts (the relays contacts were
    /// reached through, kept in memory only).
    pub async fn known_relays(&self) -> Result<Vec<KnownRelay>> {
        Ok(self.inner.network.known_relays().await?)
    }

    /// What each observer learns about this node under its current policy
    /// and configuration.
    pub async fn audit(&self) -> Result<Audit> {
        let network = &self.inner.network;
        let (policy, relays) = (network.policy().await?, network.known_relays().await?);
        // The transports attached now: plug-ins come and go while the node
        // runs. BLE enabled counts while its radio is away: it comes back.
        let mut transports: Vec<_> = network.attached().await?.into_iter().map(|(_, kind)| kind).collect();
        if let Some((ble, _)) = &self.inner.ble
            && ble.send(crate::ble::GetBleStatus).await.map_err(mailbox("ble-transport"))??.enabled
        {
            transports.push(veil_transports::TransportKind::Proximity);
        }
        Ok(crate::audit::audit(&self.inner.exposure.input(policy, transports, &relays)))
    }

    /// Makes one actor panic, to show supervision at work (tests only).
    #[cfg(feature = "fault-injection")]
    pub async fn inject_panic(&self, actor: crate::ActorKind) -> Result<()> {
        use crate::{ActorKind, messages::InjectPanic};
        let m = mailbox("actor");
        match actor {
            ActorKind::IdentityVault => self.inner.vault.send(InjectPanic).await.map_err(m)?,
            ActorKind::RendezvousRotator => self.inner.rotator.send(InjectPanic).await.map_err(m)?,
            ActorKind::ContactBook => self.inner.contacts.send(InjectPanic).await.map_err(m)?,
            ActorKind::GroupLog(g) => self.inner.group(&g).await?.send(InjectPanic).await.map_err(m)?,
            ActorKind::TransportManager => self.inner.transport.send(InjectPanic).await.map_err(m)?,
            ActorKind::Courier => self.inner.courier.send(InjectPanic).await.map_err(m)?,
            ActorKind::Replica => self.inner.replica.send(InjectPanic).await.map_err(m)?,
            ActorKind::NetworkPeriod => self.inner.period.send(InjectPanic).await.map_err(m)?,
            ActorKind::BleTransport => {
                let (ble, _) = self.inner.ble.as_ref().ok_or(Error::Config("this node has no BLE radio"))?;
                ble.send(InjectPanic).await.map_err(m)?
            }
        }
    }
}
