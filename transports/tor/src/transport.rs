//! The libp2p side: a byte-stream transport whose connections are Tor
//! streams. Dials go to onion services through arti; listening runs this
//! network key's onion service and takes its incoming streams. Noise and
//! yamux go on top (`veil_transports::authenticate_and_multiplex`).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use arti_client::{DataStream, TorClient};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use libp2p::core::transport::{DialOpts, ListenerId, TransportError, TransportEvent};
use libp2p::core::{Endpoint, Transport};
use libp2p::{Multiaddr, identity::Keypair};
use tor_cell::relaycell::msg::Connected;
use tor_hscrypto::pk::{HsId, HsIdKey, HsIdKeypair};
use tor_hsservice::{OnionServiceConfig, RunningOnionService, StreamRequest, config::OnionServiceConfigBuilder};
use tor_llcrypto::pk::ed25519;
use tor_rtcompat::PreferredRuntime;
use zeroize::Zeroizing;

use crate::addr;
use crate::error::Error;
use crate::status::{ServiceState, StatusCell};

/// The domain a node's onion service identity is derived under from its
/// network key: a new network key (every rendezvous period, every policy
/// change) is a new onion address, and nothing else needs storing.
const ONION_IDENTITY_DOMAIN: &[u8] = b"veil/v1/onion-service";

/// A network key's onion service identity.
pub(crate) struct OnionIdentity {
    seed: Zeroizing<[u8; 32]>,
    id: HsId,
}

impl OnionIdentity {
    /// The identity `keypair` (a network key) derives; `None` for keys that
    /// are not Ed25519 (veil's network keys always are).
    pub(crate) fn of(keypair: &Keypair) -> Option<Self> {
        let seed = Zeroizing::new(keypair.derive_secret(ONION_IDENTITY_DOMAIN)?);
        let id = HsIdKey::from(&Self::keypair_of(&seed)).id();
        Some(Self { seed, id })
    }

    fn keypair_of(seed: &[u8; 32]) -> HsIdKeypair {
        let signing = ed25519::Keypair::from_bytes(seed);
        HsIdKeypair::from(ed25519::ExpandedKeypair::from(&signing))
    }

    fn keypair(&self) -> HsIdKeypair {
        Self::keypair_of(&self.seed)
    }

    /// The arti nickname of this identity's service: local only (never on
    /// the network), unique per identity so services of earlier keys never
    /// collide with it in arti's key and state stores.
    fn nickname(&self) -> String {
        let name = self.id.display_unredacted_string();
        format!("veil-{}", &name[..16.min(name.len())])
    }
}

trait DisplayUnredacted {
    fn display_unredacted_string(&self) -> String;
}

impl DisplayUnredacted for HsId {
    fn display_unredacted_string(&self) -> String {
        use safelog::DisplayRedacted;
        self.display_unredacted().to_string()
    }
}

type Upgrade = BoxFuture<'static, Result<DataStream, Error>>;

/// The running onion service of one listener.
struct Listener {
    id: ListenerId,
    addr: Multiaddr,
    port: u16,
    // Kept for as long as the listener lives: dropping it stops the service.
    _service: Arc<RunningOnionService>,
    states: BoxStream<'static, tor_hsservice::status::OnionServiceStatus>,
    requests: BoxStream<'static, StreamRequest>,
    /// Resolves once this node reached its own service through Tor.
    probe: Option<BoxFuture<'static, ()>>,
    reported: bool,
}

/// A listen request waiting for the previous service of this key to let
/// go of it: a swarm restarted with the same key (a policy change) drops
/// its old service and launches the new one at once, and arti frees the
/// old one's state a moment later.
struct Relaunch {
    id: ListenerId,
    requested: Multiaddr,
    port: u16,
    attempts: u32,
    wait: Pin<Box<tokio::time::Sleep>>,
}

/// How long to wait between launches refused as busy, and how many to try.
const RELAUNCH_WAIT: Duration = Duration::from_millis(250);
const RELAUNCH_ATTEMPTS: u32 = 40;

/// Connection attempts to an onion service, and the first wait between them
/// (doubling). A service just published, or one whose time period just
/// rolled over, is missing from some directories for a moment: the
/// directories a client asks follow its own consensus, which may be older
/// or newer than the service's. A service that just restarted may be
/// introduced through points it no longer holds; a circuit may time out.
const CONNECT_ATTEMPTS: u32 = 4;
const FIRST_CONNECT_RETRY: Duration = Duration::from_secs(1);

