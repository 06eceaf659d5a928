//! The plug-in example of docs/TRANSPORTS.md, compiled and run: a byte-stream
//! transport becomes a veil transport through `authenticate_and_multiplex`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use veil_testkit::network::*;
use veil_transports::libp2p::Multiaddr;
use veil_transports::libp2p::core::transport::MemoryTransport;
use veil_transports::libp2p::identity::Keypair;
use veil_transports::libp2p::multiaddr::Protocol;
use veil_transports::{
    BoxedTransport, DialFailure, Error, Policy, Tcp, TransportId, TransportKind, TransportPlugin,
    authenticate_and_multiplex,
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

/// A failed dial says why in the transport's own words (libp2p's wrapper
/// displays nothing for them), and names no address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_dial_says_what_the_transport_said() {
    let a = spawn(Policy::Offline, vec![Arc::new(FakeBle)]);
    let b = spawn(Policy::Offline, vec![]);
    let nobody = ma("/memory/4099").with(Protocol::P2p(b.peer));
    let Err(Error::Dial(DialFailure::Unreachable(why))) = a.handle.dial(nobody).await else {
        panic!("a dial to a port nobody listens on fails as unreachable");
    };
    assert!(why.to_lowercase().contains("no listener"), "{why:?}");
    assert!(!why.contains("4099"), "{why:?}");
}
