//! Junk on every protocol a node serves (issue 20), below what the network
//! API can send: a bare libp2p swarm opens streams on `/veil/frame/2`,
//! `/veil/contact/1`, rendezvous, the relay's hop protocol and identify
//! (push) of a node serving as rendezvous server and relay, and writes
//! length prefixes far over every limit, truncated messages and random
//! bytes. The node reads none of it past its limits, stays up, and still
//! carries a genuine peer's frames.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{AsyncWriteExt, FutureExt, StreamExt};
use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::{DeniedUpgrade, ReadyUpgrade};
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::handler::{ConnectionEvent, FullyNegotiatedOutbound};
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm, NetworkBehaviour,
    NotifyHandler, StreamProtocol, SubstreamProtocol, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{PeerId, noise, tcp, yamux};
use veil_testkit::network::*;
use veil_transports::{Policy, Tcp};

/// The protocols a node serving rendezvous and relay answers to anyone.
const PROTOCOLS: [&str; 6] = [
    "/veil/frame/2",
    "/veil/contact/1",
    "/rendezvous/1.0.0",
    "/libp2p/circuit/relay/0.2.0/hop",
    "/ipfs/id/1.0.0",
    "/ipfs/id/push/1.0.0",
];
/// Junk streams per protocol.
const PER_PROTOCOL: usize = 500;

/// The `i`th junk message: a length prefix over every limit (4-byte and
/// varint), a prefix promising more than follows, or random bytes.
fn junk(i: usize) -> Vec<u8> {
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut random = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    match i % 4 {
        0 => vec![0xff; 4],
        1 => {
            let mut m = vec![0xff, 0xff, 0xff, 0xff, 0x0f];
            m.extend(random(64));
            m
        }
        2 => {
            let mut m = 1000u32.to_be_bytes().to_vec();
            m.extend(random(10));
            m
        }
        _ => random(1 + i % 700),
    }
}

/// Opens a stream on a protocol, writes bytes and closes it.
#[derive(Default)]
struct Junk {
    queue: VecDeque<(PeerId, StreamProtocol, Vec<u8>)>,
    waker: Option<Waker>,
    written: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
}

impl NetworkBehaviour for Junk {
    type ConnectionHandler = JunkHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(JunkHandler::new(self))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(JunkHandler::new(self))
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(&mut self, _: PeerId, _: ConnectionId, event: THandlerOutEvent<Self>) {
        match event {}
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Infallible, THandlerInEvent<Self>>> {
        if let Some((peer_id, protocol, bytes)) = self.queue.pop_front() {
            return Poll::Ready(ToSwarm::NotifyHandler {
                peer_id,
                handler: NotifyHandler::Any,
                event: (protocol, bytes),
            });
        }
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

struct JunkHandler {
    to_open: VecDeque<(StreamProtocol, Vec<u8>)>,
    writing: FuturesUnordered<BoxFuture<'static, ()>>,
    written: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
}

impl JunkHandler {
    fn new(behaviour: &Junk) -> Self {
        Self {
            to_open: VecDeque::new(),
            writing: FuturesUnordered::new(),
            written: behaviour.written.clone(),
            refused: behaviour.refused.clone(),
        }
    }
}

impl ConnectionHandler for JunkHandler {
    type FromBehaviour = (StreamProtocol, Vec<u8>);
    type ToBehaviour = Infallible;
    type InboundProtocol = DeniedUpgrade;
    type OutboundProtocol = ReadyUpgrade<StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = Vec<u8>;

    fn listen_protocol(&self) -> SubstreamProtocol<DeniedUpgrade> {
        SubstreamProtocol::new(DeniedUpgrade, ())
    }

    fn connection_keep_alive(&self) -> bool {
        true
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, Vec<u8>, Self::ToBehaviour>> {
        while let Poll::Ready(Some(())) = self.writing.poll_next_unpin(cx) {}
        if let Some((protocol, bytes)) = self.to_open.pop_front() {
            return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                protocol: SubstreamProtocol::new(ReadyUpgrade::new(protocol), bytes)
                    .with_timeout(Duration::from_secs(30)),
            });
        }
        Poll::Pending
    }

    fn on_behaviour_event(&mut self, event: (StreamProtocol, Vec<u8>)) {
        self.to_open.push_back(event);
    }

    fn on_connection_event(&mut self, event: ConnectionEvent<DeniedUpgrade, Self::OutboundProtocol, (), Vec<u8>>) {
        match event {
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound { protocol: mut stream, info }) => {
                let written = self.written.clone();
                self.writing.push(
                    async move {
                        let _ = stream.write_all(&info).await;
                        let _ = stream.close().await;
                        written.fetch_add(1, Ordering::Relaxed);
                    }
                    .boxed(),
                );
            }
            ConnectionEvent::DialUpgradeError(_) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_below_the_codecs_on_every_served_protocol_is_refused_and_the_node_carries_on() {
    let mut server_config = config();
    server_config.rendezvous_server = true;
    server_config.relay_server = true;
    let mut b = spawn_with(Policy::Direct, vec![Arc::new(Tcp::new())], server_config);
    let b_addr = b.handle.listen(ma("/ip4/127.0.0.1/tcp/0")).await.unwrap();

    let mut mallory = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|_| Junk::default())
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let (written, refused) = (mallory.behaviour().written.clone(), mallory.behaviour().refused.clone());
    mallory.dial(b_addr.clone()).unwrap();
    // Streams are asked of a connection: wait for it.
    tokio::time::timeout(PATIENCE, async {
        while !matches!(mallory.select_next_some().await, SwarmEvent::ConnectionEstablished { .. }) {}
    })
    .await
    .expect("connected");
    let total = PROTOCOLS.len() * PER_PROTOCOL;
    for (p, protocol) in PROTOCOLS.iter().enumerate() {
        for i in 0..PER_PROTOCOL {
            let bytes = junk(p * PER_PROTOCOL + i);
            mallory.behaviour_mut().queue.push_back((b.peer, StreamProtocol::new(protocol), bytes));
        }
    }
    if let Some(waker) = mallory.behaviour_mut().waker.take() {
        waker.wake();
    }
    // Until every stream was written or refused (the swarm is driven here).
    tokio::time::timeout(PATIENCE * 4, async {
        while written.load(Ordering::Relaxed) + refused.load(Ordering::Relaxed) < total {
            tokio::select! {
                _ = mallory.select_next_some() => {}
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!("{} written and {} refused of {total}", written.load(Ordering::Relaxed), refused.load(Ordering::Relaxed))
    });
    assert!(written.load(Ordering::Relaxed) > 0, "junk reached the node");

    // The node is up and carries a genuine peer's frames.
    let c = spawn(Policy::Direct, vec![Arc::new(Tcp::new())]);
    drain(c.events);
    assert_eq!(c.handle.dial(b_addr).await.unwrap(), b.peer);
    c.handle.send_frame(b.peer, frame("genuine", 0)).await.unwrap();
    let got = recv_frames(&mut b.events, 1).await;
    assert_eq!(got, vec![(c.peer, frame("genuine", 0))]);
    eprintln!(
        "junk protocols: {} streams written, {} refused at negotiation",
        written.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed)
    );
}