/// Whether a connect failure of this kind may go away by itself: the
/// service not (yet) found or not answering, or the Tor network slow or
/// failing a circuit. An invalid address, a refused target, a bad
/// configuration or a bug does not.
fn transient(kind: arti_client::ErrorKind) -> bool {
    use arti_client::ErrorKind as K;
    matches!(
        kind,
        K::OnionServiceNotFound
            | K::OnionServiceNotRunning
            | K::OnionServiceConnectionFailed
            | K::TorAccessFailed
            | K::TorNetworkTimeout
            | K::RemoteNetworkTimeout
            | K::RemoteNetworkFailed
            | K::CircuitCollapse
            | K::CircuitRefused
            | K::RelayTooBusy
            | K::TransientFailure
            | K::TorDirectoryError
            | K::NoPath
    )
}

/// Connects to `host:port` through `client`, trying again while failures
/// are [`transient`]. Each try after the first uses a client of its own
/// isolation, whose onion service state starts empty: it fetches the
/// service's current descriptor instead of trusting the one cached by the
/// failed try (which may name introduction points a restarted service no
/// longer holds; arti fetches again only on an explicit refusal, and then
/// only from directories it has not asked for 15 minutes).
async fn connect(client: Arc<TorClient<PreferredRuntime>>, host: String, port: u16) -> Result<DataStream, Error> {
    use arti_client::HasKind;
    let mut wait = FIRST_CONNECT_RETRY;
    let mut attempt = 1;
    let mut isolated = None;
    loop {
        let tried = isolated.as_ref().unwrap_or(&client);
        match tried.connect((host.as_str(), port)).await {
            Ok(stream) => return Ok(stream),
            Err(e) if attempt < CONNECT_ATTEMPTS && transient(e.kind()) => {
                tracing::debug!(error = %e, kind = ?e.kind(), attempt, "onion service not reached yet, trying again");
                tokio::time::sleep(wait).await;
                wait *= 2;
                attempt += 1;
                isolated = Some(client.isolated_client());
            }
            Err(e) => return Err(Error::Connect(format!("{e} ({:?}, after {attempt} attempts)", e.kind()))),
        }
    }
}

/// How often an unconfirmed service is tried, and how long a try may take.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Reaches the service at `target` through Tor (its descriptor fetched
/// from the directories, a circuit to an introduction point, a rendezvous),
/// retrying until it works. arti calls a service fully reachable only once
/// its descriptor is on both directory rings, which a young network (a test
/// network) may not have for minutes; what matters is that a client can
/// connect, so that is what is checked. The stream is closed at once.
fn probe(client: &TorClient<PreferredRuntime>, target: &Multiaddr) -> Option<BoxFuture<'static, ()>> {
    let (host, port) = addr::host_and_port(target)?;
    let client = client.isolated_client();
    Some(
        async move {
            loop {
                tokio::time::sleep(PROBE_INTERVAL).await;
                if let Ok(Ok(_stream)) =
                    tokio::time::timeout(PROBE_TIMEOUT, client.connect((host.as_str(), port))).await
                {
                    return;
                }
            }
        }
        .boxed(),
    )
}

/// Tor as a libp2p byte-stream transport, for one network key.
pub(crate) struct TorTransport {
    client: Arc<TorClient<PreferredRuntime>>,
    identity: Option<OnionIdentity>,
    status: StatusCell,
    listener: Option<Listener>,
    relaunch: Option<Relaunch>,
    pending: VecDeque<TransportEvent<Upgrade, Error>>,
    waker: Option<Waker>,
}

impl TorTransport {
    pub(crate) fn new(client: Arc<TorClient<PreferredRuntime>>, keypair: &Keypair, status: StatusCell) -> Self {
        Self {
            client,
            identity: OnionIdentity::of(keypair),
            status,
            listener: None,
            relaunch: None,
            pending: VecDeque::new(),
            waker: None,
        }
    }

