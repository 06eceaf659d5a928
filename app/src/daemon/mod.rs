//! The daemon: a [`Node`] run from a home directory, serving the daemon API
//! on the home's Unix socket.

mod ble;
mod service;
mod tor;

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, Result, anyhow};
use tokio::{net::UnixListener, sync::watch, task::JoinHandle};
use tokio_stream::wrappers::UnixListenerStream;
use veil_actors::{Node, RetryPolicy};

use crate::{
    api::{DaemonServer, MAX_DECODE},
    config::{self, Settings},
};
pub(crate) use service::node_error;
use tor::TorSlot;

/// How long a join may wait for its confirmation when Tor carries it.
const TOR_JOIN_TIMEOUT: Duration = Duration::from_secs(180);

/// How long a stopping daemon waits for open API calls to finish.
const DRAIN: Duration = Duration::from_secs(5);

/// A running daemon: its node and the API server on `<home>/veil.sock`.
#[derive(Debug)]
pub struct Daemon {
    node: Node,
    home: PathBuf,
    socket: PathBuf,
    stop: watch::Sender<bool>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
}

/// Starts the node of `home` (creating the home, its identity and its
/// `veil.toml` on first use; no network is needed) with `settings`.
///
/// A second node on the same home is refused: the store holds a lock.
pub async fn start_node(home: &Path, settings: &Settings) -> Result<Node> {
    config::create_home(home)?;
    config::write_default_config(home)?;
    let mut builder = Node::builder()
        .data_dir(home)
        .policy(settings.policy)
        .network_config(settings.network_config())
        .rotate_network_key_each_period(settings.rotate_peer_id);
    for addr in &settings.listen {
        builder = builder.listen(addr.clone());
    }
    builder = ble::with_radio(builder, &settings.ble);
    if settings.tor.enabled {
        // A join waits for another node to hold the newcomer's announcement;
        // over Tor that is a new circuit or two, which can take a while.
        builder = builder.join_timeout(TOR_JOIN_TIMEOUT);
    }
    if let Some(every) = settings.sync_interval {
        builder = builder.sync_interval(every);
    }
    if let Some(base) = settings.contact_retry {
        builder = builder.contact_retry(RetryPolicy { base, max: base.saturating_mul(64).max(base) });
    }
    if let Ok(passphrase) = std::env::var("VEIL_PASSPHRASE") {
        builder = builder.passphrase(passphrase);
    }
    let node = builder.spawn().await.map_err(|e| match e {
        veil_actors::Error::Storage(veil_actors::storage::Error::Locked { .. }) => {
            anyhow!("another veil process is already running on {} (its database is locked)", home.display())
        }
        other => anyhow::Error::new(other).context(format!("cannot start the node in {}", home.display())),
    })?;
    if settings.ble.enabled {
        // Comes up whenever the radio is ready.
        node.set_ble(true).await.context("enabling BLE")?;
    }
    // The configured name introduces this account in requests and acceptances.
    if let Some(name) = &settings.name {
        node.set_display_name(Some(name)).await.context("the configured name")?;
    }
    Ok(node)
}

impl Daemon {
    /// Starts a daemon on `home` (see [`start_node`]) and serves its API.
    pub async fn start(home: &Path, settings: Settings) -> Result<Self> {
        let node = start_node(home, &settings).await?;
        match Self::serve(node.clone(), home, settings).await {
            Ok(d) => Ok(d),
            Err(e) => {
                if let Err(stop) = node.shutdown().await {
                    tracing::warn!(error = %stop, "stopping the node after a failed start");
                }
                Err(e)
            }
        }
    }

    /// Serves the API of an already running `node` on `<home>/veil.sock`.
    /// The caller must hold `home`'s database (it does when `node` runs
    /// from it), so a socket left there is stale and is replaced.
    pub async fn serve(node: Node, home: &Path, settings: Settings) -> Result<Self> {
        let socket = config::socket_path(home);
        match std::fs::remove_file(&socket) {
            Ok(()) => tracing::info!(socket = %socket.display(), "removed a stale socket"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove the stale socket {}", socket.display())),
        }
        let listener = UnixListener::bind(&socket).with_context(|| format!("cannot listen on {}", socket.display()))?;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {}", socket.display()))?;
        let (stop, stopped) = watch::channel(false);
        let tor = Arc::new(TorSlot::new(home.to_owned(), settings.tor.clone()));
        if settings.tor.enabled {
            tor.attach(&node).await.map_err(|e| anyhow!("cannot attach Tor: {}", e.message()))?;
        }
        let service = service::Service::new(node.clone(), settings, stop.clone(), tor);
        let api =
            DaemonServer::new(service).max_decoding_message_size(MAX_DECODE).max_encoding_message_size(MAX_DECODE);
        let mut until = stopped;
        let server = tokio::spawn(tonic::transport::Server::builder().add_service(api).serve_with_incoming_shutdown(
            UnixListenerStream::new(listener),
            async move {
                let _ = until.wait_for(|s| *s).await;
            },
        ));
        tracing::info!(socket = %socket.display(), "daemon API listening");
        Ok(Self { node, home: home.to_owned(), socket, stop, server })
    }

    /// The node the API drives; it stops with the daemon.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The Unix socket the API listens on (`<home>/veil.sock`); removed at shutdown.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The home directory: everything the node owns, its `veil.toml` and the API socket live there.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Resolves when a client asked the daemon to stop (the `Shutdown` call).
    pub async fn stop_requested(&self) {
        let mut rx = self.stop.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Stops serving (open event streams end), stops the node and removes
    /// the socket.
    pub async fn shutdown(self) -> Result<()> {
        self.stop.send_replace(true);
        match tokio::time::timeout(DRAIN, self.server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the API server failed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "the API server task failed"),
            Err(_) => tracing::warn!("API calls still open after {DRAIN:?}; stopping anyway"),
        }
        let _ = std::fs::remove_file(&self.socket);
        self.node.shutdown().await.context("stopping the node")?;
        Ok(())
    }
}
