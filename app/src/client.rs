//! Connecting to a running daemon over its Unix socket.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::api::{DaemonClient, MAX_DECODE};

/// A gRPC client of the daemon API over its Unix socket (see `connect`).
pub type Client = DaemonClient<Channel>;

/// No daemon answers at the home's socket.
#[derive(Debug, thiserror::Error)]
#[error("no veil daemon is running for this home (nothing answers at {}); start one with `veil daemon`", socket.display())]
pub struct NoDaemon {
    /// The socket path: it did not exist, or nothing accepted a connection there.
    pub socket: PathBuf,
}

/// Connects to the daemon listening at `socket` (`<home>/veil.sock`).
///
/// Fails with [`NoDaemon`] (inside the `anyhow::Error`) when nothing listens there.
pub async fn connect(socket: &Path) -> anyhow::Result<Client> {
    if !socket.exists() {
        return Err(NoDaemon { socket: socket.to_owned() }.into());
    }
    let path = socket.to_owned();
    // The URI is required by the API but unused: the connector below
    // always opens the Unix socket.
    let channel = Endpoint::from_static("http://veil.sock")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .map_err(|_| NoDaemon { socket: socket.to_owned() })?;
    Ok(DaemonClient::new(channel).max_decoding_message_size(MAX_DECODE).max_encoding_message_size(MAX_DECODE))
}
