//! `/veil/frame/2`: frames on one persistent, acknowledged stream per sender
//! and connection.
//!
//! * [`Links`] is the network behaviour: its connection handler hands every
//!   negotiated frame stream (inbound, or outbound on request) to the driver,
//!   and it keeps the [`AddressBook`] used to dial peers by id.
//! * An **outbound link** is a task owning the stream this node opened to a
//!   peer. [`NetworkHandle::send_frame`](crate::NetworkHandle::send_frame)
//!   hands frames straight to it (through the shared [`LinkTable`]); it writes
//!   them in order, batching what is queued into one write, and resolves each
//!   frame's reply when the peer acknowledges it. Frames wait for their
//!   acknowledgement at most `request_timeout`; a link that times out, breaks
//!   or receives a bad acknowledgement is closed and every frame on it fails
//!   ("maybe delivered"). A link with nothing to send for
//!   `idle_connection_timeout` closes itself.
//! * An **inbound link** is a task reading a peer's stream: each frame (its
//!   length checked before allocation) goes to the driver, which emits
//!   `FrameReceived` and, once the event channel has accepted it, counts it
//!   accepted; the task then writes one acknowledgement for all frames
//!   accepted since the last one. It reads nothing more while the driver's
//!   inbound queue is full, so a slow consumer slows the sender down through
//!   the stream's flow control.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::io::BufReader;
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::ReadyUpgrade;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::swarm::handler::{ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound};
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm, NetworkBehaviour,
    NotifyHandler, Stream, StreamProtocol, SubstreamProtocol, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::codec::{self, FRAME_PROTOCOL};
use crate::error::{Error, Result};

/// Frames queued for an outbound link before it writes them.
const LINK_QUEUE: usize = 64;

/// The most bytes one write of an outbound link gathers.
const WRITE_BATCH: usize = 64 * 1024;

/// Read buffer of an inbound link.
const READ_BUFFER: usize = 64 * 1024;

/// Inbound frame streams one connection may hold open at once; more are reset.
pub(crate) const MAX_INBOUND_PER_CONNECTION: usize = 4;

/// Peers the address book remembers (least recently added forgotten first).
const BOOK_PEERS: usize = 1024;

/// Addresses remembered per peer.
const BOOK_ADDRS: usize = 8;

// --- the behaviour -------------------------------------------------------------

/// What the frame behaviour reports to the driver.
#[derive(Debug)]
pub(crate) enum LinkEvent {
    /// The peer opened a frame stream to us.
    Inbound { peer: PeerId, connection: ConnectionId, stream: Stream },
    /// The stream we asked for is open (or could not be opened).
    Outbound { peer: PeerId, connection: ConnectionId, stream: std::result::Result<Stream, String> },
}

/// The frame protocol's behaviour and the address book for dials by peer id.
pub(crate) struct Links {
    events: VecDeque<ToSwarm<LinkEvent, HandlerIn>>,
    book: AddressBook,
    timeout: Duration,
    waker: Option<Waker>,
}

impl Links {
    pub(crate) fn new(open_timeout: Duration) -> Self {
        Self { events: VecDeque::new(), book: AddressBook::default(), timeout: open_timeout, waker: None }
    }

