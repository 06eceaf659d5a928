//! A loopback TCP proxy for one connection.

use std::sync::Arc;

/// A loopback TCP proxy to a target, for one connection: it records what
/// its client sends, and can be frozen (nothing passes either way, nothing
/// is closed: a partition, as the two ends see it).
#[derive(Debug)]
pub struct Proxy {
    /// Where the proxy listens.
    pub addr: std::net::SocketAddr,
    recording: Arc<std::sync::Mutex<Vec<u8>>>,
    frozen: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    /// A proxy to `target`, listening on a free loopback port.
    pub async fn to(target: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let recording = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (frozen, _) = tokio::sync::watch::channel(false);
        let (kept, to_server, to_client) = (recording.clone(), frozen.subscribe(), frozen.subscribe());
        tokio::spawn(async move {
            let (client, _) = listener.accept().await.unwrap();
            let server = tokio::net::TcpStream::connect(target).await.unwrap();
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::spawn(pipe(server_read, client_write, to_client, None));
            pipe(client_read, server_write, to_server, Some(kept)).await;
        });
        Self { addr, recording, frozen }
    }

    /// What the client sent so far.
    pub fn recorded(&self) -> Vec<u8> {
        self.recording.lock().unwrap().clone()
    }

    /// Stops (`true`) or lets through again (`false`) what passes either way.
    pub fn freeze(&self, frozen: bool) {
        self.frozen.send_replace(frozen);
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: tokio::sync::watch::Receiver<bool>,
    record: Option<Arc<std::sync::Mutex<Vec<u8>>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if frozen.wait_for(|f| !f).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Bytes read just as the proxy froze wait for the thaw too.
        if frozen.wait_for(|f| !f).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        if let Some(record) = &record {
            record.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    }
}
