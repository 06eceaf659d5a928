//! Configuring a node before it starts ([`NodeBuilder`]).

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::oneshot;
use veil_crypto::{
    rendezvous::Schedule,
    time::{Clock, SystemClock},
};
use veil_storage::{Tuning, keystore::KdfParams};
use zeroize::Zeroizing;

use veil_transports::{NetworkConfig, Policy, TransportPlugin, libp2p::Multiaddr};

use super::{Node, start::start};
use crate::{
    Error, Result, RetryPolicy,
    time::{Time, TokioTimers},
};

/// Configures and starts a [`Node`].
pub struct NodeBuilder {
    pub(super) data_dir: Option<PathBuf>,
    pub(super) passphrase: Option<Zeroizing<String>>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) timers: Time,
    pub(super) schedule: Schedule,
    pub(super) rotation_check: Duration,
    pub(super) kdf: KdfParams,
    pub(super) tuning: Tuning,
    pub(super) policy: Policy,
    pub(super) transports: Vec<Arc<dyn TransportPlugin>>,
    pub(super) listen: Vec<Multiaddr>,
    pub(super) network: NetworkConfig,
    pub(super) retry: RetryPolicy,
    pub(super) sync_tick: Duration,
    pub(super) resend_after: Duration,
    pub(super) share_delay: Duration,
    pub(super) join_timeout: Duration,
    pub(super) rotate_key_each_period: bool,
    pub(super) ble: Option<(Arc<dyn veil_ble::air::Air>, crate::ble::BleTiming)>,
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
            timers: Arc::new(TokioTimers),
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

    /// Where the actors read the monotonic time and sleep: every timer,
    /// interval, backoff and deadline they keep (tests inject a
    /// [`SteppedTime`](crate::time::SteppedTime), and often give it to
    /// [`NodeBuilder::clock`] too, so one step moves both).
    pub fn timers(mut self, timers: Time) -> Self {
        self.timers = timers;
        self
    }

    /// The rendezvous period and grace window (default 24 h and 10 min); nodes that should meet need the same.
    pub fn rendezvous_schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = schedule;
        self
    }

    /// How often the rotator looks at the clock (default 1 s); a period start is noticed up to this late.
    pub fn rotation_check_interval(mut self, every: Duration) -> Self {
        self.rotation_check = every;
        self
    }

    /// Argon2id parameters for a new passphrase-protected store.
    pub fn kdf(mut self, params: KdfParams) -> Self {
        self.kdf = params;
        self
    }

    /// Page caches, checkpoint interval and commit durability of the store (default: commits survive a power loss).
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
