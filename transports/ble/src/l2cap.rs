//! veil over an L2CAP connection-oriented channel (LE credit-based flow
//! control in the kernel): a byte stream between two BLE devices, made a
//! veil transport plug-in ([`Ble`], id `ble`, kind proximity) by Noise and
//! yamux on top, like TCP.
//!
//! Addresses (docs/TRANSPORTS.md, "BLE"): libp2p has no multiaddr protocol
//! for Bluetooth, so a BLE address rides in `/unix/`:
//! `/unix/ble.<12 hex digits of the device address>.<public|random>.<psm>`,
//! e.g. `/unix/ble.c0ffee000001.random.129`. The all-zero device address
//! means "any adapter" (to listen on). A peer's address is learnt over the
//! air (`air::Sighting`), never from a directory.
//!
//! ```
//! use veil_ble::l2cap::{BleAddr, PSM};
//!
//! let addr = BleAddr { device: [0xc0, 0xff, 0xee, 0, 0, 1], random: true, psm: PSM };
//! let multiaddr = addr.to_multiaddr();
//! assert_eq!(multiaddr.to_string(), "/unix/ble.c0ffee000001.random.129");
//! assert_eq!(BleAddr::parse(&multiaddr).unwrap(), addr);
//! ```

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bluer::l2cap::{SocketAddr, Stream as L2capStream, StreamListener};
use futures::{FutureExt, future::BoxFuture};
use libp2p::{
    Multiaddr,
    core::{
        Endpoint,
        multiaddr::Protocol,
        transport::{DialOpts, ListenerId, TransportError, TransportEvent},
    },
    identity::Keypair,
};
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};
use veil_transports::{BoxedTransport, TransportId, TransportKind, TransportPlugin, authenticate_and_multiplex};

pub use crate::addr::{BleAddr, NotBleAddr, PSM};

/// Connections a listener's kernel queue holds before veil accepts them.
const BACKLOG: u32 = 8;

/// How long a connection may take to open: an LE connection to a device
/// gone out of range (or one that changed its private address) otherwise
/// waits for as long as the kernel keeps trying.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

impl BleAddr {
    /// The multiaddr carrying this address.
    pub fn to_multiaddr(&self) -> Multiaddr {
        Multiaddr::empty().with(Protocol::Unix(self.to_string().into()))
    }

    /// The address in `addr`'s first component; a trailing `/p2p/<peer>`
    /// is allowed, anything else is not.
    pub fn parse(addr: &Multiaddr) -> Result<Self, NotBleAddr> {
        let mut parts = addr.iter();
        let Some(Protocol::Unix(text)) = parts.next() else { return Err(NotBleAddr("not /unix/ble.…")) };
        match parts.next() {
            None | Some(Protocol::P2p(_)) if parts.next().is_none() => text.parse(),
            _ => Err(NotBleAddr("more after the address than a peer id")),
        }
    }

    /// The kernel's form of this address.
    pub fn socket_addr(&self) -> SocketAddr {
        let addr_type = if self.random { bluer::AddressType::LeRandom } else { bluer::AddressType::LePublic };
        SocketAddr::new(bluer::Address(self.device), addr_type, self.psm)
    }

    fn of_socket(sa: &SocketAddr) -> Self {
        Self { device: sa.addr.0, random: sa.addr_type == bluer::AddressType::LeRandom, psm: sa.psm }
    }
}

/// What the transport's errors are: the kernel's.
pub type Error = std::io::Error;

/// A connection's byte stream.
pub type Connection = Compat<L2capStream>;

/// A listener's next connection, accepted already.
pub type Upgrade = futures::future::Ready<Result<Connection, Error>>;

struct Listener {
    id: ListenerId,
    socket: StreamListener,
    addr: Multiaddr,
}

/// L2CAP connection-oriented channels as a libp2p transport of byte
/// streams (no security, no multiplexing: [`Ble`] adds both).
#[derive(Default)]
pub struct L2capTransport {
    /// The adapter dials leave from (its public address); `None`: the
    /// kernel's choice.
    from: Option<[u8; 6]>,
    listeners: Vec<Listener>,
    owed: crate::events::Owed<Upgrade>,
}

impl std::fmt::Debug for L2capTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L2capTransport").field("listeners", &self.listeners.len()).finish_non_exhaustive()
    }
}

