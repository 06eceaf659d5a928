//! The `Node` facade: what app builders use. It runs the actor system on its
//! own thread and exposes plain async methods and an event stream; no actix
//! type appears in its API.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use actix::{Actor, Addr, AsyncContext, Context, Handler, Supervisor};
use actix_rt::ArbiterHandle;
use tokio::sync::{broadcast, oneshot};
use veil_crypto::{
    GroupId, GroupKeys, GroupSecret, OsEntropy, VerifyKey,
    envelope::EntryHash,
    rendezvous::{ActivePoints, Schedule},
    time::{Clock, SystemClock, UnixTime},
};
use veil_storage::{
    GroupKind, LinkLimits, Store, StoreOptions, Tuning,
    keystore::{KdfParams, KeySource},
};
use zeroize::Zeroizing;

use veil_transports::{
    KnownRelay, LearnedAddress, Network, NetworkConfig, NetworkHandle, Policy, Quic, RelayOrigin, Tcp, TransportId,
    TransportPlugin,
    libp2p::{Multiaddr, PeerId},
};

use crate::{
    AttachTransport, ContactBook, ContactBookDeps, Courier, CourierDeps, CourierTiming, DetachTransport, Dial, Error,
    GetNetworkStatus, GroupLog, GroupLogDeps, IdentityVault, Listen, NetworkStatus, NodeEvent, RendezvousRotator,
    Result, RetryPolicy, Rotate, SendFrame, SetPolicy, TransportManager, VaultPort,
    audit::{Audit, AuditInput},
    messages::{
        contacts::{
            Contact, Decide, Decision, GetContacts, LinkInfo, RemoveContact, RenameContact, ResetLink, SendRequest,
            SetDisplayName, SetLinkEnabled, ShareLink,
        },
        courier::StartGroup,
        group::{
            AppendMessage, AwaitAnnounced, ForgetHistory, GetHistory, GetMembers, GetUnread, HistoryEntry, MarkRead,
            Page, RemoveMember, SetRetention,
        },
        registry::{LogOf, Running},
        rendezvous::{GetActivePoints, PointsRotated, Subscribe, WatchKey},
        replica::AddReplica,
        vault::{AddGroup, GetIdentity, GetMemberKeys, IssueInvitation, PublicIdentity, RotateNetworkKey},
    },
    period::{NetworkPeriod, NetworkPeriodDeps},
    registry::GroupRegistry,
    replica::{Replica, ReplicaDeps},
    supervision::mailbox,
    transport::NetworkRoutes,
};

/// Capacity of the node's event channel; a slower subscriber sees `Lagged`.
/// Room for the events of a few received batches at once (one event per
/// message; a batch holds what many frames carried).
const EVENT_CAPACITY: usize = 16 * 1024;

/// Configures and starts a [`Node`].
pub struct NodeBuilder {
    data_dir: Option<PathBuf>,
    passphrase: Option<Zeroizing<String>>,
    clock: Arc<dyn Clock>,
    schedule: Schedule,
    rotation_check: Duration,
    kdf: KdfParams,
    tuning: Tuning,
    policy: Policy,
    transports: Vec<Arc<dyn TransportPlugin>>,
    listen: Vec<Multiaddr>,
    network: NetworkConfig,
    retry: RetryPolicy,
    sync_tick: Duration,
    resend_after: Duration,
    share_delay: Duration,
    join_timeout: Duration,
    rotate_key_each_period: bool,
    ble: Option<(Arc<dyn veil_ble::air::Air>, crate::ble::BleTiming)>,
}

