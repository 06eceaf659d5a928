//! Starting a node: its store, its actors and how they are wired.

use std::{path::PathBuf, sync::Arc, time::Duration};

use actix::{Actor, Addr, AsyncContext, Context, Handler, Supervisor};
use actix_rt::ArbiterHandle;
use tokio::sync::broadcast;
use veil_crypto::{GroupId, rendezvous::Schedule, time::Clock};
use veil_storage::{
    Store, StoreOptions,
    keystore::{KdfParams, KeySource},
};

use veil_transports::{
    KnownRelay, Network, NetworkConfig, NetworkHandle, Policy, Quic, RelayOrigin, Tcp, TransportPlugin, libp2p::PeerId,
};

use super::builder::NodeBuilder;
use crate::account_sync::{AccountSync, AccountSyncDeps};
use crate::device_link::{DeviceLinkerDeps, OfferVault};
use crate::time::Time;
use crate::{
    ContactBook, ContactBookDeps, Courier, CourierDeps, CourierTiming, DeviceLinker, Error, GroupLog, GroupLogDeps,
    IdentityVault, NodeEvent, RendezvousRotator, Result, TransportManager, VaultPort,
    audit::AuditInput,
    messages::{
        courier::StartGroup,
        registry::LogOf,
        rendezvous::{PointsRotated, Subscribe},
        vault::{GetAccountGroupSecret, GetIdentity, RotateNetworkKey},
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

pub(super) struct Inner {
    pub(super) arbiter: ArbiterHandle,
    pub(super) store: Arc<Store>,
    pub(super) vault: Addr<IdentityVault>,
    pub(super) contacts: Addr<ContactBook>,
    pub(super) rotator: Addr<RendezvousRotator>,
    pub(super) courier: Addr<Courier>,
    pub(super) replica: Addr<Replica>,
    /// For fault injection (it has no facade method).
    #[cfg(feature = "fault-injection")]
    pub(super) period: Addr<NetworkPeriod>,
    pub(super) registry: Addr<GroupRegistry>,
    pub(super) transport: Addr<TransportManager>,
    pub(super) linker: Addr<DeviceLinker>,
    pub(super) account_sync: Addr<AccountSync>,
    /// The account's own group (see `account_sync`), hidden from conversations.
    pub(super) account_group: GroupId,
    pub(super) network: NetworkHandle,
    pub(super) events: broadcast::Sender<NodeEvent>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) exposure: ExposureSettings,
    pub(super) join_timeout: Duration,
    /// Where the facade's deadlines read the time.
    pub(super) time: Time,
    /// Argon2id parameters for what the node seals under a passphrase.
    pub(super) kdf: KdfParams,
    /// The time rendezvous points are computed for, kept at shutdown.
    pub(super) points_clock: Arc<crate::point_clock::PointClock>,
    /// What the node refused from the network.
    pub(super) refusals: Arc<crate::refusals::RefusalCounters>,
    /// The BLE actor and its arbiter, when the node has a radio.
    pub(super) ble: Option<(Addr<crate::ble::BleTransport>, ArbiterHandle)>,
}

pub(super) async fn start(builder: NodeBuilder, dir: PathBuf) -> Result<Inner> {
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
        let vault = IdentityVault::new(store)?.with_time(builder.timers.clone()).with_copy_dir(dir.clone());
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
            time: builder.timers.clone(),
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
        let (subscriber, period) = (bridge.recipient(), period.clone().recipient());
        let new_peer_id = builder.rotate_key_each_period;
        let points_clock = points_clock.clone();
        let time = builder.timers.clone();
        move |_| {
            RendezvousRotator::new(store, clock, schedule, every, vec![subscriber.clone()])
                .with_period_subscriber(period.clone(), new_peer_id)
                .with_points_clock(points_clock.clone())
                .with_time(time.clone())
        }
    });

    // Announcements live for a period plus the grace window; every period
    // boundary re-announces.
    let ttl = Duration::from_secs(builder.schedule.period().saturating_add(builder.schedule.grace()));
    let registry = Supervisor::start(|_| GroupRegistry::default());
    // Another device of the account removed this one: its group logs drop
    // what they cannot read rather than wait for it.
    let removed = store.devices().await?.iter().any(|d| d.is_this_device && d.removed_at.is_some());
    let this_device_removed = Arc::new(std::sync::atomic::AtomicBool::new(removed));
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
        let time = builder.timers.clone();
        move |_| {
            Replica::new(ReplicaDeps {
                store: store.clone(),
                network: network.clone(),
                events: events.clone(),
                rotator: rotator.clone().recipient(),
                ttl,
                budget,
                time: time.clone(),
            })
        }
    });
    // Device linking: the linker answers its frames, which reach the
    // contact book first (they share the contact protocol).
    let linker = Supervisor::start({
        let (network, clock, events, rotator, vault) =
            (network.clone(), builder.clock.clone(), events.clone(), rotator.clone(), vault.clone());
        let refusals = refusals.clone();
        let time = builder.timers.clone();
        move |_| {
            DeviceLinker::new(DeviceLinkerDeps {
                vault: OfferVault {
                    create: vault.clone().recipient(),
                    hello: vault.clone().recipient(),
                    confirm: vault.clone().recipient(),
                    message: vault.clone().recipient(),
                    drop: vault.clone().recipient(),
                },
                network: network.clone(),
                points: rotator.clone().recipient(),
                clock: clock.clone(),
                events: events.clone(),
                refusals: refusals.clone(),
                time: time.clone(),
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
        let retry = builder.retry;
        let fallback = replica.clone().recipient();
        let refusals = refusals.clone();
        let share_delay = builder.share_delay;
        let time = builder.timers.clone();
        let devices = linker.clone().recipient();
        let timing = CourierTiming { tick: builder.sync_tick, resend_after: builder.resend_after, max_frame };
        let this_device_removed = this_device_removed.clone();
        move |ctx: &mut Context<ContactBook>| {
            let joined = ctx.address().recipient();
            let courier = Supervisor::start({
                let (store, network, clock, events) = (store.clone(), network.clone(), clock.clone(), events.clone());
                let (vault, rotator, fallback) = (vault.clone(), rotator.clone(), fallback.clone());
                let refusals = refusals.clone();
                let time = time.clone();
                let this_device_removed = this_device_removed.clone();
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
                        time: time.clone(),
                        this_device_removed: this_device_removed.clone(),
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
                        time: time.clone(),
                    };
                    Courier::new(deps, registry.clone().recipient())
                }
            });
            let _ = courier_tx.send(courier.clone());
            ContactBook::new(ContactBookDeps {
                store,
                network,
                clock,
                ttl,
                retry,
                vault: vault_port,
                rotator: rotator.clone().recipient(),
                points: rotator.recipient(),
                groups: courier.clone().recipient(),
                stop_group: courier.recipient(),
                events,
                refusals: refusals.clone(),
                time: time.clone(),
                devices: devices.clone(),
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
            time: builder.timers.clone(),
        })
    });
    let routes = NetworkRoutes {
        frames: courier.clone().recipient(),
        requests: contacts.clone().recipient(),
        lan: contacts.clone().recipient(),
        nearby: courier.clone().recipient(),
        left: courier.clone().recipient(),
        restarted: vec![
            courier.clone().recipient(),
            contacts.clone().recipient(),
            replica.clone().recipient(),
            linker.clone().recipient(),
        ],
        connections: ble.as_ref().map(|(ble, _)| ble.clone().recipient()),
    };
    let transport = TransportManager::start(network.clone(), network_events, builder.policy, events.clone(), routes);
    // The account's own group: where this account's devices keep each
    // other in step (it exists once a device was linked).
    let secret = vault.send(GetAccountGroupSecret).await.map_err(mailbox("identity-vault"))??;
    let account_group = veil_crypto::GroupKeys::derive(&secret).id;
    let account_sync = Supervisor::start({
        let (store, events, registry, contacts, vault, courier) =
            (store.clone(), events.clone(), registry.clone(), contacts.clone(), vault.clone(), courier.clone());
        let time = builder.timers.clone();
        let this_device_removed = this_device_removed.clone();
        move |_| {
            AccountSync::new(AccountSyncDeps {
                store: store.clone(),
                group: account_group,
                logs: registry.clone().recipient(),
                apply_contact: contacts.clone().recipient(),
                adopt_link: contacts.clone().recipient(),
                add_group: vault.clone().recipient(),
                device: vault.clone().recipient(),
                record_device: vault.clone().recipient(),
                start_group: courier.clone().recipient(),
                events: events.clone(),
                time: time.clone(),
                this_device_removed: this_device_removed.clone(),
            })
        }
    });
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
        #[cfg(feature = "fault-injection")]
        period,
        registry,
        transport,
        linker,
        account_sync,
        account_group,
        network,
        events,
        clock: builder.clock,
        exposure,
        join_timeout: builder.join_timeout,
        time: builder.timers.clone(),
        kdf: builder.kdf,
        points_clock,
        refusals,
        ble,
    })
}

/// What the exposure audit needs from the node's configuration.
pub(super) struct ExposureSettings {
    pub(super) rendezvous_servers: Vec<PeerId>,
    pub(super) kad: bool,
    pub(super) mdns: bool,
    pub(super) rotating_peer_id: bool,
    pub(super) period_secs: u64,
    pub(super) serves_relay: bool,
    pub(super) serves_rendezvous: bool,
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

    pub(super) fn input(
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
    pub(super) async fn group(&self, group: &GroupId) -> Result<Addr<GroupLog>> {
        let log = self.registry.send(LogOf { group: *group }).await.map_err(mailbox("group-registry"))?;
        log.ok_or(Error::UnknownGroup)
    }
}
