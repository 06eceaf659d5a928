//! A libp2p transport whose set of inner transports changes while the swarm runs.
//!
//! [`SwitchableTransport`] is handed to the swarm; its [`SwitchHandle`] (cheap to
//! clone) attaches and detaches inner transports at any time. Both share one
//! state behind a mutex; the waker of the swarm's last `poll` is kept so an
//! attach or detach wakes the swarm up.
//!
//! * A dial or listen goes to the first attached transport whose
//!   [`TransportPlugin::handles`] accepts the address.
//! * Detaching drops the inner transport: its listeners end, and the swarm is
//!   told so with `ListenerClosed` for each of them. Connections already
//!   established over it are the network's to close (see
//!   [`Network`](crate::Network)); the transport does not own them.
//! * Every dial, listen and inbound connection is checked against the policy
//!   guard ([`SwitchHandle::set_guard`]), so no behaviour can dial around the
//!   privacy policy.

use std::collections::{HashSet, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use libp2p::core::transport::{DialOpts, ListenerId, TransportError, TransportEvent};
use libp2p::{Multiaddr, PeerId, Transport};

use crate::error::Error;
use crate::plugin::{BoxedTransport, Connection, TransportId, TransportKind, TransportPlugin};
use crate::policy::{self, Policy, RelaySet};

struct Slot {
    plugin: Arc<dyn TransportPlugin>,
    id: TransportId,
    kind: TransportKind,
    transport: BoxedTransport,
    listeners: HashSet<ListenerId>,
}

impl Slot {
    /// Closes the transport's listeners: dropping alone does not free
    /// everything (libp2p's memory transport keeps its ports registered
    /// until a listener is removed), and a transport attached again, or a
    /// restarted swarm, must be able to listen there again.
    fn close_listeners(&mut self) {
        for id in self.listeners.drain() {
            self.transport.remove_listener(id);
        }
    }
}

struct Shared {
    slots: Vec<Slot>,
    /// Listeners of detached transports, reported as closed on the next poll.
    closed: VecDeque<ListenerId>,
    waker: Option<Waker>,
    policy: Policy,
    relays: RelaySet,
    /// Round-robin start, so one busy transport cannot starve the others.
    next: usize,
}

impl Shared {
    fn wake(&mut self) -> Option<Waker> {
        self.waker.take()
    }
}

/// The runtime-switchable transport; give it to the swarm.
pub struct SwitchableTransport {
    shared: Arc<Mutex<Shared>>,
}

impl std::fmt::Debug for SwitchableTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwitchableTransport").finish_non_exhaustive()
    }
}

/// Attaches and detaches the inner transports of a [`SwitchableTransport`].
#[derive(Clone)]
pub struct SwitchHandle {
    shared: Arc<Mutex<Shared>>,
}

impl std::fmt::Debug for SwitchHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwitchHandle").field("attached", &self.attached()).finish()
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

fn denied(policy: Policy, reason: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, format!("the {policy} policy forbids this: {reason}"))
}

impl SwitchableTransport {
    /// An empty switchable transport under `policy` with `relays`.
    pub fn new(policy: Policy, relays: RelaySet) -> (Self, SwitchHandle) {
        let shared = Arc::new(Mutex::new(Shared {
            slots: Vec::new(),
            closed: VecDeque::new(),
            waker: None,
            policy,
            relays,
            next: 0,
        }));
        (Self { shared: shared.clone() }, SwitchHandle { shared })
    }
}

