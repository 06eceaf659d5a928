//! The metadata exposure audit: for the node's current policy and
//! configuration, what each observer learns about the user and what it does
//! not. Generated from the running settings (`Node::audit`, `veil audit`),
//! not a static text; `docs/THREATS.md` states the same model.

use std::fmt;

use veil_transports::{Policy, TransportKind};

/// Who observes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Observer {
    /// A contact (the other side of a 1:1 conversation).
    Contact,
    /// A member of a group the user is in.
    GroupMember,
    /// A circuit relay the node reserves a slot on, or connects through.
    Relay,
    /// A rendezvous server the node registers at and asks.
    RendezvousServer,
    /// A peer of the Kademlia DHT, when the policy allows discovery and the DHT runs.
    DhtPeer,
    /// A device on the same LAN or within Bluetooth range.
    LanNeighbour,
    /// Someone watching the user's network link (ISP, Wi-Fi operator).
    NetworkEavesdropper,
    /// A blind replication node holding a group's replication credential.
    ReplicationNode,
    /// The relays of a mixnet the node uses (Tor: the guard, the onion
    /// service directories, the introduction and rendezvous points).
    Mixnet,
    /// Whoever sees a device offer (`veil device link`'s QR code or link)
    /// while it is answered.
    DeviceOfferReader,
}

impl Observer {
    /// Every observer, in report order.
    pub const ALL: [Observer; 10] = [
        Observer::Contact,
        Observer::GroupMember,
        Observer::Relay,
        Observer::RendezvousServer,
        Observer::DhtPeer,
        Observer::LanNeighbour,
        Observer::NetworkEavesdropper,
        Observer::ReplicationNode,
        Observer::Mixnet,
        Observer::DeviceOfferReader,
    ];
}

impl fmt::Display for Observer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Observer::Contact => "contact",
            Observer::GroupMember => "group member",
            Observer::Relay => "relay",
            Observer::RendezvousServer => "rendezvous server",
            Observer::DhtPeer => "DHT peer",
            Observer::LanNeighbour => "LAN/BLE neighbour",
            Observer::NetworkEavesdropper => "network eavesdropper",
            Observer::ReplicationNode => "replication node",
            Observer::Mixnet => "Tor network",
            Observer::DeviceOfferReader => "device-offer reader",
        })
    }
}

/// What one observer learns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposure {
    /// The observer this entry describes; each appears once per report.
    pub observer: Observer,
    /// Whether this observer exists for the node now (a relay under
    /// `Direct` without relays, say, does not).
    pub applies: bool,
    /// What it learns.
    pub learns: Vec<String>,
    /// What it does not learn.
    pub does_not_learn: Vec<String>,
}

/// What each observer learns about this node under its current settings, as `veil audit` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// The privacy policy in force when the report was generated.
    pub policy: Policy,
    /// Whether the peer id changes every rendezvous period.
    pub rotating_peer_id: bool,
    /// The rendezvous period, in seconds.
    pub period_secs: u64,
    /// One entry per observer, in [`Observer::ALL`] order.
    pub exposures: Vec<Exposure>,
}

/// The settings the report is generated from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditInput {
    /// The privacy policy in force; with the settings below it decides which observers apply.
    pub policy: Policy,
    /// The kinds of the attached transports.
    pub transports: Vec<TransportKind>,
    /// Relays known to the node (configured and learned).
    pub relays: usize,
    /// Of those, relays learned from contacts.
    pub learned_relays: usize,
    /// Rendezvous servers configured.
    pub rendezvous_servers: usize,
    /// Rendezvous servers that are also known relays (reached through them).
    pub rendezvous_servers_on_relays: usize,
    /// Whether the DHT runs (configured, or with bootstrap peers).
    pub kad: bool,
    /// Whether mDNS was asked for (honoured under `Direct` only; `Offline`
    /// always runs it).
    pub mdns: bool,
    /// Whether the peer id changes every period.
    pub rotating_peer_id: bool,
    /// The rendezvous period, in seconds.
    pub period_secs: u64,
    /// Whether this node serves as a relay for others.
    pub serves_relay: bool,
    /// Whether this node serves rendezvous for others.
    pub serves_rendezvous: bool,
}

fn s(text: &str) -> String {
    text.to_owned()
}

/// Generates the report for `input`.
pub fn audit(input: &AuditInput) -> Audit {
    let peer_id = if input.rotating_peer_id {
        format!(
            "your current peer id (it changes every {}, so sessions of different periods are not linked by it)",
            duration(input.period_secs)
        )
    } else {
        s("your peer id (stable until the network key is rotated: sessions can be linked by it)")
    };
    let exposures = Observer::ALL.iter().map(|o| exposure(*o, input, &peer_id)).collect();
    Audit { policy: input.policy, rotating_peer_id: input.rotating_peer_id, period_secs: input.period_secs, exposures }
}