    /// Asks the handler of `connection` to open a frame stream; answered by
    /// [`LinkEvent::Outbound`].
    pub(crate) fn open(&mut self, peer: PeerId, connection: ConnectionId) {
        self.events.push_back(ToSwarm::NotifyHandler {
            peer_id: peer,
            handler: NotifyHandler::One(connection),
            event: HandlerIn::Open,
        });
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Remembers addresses of `peer` for later dials by peer id.
    pub(crate) fn add_addresses(&mut self, peer: PeerId, addrs: impl IntoIterator<Item = Multiaddr>) {
        for addr in addrs {
            self.book.add(peer, addr);
        }
    }
}

impl NetworkBehaviour for Links {
    type ConnectionHandler = LinkHandler;
    type ToSwarm = LinkEvent;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> std::result::Result<THandler<Self>, ConnectionDenied> {
        Ok(LinkHandler::new(self.timeout))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> std::result::Result<THandler<Self>, ConnectionDenied> {
        Ok(LinkHandler::new(self.timeout))
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
        if let FromSwarm::NewExternalAddrOfPeer(e) = event {
            self.book.add(e.peer_id, e.addr.clone());
        }
    }

    fn on_connection_handler_event(&mut self, peer: PeerId, connection: ConnectionId, event: THandlerOutEvent<Self>) {
        let event = match event {
            HandlerOut::Inbound(stream) => LinkEvent::Inbound { peer, connection, stream },
            HandlerOut::Outbound(stream) => LinkEvent::Outbound { peer, connection, stream },
        };
        self.events.push_back(ToSwarm::GenerateEvent(event));
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

/// Addresses of peers, bounded (oldest peer forgotten first).
#[derive(Default)]
struct AddressBook {
    addrs: HashMap<PeerId, Vec<Multiaddr>>,
    order: VecDeque<PeerId>,
}

impl AddressBook {
    fn add(&mut self, peer: PeerId, addr: Multiaddr) {
        // Stored without the trailing /p2p/<peer>: the swarm appends it.
        let addr = match addr.iter().last() {
            Some(libp2p::multiaddr::Protocol::P2p(p)) if p == peer => {
                let mut a = addr.clone();
                a.pop();
                a
            }
            _ => addr,
        };
        let entry = match self.addrs.get_mut(&peer) {
            Some(e) => e,
            None => {
                if self.order.len() >= BOOK_PEERS
                    && let Some(old) = self.order.pop_front()
                {
                    self.addrs.remove(&old);
                }
                self.order.push_back(peer);
                self.addrs.entry(peer).or_default()
            }
        };
        if let Some(i) = entry.iter().position(|a| a == &addr) {
            entry.remove(i);
        } else if entry.len() >= BOOK_ADDRS {
            entry.remove(0);
        }
        // Most recent last; dials try them newest first.
        entry.push(addr);
    }

    fn get(&self, peer: &PeerId) -> Vec<Multiaddr> {
        self.addrs.get(peer).map(|a| a.iter().rev().cloned().collect()).unwrap_or_default()
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
pub(crate) struct LinkHandler {
    to_open: usize,
    events: VecDeque<HandlerOut>,
    timeout: Duration,
}

impl LinkHandler {
    fn new(timeout: Duration) -> Self {
        Self { to_open: 0, events: VecDeque::new(), timeout }
    }
}

impl ConnectionHandler for LinkHandler {
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

// --- the link table --------------------------------------------------------------

/// A frame handed to an outbound link, with where its outcome goes.
pub(crate) struct OutFrame {
    pub(crate) frame: Vec<u8>,
    pub(crate) reply: oneshot::Sender<Delivery>,
}

/// The outcome of a frame handed to a link.
pub(crate) enum Delivery {
    /// Acknowledged (`Ok`), or written and then failed ("maybe delivered").
    Done(Result<()>),
    /// The link closed before writing it: nothing was sent, try another link.
    Unsent(Vec<u8>),
}

/// The sending side of an outbound link.
#[derive(Clone)]
pub(crate) struct LinkSender {
    id: u64,
    tx: mpsc::Sender<OutFrame>,
}

impl LinkSender {
    /// Queues a frame (waiting while the link's queue is full); gives the
    /// frame back if the link has closed.
    pub(crate) async fn send(&self, frame: OutFrame) -> std::result::Result<(), OutFrame> {
        self.tx.send(frame).await.map_err(|mpsc::error::SendError(f)| f)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// The open outbound links, by peer; shared by the handle (which sends on
/// them directly) and the driver (which opens them).
#[derive(Default)]
pub(crate) struct LinkTable {
    links: Mutex<HashMap<PeerId, LinkSender>>,
    next_id: AtomicU64,
}

impl LinkTable {
    fn lock(&self) -> MutexGuard<'_, HashMap<PeerId, LinkSender>> {
        self.links.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The open link to `peer`, if any.
    pub(crate) fn get(&self, peer: &PeerId) -> Option<LinkSender> {
        self.lock().get(peer).filter(|l| !l.is_closed()).cloned()
    }

    fn insert(&self, peer: PeerId, link: LinkSender) {
        self.lock().insert(peer, link);
    }

    fn remove(&self, peer: &PeerId, id: u64) {
        let mut links = self.lock();
        if links.get(peer).is_some_and(|l| l.id == id) {
            links.remove(peer);
        }
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }
}

/// Why every link of a swarm stops at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    Restarted,
    Shutdown,
}

impl Stop {
    fn error(self) -> Error {
        match self {
            Stop::Restarted => Error::Restarted,
            Stop::Shutdown => Error::Shutdown,
        }
    }
}

/// Settings every link of a swarm shares.
#[derive(Clone)]
pub(crate) struct LinkSettings {
    pub(crate) max_frame: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) ack_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) stop: watch::Receiver<Option<Stop>>,
    pub(crate) table: Arc<LinkTable>,
    /// Set by the driver when the link's connection has closed (the stream
    /// itself does not always wake its reader then).
    pub(crate) closed: watch::Receiver<bool>,
}

async fn connection_closed(closed: &mut watch::Receiver<bool>) {
    // An error means the driver dropped the connection's entry: closed too.
    let _ = closed.wait_for(|c| *c).await;
}

async fn stopped(stop: &mut watch::Receiver<Option<Stop>>) -> Stop {
    match stop.wait_for(Option::is_some).await {
        Ok(s) => s.unwrap_or(Stop::Shutdown),
        // The driver is gone.
        Err(_) => Stop::Shutdown,
    }
}

// --- outbound links ---------------------------------------------------------------

struct Pending {
    deadline: Instant,
    reply: oneshot::Sender<Delivery>,
}

/// Starts the outbound link on `stream` and registers it in the table.
pub(crate) fn spawn_outbound(
    runtime: &tokio::runtime::Handle,
    peer: PeerId,
    stream: Stream,
    settings: LinkSettings,
) -> LinkSender {
    let (tx, rx) = mpsc::channel(LINK_QUEUE);
    let id = settings.table.next_id.fetch_add(1, Ordering::Relaxed);
    let link = LinkSender { id, tx };
    settings.table.insert(peer, link.clone());
    runtime.spawn(outbound(peer, id, stream, rx, settings));
    link
}

/// Why an outbound link ended.
enum End {
    Idle,
    Failed(Error),
}

async fn outbound(peer: PeerId, id: u64, stream: Stream, mut rx: mpsc::Receiver<OutFrame>, settings: LinkSettings) {
    let LinkSettings { max_frame, max_in_flight, ack_timeout, idle_timeout, mut stop, table, mut closed } = settings;
    let (mut reader, mut writer) = stream.split();
    let pending: Mutex<VecDeque<Pending>> = Mutex::new(VecDeque::new());
    let lock = || pending.lock().unwrap_or_else(|e| e.into_inner());
    let room = Notify::new();
    let failed = |e: std::io::Error| End::Failed(Error::SendFailed(e.to_string()));

    // Writes what is queued, in order, several frames per write.
    let write = async {
        let mut buf = Vec::with_capacity(WRITE_BATCH);
        loop {
            if lock().len() >= max_in_flight {
                room.notified().await;
                continue;
            }
            let first = match tokio::time::timeout(idle_timeout, rx.recv()).await {
                Ok(Some(f)) => f,
                Ok(None) => return End::Idle,
                Err(_) if lock().is_empty() => return End::Idle,
                Err(_) => continue,
            };
            buf.clear();
            let deadline = Instant::now() + ack_timeout;
            let mut next = Some(first);
            while let Some(OutFrame { frame, reply }) = next.take() {
                match codec::encode_frame(&frame, max_frame, &mut buf) {
                    Ok(()) => lock().push_back(Pending { deadline, reply }),
                    Err(_) => {
                        let e = Error::FrameTooLarge { len: frame.len(), max: max_frame };
                        let _ = reply.send(Delivery::Done(Err(e)));
                    }
                }
                if buf.len() < WRITE_BATCH && lock().len() < max_in_flight {
                    next = rx.try_recv().ok();
                }
            }
            if buf.is_empty() {
                continue;
            }
            if let Err(e) = writer.write_all(&buf).await {
                return failed(e);
            }
            if let Err(e) = writer.flush().await {
                return failed(e);
            }
        }
    };

    // Resolves frames as their acknowledgements arrive.
    let read = async {
        loop {
            let mut count = [0u8; 4];
            if let Err(e) = reader.read_exact(&mut count).await {
                return failed(e);
            }
            let done: Vec<Pending> = {
                let mut p = lock();
                match codec::check_ack(u32::from_be_bytes(count), p.len()) {
                    Ok(n) => p.drain(..n).collect(),
                    Err(e) => return failed(e),
                }
            };
            room.notify_one();
            for p in done {
                let _ = p.reply.send(Delivery::Done(Ok(())));
            }
        }
    };

    // Fails the link once its oldest frame has waited too long.
    let watchdog = async {
        let tick = (ack_timeout / 8).max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(tick).await;
            if lock().front().is_some_and(|p| p.deadline <= Instant::now()) {
                return End::Failed(Error::SendFailed("acknowledgement timed out".into()));
            }
        }
    };

    let end = tokio::select! {
        biased;
        s = stopped(&mut stop) => End::Failed(s.error()),
        () = connection_closed(&mut closed) => End::Failed(Error::SendFailed("the connection closed".into())),
        e = write => e,
        e = read => e,
        e = watchdog => e,
    };
    // New sends go to a new link from now on.
    table.remove(&peer, id);
    rx.close();
    let error = || match &end {
        End::Failed(Error::Restarted) => Error::Restarted,
        End::Failed(Error::Shutdown) => Error::Shutdown,
        End::Failed(e) => Error::SendFailed(e.to_string()),
        End::Idle => Error::SendFailed("the frame link closed".into()),
    };
    for p in lock().drain(..) {
        let _ = p.reply.send(Delivery::Done(Err(error())));
    }
    // Never written: the sender may try them on a new link (unless the whole
    // swarm is going away).
    let stopping = matches!(end, End::Failed(Error::Restarted | Error::Shutdown));
    while let Ok(f) = rx.try_recv() {
        let outcome = if stopping { Delivery::Done(Err(error())) } else { Delivery::Unsent(f.frame) };
        let _ = f.reply.send(outcome);
    }
    match &end {
        End::Idle => {
            tracing::debug!(%peer, "idle frame link closed");
            // The peer's inbound link ends at the end of the stream.
            let _ = tokio::time::timeout(ack_timeout, writer.close()).await;
        }
        End::Failed(e) => tracing::debug!(%peer, error = %e, "frame link closed"),
    }
    // Dropping the halves resets whatever is left of the stream.
}

// --- inbound links -----------------------------------------------------------------

/// The acknowledgement state of one inbound link, shared with the driver.
pub(crate) struct Acks {
    accepted: AtomicU64,
    open: AtomicBool,
    notify: Notify,
}

impl Acks {
    /// Whether the link can still acknowledge (its sender still waits).
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Counts one frame as accepted by the application.
    pub(crate) fn accept(&self) {
        self.accepted.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_one();
    }
}

/// A frame read by an inbound link, on its way to the event channel.
pub(crate) struct Inbound {
    pub(crate) peer: PeerId,
    pub(crate) frame: Vec<u8>,
    pub(crate) acks: Arc<Acks>,
    /// The swarm generation it arrived on (older ones are dropped).
    pub(crate) epoch: u64,
}

/// Starts an inbound link; `slots` counts the connection's open inbound links.
pub(crate) fn spawn_inbound(
    runtime: &tokio::runtime::Handle,
    peer: PeerId,
    stream: Stream,
    epoch: u64,
    deliver: mpsc::Sender<Inbound>,
    slots: Arc<AtomicUsize>,
    settings: LinkSettings,
) {
    runtime.spawn(async move {
        inbound(peer, stream, epoch, deliver, settings).await;
        slots.fetch_sub(1, Ordering::AcqRel);
    });
}

async fn inbound(peer: PeerId, stream: Stream, epoch: u64, deliver: mpsc::Sender<Inbound>, settings: LinkSettings) {
    let LinkSettings { max_frame, mut stop, mut closed, .. } = settings;
    let (reader, mut writer) = stream.split();
    let mut reader = BufReader::with_capacity(READ_BUFFER, reader);
    let acks = Arc::new(Acks { accepted: AtomicU64::new(0), open: AtomicBool::new(true), notify: Notify::new() });

    let read = async {
        loop {
            let frame = codec::read_frame(&mut reader, max_frame).await?;
            let item = Inbound { peer, frame, acks: acks.clone(), epoch };
            if deliver.send(item).await.is_err() {
                return Ok::<_, std::io::Error>(());
            }
        }
    };
    let acknowledge = async {
        let mut sent = 0u64;
        let mut buf = Vec::new();
        loop {
            acks.notify.notified().await;
            let accepted = acks.accepted.load(Ordering::Acquire);
            if accepted > sent {
                buf.clear();
                codec::encode_acks(accepted - sent, &mut buf);
                writer.write_all(&buf).await?;
                writer.flush().await?;
                sent = accepted;
            }
        }
    };
    let outcome = tokio::select! {
        biased;
        _ = stopped(&mut stop) => Ok(()),
        () = connection_closed(&mut closed) => Ok(()),
        r = read => r,
        r = acknowledge => r,
    };
    acks.open.store(false, Ordering::Release);
    if let Err(e) = outcome
        && e.kind() != std::io::ErrorKind::UnexpectedEof
    {
        tracing::debug!(%peer, error = %e, "inbound frame link closed");
    }
}
