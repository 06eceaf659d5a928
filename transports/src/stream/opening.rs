//! Opening outbound frame streams, inside the [`FrameStreams`] behaviour: who
//! waits for a frame stream to which peer, which connection its substream
//! was asked on, and trying again on another connection, or dialing the
//! peer, when that one closes or there is none.

use libp2p::swarm::DialError;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};

use super::*;
use crate::error::DialFailure;

/// Who waits for a frame stream being set up.
pub(crate) type StreamWaiter = oneshot::Sender<Result<FrameSender>>;

/// An outbound frame stream being set up.
pub(super) struct Opening {
    pub(super) waiters: Vec<StreamWaiter>,
    /// The connection its stream was asked on (`None`: waiting for a connection).
    pub(super) on: Option<ConnectionId>,
}

impl FrameStreams {
    /// Sets up the outbound frame stream to `peer` for `reply`: on an open
    /// connection, else once a dial (by peer id, with the addresses the
    /// behaviours know) connects. Answered by [`StreamEvent::Outbound`] with
    /// every waiter, or with an error here.
    pub(crate) fn open_stream(&mut self, peer: PeerId, reply: StreamWaiter) {
        if let Some(opening) = self.opening.get_mut(&peer) {
            opening.waiters.push(reply);
            return;
        }
        self.opening.insert(peer, Opening { waiters: vec![reply], on: None });
        self.try_open(peer);
    }

    /// Whether `connection` is being closed.
    pub(crate) fn is_closing(&self, connection: &ConnectionId) -> bool {
        self.closing.contains(connection)
    }

    /// No new frame stream goes on `connection` (it is being closed).
    pub(crate) fn closing(&mut self, connection: ConnectionId) {
        self.closing.insert(connection);
        let retry: Vec<PeerId> =
            self.opening.iter().filter(|(_, o)| o.on == Some(connection)).map(|(peer, _)| *peer).collect();
        for peer in retry {
            self.try_open(peer);
        }
    }

    /// Fails every frame stream being set up with `error()` (the swarm stops).
    pub(crate) fn fail_all(&mut self, error: &impl Fn() -> Error) {
        for reply in self.opening.drain().flat_map(|(_, o)| o.waiters) {
            let _ = reply.send(Err(error()));
        }
    }

    /// The newest open connection to `peer` not being closed.
    pub(crate) fn usable(&self, peer: &PeerId) -> Option<ConnectionId> {
        self.connections.iter().filter(|(c, p)| *p == peer && !self.closing.contains(c)).map(|(c, _)| *c).max()
    }

    /// Asks for the stream on a usable connection, or dials the peer.
    fn try_open(&mut self, peer: PeerId) {
        let usable = self.usable(&peer);
        let Some(opening) = self.opening.get_mut(&peer) else { return };
        opening.on = usable;
        match usable {
            Some(connection) => self.open(peer, connection),
            None => {
                self.push(ToSwarm::Dial { opts: DialOpts::peer_id(peer).condition(PeerCondition::NotDialing).build() })
            }
        }
    }

    fn fail(&mut self, peer: PeerId, reason: SendFailure) {
        if let Some(opening) = self.opening.remove(&peer) {
            tracing::debug!(%peer, %reason, "frame stream not opened");
            for reply in opening.waiters {
                let _ = reply.send(Err(Error::SendFailed(reason.clone())));
            }
        }
    }

    pub(super) fn connection_established(&mut self, peer: PeerId, connection: ConnectionId) {
        self.connections.insert(connection, peer);
        if let Some(opening) = self.opening.get_mut(&peer)
            && opening.on.is_none()
        {
            opening.on = Some(connection);
            self.open(peer, connection);
        }
    }

    pub(super) fn connection_closed(&mut self, peer: PeerId, connection: ConnectionId) {
        self.connections.remove(&connection);
        self.closing.remove(&connection);
        if self.opening.get(&peer).is_some_and(|o| o.on == Some(connection)) {
            // The stream was asked on this connection: try another.
            self.try_open(peer);
        }
    }

    pub(super) fn dial_failed(&mut self, peer: Option<PeerId>, error: &DialError) {
        // A dial already under way reports its own outcome.
        if matches!(error, DialError::DialPeerConditionFalse(_)) {
            return;
        }
        if let Some(peer) = peer
            && self.usable(&peer).is_none()
            && self.opening.get(&peer).is_some_and(|o| o.on.is_none())
        {
            self.fail(peer, SendFailure::NoConnection(DialFailure::from(error)));
        }
    }

    /// The outbound stream asked on `connection` is open (or failed); a
    /// stream nobody waits for any more is dropped, which closes it.
    pub(super) fn stream_opened(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        stream: std::result::Result<Stream, String>,
    ) -> Option<StreamEvent> {
        if self.opening.get(&peer).is_none_or(|o| o.on != Some(connection)) {
            return None;
        }
        match stream {
            Ok(stream) => {
                let waiters = self.opening.remove(&peer).map(|o| o.waiters).unwrap_or_default();
                Some(StreamEvent::Outbound { peer, connection, stream, waiters })
            }
            Err(reason) => {
                self.fail(peer, SendFailure::NoStream(reason));
                None
            }
        }
    }
}
