//! The bodies of veil's fuzz targets, one function per decoder of untrusted
//! bytes (issue 20): what arrives from the network, the air, a link or QR
//! code. Each body never panics on any input; where an encoder exists, it
//! also checks that whatever decodes encodes back to the same value.
//!
//! `fuzz_targets/<name>.rs` hands libFuzzer's input to [`TARGETS`]'s
//! function of that name (`just fuzz`, nightly); `tests/smoke.rs` feeds the
//! same functions [`seeds`], every kept regression input
//! (`regressions/<name>/`) and a few thousand pseudo-random and mutated
//! inputs, on stable (CI).
//!
//! Two decoders live in crates too heavy for fast builds, so their source
//! files are compiled in here as they are:
//!
//! * `transports/src/framing.rs` ([`framing`]): `/veil/frame/2` and
//!   `/veil/contact/1` frames and acknowledgements (veil-transports needs
//!   libp2p);
//! * `transports/ble/src/{error,packet,channel,addr}.rs` ([`packet`],
//!   [`channel`], [`addr`]): the GATT link's packets and reassembly, BLE
//!   addresses (veil-ble needs BlueZ's libraries);
//! * `storage/src/backup/format.rs` ([`backup_format`]): a backup file's
//!   header, parts and chunks (veil-storage needs SQLite).
//!
//! Those files use nothing but `std`, `futures`, `thiserror` and `zeroize`; a change
//! that makes them use more breaks this crate's build, in CI.

#[path = "../../../transports/ble/src/addr.rs"]
pub mod addr;
/// A backup file's framing.
#[path = "../../../storage/src/backup/format.rs"]
pub mod backup_format;
#[path = "../../../transports/ble/src/channel.rs"]
pub mod channel;
/// The BLE link's errors (`crate::error` of the BLE sources).
#[path = "../../../transports/ble/src/error.rs"]
pub mod error;
#[path = "../../../transports/src/framing.rs"]
pub mod framing;
#[path = "../../../transports/ble/src/packet.rs"]
pub mod packet;

mod fixture;
mod seeds;
mod targets;

pub use seeds::{check_crafted, seeds};
pub use targets::*;

/// Every target: its name (that of its `fuzz_targets/` file) and its body.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("advert", advert),
    ("backup", backup),
    ("ble_addr", ble_addr),
    ("ble_link", ble_link),
    ("device_link", device_link),
    ("device_offer", device_offer),
    ("entry", entry),
    ("envelope", envelope),
    ("frame", frame),
    ("group_frame", group_frame),
    ("handshake", handshake),
    ("link", link),
    ("metadata", metadata),
    ("noise", noise),
    ("reconcile", reconcile),
    ("sealed", sealed),
];
