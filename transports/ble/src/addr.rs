//! BLE addresses as text (docs/TRANSPORTS.md, "BLE"): the
//! `ble.<12 hex digits of the device address>.<public|random>.<psm>` inside
//! a `/unix/` multiaddr ([`crate::l2cap`] carries them), or `….gatt` for
//! veil's GATT service instead of an L2CAP channel ([`crate::gatt`]). Only `std` here:
//! the fuzz targets (`integration-tests/fuzz`) compile this file as it is,
//! without BlueZ's libraries.

/// The protocol/service multiplexer veil listens on: the first odd one of
/// LE's dynamic range above its start (0x81).
pub const PSM: u16 = 0x81;

/// The channel of the GATT link (`….gatt` in text): no L2CAP channel, veil's
/// GATT service.
pub const GATT: u16 = 0;

/// LE's dynamic PSM range (`bluer::l2cap::PSM_LE_DYN_START..=PSM_LE_MAX`).
pub(crate) const PSM_LE_DYNAMIC: std::ops::RangeInclusive<u16> = 0x80..=0xff;

/// The longest address string this parses (`ble.` + 12 + `.random.` + 3).
const MAX_ADDR_LEN: usize = 32;

/// A BLE device address and channel, as carried in a multiaddr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BleAddr {
    /// The device address, most significant byte first (as BlueZ shows it).
    pub device: [u8; 6],
    /// A random (not public) device address: what BlueZ gives an advertiser.
    pub random: bool,
    /// The L2CAP protocol/service multiplexer, or [`GATT`].
    pub psm: u16,
}

/// Why a string is not a BLE address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a BLE address: {0}")]
pub struct NotBleAddr(pub(crate) &'static str);

impl BleAddr {
    /// Any local adapter, on veil's channel: what a node listens on.
    pub const ANY: Self = Self { device: [0; 6], random: false, psm: PSM };
}

impl std::fmt::Display for BleAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ble.")?;
        for b in self.device {
            write!(f, "{b:02x}")?;
        }
        let kind = if self.random { "random" } else { "public" };
        match self.psm {
            GATT => write!(f, ".{kind}.gatt"),
            psm => write!(f, ".{kind}.{psm}"),
        }
    }
}

impl std::str::FromStr for BleAddr {
    type Err = NotBleAddr;

    fn from_str(s: &str) -> Result<Self, NotBleAddr> {
        if s.len() > MAX_ADDR_LEN {
            return Err(NotBleAddr("too long"));
        }
        let mut parts = s.split('.');
        let (Some("ble"), Some(hex), Some(kind), Some(psm), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(NotBleAddr("not ble.<device>.<kind>.<psm>"));
        };
        if hex.len() != 12 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(NotBleAddr("the device address is not 12 lowercase hex digits"));
        }
        let mut device = [0u8; 6];
        for (i, byte) in device.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| NotBleAddr("bad hex"))?;
        }
        let random = match kind {
            "random" => true,
            "public" => false,
            _ => return Err(NotBleAddr("the kind is neither public nor random")),
        };
        if psm == "gatt" {
            return Ok(Self { device, random, psm: GATT });
        }
        if psm.is_empty() || psm.len() > 3 || !psm.bytes().all(|b| b.is_ascii_digit()) || psm.starts_with('0') {
            return Err(NotBleAddr("the channel is not a number"));
        }
        let psm: u16 = psm.parse().map_err(|_| NotBleAddr("the channel is not a number"))?;
        if !PSM_LE_DYNAMIC.contains(&psm) {
            return Err(NotBleAddr("the channel is outside LE's dynamic range"));
        }
        Ok(Self { device, random, psm })
    }
}
