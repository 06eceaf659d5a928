#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;

use super::*;
use crate::plugin::TransportKind::*;

fn ma(s: &str) -> Multiaddr {
    s.parse().unwrap()
}

const KINDS: [TransportKind; 4] = [Ip, Memory, Proximity, Mixnet];

#[test]
fn parse_and_display() {
    for p in Policy::ALL {
        assert_eq!(p.to_string().parse::<Policy>().unwrap(), p);
    }
    assert!("open".parse::<Policy>().is_err());
}

#[test]
fn direct_allows_everything() {
    let r = RelaySet::new();
    for k in KINDS {
        assert!(check_dial(Policy::Direct, k, &ma("/ip4/8.8.8.8/tcp/1"), &r).is_ok());
        assert!(check_listen(Policy::Direct, k, &ma("/ip4/0.0.0.0/tcp/0")).is_ok());
        assert!(check_inbound(Policy::Direct, k, &ma("/ip4/8.8.8.8/tcp/1")).is_ok());
    }
}

#[test]
fn learned_relays_may_be_listened_through_and_are_bounded() {
    let configured = ma(&format!("/ip4/1.2.3.4/tcp/1/p2p/{}", PeerId::random()));
    let mut r = RelaySet::from_addrs([&configured]).unwrap();
    assert!(!r.add_learned(&configured), "a configured relay is not learned again");
    assert!(!r.add_learned(&ma("/ip4/5.6.7.8/tcp/1")), "no peer id");
    assert!(!r.add_learned(&ma(&format!("/p2p/{}", PeerId::random()))), "no transport part");

    let learned: Vec<Multiaddr> =
        (0..=MAX_LEARNED_RELAYS).map(|i| ma(&format!("/ip4/9.9.9.{i}/tcp/1/p2p/{}", PeerId::random()))).collect();
    for a in &learned {
        assert!(r.add_learned(a));
        assert!(!r.add_learned(a), "learned once");
    }
    let known = r.known();
    assert_eq!(known.len(), 1 + MAX_LEARNED_RELAYS);
    assert_eq!(known[0], KnownRelay { addr: configured.clone(), origin: RelayOrigin::Configured });
    // The oldest learned relay was forgotten.
    assert!(known.iter().all(|k| k.addr != learned[0]));
    let newest = learned.last().unwrap();
    assert!(known.iter().any(|k| &k.addr == newest && k.origin == RelayOrigin::Learned));

    // A learned relay may be dialed and listened through; a forgotten one not.
    let circuit = |a: &Multiaddr| a.clone().with(Protocol::P2pCircuit);
    assert!(check_dial(Policy::Relayed, Ip, newest, &r).is_ok());
    assert!(check_circuit_listen(Policy::Relayed, Ip, &circuit(newest), &r).is_ok());
    assert!(check_dial(Policy::Relayed, Ip, &learned[0], &r).is_err());
    assert!(check_circuit_listen(Policy::Relayed, Ip, &circuit(&learned[0]), &r).is_err());

    // New configured relays keep the learned ones; a learned relay that is
    // now configured counts once, as configured.
    assert!(r.replace_configured([newest]));
    let known = r.known();
    assert_eq!(known.iter().filter(|k| &k.addr == newest).count(), 1);
    assert_eq!(known[0].origin, RelayOrigin::Configured);
    assert!(check_circuit_listen(Policy::Relayed, Ip, &circuit(&learned[1]), &r).is_ok());
    assert!(check_circuit_listen(Policy::Relayed, Ip, &circuit(&configured), &r).is_err());
}

#[test]
fn anonymous_refuses_ip() {
    let r = RelaySet::new();
    let a = ma("/ip4/127.0.0.1/tcp/1");
    assert!(check_dial(Policy::Anonymous, Ip, &a, &r).is_err());
    assert!(check_listen(Policy::Anonymous, Ip, &a).is_err());
    assert!(check_inbound(Policy::Anonymous, Ip, &a).is_err());
    assert!(check_dial(Policy::Anonymous, Memory, &ma("/memory/1"), &r).is_err());
    assert!(check_dial(Policy::Anonymous, Proximity, &ma("/memory/1"), &r).is_err());
    assert!(check_dial(Policy::Anonymous, Mixnet, &ma("/memory/1"), &r).is_ok());
    assert!(check_listen(Policy::Anonymous, Mixnet, &ma("/memory/1")).is_ok());
}

