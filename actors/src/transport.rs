//! The `TransportManager`: owns the node's network (the libp2p swarm and its
//! attached transports) and its privacy policy. Other actors and the `Node`
//! talk to it in typed messages; network events come back as node events.
//!
//! The swarm runs as a task on the node's thread, so frames never cross
//! threads between the network and the actors. A pump task feeds network
//! events into the manager's mailbox with `send().await`: when the manager
//! falls behind, the network stops acknowledging frames (backpressure, no
//! unbounded queue). Across a supervisor restart the network handle and the
//! pump stay, so no connection is lost.

use std::sync::Arc;

use actix::{Actor, Addr, Context, Handler, Message, Recipient, ResponseFuture, Supervised};
use tokio::sync::{broadcast, mpsc};
use veil_crypto::NetworkKey;
use veil_transports::{
    NetworkEvent, NetworkHandle, Policy, TransportId, TransportPlugin,
    libp2p::{Multiaddr, PeerId},
};

use crate::{
    Error, NodeEvent, Result,
    ble::PeerConnection,
    messages::{
        contacts::{InboundRequest, LanPeerFound},
        courier::{InboundFrame, InboundFrames, NetworkRestarted, PeerLeft, Proximity},
    },
    supervision::guarded,
};

/// Where the manager routes network events, besides the node's event channel.
#[derive(Clone)]
pub(crate) struct NetworkRoutes {
    /// Frames (group frames go to the courier).
    pub(crate) frames: Recipient<InboundFrames>,
    /// `/veil/contact/1` requests.
    pub(crate) requests: Recipient<InboundRequest>,
    /// Peers found on the LAN (mDNS), for pending contact requests.
    pub(crate) lan: Recipient<LanPeerFound>,
    /// Peers found on the LAN (mDNS), for the groups they may share.
    pub(crate) nearby: Recipient<Proximity>,
    /// Disconnections.
    pub(crate) left: Recipient<PeerLeft>,
    /// Swarm restarts (with a new peer id after a key rotation).
    pub(crate) restarted: Vec<Recipient<NetworkRestarted>>,
    /// Peers connected and disconnected (the BLE actor, when there is one).
    pub(crate) connections: Option<Recipient<crate::ble::PeerConnection>>,
}

const NAME: &str = "transport-manager";

/// The state of the network, as reported by [`GetNetworkStatus`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkStatus {
    /// The current (rotating) peer id.
    pub peer_id: PeerId,
    /// The privacy policy in force, which decides what the node may listen on, dial and discover.
    pub policy: Policy,
    /// Attached transports.
    pub transports: Vec<TransportId>,
    /// Addresses the node listens on.
    pub listen_addrs: Vec<Multiaddr>,
    /// Peers with an open connection.
    pub connected_peers: Vec<PeerId>,
    /// Every open connection, with how it reaches its peer.
    pub connections: Vec<veil_transports::OpenConnection>,
}

/// Command: attach a transport at run time.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct AttachTransport(pub Arc<dyn TransportPlugin>);

impl core::fmt::Debug for AttachTransport {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("AttachTransport").field(&self.0.id()).finish()
    }
}

/// Command: detach a transport; its connections close.
#[derive(Debug, Message)]
#[rtype(result = "Result<()>")]
pub struct DetachTransport(pub TransportId);

/// Command: change the privacy policy.
#[derive(Debug, Message)]
#[rtype(result = "Result<()>")]
pub struct SetPolicy(pub Policy);

/// Command: listen on an address (refused if the policy forbids it).
#[derive(Debug, Message)]
#[rtype(result = "Result<Multiaddr>")]
pub struct Listen(pub Multiaddr);

/// Command: connect to an address (refused if the policy forbids it).
#[derive(Debug, Message)]
#[rtype(result = "Result<PeerId>")]
pub struct Dial(pub Multiaddr);

/// Command: send a frame; resolves when the peer acknowledged it.
#[derive(Debug, Message)]
#[rtype(result = "Result<()>")]
pub struct SendFrame {
    /// The peer to send to, by its current peer id.
    pub peer: PeerId,
    /// The frame's bytes (at most the network's frame size).
    pub frame: Vec<u8>,
}

/// Command: switch to a new network key (new peer id).
#[derive(Debug, Message)]
#[rtype(result = "Result<PeerId>")]
pub struct Rotate(pub NetworkKey);

