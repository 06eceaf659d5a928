//! veil's transport layer.
//!
//! * [`TransportPlugin`]: the plug-in API. A transport names itself, says what
//!   kind of network it uses ([`TransportKind`]), which addresses it carries,
//!   and builds a libp2p transport; [`authenticate_and_multiplex`] adds Noise
//!   and yamux to any byte-stream transport (BLE, Tor). Built in: [`Tcp`],
//!   [`Quic`], [`Memory`].
//! * [`SwitchableTransport`]: a libp2p transport whose inner transports are
//!   attached and detached while the swarm runs.
//! * [`Policy`]: the privacy policies (`Direct`, `Relayed`, `Anonymous`,
//!   `Offline`) and the pure checks in [`policy`] that enforce them.
//! * [`Network`]: a libp2p swarm in a tokio task carrying veil's frames on
//!   persistent, acknowledged frame streams (`/veil/frame/2`), with identify, the
//!   relay client and, where the policy and configuration need them,
//!   Kademlia, rendezvous, mDNS, relay server, DCUtR, AutoNAT and ping;
//!   controlled through a [`NetworkHandle`] and reporting [`NetworkEvent`]s.
//!   It also carries the contact protocol (`/veil/contact/1`,
//!   [`NetworkHandle::request`]) and announces and looks up rendezvous points
//!   ([`NetworkHandle::announce`], [`NetworkHandle::lookup`]).
//!
//! Nothing here knows about actix; the `TransportManager` actor wraps a
//! [`NetworkHandle`]. See `docs/TRANSPORTS.md` for the design.
//!
//! # Example
//!
//! Two nodes over the in-process memory transport; one sends a frame, the
//! other receives it, and the send resolves once it is acknowledged.
//!
//! ```
//! use std::sync::Arc;
//! use veil_crypto::{NetworkKey, OsEntropy};
//! use veil_transports::{Memory, Network, NetworkConfig, NetworkEvent, Policy, TransportPlugin};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = NetworkConfig::default();
//! config.mdns = false;
//! let memory = || vec![Arc::new(Memory::new()) as Arc<dyn TransportPlugin>];
//!
//! let (alice, _alice_events) =
//!     Network::spawn(&NetworkKey::generate(&mut OsEntropy)?, Policy::Direct, memory(), config.clone())?;
//! let (bob, mut bob_events) =
//!     Network::spawn(&NetworkKey::generate(&mut OsEntropy)?, Policy::Direct, memory(), config)?;
//!
//! let bob_addr = bob.listen("/memory/0".parse()?).await?;
//! let bob_id = alice.dial(bob_addr).await?;
//! alice.send_frame(bob_id, b"hello".to_vec()).await?; // acknowledged by bob
//!
//! loop {
//!     match bob_events.recv().await {
//!         Some(NetworkEvent::FrameReceived { frame, .. }) => {
//!             assert_eq!(frame, b"hello");
//!             break;
//!         }
//!         Some(_) => continue,
//!         None => panic!("bob stopped"),
//!     }
//! }
//! alice.shutdown().await?;
//! bob.shutdown().await?;
//! # Ok(())
//! # }
//! ```

mod address_book;
mod behaviour;
pub mod codec;
mod discovery;
mod driver;
mod error;
mod framing;
pub mod learned;
mod network;
mod plugin;
pub mod policy;
mod route;
mod stream;
mod switchable;

pub use codec::{CONTACT_PROTOCOL, DEFAULT_MAX_FRAME, FRAME_PROTOCOL, FrameCodec};
pub use discovery::{MAX_ANNOUNCE_TTL, MAX_LOOKUP_ADDRS, MAX_LOOKUP_PEERS, MIN_ANNOUNCE_TTL};
pub use error::{DialFailure, Error, ListenFailure, RequestFailure, Result, SendFailure};
pub use learned::{AddressSource, LearnedAddress};
pub use network::{InboundRequestId, Network, NetworkConfig, NetworkEvent, NetworkHandle, keypair_from, peer_id_of};
pub use plugin::{
    BoxedTransport, Connection, Memory, Quic, Tcp, TransportId, TransportKind, TransportPlugin,
    authenticate_and_multiplex,
};
pub use policy::{KnownRelay, Policy, RelayOrigin, RelaySet};
pub use route::{OpenConnection, Route};
pub use switchable::{SwitchHandle, SwitchableTransport};

/// The libp2p version this crate is built on, re-exported so plug-in authors
/// use the same types.
pub use libp2p;
