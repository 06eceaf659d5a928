//! # veil-tor
//!
//! Tor as a veil transport plug-in, built on [arti](https://gitlab.torproject.org/tpo/core/arti),
//! the Rust implementation of Tor. A node that attaches it can dial
//! `/onion3/<address>:<port>` multiaddrs and listen as a v3 onion service;
//! Noise and yamux run on top, so everything above (identify, the frame
//! streams, contact requests, rendezvous) works unchanged. Its kind is
//! [`TransportKind::Mixnet`], the only kind the `anonymous` policy allows.
//!
//! * **One onion service per network key.** The service's identity is
//!   derived from the node's network key (HKDF, domain
//!   `veil/v1/onion-service`), so it rotates with the peer id — every
//!   rendezvous period and every policy change — and nothing new has to be
//!   stored: the network key is sealed in the node's store. arti keeps the
//!   identity in an in-memory keystore, never on disk.
//! * **Listening**: listen on [`addr::any`] (`/onion3/<all zero>:<port>`);
//!   the transport launches the service and reports its real address once
//!   the descriptor is published (the moment it can be reached), so
//!   rendezvous announcements, which wait for an address, never name an
//!   unreachable service.
//! * **No network is not a crash**: the client bootstraps in the background
//!   and retries with back-off; [`Tor::status`] says how far it got.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use veil_tor::{Tor, TorConfig};
//!
//! // Public Tor network, arti's caches under ~/.local/share/veil/tor.
//! let tor = Tor::start(TorConfig::new("/home/me/.local/share/veil/tor"))?;
//! println!("{}", tor.status().bootstrap);
//! // network.attach(Arc::new(tor.clone())).await?;
//! // network.listen(veil_tor::addr::any(veil_tor::addr::DEFAULT_PORT)).await?;
//! # let _ = Arc::new(tor);
//! # Ok(()) }
//! ```
//!
//! Tests run it on a private Tor network on loopback (`testnet`, behind the
//! `testnet` feature): see docs/TRANSPORTS.md.

pub mod addr;
mod config;
mod error;
mod status;
#[cfg(feature = "testnet")]
pub mod testnet;
mod transport;

use std::sync::Arc;
use std::time::Duration;

use arti_client::TorClient;
use futures::StreamExt;
use libp2p::Multiaddr;
use libp2p::identity::Keypair;
use tokio::sync::watch;
use tor_rtcompat::PreferredRuntime;
use veil_transports::{BoxedTransport, TransportId, TransportKind, TransportPlugin, authenticate_and_multiplex};

pub use config::{DEFAULT_BOOTSTRAP_TIMEOUT, Fallback, PrivateNetwork, TorConfig};
pub use error::{Error, Result};
pub use status::{Bootstrap, ServiceState, TorStatus};

use status::StatusCell;
use transport::TorTransport;

/// The first wait after a failed bootstrap; doubled after each failure.
const FIRST_RETRY: Duration = Duration::from_secs(5);
/// The longest wait between bootstrap attempts.
const MAX_RETRY: Duration = Duration::from_secs(300);

/// The Tor transport plug-in (id `tor`, kind mixnet). Cheap to clone: the
/// clones share one arti client and its status.
#[derive(Clone)]
pub struct Tor {
    inner: Arc<Inner>,
}

struct Inner {
    client: Arc<TorClient<PreferredRuntime>>,
    config: TorConfig,
    status: StatusCell,
    bootstrap: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.bootstrap.abort();
    }
}

impl std::fmt::Debug for Tor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tor").field("port", &self.inner.config.port).field("status", &self.status()).finish()
    }
}

impl Tor {
    /// Creates the arti client and starts bootstrapping it in the
    /// background (on the current tokio runtime, which must exist).
    pub fn start(config: TorConfig) -> Result<Self> {
        let runtime = PreferredRuntime::current().map_err(|e| Error::Config(format!("no tokio runtime: {e}")))?;
        let client = TorClient::with_runtime(runtime)
            .config(config.arti()?)
            .create_unbootstrapped()
            .map_err(|e| Error::Config(e.to_string()))?;
        let status = StatusCell::new();
        let bootstrap = tokio::spawn(bootstrap(Arc::clone(&client), status.clone(), config.bootstrap_timeout));
        Ok(Self { inner: Arc::new(Inner { client, config, status, bootstrap }) })
    }

    /// A snapshot of the status now: bootstrap progress and the onion service's state.
    pub fn status(&self) -> TorStatus {
        self.inner.status.get()
    }

    /// A receiver of the status; a watch channel keeps only the latest value, so quick changes may be missed.
    pub fn subscribe(&self) -> watch::Receiver<TorStatus> {
        self.inner.status.subscribe()
    }

    /// Waits until `check` holds for the status, at most `limit`.
    pub async fn wait_for(&self, limit: Duration, check: impl Fn(&TorStatus) -> bool) -> Option<TorStatus> {
        let mut rx = self.subscribe();
        let found = tokio::time::timeout(limit, rx.wait_for(|s| check(s))).await.ok()?.ok()?.clone();
        Some(found)
    }

    /// The address to listen on for this plug-in's onion service.
    pub fn listen_addr(&self) -> Multiaddr {
        addr::any(self.inner.config.port)
    }
}

impl TransportPlugin for Tor {
    fn id(&self) -> TransportId {
        TransportId::from_static("tor")
    }

    fn kind(&self) -> TransportKind {
        TransportKind::Mixnet
    }

    fn handles(&self, addr: &Multiaddr) -> bool {
        addr::is_onion(addr)
    }

    fn build(&self, keypair: &Keypair) -> std::result::Result<BoxedTransport, veil_transports::Error> {
        let tor = TorTransport::new(Arc::clone(&self.inner.client), keypair, self.inner.status.clone());
        authenticate_and_multiplex(tor, keypair)
            .map_err(|e| veil_transports::Error::Build { id: self.id(), reason: e.to_string() })
    }
}

/// Bootstraps `client`, retrying with back-off until it succeeds, and keeps
/// `status` current meanwhile.
async fn bootstrap(client: Arc<TorClient<PreferredRuntime>>, status: StatusCell, limit: Duration) {
    let mut events = client.bootstrap_events();
    let progress = {
        let status = status.clone();
        async move {
            while let Some(event) = events.next().await {
                let percent = (event.as_frac().clamp(0.0, 1.0) * 100.0) as u8;
                status.set_progress(percent, event.blocked().map(|b| b.to_string()));
            }
        }
    };
    let attempts = async {
        let (mut attempts, mut wait) = (0u32, FIRST_RETRY);
        loop {
            let attempt = tokio::time::timeout(limit, client.bootstrap()).await;
            let failure = match attempt {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no headway in {}s ({})", limit.as_secs(), client.bootstrap_status())),
            };
            match failure {
                None => {
                    status.set_bootstrap(Bootstrap::Ready);
                    tracing::info!("tor: bootstrapped");
                    return;
                }
                Some(e) => {
                    attempts = attempts.saturating_add(1);
                    tracing::warn!(error = %e, attempts, "tor: bootstrap failed, retrying");
                    status.set_bootstrap(Bootstrap::Retrying { error: e, attempts, retry_in: wait });
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_RETRY);
                }
            }
        }
    };
    // Progress events stop mattering once bootstrapped.
    tokio::select! {
        () = attempts => {}
        () = progress => {}
    }
}