impl core::fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("data_dir", &self.data_dir)
            .field("policy", &self.policy)
            .field("transports", &self.transports.iter().map(|t| t.id()).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Default for NodeBuilder {
    fn default() -> Self {
        Self {
            data_dir: None,
            passphrase: None,
            clock: Arc::new(SystemClock),
            schedule: Schedule::DEFAULT,
            rotation_check: Duration::from_secs(1),
            kdf: KdfParams::DEFAULT,
            tuning: Tuning::default(),
            policy: Policy::Direct,
            transports: Vec::new(),
            listen: Vec::new(),
            network: NetworkConfig::default(),
            retry: RetryPolicy::default(),
            sync_tick: Duration::from_secs(5),
            resend_after: Duration::from_secs(30),
            share_delay: Duration::from_millis(250),
            join_timeout: Duration::from_secs(60),
            rotate_key_each_period: true,
            ble: None,
        }
    }
}

impl NodeBuilder {
    /// Where the node keeps its database and key file (required).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Protect the store with a passphrase (Argon2id) instead of a key file.
    pub fn passphrase(mut self, passphrase: impl Into<String>) -> Self {
        self.passphrase = Some(Zeroizing::new(passphrase.into()));
        self
    }

    /// The clock (tests inject a `ManualClock`).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The rendezvous rotation schedule.
    pub fn rendezvous_schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = schedule;
        self
    }

    /// How often the rotator looks at the clock.
    pub fn rotation_check_interval(mut self, every: Duration) -> Self {
        self.rotation_check = every;
        self
    }

    /// Argon2id parameters for a new passphrase-protected store.
    pub fn kdf(mut self, params: KdfParams) -> Self {
        self.kdf = params;
        self
    }

    /// SQLite tuning.
    pub fn storage_tuning(mut self, tuning: Tuning) -> Self {
        self.tuning = tuning;
        self
    }

    /// The privacy policy to start with (default `Direct`).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Attaches a transport at start (repeatable). Without any, TCP and QUIC
    /// are attached.
    pub fn transport(mut self, plugin: Arc<dyn TransportPlugin>) -> Self {
        self.transports.push(plugin);
        self
    }

    /// Listens on an address at start (repeatable).
    pub fn listen(mut self, addr: Multiaddr) -> Self {
        self.listen.push(addr);
        self
    }

    /// Network settings (server roles, mDNS, limits).
    pub fn network_config(mut self, config: NetworkConfig) -> Self {
        self.network = config;
        self
    }

    /// How contact requests are retried until delivered.
    pub fn contact_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// How often the courier looks for members it owes entries to and
    /// re-pushes what was not acknowledged (default 5 s).
    pub fn sync_interval(mut self, every: Duration) -> Self {
        self.sync_tick = every;
        self
    }

    /// How long a pushed entry waits for its acknowledgement before it is
    /// pushed again, on the node's clock (default 30 s).
    pub fn resend_after(mut self, after: Duration) -> Self {
        self.resend_after = after;
        self
    }

    /// How long, after a received batch taught this device new members of
    /// a group, it waits for more before sharing its sending chain with
    /// them all in one announcement (default 250 ms; joins come in
    /// bursts). The share is written earlier if this device writes a
    /// message meanwhile, and after a restart if it stopped first, so the
    /// newcomers read everything it writes after learning of them.
    pub fn chain_share_delay(mut self, delay: Duration) -> Self {
        self.share_delay = delay;
        self
    }

    /// How long [`Node::join`] waits for a member or a replication node to
    /// hold this device's announcement (default 60 s).
    pub fn join_timeout(mut self, timeout: Duration) -> Self {
        self.join_timeout = timeout;
        self
    }

    /// Whether the node takes a fresh network key (a new peer id) at every
    /// rendezvous period boundary (default on), so relays, rendezvous
    /// servers and DHT peers cannot link it across periods by peer id.
    pub fn rotate_network_key_each_period(mut self, rotate: bool) -> Self {
        self.rotate_key_each_period = rotate;
        self
    }

    /// Runs the `BleTransport` actor on `air` (BlueZ, or an in-process air
    /// in tests) with `timing`; BLE stays off until [`Node::set_ble`].
    #[must_use]
    pub fn ble(mut self, air: Arc<dyn veil_ble::air::Air>, timing: crate::ble::BleTiming) -> Self {
        self.ble = Some((air, timing));
        self
    }

    /// Starts the node: opens (or creates, with a fresh identity and no
    /// network needed) its store and starts every actor under supervision.
    pub async fn spawn(self) -> Result<Node> {
        let dir = self.data_dir.clone().ok_or(Error::Config("a data directory is required"))?;
        create_private_dir(&dir)?;
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("veil-node".into())
            .spawn(move || {
                let system = actix_rt::System::new();
                system.block_on(async move {
                    match start(self, dir).await {
                        Ok(inner) => {
                            let (store, network, points_clock) =
                                (inner.store.clone(), inner.network.clone(), inner.points_clock.clone());
                            let ble = inner.ble.as_ref().map(|(_, arbiter)| arbiter.clone());
                            if ready_tx.send(Ok(inner)).is_ok() {
                                let _ = stop_rx.await;
                            }
                            if let Some(arbiter) = ble {
                                arbiter.stop();
                            }
                            if let Err(e) = network.shutdown().await {
                                tracing::debug!(error = %e, "the network was already down");
                            }
                            if let Err(e) = points_clock.persist(&store).await {
                                tracing::warn!(error = %e, "keeping the announced periods failed");
                            }
                            // Every commit is already durable; closing
                            // checkpoints the WAL and releases the database
                            // for the next process. Actors still running
                            // get `Closed` until the system ends below.
                            if let Err(e) = store.close().await {
                                tracing::warn!(error = %e, "closing the store failed");
                            }
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                });
                drop(system);
                let _ = done_tx.send(());
            })
            .map_err(|e| Error::Runtime(e.to_string()))?;
        let inner = ready_rx.await.map_err(|_| Error::Runtime("the node thread ended during start".into()))??;
        Ok(Node { inner: Arc::new(inner), control: Arc::new(Mutex::new(Some((stop_tx, done_rx)))) })
    }
}

fn create_private_dir(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| Error::Storage(veil_storage::Error::Io { path: dir.to_owned(), source }))
}

/// Forwards rotation notices to the node's event channel.
struct EventBridge(broadcast::Sender<NodeEvent>);

impl Actor for EventBridge {
    type Context = Context<Self>;
}

impl Handler<PointsRotated> for EventBridge {
    type Result = ();

    fn handle(&mut self, msg: PointsRotated, _: &mut Self::Context) {
        let _ = self.0.send(NodeEvent::RendezvousRotated { key: msg.key, points: msg.points });
    }
}

struct Inner {
    arbiter: ArbiterHandle,
    store: Arc<Store>,
    vault: Addr<IdentityVault>,
    contacts: Addr<ContactBook>,
    rotator: Addr<RendezvousRotator>,
    courier: Addr<Courier>,
    replica: Addr<Replica>,
    registry: Addr<GroupRegistry>,
    transport: Addr<TransportManager>,
    network: NetworkHandle,
    events: broadcast::Sender<NodeEvent>,
    clock: Arc<dyn Clock>,
    exposure: ExposureSettings,
    join_timeout: Duration,
    /// Argon2id parameters for what the node seals under a passphrase.
    kdf: KdfParams,
    /// The time rendezvous points are computed for, kept at shutdown.
    points_clock: Arc<crate::point_clock::PointClock>,
    /// What the node refused from the network.
    refusals: Arc<crate::refusals::RefusalCounters>,
    /// The BLE actor and its arbiter, when the node has a radio.
    ble: Option<(Addr<crate::ble::BleTransport>, ArbiterHandle)>,
}

async fn start(builder: NodeBuilder, dir: PathBuf) -> Result<Inner> {
    let key = match builder.passphrase {
        Some(p) => KeySource::Passphrase(p),
        None => KeySource::KeyFile(dir.join("storage.key")),
    };
    let options = StoreOptions {
        tuning: builder.tuning,
        kdf: builder.kdf,
        clock: builder.clock.clone(),
        ..StoreOptions::default()
    };
    let store = Arc::new(Store::open_or_create(&dir.join("veil.db"), &key, options).await?);
    let (events, _) = broadcast::channel(EVENT_CAPACITY);
    let bridge = EventBridge(events.clone()).start();

    let vault = Supervisor::start({
        let store = store.clone();
        // The vault takes the store's key access: private keys come out of
        // the database for it only.
        let vault = IdentityVault::new(store)?;
        move |_| vault
    });
    // Make sure the identity exists before anything asks for it.
    vault.send(GetIdentity).await.map_err(mailbox("identity-vault"))??;

    let key = vault.send(RotateNetworkKey).await.map_err(mailbox("identity-vault"))??;
    let plugins = if builder.transports.is_empty() {
        vec![Arc::new(Tcp::new()) as Arc<dyn TransportPlugin>, Arc::new(Quic::new())]
    } else {
        builder.transports
    };
    let max_frame = builder.network.max_frame_size;
    let exposure = ExposureSettings::new(&builder.network, builder.rotate_key_each_period, builder.schedule);
    // Listening is part of the network's start: its first dials then leave
    // from the listening port (what peers observe is what hole punching uses).
    let mut network_config = builder.network;
    network_config.listen.extend(builder.listen);
    let (network, network_events) = Network::spawn(&key, builder.policy, plugins, network_config)?;
    let period = Supervisor::start({
        let deps = NetworkPeriodDeps {
            network: network.clone(),
            vault: vault.clone().recipient(),
            check_every: builder.rotation_check,
            rotate_key: builder.rotate_key_each_period,
        };
        move |_| NetworkPeriod::new(deps)
    });
    // One for the rotator and the contact book, outliving their restarts.
    let points_clock = Arc::new(crate::point_clock::PointClock::new(builder.clock.clone(), builder.schedule.period()));
    let refusals = Arc::new(crate::refusals::RefusalCounters::default());
    // What earlier runs announced stays announced (see `point_clock`).
    if let Some(record) = store.setting(crate::point_clock::SETTING).await?
        && let Err(why) = points_clock.restore(&record)
    {
        tracing::warn!(why, "the announced periods of earlier runs are unreadable; starting without them");
    }
    let rotator = Supervisor::start({
        let (store, clock, schedule, every) =
            (store.clone(), builder.clock.clone(), builder.schedule, builder.rotation_check);
        let (subscriber, period) = (bridge.recipient(), period.recipient());
        let new_peer_id = builder.rotate_key_each_period;
        let points_clock = points_clock.clone();
        move |_| {
            RendezvousRotator::new(store, clock, schedule, every, vec![subscriber.clone()])
                .with_period_subscriber(period.clone(), new_peer_id)
                .with_points_clock(points_clock.clone())
        }
    });

    // Announcements live for a period plus the grace window; every period
    // boundary re-announces.
    let ttl = Duration::from_secs(builder.schedule.period().saturating_add(builder.schedule.grace()));
    let registry = Supervisor::start(|_| GroupRegistry::default());
    let vault_port = VaultPort {
        identity: vault.clone().recipient(),
        begin: vault.clone().recipient(),
        continue_request: vault.clone().recipient(),
        answer: vault.clone().recipient(),
        read: vault.clone().recipient(),
        derive: vault.clone().recipient(),
        add_group: vault.clone().recipient(),
        remove_group: vault.clone().recipient(),
    };
    // The contact book starts 1:1 groups through the courier, and the
    // courier's group logs tell the contact book when the other side joined:
    // the courier is started inside the contact book's factory to wire both.
    // The replication role: frames naming no group of ours reach it
    // through the courier.
    let replica = Supervisor::start({
        let (store, network, events, rotator) = (store.clone(), network.clone(), events.clone(), rotator.clone());
        let budget = max_frame.saturating_sub(64);
        move |_| {
            Replica::new(ReplicaDeps {
                store: store.clone(),
                network: network.clone(),
                events: events.clone(),
                rotator: rotator.clone().recipient(),
                ttl,
                budget,
            })
        }
    });
    // The courier comes out of the contact book's factory (which
    // `Supervisor::start` runs before it returns) through a one-shot channel,
    // awaited, never blocking.
    let (courier_tx, courier_rx) = tokio::sync::oneshot::channel();
    let contacts = Supervisor::start({
        let (store, network, clock, events, registry, vault) =
            (store.clone(), network.clone(), builder.clock.clone(), events.clone(), registry.clone(), vault.clone());
        let rotator = rotator.clone();
        let (schedule, retry) = (builder.schedule, builder.retry);
        let fallback = replica.clone().recipient();
        let (points_clock, refusals) = (points_clock.clone(), refusals.clone());
        let share_delay = builder.share_delay;
        let timing = CourierTiming { tick: builder.sync_tick, resend_after: builder.resend_after, max_frame };
        move |ctx: &mut Context<ContactBook>| {
            let joined = ctx.address().recipient();
            let courier = Supervisor::start({
                let (store, network, clock, events) = (store.clone(), network.clone(), clock.clone(), events.clone());
                let (vault, rotator, fallback) = (vault.clone(), rotator.clone(), fallback.clone());
                let refusals = refusals.clone();
                move |cctx: &mut Context<Courier>| {
                    let group_log = GroupLogDeps {
                        store: store.clone(),
                        device: vault.clone().recipient(),
                        signer: vault.clone().recipient(),
                        sealer: vault.clone().recipient(),
                        member: vault.clone().recipient(),
                        announce: vault.clone().recipient(),
                        open_share: vault.clone().recipient(),
                        open_epoch: vault.clone().recipient(),
                        owed: cctx.address().recipient(),
                        joined,
                        events: events.clone(),
                        refusals: refusals.clone(),
                        share_delay,
                        resend_after: builder.resend_after,
                    };
                    let deps = CourierDeps {
                        store,
                        network,
                        clock,
                        timing,
                        ttl,
                        events,
                        group_log,
                        rotator: rotator.recipient(),
                        fallback: Some(fallback.clone()),
                        proximity: builder.policy.proximity(),
                    };
                    Courier::new(deps, registry.clone().recipient())
                }
            });
            let _ = courier_tx.send(courier.clone());
            ContactBook::new(ContactBookDeps {
                store,
                network,
                clock,
                schedule,
                points_clock: points_clock.clone(),
                ttl,
                retry,
                vault: vault_port,
                rotator: rotator.recipient(),
                groups: courier.clone().recipient(),
                stop_group: courier.recipient(),
                events,
                refusals: refusals.clone(),
            })
        }
    });
    let courier = courier_rx.await.map_err(|_| Error::Runtime("the courier did not start".into()))?;
    rotator.send(Subscribe(contacts.clone().recipient())).await.map_err(mailbox("rendezvous-rotator"))?;
    rotator.send(Subscribe(courier.clone().recipient())).await.map_err(mailbox("rendezvous-rotator"))?;
    rotator.send(Subscribe(replica.clone().recipient())).await.map_err(mailbox("rendezvous-rotator"))?;

    let ble = builder.ble.map(|(air, timing)| {
        crate::ble::start(crate::ble::BleDeps {
            air,
            network: network.clone(),
            clock: builder.clock.clone(),
            schedule: builder.schedule,
            timing,
            allowed: builder.policy.proximity(),
        })
    });
    let routes = NetworkRoutes {
        frames: courier.clone().recipient(),
        requests: contacts.clone().recipient(),
        lan: contacts.clone().recipient(),
        nearby: courier.clone().recipient(),
        left: courier.clone().recipient(),
        restarted: vec![courier.clone().recipient(), contacts.clone().recipient(), replica.clone().recipient()],
        links: ble.as_ref().map(|(ble, _)| ble.clone().recipient()),
    };
    let transport = TransportManager::start(network.clone(), network_events, builder.policy, events.clone(), routes);
    for group in store.groups().await? {
        courier.send(StartGroup { group: group.id }).await.map_err(mailbox("courier"))??;
    }
    Ok(Inner {
        arbiter: actix_rt::Arbiter::current(),
        store,
        vault,
        contacts,
        rotator,
        courier,
        replica,
        registry,
        transport,
        network,
        events,
        clock: builder.clock,
        exposure,
        join_timeout: builder.join_timeout,
        kdf: builder.kdf,
        points_clock,
        refusals,
        ble,
    })
}

/// What the exposure audit needs from the node's configuration.
struct ExposureSettings {
    rendezvous_servers: Vec<PeerId>,
    kad: bool,
    mdns: bool,
    rotating_peer_id: bool,
    period_secs: u64,
    serves_relay: bool,
    serves_rendezvous: bool,
}

impl ExposureSettings {
    fn new(config: &NetworkConfig, rotating: bool, schedule: Schedule) -> Self {
        Self {
            rendezvous_servers: config.rendezvous_servers.iter().filter_map(veil_transports::policy::peer_of).collect(),
            kad: config.kad || !config.bootstrap.is_empty(),
            mdns: config.mdns,
            rotating_peer_id: rotating,
            period_secs: schedule.period(),
            serves_relay: config.relay_server,
            serves_rendezvous: config.rendezvous_server,
        }
    }

    fn input(
        &self,
        policy: Policy,
        transports: Vec<veil_transports::TransportKind>,
        relays: &[KnownRelay],
    ) -> AuditInput {
        let relay_ids: Vec<PeerId> = relays.iter().filter_map(|r| veil_transports::policy::peer_of(&r.addr)).collect();
        AuditInput {
            policy,
            transports,
            relays: relays.len(),
            learned_relays: relays.iter().filter(|r| r.origin == RelayOrigin::Learned).count(),
            rendezvous_servers: self.rendezvous_servers.len(),
            rendezvous_servers_on_relays: self.rendezvous_servers.iter().filter(|p| relay_ids.contains(p)).count(),
            kad: self.kad,
            mdns: self.mdns,
            rotating_peer_id: self.rotating_peer_id,
            period_secs: self.period_secs,
            serves_relay: self.serves_relay,
            serves_rendezvous: self.serves_rendezvous,
        }
    }
}

impl Inner {
    /// The log of a group running here (asked of the group registry).
    async fn group(&self, group: &GroupId) -> Result<Addr<GroupLog>> {
        let log = self.registry.send(LogOf { group: *group }).await.map_err(mailbox("group-registry"))?;
        log.ok_or(Error::UnknownGroup)
    }
}

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
        let held = self.inner.group(&group).await?.send(AwaitAnnounced);
        match tokio::time::timeout(self.inner.join_timeout, held).await {
            Ok(held) => held.map_err(mailbox("group-log"))??,
            Err(_) => return Err(Error::JoinUnconfirmed),
        }
        Ok(group)
    }

    /// Appends a message to a group's log.
    pub async fn send(&self, group: &GroupId, payload: &[u8]) -> Result<EntryHash> {
        let log = self.inner.group(group).await?;
        log.send(AppendMessage { payload: payload.to_vec() }).await.map_err(mailbox("group-log"))?
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
        Ok(names.into_iter().collect())
    }

    /// The groups this node runs a log for.
    pub async fn groups(&self) -> Result<Vec<GroupId>> {
        self.inner.registry.send(Running).await.map_err(mailbox("group-registry"))
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
            ActorKind::BleTransport => {
                let (ble, _) = self.inner.ble.as_ref().ok_or(Error::Config("this node has no BLE radio"))?;
                ble.send(InjectPanic).await.map_err(m)?
            }
        }
    }
}