impl libp2p::Transport for L2capTransport {
    type Output = Connection;
    type Error = Error;
    type ListenerUpgrade = Upgrade;
    type Dial = BoxFuture<'static, Result<Connection, Error>>;

    fn listen_on(&mut self, id: ListenerId, requested: Multiaddr) -> Result<(), TransportError<Error>> {
        let Some(addr) = channel_of(&requested) else { return Err(TransportError::MultiaddrNotSupported(requested)) };
        let bound = bluer::l2cap::Socket::<L2capStream>::new_stream()
            .and_then(|socket| socket.bind(addr.socket_addr()).map(|()| socket))
            .and_then(|socket| socket.listen(BACKLOG))
            .map_err(TransportError::Other)?;
        let local = bound.as_ref().local_addr().map(|sa| BleAddr::of_socket(&sa)).unwrap_or(addr);
        let addr = local.to_multiaddr();
        self.listeners.push(Listener { id, socket: bound, addr: addr.clone() });
        self.owed.push(TransportEvent::NewAddress { listener_id: id, listen_addr: addr });
        Ok(())
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        self.owed.remove(&mut self.listeners, id, |l| l.id)
    }

    fn dial(&mut self, target: Multiaddr, opts: DialOpts) -> Result<Self::Dial, TransportError<Error>> {
        // No hole punching between radios.
        if opts.role == Endpoint::Listener {
            return Err(TransportError::MultiaddrNotSupported(target));
        }
        let Some(addr) = channel_of(&target) else { return Err(TransportError::MultiaddrNotSupported(target)) };
        if addr.device == [0; 6] {
            return Err(TransportError::MultiaddrNotSupported(target));
        }
        let from = self.from;
        Ok(async move {
            let connect = async move {
                let Some(device) = from else { return L2capStream::connect(addr.socket_addr()).await };
                let socket = bluer::l2cap::Socket::<L2capStream>::new_stream()?;
                socket.bind(SocketAddr::new(bluer::Address(device), bluer::AddressType::LePublic, 0))?;
                socket.connect(addr.socket_addr()).await
            };
            match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
                Ok(connected) => connected.map(TokioAsyncReadCompatExt::compat),
                Err(_) => Err(Error::new(std::io::ErrorKind::TimedOut, "no LE connection in time")),
            }
        }
        .boxed())
    }

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<TransportEvent<Upgrade, Error>> {
        let this = &mut *self;
        if let Some(event) = this.owed.pop() {
            return Poll::Ready(event);
        }
        for i in 0..this.listeners.len() {
            let listener = &this.listeners[i];
            match listener.socket.poll_accept(cx) {
                Poll::Ready(Ok((stream, peer))) => {
                    return Poll::Ready(TransportEvent::Incoming {
                        listener_id: listener.id,
                        upgrade: futures::future::ready(Ok(stream.compat())),
                        local_addr: listener.addr.clone(),
                        send_back_addr: BleAddr::of_socket(&peer).to_multiaddr(),
                    });
                }
                Poll::Ready(Err(error)) => {
                    let listener = this.listeners.remove(i);
                    return Poll::Ready(TransportEvent::ListenerClosed {
                        listener_id: listener.id,
                        reason: Err(error),
                    });
                }
                Poll::Pending => {}
            }
        }
        this.owed.park(cx);
        Poll::Pending
    }
}

/// The L2CAP channel `addr` names (not a GATT address).
fn channel_of(addr: &Multiaddr) -> Option<BleAddr> {
    BleAddr::parse(addr).ok().filter(|a| a.psm != crate::addr::GATT)
}

/// The BLE plug-in: L2CAP channels, then Noise with the node's network key
/// and yamux (`veil_transports::authenticate_and_multiplex`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Ble {
    from: Option<[u8; 6]>,
}

impl Ble {
    /// The plug-in dialing from whichever adapter the kernel picks.
    pub const ANY_ADAPTER: Self = Self { from: None };

    /// The plug-in dialing from the adapter whose public address is
    /// `device` (a machine with several adapters).
    pub fn from_adapter(device: [u8; 6]) -> Self {
        Self { from: Some(device) }
    }
}

/// The id of every BLE plug-in (`ble`).
pub const BLE: TransportId = TransportId::from_static("ble");

