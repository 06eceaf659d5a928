//! The plug-in example of docs/TRANSPORTS.md, compiled and run: a byte-stream
//! transport becomes a veil transport through `authenticate_and_multiplex`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use veil_transports::libp2p::Multiaddr;
use veil_transports::libp2p::core::transport::MemoryTransport;
use veil_transports::libp2p::identity::Keypair;
use veil_transports::libp2p::multiaddr::Protocol;
use veil_transports::{
    BoxedTransport, Error, Policy, Tcp, TransportId, TransportKind, TransportPlugin, authenticate_and_multiplex,
};

struct FakeBle;

impl TransportPlugin for FakeBle {
    fn id(&self) -> TransportId {
        TransportId::from_static("ble")
    }
    fn kind(&self) -> TransportKind {
        TransportKind::Proximity
    }
    fn handles(&self, addr: &Multiaddr) -> bool {
        matches!(addr.iter().next(), Some(Protocol::Memory(_)))
    }
    fn build(&self, keypair: &Keypair) -> Result<BoxedTransport, Error> {
        authenticate_and_multiplex(MemoryTransport::default(), keypair)
            .map_err(|e| Error::Build { id: self.id(), reason: e.to_string() })
    }
}

/// Offline nodes talk over the proximity stand-in, attached at run time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_stream_plugin_carries_frames_offline() {
    let mut a = spawn(Policy::Offline, vec![Arc::new(Tcp::new())]);
    let mut b = spawn(Policy::Offline, vec![]);
    assert!(matches!(b.handle.listen(ma("/memory/0")).await, Err(Error::NoTransport { .. })));
    b.handle.attach(Arc::new(FakeBle)).await.unwrap();
    a.handle.attach(Arc::new(FakeBle)).await.unwrap();
    let addr = b.handle.listen(ma("/memory/0")).await.unwrap();
    a.handle.dial(addr).await.unwrap();
    assert_eq!(wait_connected(&mut a.events, b.peer).await.as_str(), "ble");
    a.handle.send_frame(b.peer, b"nearby".to_vec()).await.unwrap();
    assert_eq!(recv_frames(&mut b.events, 1).await[0], (a.peer, b"nearby".to_vec()));

    // The same plug-in is refused under Anonymous (proximity reveals presence).
    a.handle.set_policy(Policy::Anonymous).await.unwrap();
    wait_disconnected(&mut a.events, b.peer).await;
    let addr = b.handle.listen_addrs().await.unwrap().remove(0);
    assert!(matches!(a.handle.dial(addr).await, Err(Error::PolicyForbids { policy: Policy::Anonymous, .. })));
}