#[test]
fn relayed_dials_only_relays() {
    let relay = PeerId::random();
    let other = PeerId::random();
    let relay_addr = ma(&format!("/ip4/1.2.3.4/tcp/4001/p2p/{relay}"));
    let r = RelaySet::from_addrs([&relay_addr]).unwrap();
    assert!(check_dial(Policy::Relayed, Ip, &relay_addr, &r).is_ok());
    assert!(check_dial(Policy::Relayed, Ip, &ma("/ip4/1.2.3.4/tcp/4001"), &r).is_ok());
    assert!(check_dial(Policy::Relayed, Ip, &ma(&format!("/ip4/5.6.7.8/tcp/1/p2p/{relay}")), &r).is_ok());
    assert!(check_dial(Policy::Relayed, Ip, &ma(&format!("/ip4/1.2.3.4/tcp/4001/p2p/{other}")), &r).is_err());
    assert!(check_dial(Policy::Relayed, Ip, &ma("/ip4/1.2.3.4/tcp/4002"), &r).is_err());
    assert!(check_dial(Policy::Relayed, Proximity, &relay_addr, &r).is_err());
    assert!(check_listen(Policy::Relayed, Ip, &ma("/ip4/0.0.0.0/tcp/0")).is_err());
    assert!(check_listen(Policy::Relayed, Memory, &ma("/memory/0")).is_err());

    let circuit = ma(&format!("/ip4/1.2.3.4/tcp/4001/p2p/{relay}/p2p-circuit"));
    assert!(check_circuit_listen(Policy::Relayed, Ip, &circuit, &r).is_ok());
    let foreign = ma(&format!("/ip4/9.9.9.9/tcp/4001/p2p/{other}/p2p-circuit"));
    assert!(check_circuit_listen(Policy::Relayed, Ip, &foreign, &r).is_err());
    let to_peer = ma(&format!("/ip4/9.9.9.9/tcp/4001/p2p/{other}/p2p-circuit/p2p/{}", PeerId::random()));
    assert!(check_circuit_dial(Policy::Relayed, Ip, &to_peer, &r).is_ok());
    assert!(check_circuit_dial(Policy::Relayed, Ip, &ma("/ip4/9.9.9.9/tcp/1/p2p-circuit"), &r).is_err());
    // once dialed through, the foreign relay's hop passes the transport check
    let mut r2 = r.clone();
    assert!(check_dial(Policy::Relayed, Ip, &relay_hop(&to_peer).unwrap(), &r2).is_err());
    r2.add_dialed(other);
    assert!(check_dial(Policy::Relayed, Ip, &relay_hop(&to_peer).unwrap(), &r2).is_ok());
    // but it is not a relay to listen through
    assert!(check_circuit_listen(Policy::Relayed, Ip, &foreign, &r2).is_err());
}

#[test]
fn offline_lan_only() {
    let r = RelaySet::new();
    for ok in [
        "/ip4/127.0.0.1/tcp/1",
        "/ip4/192.168.1.7/tcp/1",
        "/ip4/10.0.0.1/udp/1/quic-v1",
        "/ip4/169.254.3.3/tcp/1",
        "/ip6/::1/tcp/1",
        "/ip6/fe80::1/tcp/1",
        "/ip6/fd00::1/tcp/1",
    ] {
        assert!(check_dial(Policy::Offline, Ip, &ma(ok), &r).is_ok(), "{ok}");
    }
    for bad in [
        "/ip4/8.8.8.8/tcp/1",
        "/ip4/100.64.0.1/tcp/1",
        "/ip6/2001:db8::1/tcp/1",
        "/dns4/localhost/tcp/1",
        "/ip4/0.0.0.0/tcp/1",
    ] {
        assert!(check_dial(Policy::Offline, Ip, &ma(bad), &r).is_err(), "{bad}");
    }
    assert!(check_listen(Policy::Offline, Ip, &ma("/ip4/0.0.0.0/tcp/0")).is_ok());
    assert!(check_listen(Policy::Offline, Ip, &ma("/ip4/8.8.8.8/tcp/0")).is_err());
    assert!(check_inbound(Policy::Offline, Ip, &ma("/ip4/8.8.8.8/tcp/5")).is_err());
    assert!(check_inbound(Policy::Offline, Ip, &ma("/ip4/192.168.0.5/tcp/5")).is_ok());
    assert!(check_dial(Policy::Offline, Proximity, &ma("/memory/1"), &r).is_ok());
    assert!(check_dial(Policy::Offline, Mixnet, &ma("/memory/1"), &r).is_err());
}

