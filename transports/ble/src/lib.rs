//! # veil-ble
//!
//! veil over Bluetooth LE: an L2CAP connection-oriented channel where the
//! controller offers one ([`l2cap`]), else a byte stream carried by GATT
//! writes and notifications (docs/PROTOCOL.md §13). Most of this crate
//! needs no radio:
//!
//! * [`packet`]: the three packet kinds (data, credit, close) and their
//!   bounded decoder;
//! * [`channel`]: one side of a link as a state machine without I/O —
//!   chunking to the current packet size (the ATT MTU may change at any
//!   time), reassembly in order whatever order packets arrive in, duplicates
//!   ignored, credit-based flow control, every buffer bounded;
//! * [`stream`]: [`stream::PacketStream`], `AsyncRead + AsyncWrite` over any
//!   [`stream::PacketLink`], so Noise and yamux run on top as on TCP.
//!
//! [`radio`] is the BlueZ side (bluer over D-Bus): whether BLE can be used on
//! this machine, why not, and every change of that.
//!
//! [`air::Air`] is what the BLE actor (`veil-actors`) drives: a radio's
//! state, advertising this node's token (`veil_crypto::advert`: salted,
//! under a key of the period), scanning for others', and the plug-in that
//! carries connections. [`air::Bluez`] is the real one; [`l2cap`] its `ble`
//! plug-in (L2CAP connection-oriented channels with Noise and yamux on
//! top; its addresses as text are [`addr`]'s). [`ether`] is an in-process
//! air for tests.
//!
//! ```
//! use veil_ble::channel::Channel;
//!
//! let (mut a, mut b) = (Channel::new(4096), Channel::new(4096));
//! a.write(b"hello over the air").unwrap();
//! while let Some(packet) = a.poll_transmit(20) {
//!     b.receive(&packet).unwrap();
//! }
//! let mut buf = [0u8; 64];
//! let n = b.read(&mut buf).unwrap();
//! assert_eq!(&buf[..n], b"hello over the air");
//! ```

pub mod addr;
pub mod air;
pub mod channel;
pub mod error;
pub mod ether;
mod events;
#[cfg(test)]
mod fake_radio;
pub mod gatt;
pub mod l2cap;
pub mod packet;
pub mod radio;
pub mod stream;

pub use error::{Error, Result};