/// Query: the network's status.
#[derive(Debug, Message)]
#[rtype(result = "Result<NetworkStatus>")]
pub struct GetNetworkStatus;

/// Most network events the pump hands over at once.
const PUMP_BATCH: usize = 64;

/// Events from the network (delivered by the pump): whatever had arrived,
/// in order.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct FromNetwork(Vec<NetworkEvent>);

/// Owns the network.
pub struct TransportManager {
    network: NetworkHandle,
    policy: Policy,
    events: broadcast::Sender<NodeEvent>,
    routes: NetworkRoutes,
}

impl core::fmt::Debug for TransportManager {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TransportManager").field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl TransportManager {
    /// Starts the manager (supervised) over a running network, and the pump
    /// that feeds it the network's events. Must run on the node's arbiter.
    pub(crate) fn start(
        network: NetworkHandle,
        mut network_events: mpsc::Receiver<NetworkEvent>,
        policy: Policy,
        events: broadcast::Sender<NodeEvent>,
        routes: NetworkRoutes,
    ) -> Addr<Self> {
        let addr = actix::Supervisor::start(move |_| Self { network, policy, events, routes });
        let pump = addr.clone();
        actix_rt::spawn(async move {
            // What arrived while the last events were being handled goes
            // together: the courier hands a group log the entries of many
            // frames as one batch (one transaction, one acknowledgement).
            while let Some(event) = network_events.recv().await {
                let mut events = vec![event];
                while events.len() < PUMP_BATCH {
                    match network_events.try_recv() {
                        Ok(event) => events.push(event),
                        Err(_) => break,
                    }
                }
                if pump.send(FromNetwork(events)).await.is_err() {
                    break;
                }
            }
        });
        addr
    }
}

impl Actor for TransportManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
    }
}

impl Supervised for TransportManager {
    fn restarting(&mut self, _: &mut Self::Context) {
        tracing::warn!(actor = NAME, "restarting; the network keeps running");
    }
}

fn net(e: veil_transports::Error) -> Error {
    Error::Network(e)
}

/// What must reach the courier, in order, waiting for room in its mailbox.
enum ToCourier {
    Frames(Vec<InboundFrame>),
    Left(PeerLeft),
    Nearby(Proximity),
}

impl ToCourier {
    /// Adds `frame` to the frames last queued, or queues it.
    fn frame(queue: &mut Vec<ToCourier>, frame: InboundFrame) {
        match queue.last_mut() {
            Some(ToCourier::Frames(frames)) => frames.push(frame),
            _ => queue.push(ToCourier::Frames(vec![frame])),
        }
    }
}

impl Handler<FromNetwork> for TransportManager {
    // Frames and disconnections wait for room in the courier's mailbox: the
    // pump waits for this handler, so the network stops reading (and
    // acknowledging frames) while the courier is behind, and its senders
    // wait. Nothing on the message path is dropped for want of room.
    type Result = ResponseFuture<()>;

    fn handle(&mut self, FromNetwork(batch): FromNetwork, ctx: &mut Self::Context) -> Self::Result {
        let (events, routes) = (self.events.clone(), self.routes.clone());
        let mut to_courier = Vec::new();
        let _ = guarded(NAME, ctx, || {
            for event in batch {
                if let Some(e) = route(event, &routes, &events, &mut to_courier) {
                    // Without subscribers the event has nowhere to go; that is fine.
                    let _ = events.send(e);
                }
            }
            Ok(())
        });
        Box::pin(async move {
            for item in to_courier {
                let sent = match item {
                    ToCourier::Frames(frames) => routes.frames.send(InboundFrames { frames }).await,
                    ToCourier::Left(left) => routes.left.send(left).await,
                    ToCourier::Nearby(nearby) => routes.nearby.send(nearby).await,
                };
                if sent.is_err() {
                    tracing::debug!(actor = NAME, "the courier is not running; a network event was not routed");
                }
            }
        })
    }
}