impl SwitchHandle {
    /// Attaches `transport`, built from `plugin`. Fails if a transport with the
    /// same id is attached.
    pub fn attach(&self, plugin: Arc<dyn TransportPlugin>, transport: BoxedTransport) -> Result<(), Error> {
        let waker = {
            let mut s = lock(&self.shared);
            let id = plugin.id();
            if s.slots.iter().any(|slot| slot.id == id) {
                return Err(Error::AlreadyAttached(id));
            }
            tracing::debug!(transport = %id, "transport attached");
            let kind = plugin.kind();
            s.slots.push(Slot { plugin, id, kind, transport, listeners: HashSet::new() });
            s.wake()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Detaches and drops the transport `id`; its listeners are reported closed.
    /// Returns the plug-in it was built from.
    pub fn detach(&self, id: &TransportId) -> Result<Arc<dyn TransportPlugin>, Error> {
        let (slot, waker) = {
            let mut s = lock(&self.shared);
            let pos = s.slots.iter().position(|slot| &slot.id == id).ok_or_else(|| Error::NotAttached(id.clone()))?;
            let mut slot = s.slots.remove(pos);
            s.closed.extend(slot.listeners.iter().copied());
            tracing::debug!(transport = %id, listeners = slot.listeners.len(), "transport detached");
            slot.close_listeners();
            (slot, s.wake())
        };
        let plugin = slot.plugin.clone();
        drop(slot);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(plugin)
    }

    /// Closes every listener of every transport (a swarm about to be
    /// replaced: its successor listens there next).
    pub fn close_listeners(&self) {
        for slot in &mut lock(&self.shared).slots {
            slot.close_listeners();
        }
    }

    /// The attached transports, in routing order.
    pub fn attached(&self) -> Vec<(TransportId, TransportKind)> {
        lock(&self.shared).slots.iter().map(|s| (s.id.clone(), s.kind)).collect()
    }

    /// Whether a transport with this id is attached.
    pub fn is_attached(&self, id: &TransportId) -> bool {
        lock(&self.shared).slots.iter().any(|s| &s.id == id)
    }

    /// The attached transport that would carry `addr` (the first that handles it).
    pub fn route(&self, addr: &Multiaddr) -> Option<(TransportId, TransportKind)> {
        lock(&self.shared).slots.iter().find(|s| s.plugin.handles(addr)).map(|s| (s.id.clone(), s.kind))
    }

    /// Replaces the policy guard checked on every dial, listen and inbound connection.
    pub fn set_guard(&self, policy: Policy, relays: RelaySet) {
        let mut s = lock(&self.shared);
        s.policy = policy;
        s.relays = relays;
    }

    /// Lets a relayed node dial `peer` directly, as a relay (see
    /// [`RelaySet::add_dialed`]).
    pub fn allow_relay(&self, peer: PeerId) {
        lock(&self.shared).relays.add_dialed(peer);
    }
}

impl Transport for SwitchableTransport {
    type Output = Connection;
    type Error = io::Error;
    type ListenerUpgrade = <BoxedTransport as Transport>::ListenerUpgrade;
    type Dial = <BoxedTransport as Transport>::Dial;

    fn listen_on(&mut self, id: ListenerId, addr: Multiaddr) -> Result<(), TransportError<io::Error>> {
        let mut s = lock(&self.shared);
        let policy = s.policy;
        let mut addr = addr;
        for slot in s.slots.iter_mut() {
            if !slot.plugin.handles(&addr) {
                continue;
            }
            if let Err(reason) = policy::check_listen(policy, slot.kind, &addr) {
                return Err(TransportError::Other(denied(policy, reason)));
            }
            match slot.transport.listen_on(id, addr) {
                Ok(()) => {
                    slot.listeners.insert(id);
                    return Ok(());
                }
                Err(TransportError::MultiaddrNotSupported(a)) => addr = a,
                Err(e) => return Err(e),
            }
        }
        Err(TransportError::MultiaddrNotSupported(addr))
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        let mut s = lock(&self.shared);
        match s.slots.iter_mut().find(|slot| slot.listeners.contains(&id)) {
            Some(slot) => {
                slot.listeners.remove(&id);
                slot.transport.remove_listener(id)
            }
            None => false,
        }
    }

    fn dial(&mut self, addr: Multiaddr, opts: DialOpts) -> Result<Self::Dial, TransportError<io::Error>> {
        let mut s = lock(&self.shared);
        let Shared { slots, policy, relays, .. } = &mut *s;
        let mut addr = addr;
        for slot in slots.iter_mut() {
            if !slot.plugin.handles(&addr) {
                continue;
            }
            if let Err(reason) = policy::check_dial(*policy, slot.kind, &addr, relays) {
                tracing::debug!(transport = %slot.id, %addr, reason, "dial refused by policy");
                return Err(TransportError::Other(denied(*policy, reason)));
            }
            match slot.transport.dial(addr, opts) {
                Ok(dial) => return Ok(dial),
                Err(TransportError::MultiaddrNotSupported(a)) => addr = a,
                Err(e) => return Err(e),
            }
        }
        Err(TransportError::MultiaddrNotSupported(addr))
    }

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<TransportEvent<Self::ListenerUpgrade, io::Error>> {
        let mut s = lock(&self.shared);
        if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.waker = Some(cx.waker().clone());
        }
        if let Some(listener_id) = s.closed.pop_front() {
            return Poll::Ready(TransportEvent::ListenerClosed { listener_id, reason: Ok(()) });
        }
        let n = s.slots.len();
        if n == 0 {
            return Poll::Pending;
        }
        let start = s.next % n;
        s.next = s.next.wrapping_add(1);
        let policy = s.policy;
        for i in 0..n {
            let slot = &mut s.slots[(start + i) % n];
            loop {
                match Pin::new(&mut slot.transport).poll(cx) {
                    Poll::Pending => break,
                    Poll::Ready(TransportEvent::Incoming { send_back_addr, .. })
                        if policy::check_inbound(policy, slot.kind, &send_back_addr).is_err() =>
                    {
                        // Dropping the upgrade closes the connection.
                        tracing::debug!(transport = %slot.id, remote = %send_back_addr, "inbound connection refused by policy");
                    }
                    Poll::Ready(event) => {
                        if let TransportEvent::ListenerClosed { listener_id, .. } = &event {
                            slot.listeners.remove(listener_id);
                        }
                        return Poll::Ready(event);
                    }
                }
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use futures::StreamExt;
    use libp2p::core::Endpoint;
    use libp2p::core::transport::PortUse;
    use libp2p::identity::Keypair;

    use super::*;
    use crate::plugin::{Memory, Tcp};

    fn dial_opts() -> DialOpts {
        DialOpts { role: Endpoint::Dialer, port_use: PortUse::New }
    }

    #[tokio::test]
    async fn attach_listen_detach_closes_listener() {
        let key = Keypair::generate_ed25519();
        let (transport, handle) = SwitchableTransport::new(Policy::Direct, RelaySet::new());
        let mut transport = transport.boxed();
        let addr: Multiaddr = "/memory/0".parse().unwrap();
        // Nothing attached: not supported.
        assert!(matches!(
            transport.listen_on(ListenerId::next(), addr.clone()),
            Err(TransportError::MultiaddrNotSupported(_))
        ));
        let mem: Arc<dyn TransportPlugin> = Arc::new(Memory::new());
        handle.attach(mem.clone(), mem.build(&key).unwrap()).unwrap();
        assert!(matches!(handle.attach(mem.clone(), mem.build(&key).unwrap()), Err(Error::AlreadyAttached(_))));
        let id = ListenerId::next();
        transport.listen_on(id, addr.clone()).unwrap();
        match transport.next().await.unwrap() {
            TransportEvent::NewAddress { listener_id, .. } => assert_eq!(listener_id, id),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(handle.route(&addr).unwrap().0, TransportId::MEMORY);
        handle.detach(&TransportId::MEMORY).unwrap();
        match transport.next().await.unwrap() {
            TransportEvent::ListenerClosed { listener_id, reason } => {
                assert_eq!(listener_id, id);
                assert!(reason.is_ok());
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(handle.route(&addr).is_none());
        assert!(matches!(handle.detach(&TransportId::MEMORY), Err(Error::NotAttached(_))));
    }

    #[tokio::test]
    async fn guard_refuses_dial_and_listen() {
        let key = Keypair::generate_ed25519();
        let (mut transport, handle) = SwitchableTransport::new(Policy::Anonymous, RelaySet::new());
        let tcp: Arc<dyn TransportPlugin> = Arc::new(Tcp::new());
        handle.attach(tcp.clone(), tcp.build(&key).unwrap()).unwrap();
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().unwrap();
        match transport.listen_on(ListenerId::next(), addr.clone()) {
            Err(TransportError::Other(e)) => assert_eq!(e.kind(), io::ErrorKind::PermissionDenied),
            other => panic!("unexpected {:?}", other.err()),
        }
        match transport.dial("/ip4/127.0.0.1/tcp/9".parse().unwrap(), dial_opts()) {
            Err(TransportError::Other(e)) => assert_eq!(e.kind(), io::ErrorKind::PermissionDenied),
            Err(e) => panic!("unexpected {e:?}"),
            Ok(_) => panic!("dial allowed"),
        }
        handle.set_guard(Policy::Direct, RelaySet::new());
        assert!(transport.listen_on(ListenerId::next(), addr).is_ok());
    }

    #[tokio::test]
    async fn guard_refuses_inbound() {
        let mem: Arc<dyn TransportPlugin> = Arc::new(Memory::new());
        let (listener, listener_handle) = SwitchableTransport::new(Policy::Direct, RelaySet::new());
        let mut listener = listener.boxed();
        listener_handle.attach(mem.clone(), mem.build(&Keypair::generate_ed25519()).unwrap()).unwrap();
        let (mut dialer, dialer_handle) = SwitchableTransport::new(Policy::Direct, RelaySet::new());
        dialer_handle.attach(mem.clone(), mem.build(&Keypair::generate_ed25519()).unwrap()).unwrap();

        listener.listen_on(ListenerId::next(), "/memory/0".parse().unwrap()).unwrap();
        let addr = match listener.next().await.unwrap() {
            TransportEvent::NewAddress { listen_addr, .. } => listen_addr,
            other => panic!("unexpected {other:?}"),
        };
        // From now on the listener only accepts mixnet connections.
        listener_handle.set_guard(Policy::Anonymous, RelaySet::new());
        let (seen_tx, mut seen_rx) = tokio::sync::mpsc::channel(8);
        let driver = tokio::spawn(async move {
            while let Some(event) = listener.next().await {
                if let TransportEvent::Incoming { upgrade, .. } = event {
                    seen_tx.send(()).await.unwrap();
                    let _ = upgrade.await;
                }
            }
        });
        // The refused connection is dropped before the handshake: the dial fails.
        assert!(dialer.dial(addr, dial_opts()).unwrap().await.is_err());
        assert!(seen_rx.try_recv().is_err(), "the refused connection reached the swarm");
        driver.abort();
    }
}