fn duration(secs: u64) -> String {
    match secs {
        s if s % 86_400 == 0 => format!("{} day(s)", s / 86_400),
        s if s % 3600 == 0 => format!("{} hour(s)", s / 3600),
        s => format!("{s} s"),
    }
}

fn exposure(observer: Observer, input: &AuditInput, peer_id: &str) -> Exposure {
    let policy = input.policy;
    // A mixnet transport is attached and the policy lets it run.
    let mixnet = input.transports.contains(&TransportKind::Mixnet) && policy != Policy::Offline;
    let onion = if policy == Policy::Anonymous {
        s("your onion address of the period (it changes with your peer id)")
    } else {
        s("your onion address of the period, beside your other addresses: the two can be linked")
    };
    let ip = |who: &str| format!("your IP address ({who})");
    let (applies, mut learns, mut does_not_learn) = match observer {
        Observer::Contact | Observer::GroupMember => {
            let mut learns = vec![
                s("your account public key and your device key in the shared group"),
                s("what you write there and when you are online (it finds you at the group's rendezvous points)"),
                s("that your node stopped uncleanly since your last message (a skip in your ratchet counter)"),
            ];
            if observer == Observer::GroupMember {
                learns[0] = s("your member key and device key in that group (not your account key)");
                learns.push(s("which entries of the group your replica holds"));
            }
            learns.push(s(
                "how many devices your account has: each announces its own device key there (not which device is \
                 which, nor where a device is unless it connects to it); when you remove one, that your account \
                 renewed the conversation's keys and how many devices remain (not which was removed)",
            ));
            let mut not = vec![s("your member keys in other groups"), s("your alias key")];
            match policy {
                Policy::Direct => {
                    learns.push(ip("from connections and the addresses you announce"));
                    if input.relays > 0 {
                        learns.push(ip(
                            "your NAT's public address, when hole punching upgrades a connection through your relay",
                        ));
                    }
                }
                Policy::Relayed => {
                    learns.push(s("your relay's address and your circuit address through it"));
                    not.push(s("your IP address: it connects to you only through your relay"));
                }
                Policy::Anonymous => not.push(s("your IP address (mixnet only)")),
                Policy::Offline => learns.push(ip("LAN address, when nearby")),
            }
            if mixnet {
                learns.push(onion.clone());
            }
            learns.push(peer_id.to_owned());
            (true, learns, not)
        }
        Observer::Relay => {
            let applies = match policy {
                Policy::Relayed => input.relays > 0,
                Policy::Direct => input.relays > 0,
                Policy::Anonymous | Policy::Offline => false,
            };
            let mut learns = vec![
                ip(&format!(
                    "the one relay drawn at random each period, among {} known ({} learned from contacts), sees \
                     the address you connect from",
                    input.relays, input.learned_relays
                )),
                peer_id.to_owned(),
                s("when you are online, the peer ids that connect to you through it, and traffic volume and timing"),
            ];
            if policy == Policy::Relayed {
                learns.push(ip(
                    "also seen by the relay of a contact that drew another relay, when you reach that contact \
                     through it (a relay your contact chose, never one an observer named)",
                ));
            }
            let not = vec![
                s("message contents and group ids (frames are end-to-end encrypted inside Noise)"),
                s("who you are (account keys never reach the network)"),
                s("your peer id in other periods"),
            ];
            (applies, learns, not)
        }
        Observer::RendezvousServer => {
            let applies = policy.discovery() && input.rendezvous_servers > 0;
            let mut learns = vec![
                s("the namespaces (hex rendezvous points) you register at and look up, and when"),
                peer_id.to_owned(),
            ];
            learns
                .push(s("how many of your devices are online at a point (each registers there under its own peer id)"));
            let mut not = vec![s(
                "which account or group a point belongs to; that two periods' points are the same link or group",
            )];
            match policy {
                Policy::Direct => learns.push(ip("registered with your records and seen on the connection")),
                Policy::Relayed => {
                    learns.push(s("your circuit address only (registrations carry nothing else)"));
                    if input.rendezvous_servers_on_relays > 0 {
                        learns.push(ip("only when the server is also your relay of the period"));
                    } else {
                        not.push(s("your IP address"));
                    }
                }
                Policy::Anonymous => not.push(s("your IP address")),
                Policy::Offline => {}
            }
            if mixnet {
                learns.push(s("your onion address of the period, registered with your records"));
            }
            (applies, learns, not)
        }
        Observer::DhtPeer => {
            let applies = policy.discovery() && input.kad;
            let mut learns = vec![s("the rendezvous-point keys you provide and look up"), peer_id.to_owned()];
            let mut not = vec![s("which account or group a key belongs to")];
            match policy {
                Policy::Direct => learns.push(ip("in your provider records and routing-table entry (DHT server mode)")),
                Policy::Relayed => {
                    learns.push(s(
                        "your circuit address in provider records (DHT client mode: you are not in routing tables)",
                    ));
                    not.push(s("your IP address"));
                }
                Policy::Anonymous => not.push(s("your IP address")),
                Policy::Offline => {}
            }
            (applies, learns, not)
        }
        Observer::LanNeighbour => {
            let mdns = policy.mdns(input.mdns);
            let proximity = input.transports.contains(&TransportKind::Proximity) && policy != Policy::Anonymous;
            let applies = mdns || proximity;
            let mut learns = Vec::new();
            if mdns {
                learns.push(ip("LAN address, announced by mDNS"));
                learns.push(peer_id.to_owned());
            }
            if proximity {
                learns.push(s(
                    "over BLE: that a veil device is in radio range, and its Bluetooth address (a private one that \
                     changes every 15 minutes only with LE privacy on); one that connects, your peer id of the period",
                ));
            }
            if applies && policy.proximity() {
                learns.push(s(
                    "if it runs veil: that you do, and how many groups you have, rounded up to 16 (membership tokens)",
                ));
            }
            let mut not =
                vec![s("who you are; who you talk to; which groups you are in (tokens are salted per offer)")];
            if !mdns {
                not.push(s("that you run veil (no mDNS announcements under this policy)"));
            }
            (applies, learns, not)
        }
        Observer::NetworkEavesdropper => {
            let learns = match policy {
                Policy::Direct => vec![
                    s("the IP addresses of every peer you connect to, and when"),
                    s("traffic volume and timing per peer"),
                ],
                Policy::Relayed => vec![
                    s("that you connect to your relay (and your rendezvous servers if they are relays), and when"),
                    s("traffic volume and timing to the relay"),
                ],
                Policy::Anonymous => vec![s("that you use the mixnet, and your traffic volume to it")],
                Policy::Offline => vec![s("LAN traffic between nearby devices")],
            };
            let mut not = vec![s("message contents, peer ids, rendezvous points (all inside Noise)")];
            if policy == Policy::Relayed {
                not.push(s("the IP addresses of your contacts"));
            }
            (true, learns, not)
        }
        Observer::ReplicationNode => (
            true,
            vec![s("the DAG shape of each log it replicates, entry kinds, sizes rounded up to a bucket, timing")],
            vec![s("authors, contents, group ids, member keys; it cannot forge entries members accept")],
        ),
        Observer::DeviceOfferReader => (
            true,
            vec![
                s("while the offer is answered (10 minutes by default, until a device links): your account's \
                   public keys, and the offer's rendezvous points, hence the peer id and announced addresses of \
                   the device that shows it"),
                s("it can answer the offer and be shown a code, and so keep your new device from linking"),
            ],
            vec![
                s("your account's secrets: they are sent only after you type, on the device showing the offer, \
                   the code your new device shows"),
                s("anything once the offer expired, was withdrawn or was used; your contacts, groups, messages"),
            ],
        ),
        Observer::Mixnet => (
            mixnet,
            vec![
                ip("your guard relay only: it sees that you use Tor, when, and how much, not where to"),
                s("the onion service directories: that an onion service publishes a descriptor, and when (the \
                   descriptor is blinded and encrypted: they learn its address only if they already know it)"),
                s("the introduction points of your service: how often it is contacted, not by whom"),
            ],
            vec![
                s("your IP address (except your guard), your peer id, who you talk to, what you write"),
                s("that two periods' onion services are the same node (each network key has its own)"),
            ],
        ),
    };
    if input.serves_relay && observer == Observer::Relay {
        learns.push(s(
            "(this node is itself a relay: it sees the IP addresses and peer ids of the nodes relaying through it)",
        ));
    }
    if input.serves_rendezvous && observer == Observer::RendezvousServer {
        learns.push(s("(this node is itself a rendezvous server: it sees the points and records registered with it)"));
    }
    if !applies {
        does_not_learn.insert(0, s("anything: this node uses no such observer under the current settings"));
        learns.clear();
    }
    Exposure { observer, applies, learns, does_not_learn }
}

