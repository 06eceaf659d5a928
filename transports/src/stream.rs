//! `/veil/frame/2`: frames on one persistent, acknowledged stream per sender
//! and connection.
//!
//! * [`FrameStreams`] is the network behaviour: its connection handler hands
//!   every negotiated `/veil/frame/2` substream (inbound, or outbound on
//!   request) to the driver; it sets up the outbound frame stream to a peer
//!   on request (on an open connection, else by dialing the peer, and again
//!   on another connection if that one closes first), and it keeps the
//!   address book used to dial peers by id.
//! * An **outbound frame stream** is a task owning the substream this node
//!   opened to a peer. [`NetworkHandle::send_frame`](crate::NetworkHandle::send_frame)
//!   hands frames straight to it (through the shared [`StreamTable`]); it writes
//!   them in order, batching what is queued into one write, and resolves each
//!   frame's reply when the peer acknowledges it. Frames wait for their
//!   acknowledgement at most `request_timeout`; a stream that times out, breaks
//!   or receives a bad acknowledgement is closed and every frame on it fails
//!   ("maybe delivered"). A stream with nothing to send for
//!   `idle_connection_timeout` closes itself.
//! * An **inbound frame stream** is a task reading a peer's substream: each
//!   frame (its length checked before allocation) goes to the driver, which emits
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
use crate::error::{Error, Result, SendFailure};

/// Frames queued for an outbound frame stream before it writes them.
const STREAM_QUEUE: usize = 64;

/// The most bytes one write of an outbound frame stream gathers.
const WRITE_BATCH: usize = 64 * 1024;

/// Read buffer of an inbound frame stream.
const READ_BUFFER: usize = 64 * 1024;

/// Inbound frame streams one connection may hold open at once; more are reset.
pub(crate) const MAX_INBOUND_PER_CONNECTION: usize = 4;

mod behaviour;
mod inbound;
mod opening;
mod outbound;

pub(crate) use behaviour::{FrameStreams, StreamEvent};
pub(crate) use inbound::{Acks, Inbound, spawn_inbound};
pub(crate) use outbound::spawn_outbound;

// --- the stream table ------------------------------------------------------------

/// A frame handed to an outbound frame stream, with where its outcome goes.
pub(crate) struct OutFrame {
    pub(crate) frame: Vec<u8>,
    pub(crate) reply: oneshot::Sender<Delivery>,
}

/// The outcome of a frame handed to a frame stream.
pub(crate) enum Delivery {
    /// Acknowledged (`Ok`), or written and then failed ("maybe delivered").
    Done(Result<()>),
    /// The stream closed before writing it: nothing was sent, try another stream.
    Unsent(Vec<u8>),
}

/// The sending side of an outbound frame stream.
#[derive(Clone)]
pub(crate) struct FrameSender {
    id: u64,
    tx: mpsc::Sender<OutFrame>,
    /// The local peer id of the swarm that opened it: what the peer sees
    /// frames on it come from.
    pub(crate) local: PeerId,
}

impl FrameSender {
    /// Queues a frame (waiting while the stream's queue is full); gives the
    /// frame back if the stream has closed.
    pub(crate) async fn send(&self, frame: OutFrame) -> std::result::Result<(), OutFrame> {
        self.tx.send(frame).await.map_err(|mpsc::error::SendError(f)| f)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// The open outbound frame streams, by peer; shared by the handle (which sends on
/// them directly) and the driver (which opens them).
#[derive(Default)]
pub(crate) struct StreamTable {
    streams: Mutex<HashMap<PeerId, FrameSender>>,
    next_id: AtomicU64,
}

impl StreamTable {
    fn lock(&self) -> MutexGuard<'_, HashMap<PeerId, FrameSender>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The open frame stream to `peer`, if any.
    pub(crate) fn get(&self, peer: &PeerId) -> Option<FrameSender> {
        self.lock().get(peer).filter(|s| !s.is_closed()).cloned()
    }

    fn insert(&self, peer: PeerId, sender: FrameSender) {
        self.lock().insert(peer, sender);
    }

    fn remove(&self, peer: &PeerId, id: u64) {
        let mut streams = self.lock();
        if streams.get(peer).is_some_and(|s| s.id == id) {
            streams.remove(peer);
        }
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }
}

/// Why every frame stream of a swarm stops at once.
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

/// Settings every frame stream of a swarm shares.
#[derive(Clone)]
pub(crate) struct StreamSettings {
    /// The local peer id of the swarm the stream's connection belongs to.
    pub(crate) local: PeerId,
    pub(crate) max_frame: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) ack_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) stop: watch::Receiver<Option<Stop>>,
    pub(crate) table: Arc<StreamTable>,
    /// Set by the driver when the stream's connection has closed (the
    /// substream itself does not always wake its reader then).
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
