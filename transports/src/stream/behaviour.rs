//! The `FrameStreams` behaviour: opens `/veil/frame/2` substreams on
//! connections (see [`opening`](super::opening) for how a frame stream to a
//! peer is set up) and hands them to the network task, with the address book
//! dials by peer id use.

use std::collections::HashSet;

use libp2p::swarm::behaviour::{ConnectionClosed, ConnectionEstablished};

use super::opening::{Opening, StreamWaiter};
use super::*;
use crate::address_book::AddressBook;

/// What the frame behaviour reports to the driver.
pub(crate) enum StreamEvent {
    /// The peer opened a frame stream to us.
    Inbound { peer: PeerId, connection: ConnectionId, stream: Stream },
    /// The substream of a frame stream being set up is open: the driver
    /// starts the frame stream and answers everyone who waited for it.
    Outbound { peer: PeerId, connection: ConnectionId, stream: Stream, waiters: Vec<StreamWaiter> },
}

impl std::fmt::Debug for StreamEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Inbound { peer, connection, .. } => {
                f.debug_struct("Inbound").field("peer", peer).field("connection", connection).finish()
            }
            Self::Outbound { peer, connection, waiters, .. } => f
                .debug_struct("Outbound")
                .field("peer", peer)
                .field("connection", connection)
                .field("waiters", &waiters.len())
                .finish(),
        }
    }
}

/// The frame protocol's behaviour: frame streams, the outbound ones being
/// set up, and the address book for dials by peer id.
pub(crate) struct FrameStreams {
    events: VecDeque<ToSwarm<StreamEvent, HandlerIn>>,
    book: AddressBook,
    timeout: Duration,
    waker: Option<Waker>,
    /// Outbound frame streams being set up, per peer.
    pub(super) opening: HashMap<PeerId, Opening>,
    /// Every open connection and its peer.
    pub(super) connections: HashMap<ConnectionId, PeerId>,
    /// Connections being closed: no new frame stream goes on them.
    pub(super) closing: HashSet<ConnectionId>,
}

impl FrameStreams {
    pub(crate) fn new(open_timeout: Duration) -> Self {
        Self {
            events: VecDeque::new(),
            book: AddressBook::default(),
            timeout: open_timeout,
            waker: None,
            opening: HashMap::new(),
            connections: HashMap::new(),
            closing: HashSet::new(),
        }
    }

    /// Queues `event` for the swarm.
    pub(super) fn push(&mut self, event: ToSwarm<StreamEvent, HandlerIn>) {
        self.events.push_back(event);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Asks the handler of `connection` to open a frame stream.
    pub(super) fn open(&mut self, peer: PeerId, connection: ConnectionId) {
        self.push(ToSwarm::NotifyHandler {
            peer_id: peer,
            handler: NotifyHandler::One(connection),
            event: HandlerIn::Open,
        });
    }

    /// Remembers addresses of `peer` for later dials by peer id.
    pub(crate) fn add_addresses(&mut self, peer: PeerId, addrs: impl IntoIterator<Item = Multiaddr>) {
        for addr in addrs {
            self.book.add(peer, addr);
        }
    }
}

impl NetworkBehaviour for FrameStreams {
    type ConnectionHandler = StreamHandler;
    type ToSwarm = StreamEvent;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> std::result::Result<THandler<Self>, ConnectionDenied> {
        Ok(StreamHandler::new(self.timeout))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> std::result::Result<THandler<Self>, ConnectionDenied> {
        Ok(StreamHandler::new(self.timeout))
    }

    fn handle_pending_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: Option<PeerId>,
        _: &[Multiaddr],
        _: Endpoint,
    ) -> std::result::Result<Vec<Multiaddr>, ConnectionDenied> {
        Ok(peer.map(|p| self.book.get(&p)).unwrap_or_default())
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::NewExternalAddrOfPeer(e) => self.book.add(e.peer_id, e.addr.clone()),
            FromSwarm::ConnectionEstablished(ConnectionEstablished { peer_id, connection_id, .. }) => {
                self.connection_established(peer_id, connection_id);
            }
            FromSwarm::ConnectionClosed(ConnectionClosed { peer_id, connection_id, .. }) => {
                self.connection_closed(peer_id, connection_id);
            }
            FromSwarm::DialFailure(e) => self.dial_failed(e.peer_id, e.error),
            _ => {}
        }
    }

    fn on_connection_handler_event(&mut self, peer: PeerId, connection: ConnectionId, event: THandlerOutEvent<Self>) {
        let event = match event {
            HandlerOut::Inbound(stream) => Some(StreamEvent::Inbound { peer, connection, stream }),
            HandlerOut::Outbound(stream) => self.stream_opened(peer, connection, stream),
        };
        if let Some(event) = event {
            self.events.push_back(ToSwarm::GenerateEvent(event));
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        match self.events.pop_front() {
            Some(e) => Poll::Ready(e),
            None => {
                self.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[derive(Debug)]
pub(crate) enum HandlerIn {
    Open,
}

#[derive(Debug)]
pub(crate) enum HandlerOut {
    Inbound(Stream),
    Outbound(std::result::Result<Stream, String>),
}

/// Per connection: accepts frame streams and opens them on request.
pub(crate) struct StreamHandler {
    to_open: usize,
    events: VecDeque<HandlerOut>,
    timeout: Duration,
}

impl StreamHandler {
    fn new(timeout: Duration) -> Self {
        Self { to_open: 0, events: VecDeque::new(), timeout }
    }
}

impl ConnectionHandler for StreamHandler {
    type FromBehaviour = HandlerIn;
    type ToBehaviour = HandlerOut;
    type InboundProtocol = ReadyUpgrade<StreamProtocol>;
    type OutboundProtocol = ReadyUpgrade<StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol> {
        SubstreamProtocol::new(ReadyUpgrade::new(FRAME_PROTOCOL), ())
    }

    fn poll(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, (), Self::ToBehaviour>> {
        if let Some(e) = self.events.pop_front() {
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(e));
        }
        if self.to_open > 0 {
            self.to_open -= 1;
            return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                protocol: SubstreamProtocol::new(ReadyUpgrade::new(FRAME_PROTOCOL), ()).with_timeout(self.timeout),
            });
        }
        Poll::Pending
    }

    fn on_behaviour_event(&mut self, HandlerIn::Open: HandlerIn) {
        self.to_open += 1;
    }

    fn on_connection_event(&mut self, event: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol>) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound { protocol: stream, .. }) => {
                self.events.push_back(HandlerOut::Inbound(stream));
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound { protocol: stream, .. }) => {
                self.events.push_back(HandlerOut::Outbound(Ok(stream)));
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { error, .. }) => {
                self.events.push_back(HandlerOut::Outbound(Err(error.to_string())));
            }
            _ => {}
        }
    }
}