impl TransportPlugin for Ble {
    fn id(&self) -> TransportId {
        BLE
    }

    fn kind(&self) -> TransportKind {
        TransportKind::Proximity
    }

    /// L2CAP channels (`….<psm>`) and GATT links (`….gatt`).
    fn handles(&self, addr: &Multiaddr) -> bool {
        BleAddr::parse(addr).is_ok()
    }

    fn build(&self, keypair: &Keypair) -> Result<BoxedTransport, veil_transports::Error> {
        use libp2p::Transport;
        let l2cap = L2capTransport { from: self.from, ..L2capTransport::default() };
        let gatt = crate::gatt::GattTransport::from_adapter(self.from.unwrap_or_default());
        authenticate_and_multiplex(l2cap.or_transport(gatt), keypair)
            .map_err(|e| veil_transports::Error::Build { id: self.id(), reason: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn addresses_round_trip_and_keep_a_peer_id() {
        let addr = BleAddr { device: [0xc0, 0xff, 0xee, 0, 0, 1], random: true, psm: PSM };
        let peer = libp2p::PeerId::random();
        let with_peer = addr.to_multiaddr().with(Protocol::P2p(peer));
        assert_eq!(BleAddr::parse(&with_peer), Ok(addr));
        assert!(Ble::ANY_ADAPTER.handles(&with_peer));
        assert_eq!(BleAddr::ANY.to_string(), "ble.000000000000.public.129");
    }

    #[test]
    fn the_dynamic_range_is_bluez_s() {
        assert_eq!(crate::addr::PSM_LE_DYNAMIC, bluer::l2cap::PSM_LE_DYN_START..=bluer::l2cap::PSM_LE_MAX);
    }

    #[test]
    fn other_addresses_are_not_ble() {
        for bad in [
            "/ip4/127.0.0.1/tcp/1",
            "/memory/5",
            "/unix/tmp%2Fsocket",
            "/unix/ble.c0ffee000001.random.129/p2p-circuit",
            "/unix/ble.c0ffee000001.random.129/tcp/1",
        ] {
            let addr: Multiaddr = bad.parse().unwrap();
            assert!(BleAddr::parse(&addr).is_err(), "{bad}");
            assert!(!Ble::ANY_ADAPTER.handles(&addr), "{bad}");
        }
        for bad in [
            "ble.c0ffee00001.random.129",
            "ble.c0ffee0000011.random.129",
            "ble.c0ffeg000001.random.129",
            "ble.c0ffee000001.static.129",
            "ble.c0ffee000001.random.127",
            "ble.c0ffee000001.random.256",
            "ble.c0ffee000001.random.0129",
            "ble.c0ffee000001.random.+29",
            "ble.c0ffee000001.random.",
            "ble.c0ffee000001.random.129.",
            "bla.c0ffee000001.random.129",
        ] {
            assert!(bad.parse::<BleAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn dialing_needs_a_device_and_the_dialer_role() {
        use libp2p::Transport;
        let mut transport = L2capTransport::default();
        let opts = DialOpts { role: Endpoint::Dialer, port_use: libp2p::core::transport::PortUse::New };
        let any = BleAddr::ANY.to_multiaddr();
        assert!(matches!(transport.dial(any, opts), Err(TransportError::MultiaddrNotSupported(_))));
        let tcp: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        assert!(matches!(transport.dial(tcp, opts), Err(TransportError::MultiaddrNotSupported(_))));
    }

    proptest! {
        #[test]
        fn any_string_parses_or_is_refused_and_parsed_ones_round_trip(s in "\\PC{0,40}") {
            if let Ok(addr) = s.parse::<BleAddr>() {
                prop_assert_eq!(addr.to_string(), s);
            }
        }

        #[test]
        fn every_address_round_trips(
            device in any::<[u8; 6]>(),
            random in any::<bool>(),
            psm in prop_oneof![0x80u16..=0xff, Just(crate::addr::GATT)],
        ) {
            let addr = BleAddr { device, random, psm };
            prop_assert_eq!(BleAddr::parse(&addr.to_multiaddr()), Ok(addr));
            prop_assert!(Ble::ANY_ADAPTER.handles(&addr.to_multiaddr()));
            prop_assert_eq!(channel_of(&addr.to_multiaddr()).is_some(), psm != crate::addr::GATT);
        }
    }
}