/// Routes one network event: what must reach the courier is queued in
/// `to_courier`; returns the node event to publish, if any. A full mailbox
/// drops a contact request (the requester retries) or a LAN sighting for the
/// contact book (mDNS reports it again; the courier hears of every one).
fn route(
    event: NetworkEvent,
    routes: &NetworkRoutes,
    events: &broadcast::Sender<NodeEvent>,
    to_courier: &mut Vec<ToCourier>,
) -> Option<NodeEvent> {
    match event {
        NetworkEvent::PeerConnected { peer, transport } => {
            if let Some(connections) = &routes.connections {
                let _ = connections.try_send(PeerConnection { peer, transport: Some(transport.clone()) });
            }
            Some(NodeEvent::PeerConnected { peer, transport })
        }
        NetworkEvent::PeerDisconnected { peer } => {
            if let Some(connections) = &routes.connections {
                let _ = connections.try_send(PeerConnection { peer, transport: None });
            }
            to_courier.push(ToCourier::Left(PeerLeft { peer }));
            Some(NodeEvent::PeerDisconnected { peer })
        }
        NetworkEvent::FrameReceived { peer, frame } => {
            // Copy the frame (up to the frame limit) only for subscribers.
            let event = (events.receiver_count() > 0).then(|| NodeEvent::FrameReceived { peer, frame: frame.clone() });
            ToCourier::frame(to_courier, InboundFrame { peer, frame });
            event
        }
        NetworkEvent::RequestReceived { peer, id, request } => {
            let _ = routes.requests.try_send(InboundRequest { peer, id, request });
            None
        }
        NetworkEvent::PeerDiscovered { peer, .. } => {
            let _ = routes.lan.try_send(LanPeerFound { peer });
            to_courier.push(ToCourier::Nearby(Proximity::Found(peer)));
            None
        }
        NetworkEvent::Listening { addr } => Some(NodeEvent::Listening { addr }),
        NetworkEvent::RendezvousRegistered { peer, namespace } => {
            Some(NodeEvent::RendezvousRegistered { peer, namespace })
        }
        NetworkEvent::RendezvousUnregistered { peer, namespace } => {
            Some(NodeEvent::RendezvousUnregistered { peer, namespace })
        }
        NetworkEvent::Restarted { peer_id } => {
            // Never dropped (one per restart): announcements held for a new
            // peer id wait for this notice.
            for r in &routes.restarted {
                r.do_send(NetworkRestarted { peer_id });
            }
            Some(NodeEvent::NetworkRestarted { peer_id })
        }
        _ => None,
    }
}

macro_rules! forward {
    ($msg:ty, $out:ty, |$net:ident, $m:ident| $call:expr) => {
        impl Handler<$msg> for TransportManager {
            type Result = ResponseFuture<Result<$out>>;

            fn handle(&mut self, $m: $msg, _: &mut Self::Context) -> Self::Result {
                let $net = self.network.clone();
                Box::pin(async move { $call.await.map_err(net) })
            }
        }
    };
}

forward!(AttachTransport, (), |n, m| n.attach(m.0));
forward!(DetachTransport, (), |n, m| n.detach(m.0));
forward!(Listen, Multiaddr, |n, m| n.listen(m.0));
forward!(Dial, PeerId, |n, m| n.dial(m.0));
forward!(SendFrame, (), |n, m| n.send_frame(m.peer, m.frame));
forward!(Rotate, PeerId, |n, m| async move { n.rotate(&m.0).await });

impl Handler<SetPolicy> for TransportManager {
    type Result = ResponseFuture<Result<()>>;

    fn handle(&mut self, msg: SetPolicy, _: &mut Self::Context) -> Self::Result {
        self.policy = msg.0;
        let (network, nearby) = (self.network.clone(), self.routes.nearby.clone());
        Box::pin(async move {
            network.set_policy(msg.0).await.map_err(net)?;
            nearby.send(Proximity::Allowed(msg.0.proximity())).await.map_err(crate::supervision::mailbox("courier"))
        })
    }
}

impl Handler<GetNetworkStatus> for TransportManager {
    type Result = ResponseFuture<Result<NetworkStatus>>;

    fn handle(&mut self, _: GetNetworkStatus, _: &mut Self::Context) -> Self::Result {
        let (network, policy) = (self.network.clone(), self.policy);
        Box::pin(async move {
            Ok(NetworkStatus {
                peer_id: network.local_peer_id().await.map_err(net)?,
                policy,
                transports: network.transports().await.map_err(net)?,
                listen_addrs: network.listen_addrs().await.map_err(net)?,
                connected_peers: network.connected_peers().await.map_err(net)?,
                connections: network.connections().await.map_err(net)?,
            })
        })
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<crate::messages::InjectPanic> for TransportManager {
    type Result = Result<()>;

    fn handle(&mut self, _: crate::messages::InjectPanic, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || panic!("injected fault"))
    }
}