    fn launch(
        &self,
        port: u16,
    ) -> Result<(Arc<RunningOnionService>, Multiaddr, BoxStream<'static, StreamRequest>), Error> {
        let identity = self.identity.as_ref().ok_or_else(|| Error::Service("the network key is not Ed25519".into()))?;
        let addr = addr::of_service(&identity.id, port)
            .ok_or_else(|| Error::Service("the service's address does not parse".into()))?;
        let nickname =
            tor_hsservice::HsNickname::new(identity.nickname()).map_err(|e| Error::Service(e.to_string()))?;
        let config: OnionServiceConfig = {
            let mut b = OnionServiceConfigBuilder::default();
            b.nickname(nickname);
            b.build().map_err(|e| Error::Service(e.to_string()))?
        };
        // The keystore holds the identity already if this key listened
        // before (the swarm restarts with the same key on a policy change).
        let launched = match self.client.launch_onion_service_with_hsid(config.clone(), identity.keypair()) {
            Ok(launched) => launched.map(|(service, requests)| (service, requests.boxed())),
            Err(_) => self
                .client
                .launch_onion_service(config)
                .map_err(|e| {
                    use arti_client::{ErrorKind, HasKind};
                    if e.kind() == ErrorKind::LocalResourceAlreadyInUse {
                        Error::ServiceBusy
                    } else {
                        Error::Service(e.to_string())
                    }
                })?
                .map(|(service, requests)| (service, requests.boxed())),
        };
        let (service, requests) = launched.ok_or_else(|| Error::Service("the service is disabled".into()))?;
        let requests = tor_hsservice::handle_rend_requests(requests).boxed();
        Ok((service, addr, requests))
    }

    /// Launches the service and makes it the listener `id`.
    fn start(&mut self, id: ListenerId, requested: &Multiaddr, port: u16) -> Result<(), Error> {
        let (service, addr, requests) = self.launch(port)?;
        if !addr::is_any(requested) && addr::host_and_port(requested) != addr::host_and_port(&addr) {
            return Err(Error::Service(
                "only this network key's own onion address (or /onion3/<zero>) can be listened on".into(),
            ));
        }
        let states = service.status_events().boxed();
        self.status.set_service(Some(addr.clone()), ServiceState::Publishing);
        tracing::info!(onion = %addr::redacted(&addr), "onion service launched");
        let probe = probe(&self.client, &addr);
        self.listener = Some(Listener { id, addr, port, _service: service, states, requests, probe, reported: false });
        self.wake();
        Ok(())
    }

    /// Tries a launch refused as busy again when its wait is over; the
    /// listener's closing event if it failed for good.
    fn poll_relaunch(&mut self, cx: &mut Context<'_>) -> Option<TransportEvent<Upgrade, Error>> {
        let relaunch = self.relaunch.as_mut()?;
        if relaunch.wait.as_mut().poll(cx).is_pending() {
            return None;
        }
        let mut relaunch = self.relaunch.take()?;
        match self.start(relaunch.id, &relaunch.requested, relaunch.port) {
            Ok(()) => None,
            Err(Error::ServiceBusy) if relaunch.attempts < RELAUNCH_ATTEMPTS => {
                relaunch.attempts += 1;
                relaunch.wait.as_mut().reset(tokio::time::Instant::now() + RELAUNCH_WAIT);
                // Polled once so the new deadline wakes this task.
                let _ = relaunch.wait.as_mut().poll(cx);
                self.relaunch = Some(relaunch);
                None
            }
            Err(e) => Some(TransportEvent::ListenerClosed { listener_id: relaunch.id, reason: Err(e) }),
        }
    }

    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

impl Drop for TorTransport {
    fn drop(&mut self) {
        if self.listener.is_some() {
            self.status.set_service(None, ServiceState::Stopped);
        }
    }
}

impl Transport for TorTransport {
    type Output = DataStream;
    type Error = Error;
    type ListenerUpgrade = Upgrade;
    type Dial = BoxFuture<'static, Result<DataStream, Error>>;

    fn listen_on(&mut self, id: ListenerId, requested: Multiaddr) -> Result<(), TransportError<Error>> {
        if !addr::is_onion(&requested) {
            return Err(TransportError::MultiaddrNotSupported(requested));
        }
        let port = match addr::host_and_port(&requested) {
            None => match requested.iter().next() {
                Some(libp2p::multiaddr::Protocol::Onion3(any)) => any.port(),
                _ => return Err(TransportError::MultiaddrNotSupported(requested)),
            },
            Some((_, port)) => port,
        };
        if self.listener.is_some() || self.relaunch.is_some() {
            return Err(TransportError::Other(Error::Service(
                "this network key's onion service is listening already".into(),
            )));
        }
        match self.start(id, &requested, port) {
            Err(Error::ServiceBusy) => {
                tracing::debug!("the previous onion service of this key is still shutting down; waiting");
                let wait = Box::pin(tokio::time::sleep(RELAUNCH_WAIT));
                self.relaunch = Some(Relaunch { id, requested, port, attempts: 1, wait });
                self.wake();
                Ok(())
            }
            other => other.map_err(TransportError::Other),
        }
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        if self.relaunch.as_ref().is_some_and(|r| r.id == id) {
            self.relaunch = None;
            self.pending.push_back(TransportEvent::ListenerClosed { listener_id: id, reason: Ok(()) });
            self.wake();
            return true;
        }
        if self.listener.as_ref().is_none_or(|l| l.id != id) {
            return false;
        }
        self.listener = None;
        self.status.set_service(None, ServiceState::Stopped);
        self.pending.push_back(TransportEvent::ListenerClosed { listener_id: id, reason: Ok(()) });
        self.wake();
        true
    }