impl fmt::Display for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "policy: {}", self.policy)?;
        for e in &self.exposures {
            writeln!(f, "\n{}{}", e.observer, if e.applies { "" } else { " (not used now)" })?;
            for l in &e.learns {
                writeln!(f, "  learns: {l}")?;
            }
            for n in &e.does_not_learn {
                writeln!(f, "  does not learn: {n}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn input(policy: Policy) -> AuditInput {
        AuditInput {
            policy,
            transports: vec![TransportKind::Ip],
            relays: 2,
            learned_relays: 1,
            rendezvous_servers: 1,
            rendezvous_servers_on_relays: 1,
            kad: true,
            mdns: true,
            rotating_peer_id: true,
            period_secs: 86_400,
            serves_relay: false,
            serves_rendezvous: false,
        }
    }

    fn of(a: &Audit, o: Observer) -> &Exposure {
        a.exposures.iter().find(|e| e.observer == o).unwrap()
    }

    fn mentions_ip(lines: &[String]) -> bool {
        lines.iter().any(|l| l.contains("your IP address"))
    }

    #[test]
    fn the_report_follows_the_policy() {
        let direct = audit(&input(Policy::Direct));
        let relayed = audit(&input(Policy::Relayed));
        assert_eq!(direct.exposures.len(), Observer::ALL.len());
        // Only the relay sees the IP of a relayed node.
        for o in [Observer::Contact, Observer::DhtPeer, Observer::LanNeighbour] {
            assert!(mentions_ip(&of(&direct, o).learns), "{o} under direct");
            assert!(!mentions_ip(&of(&relayed, o).learns), "{o} under relayed");
        }
        assert!(mentions_ip(&of(&relayed, Observer::Relay).learns));
        assert!(!of(&relayed, Observer::LanNeighbour).applies);
        assert!(of(&relayed, Observer::Contact).does_not_learn.iter().any(|l| l.contains("only through your relay")));
        // A rendezvous server that is not a relay never sees a relayed node's IP.
        let apart = audit(&AuditInput { rendezvous_servers_on_relays: 0, ..input(Policy::Relayed) });
        assert!(!mentions_ip(&of(&apart, Observer::RendezvousServer).learns));
        // Without rotation the report says sessions can be linked.
        let fixed = audit(&AuditInput { rotating_peer_id: false, ..input(Policy::Relayed) });
        assert!(of(&fixed, Observer::Relay).learns.iter().any(|l| l.contains("can be linked")));
        assert!(of(&relayed, Observer::Relay).learns.iter().any(|l| l.contains("changes every 1 day")));
        // Offline: no rendezvous, no DHT.
        let offline = audit(&input(Policy::Offline));
        assert!(!of(&offline, Observer::RendezvousServer).applies && !of(&offline, Observer::DhtPeer).applies);
        assert!(offline.to_string().contains("LAN/BLE neighbour"));
        // Under direct with relays, hole punching shows contacts the NAT's address.
        let punched = |a: &Audit| of(a, Observer::Contact).learns.iter().any(|l| l.contains("hole punching"));
        assert!(punched(&direct) && !punched(&relayed));
        assert!(!punched(&audit(&AuditInput { relays: 0, ..input(Policy::Direct) })));
        // A veil neighbour learns the rounded number of groups where tokens are offered.
        let tokens = |a: &Audit| of(a, Observer::LanNeighbour).learns.iter().any(|l| l.contains("rounded up to 16"));
        assert!(tokens(&direct) && tokens(&offline) && !tokens(&relayed));
        assert!(!tokens(&audit(&AuditInput { mdns: false, ..input(Policy::Direct) })));
        // The Tor network is an observer only with Tor attached.
        assert!(!of(&direct, Observer::Mixnet).applies);
        let tor = |policy| AuditInput { transports: vec![TransportKind::Ip, TransportKind::Mixnet], ..input(policy) };
        let anonymous = audit(&tor(Policy::Anonymous));
        assert!(of(&anonymous, Observer::Mixnet).applies);
        assert!(of(&anonymous, Observer::Mixnet).learns.iter().any(|l| l.contains("guard relay only")));
        for o in [Observer::Contact, Observer::RendezvousServer] {
            assert!(!mentions_ip(&of(&anonymous, o).learns), "{o} under anonymous");
            assert!(of(&anonymous, o).learns.iter().any(|l| l.contains("onion address")), "{o}");
        }
        let both = audit(&tor(Policy::Direct));
        assert!(of(&both, Observer::Contact).learns.iter().any(|l| l.contains("can be linked")));
    }
}
