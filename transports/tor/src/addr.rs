//! Onion addresses as libp2p multiaddrs (`/onion3/<56 base32 chars>:<port>`).

use std::borrow::Cow;

use libp2p::Multiaddr;
use libp2p::multiaddr::{Onion3Addr, Protocol};
use safelog::DisplayRedacted;
use tor_hscrypto::pk::HsId;

/// Length of a v3 onion address's binary form: key, checksum, version.
const ONION3_LEN: usize = 35;

/// The port veil's onion services listen on (virtual: it exists only
/// inside Tor, so its number reveals nothing).
pub const DEFAULT_PORT: u16 = 443;

/// `/onion3/<all zero>:<port>`: "this node's onion service", the way
/// `0.0.0.0` means "every local address". Listening on it launches the
/// service of the current network key, whose real address is then reported.
/// An all-zero key is no valid service identity, so no real address equals it.
pub fn any(port: u16) -> Multiaddr {
    Multiaddr::empty().with(Protocol::Onion3(Onion3Addr::from(([0u8; ONION3_LEN], port))))
}

/// Whether `addr` is an onion address (`/onion3/…`, optionally with
/// `/p2p/<peer>` after it).
pub fn is_onion(addr: &Multiaddr) -> bool {
    let mut it = addr.iter();
    matches!(it.next(), Some(Protocol::Onion3(_))) && matches!(it.next(), None | Some(Protocol::P2p(_)))
}

/// Whether `addr` is [`any`] (for any port).
pub fn is_any(addr: &Multiaddr) -> bool {
    match addr.iter().next() {
        Some(Protocol::Onion3(onion)) => onion.hash().iter().all(|b| *b == 0),
        _ => false,
    }
}

/// The host name (`….onion`) and port `addr` names, for a Tor connect.
/// `None` if `addr` is not an onion address or is [`any`].
pub fn host_and_port(addr: &Multiaddr) -> Option<(String, u16)> {
    if !is_onion(addr) || is_any(addr) {
        return None;
    }
    match addr.iter().next() {
        Some(Protocol::Onion3(onion)) => {
            let mut host = base32_lower(onion.hash());
            host.push_str(".onion");
            Some((host, onion.port()))
        }
        _ => None,
    }
}

/// The multiaddr of the onion service `id` on `port`.
pub fn of_service(id: &HsId, port: u16) -> Option<Multiaddr> {
    let name = id.display_unredacted().to_string();
    let b32 = name.strip_suffix(".onion")?;
    let bytes = base32_decode(b32)?;
    let hash: [u8; ONION3_LEN] = bytes.try_into().ok()?;
    Some(Multiaddr::empty().with(Protocol::Onion3(Onion3Addr::from((hash, port)))))
}

/// The service's host name, shortened for logs above debug (the end only,
/// as arti does, so vanity prefixes are not shown).
pub fn redacted(addr: &Multiaddr) -> Cow<'static, str> {
    match host_and_port(addr) {
        Some((host, _)) => Cow::Owned(format!("…{}", &host[host.len().saturating_sub(12)..])),
        None => Cow::Borrowed("(no onion)"),
    }
}

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

fn base32_lower(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let value = ALPHABET.iter().position(|a| *a == c.to_ascii_lowercase())?;
        buffer = (buffer << 5) | value as u32;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{prop_assert_eq, proptest};

    const SAMPLE: &str = "/onion3/vww6ybal4bd7szmgncyruucpgfkqahzddi37ktceo3ah7ngmcopnpyyd:443";

    #[test]
    fn a_real_address_round_trips_to_its_host_name() {
        let addr: Multiaddr = SAMPLE.parse().unwrap();
        assert!(is_onion(&addr) && !is_any(&addr));
        let (host, port) = host_and_port(&addr).unwrap();
        assert_eq!(host, "vww6ybal4bd7szmgncyruucpgfkqahzddi37ktceo3ah7ngmcopnpyyd.onion");
        assert_eq!(port, 443);
        let with_peer: Multiaddr =
            format!("{SAMPLE}/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN").parse().unwrap();
        assert!(is_onion(&with_peer));
        assert!(redacted(&addr).ends_with("pnpyyd.onion"));
        assert!(!redacted(&addr).contains("vww6"));
    }

    #[test]
    fn the_any_address_names_no_host_and_other_addresses_are_not_onions() {
        assert!(is_any(&any(443)) && is_onion(&any(443)));
        assert!(host_and_port(&any(1)).is_none());
        for other in ["/ip4/127.0.0.1/tcp/1", "/memory/5", "/dns/example.invalid/tcp/1"] {
            let addr: Multiaddr = other.parse().unwrap();
            assert!(!is_onion(&addr) && host_and_port(&addr).is_none());
        }
        let circuit: Multiaddr = format!("{SAMPLE}/p2p-circuit").parse().unwrap();
        assert!(!is_onion(&circuit), "a circuit is the relay client's");
    }

    #[test]
    fn a_service_id_becomes_its_multiaddr() {
        let addr: Multiaddr = SAMPLE.parse().unwrap();
        let (host, _) = host_and_port(&addr).unwrap();
        let id: HsId = host.parse().unwrap();
        assert_eq!(of_service(&id, 443).unwrap(), addr);
    }

    proptest! {
        #[test]
        fn base32_round_trips(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let text = base32_lower(&bytes);
            prop_assert_eq!(base32_decode(&text).unwrap(), bytes);
        }

        #[test]
        fn base32_decoding_garbage_never_panics(text in ".{0,80}") {
            let _ = base32_decode(&text);
        }
    }
}