    fn dial(&mut self, target: Multiaddr, opts: DialOpts) -> Result<Self::Dial, TransportError<Error>> {
        // No hole punching over Tor: a "dial as listener" makes no sense here.
        if opts.role == Endpoint::Listener {
            return Err(TransportError::MultiaddrNotSupported(target));
        }
        let Some((host, port)) = addr::host_and_port(&target) else {
            return Err(TransportError::MultiaddrNotSupported(target));
        };
        Ok(connect(Arc::clone(&self.client), host, port).boxed())
    }

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<TransportEvent<Upgrade, Error>> {
        let this = &mut *self;
        if let Some(event) = this.pending.pop_front() {
            return Poll::Ready(event);
        }
        if let Some(closed) = this.poll_relaunch(cx) {
            return Poll::Ready(closed);
        }
        let Some(listener) = this.listener.as_mut() else {
            this.waker = Some(cx.waker().clone());
            return Poll::Pending;
        };
        while let Poll::Ready(Some(state)) = listener.states.poll_next_unpin(cx) {
            let service = ServiceState::from(state.state());
            if service == ServiceState::Reachable {
                listener.probe = None;
            }
            // Once reached, republishing (a new consensus, a new time period)
            // does not make the service unreachable.
            let shown = match service {
                ServiceState::Publishing if listener.reported => ServiceState::Reachable,
                other => other,
            };
            this.status.set_service(Some(listener.addr.clone()), shown);
        }
        if let Some(probe) = listener.probe.as_mut()
            && probe.poll_unpin(cx).is_ready()
        {
            listener.probe = None;
            this.status.set_service(Some(listener.addr.clone()), ServiceState::Reachable);
        }
        if !listener.reported && (listener.probe.is_none() || this.status.get().service == ServiceState::Reachable) {
            listener.reported = true;
            this.status.set_service(Some(listener.addr.clone()), ServiceState::Reachable);
            tracing::info!(onion = %addr::redacted(&listener.addr), "onion service reachable");
            return Poll::Ready(TransportEvent::NewAddress {
                listener_id: listener.id,
                listen_addr: listener.addr.clone(),
            });
        }
        loop {
            match listener.requests.poll_next_unpin(cx) {
                Poll::Ready(Some(request)) => {
                    let wanted = match request.request() {
                        tor_proto::stream::IncomingStreamRequest::Begin(begin) => begin.port() == listener.port,
                        _ => false,
                    };
                    if !wanted {
                        // Another port, or a request veil never makes.
                        let _ = request.shutdown_circuit();
                        continue;
                    }
                    let upgrade: Upgrade = async move {
                        request.accept(Connected::new_empty()).await.map_err(|e| Error::Accept(e.to_string()))
                    }
                    .boxed();
                    return Poll::Ready(TransportEvent::Incoming {
                        listener_id: listener.id,
                        upgrade,
                        local_addr: listener.addr.clone(),
                        // Whoever connects through Tor has no address.
                        send_back_addr: addr::any(0),
                    });
                }
                Poll::Ready(None) => {
                    let id = listener.id;
                    this.listener = None;
                    this.status.set_service(None, ServiceState::Stopped);
                    return Poll::Ready(TransportEvent::ListenerClosed {
                        listener_id: id,
                        reason: Err(Error::Service("the onion service stopped".into())),
                    });
                }
                Poll::Pending => break,
            }
        }
        this.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use arti_client::ErrorKind as K;

    use super::transient;

    #[test]
    fn a_service_not_found_or_a_slow_network_is_tried_again_a_bad_target_is_not() {
        for kind in
            [K::OnionServiceNotFound, K::OnionServiceConnectionFailed, K::RemoteNetworkTimeout, K::TorNetworkTimeout]
        {
            assert!(transient(kind), "{kind:?}");
        }
        for kind in
            [K::InvalidStreamTarget, K::OnionServiceAddressInvalid, K::InvalidConfig, K::BadApiUsage, K::Internal]
        {
            assert!(!transient(kind), "{kind:?}");
        }
    }
}