#[test]
fn switches() {
    assert!(Policy::Direct.mdns(true) && !Policy::Direct.mdns(false));
    assert!(Policy::Offline.mdns(false));
    assert!(!Policy::Relayed.mdns(true) && !Policy::Anonymous.mdns(true));
    assert!(Policy::Direct.proximity() && Policy::Offline.proximity());
    assert!(!Policy::Relayed.proximity() && !Policy::Anonymous.proximity());
    assert!(Policy::Direct.hole_punching() && !Policy::Relayed.hole_punching());
    assert_eq!(Policy::Relayed.kad_mode(), Some(kad::Mode::Client));
    assert!(!Policy::Relayed.advertises_listen_addrs());
    let relay = PeerId::random();
    assert!(Policy::Relayed.may_advertise(&ma(&format!("/ip4/1.2.3.4/tcp/1/p2p/{relay}/p2p-circuit"))));
    assert!(!Policy::Relayed.may_advertise(&ma("/ip4/1.2.3.4/tcp/1")));
    // An onion service reveals no IP address: every policy may advertise it.
    let onion = ma("/onion3/vww6ybal4bd7szmgncyruucpgfkqahzddi37ktceo3ah7ngmcopnpyyd:443");
    assert!(is_onion(&onion));
    for policy in [Policy::Direct, Policy::Relayed, Policy::Anonymous, Policy::Offline] {
        assert!(policy.may_advertise(&onion), "{policy}");
    }
    assert!(!is_onion(&ma(&format!(
        "/onion3/vww6ybal4bd7szmgncyruucpgfkqahzddi37ktceo3ah7ngmcopnpyyd:443/p2p/{relay}/p2p-circuit"
    ))));
    assert!(!is_onion(&ma("/ip4/1.2.3.4/tcp/1")));
}

fn reference_lan_v4(ip: u32) -> bool {
    let [a, b, ..] = ip.to_be_bytes();
    a == 127 || a == 10 || (a == 172 && (16..32).contains(&b)) || (a == 192 && b == 168) || (a == 169 && b == 254)
}

fn arb_kind() -> impl Strategy<Value = TransportKind> {
    prop::sample::select(KINDS.to_vec())
}

proptest! {
    #[test]
    fn offline_matches_reference(ip in any::<u32>(), port in any::<u16>()) {
        let addr = Multiaddr::empty().with(Protocol::Ip4(Ipv4Addr::from(ip))).with(Protocol::Tcp(port));
        prop_assert_eq!(check_dial(Policy::Offline, Ip, &addr, &RelaySet::new()).is_ok(), reference_lan_v4(ip));
        prop_assert_eq!(check_inbound(Policy::Offline, Ip, &addr).is_ok(), reference_lan_v4(ip));
    }

    #[test]
    fn anonymous_allows_only_mixnet(kind in arb_kind(), ip in any::<u32>(), port in any::<u16>()) {
        let addr = Multiaddr::empty().with(Protocol::Ip4(Ipv4Addr::from(ip))).with(Protocol::Tcp(port));
        let r = RelaySet::new();
        prop_assert_eq!(check_dial(Policy::Anonymous, kind, &addr, &r).is_ok(), kind == Mixnet);
        prop_assert_eq!(check_listen(Policy::Anonymous, kind, &addr).is_ok(), kind == Mixnet);
        prop_assert_eq!(check_inbound(Policy::Anonymous, kind, &addr).is_ok(), kind == Mixnet);
    }

    #[test]
    fn relayed_ip_dials_reach_only_relays(ip in any::<u32>(), port in any::<u16>(), to_relay in any::<bool>()) {
        let relay = PeerId::random();
        let other = PeerId::random();
        let r = RelaySet::from_addrs([&ma(&format!("/ip4/1.2.3.4/tcp/4001/p2p/{relay}"))]).unwrap();
        let peer = if to_relay { relay } else { other };
        let addr = Multiaddr::empty().with(Protocol::Ip4(Ipv4Addr::from(ip))).with(Protocol::Tcp(port)).with(Protocol::P2p(peer));
        prop_assert_eq!(check_dial(Policy::Relayed, Ip, &addr, &r).is_ok(), to_relay);
        prop_assert!(check_listen(Policy::Relayed, Ip, &addr).is_err());
    }

    #[test]
    fn without_relays_relayed_dials_no_ip(kind in prop::sample::select(vec![Ip, Memory]), ip in any::<u32>(), port in any::<u16>(), with_peer in any::<bool>()) {
        let mut addr = Multiaddr::empty().with(Protocol::Ip4(Ipv4Addr::from(ip))).with(Protocol::Tcp(port));
        if with_peer {
            addr.push(Protocol::P2p(PeerId::random()));
        }
        prop_assert!(check_dial(Policy::Relayed, kind, &addr, &RelaySet::new()).is_err());
    }

    #[test]
    fn direct_allows_all(kind in arb_kind(), ip in any::<u32>(), port in any::<u16>()) {
        let addr = Multiaddr::empty().with(Protocol::Ip4(Ipv4Addr::from(ip))).with(Protocol::Tcp(port));
        prop_assert!(check_dial(Policy::Direct, kind, &addr, &RelaySet::new()).is_ok());
        prop_assert!(check_listen(Policy::Direct, kind, &addr).is_ok());
        prop_assert!(check_inbound(Policy::Direct, kind, &addr).is_ok());
    }
}
