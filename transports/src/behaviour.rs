//! The swarm's network behaviour: every libp2p protocol a veil node speaks.

use std::num::NonZeroU32;
use std::time::Duration;

use libp2p::PeerId;
use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, autonat, connection_limits, dcutr, identify, kad, mdns, ping, relay, rendezvous, request_response,
};

use crate::codec::{CONTACT_PROTOCOL, FrameCodec};
use crate::discovery::Discovery;
use crate::error::Error;
use crate::network::NetworkConfig;
use crate::policy::{Policy, RelaySet};
use crate::stream::FrameStreams;

/// The Kademlia protocol name: veil nodes form their own DHT.
pub(crate) const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/veil/kad/1");

/// The identify protocol version announced by veil nodes.
const IDENTIFY_PROTOCOL: &str = "/veil/1";

/// The agent string: deliberately uninformative (no version, no platform).
const AGENT: &str = "veil";

/// The interval of the relay's reservation rate limits.
const MINUTE: Duration = Duration::from_secs(60);

/// All protocols of a veil node. Only the frame and contact protocols,
/// identify and the relay client always run; everything else is [`Toggle`]d at construction
/// and runs only when the policy and the configuration need it (each idle
/// behaviour still costs a poll of its handler on every connection event).
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    /// First, so a connection over a limit is refused before any other
    /// behaviour sets anything up for it.
    pub(crate) limits: connection_limits::Behaviour,
    /// First, so the hot path is polled first.
    pub(crate) streams: FrameStreams,
    pub(crate) identify: identify::Behaviour,
    pub(crate) relay_client: relay::client::Behaviour,
    pub(crate) ping: Toggle<ping::Behaviour>,
    /// Rendezvous points at the servers and in the DHT.
    pub(crate) discovery: Discovery,
    pub(crate) rendezvous_server: Toggle<rendezvous::server::Behaviour>,
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
    pub(crate) relay_server: Toggle<relay::Behaviour>,
    pub(crate) dcutr: Toggle<dcutr::Behaviour>,
    pub(crate) autonat: Toggle<autonat::Behaviour>,
    /// `/veil/contact/1`, used by the contact handshake.
    pub(crate) contact: request_response::Behaviour<FrameCodec>,
}

/// Which optional behaviours run, decided from the policy and the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Features {
    pub(crate) ping: bool,
    pub(crate) kad: bool,
    pub(crate) rendezvous_client: bool,
    pub(crate) rendezvous_server: bool,
    pub(crate) mdns: bool,
    pub(crate) relay_server: bool,
    pub(crate) dcutr: bool,
    pub(crate) autonat: bool,
}

impl Features {
    pub(crate) fn new(policy: Policy, config: &NetworkConfig, relays: &RelaySet) -> Self {
        let discovery = policy.discovery();
        let kad = discovery && (config.kad || !config.bootstrap.is_empty());
        Self {
            ping: config.ping_interval.is_some(),
            kad,
            rendezvous_client: discovery,
            rendezvous_server: config.rendezvous_server,
            mdns: policy.mdns(config.mdns),
            relay_server: config.relay_server,
            // Hole punching only helps a node reachable through a relay.
            dcutr: policy.hole_punching() && relays.has_configured(),
            // Reachability probes only matter to decide the DHT mode.
            autonat: policy.autonat() && kad,
        }
    }
}

impl Behaviour {
    /// Builds the behaviour for `policy` and `config`; discovery asks
    /// `rendezvous_servers`.
    pub(crate) fn new(
        keypair: &Keypair,
        relay_client: relay::client::Behaviour,
        policy: Policy,
        features: Features,
        config: &NetworkConfig,
        rendezvous_servers: &[PeerId],
    ) -> Result<Self, Error> {
        let peer_id = keypair.public().to_peer_id();

        // Identify: under Relayed and Anonymous the listen addresses are never
        // sent (only external addresses, which the network keeps to relay
        // circuit addresses) and never pushed.
        let advertise = policy.advertises_listen_addrs();
        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), keypair.public())
                .with_agent_version(AGENT.to_owned())
                .with_hide_listen_addrs(!advertise)
                .with_push_listen_addr_updates(advertise),
        );

        let kad = features.kad.then(|| {
            let mut cfg = kad::Config::new(KAD_PROTOCOL);
            cfg.set_query_timeout(config.request_timeout);
            let mut kad = kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), cfg);
            kad.set_mode(policy.kad_mode());
            kad
        });

        let mdns = if features.mdns {
            let mdns_config = mdns::Config { query_interval: config.mdns_query_interval, ..mdns::Config::default() };
            match mdns::tokio::Behaviour::new(mdns_config, peer_id) {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::warn!(error = %e, "mDNS unavailable; continuing without it");
                    None
                }
            }
        } else {
            None
        };

        let relay_server = features.relay_server.then(|| {
            // Validated non-zero; a relay's per-IP limit is twice the
            // per-peer one (a NAT hides several peers behind one address).
            let rate = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
            let per_peer = config.relay_reservations_per_minute;
            let cfg = relay::Config {
                max_reservations: config.relay_max_reservations,
                max_circuits: config.relay_max_circuits,
                max_circuits_per_peer: config.relay_max_circuits_per_peer,
                max_circuit_duration: config.relay_circuit_duration,
                max_circuit_bytes: config.relay_circuit_bytes,
                reservation_rate_limiters: Vec::new(),
                ..relay::Config::default()
            }
            .reservation_rate_per_peer(rate(per_peer), MINUTE)
            .reservation_rate_per_ip(rate(per_peer.saturating_mul(2)), MINUTE);
            relay::Behaviour::new(peer_id, cfg)
        });

        // Accepts announcements from one minute on (libp2p's default minimum is
        // two hours), so rendezvous periods shorter than that work too.
        let rendezvous_server = features.rendezvous_server.then(|| {
            let ttl = crate::discovery::MIN_ANNOUNCE_TTL.as_secs();
            rendezvous::server::Behaviour::new(
                rendezvous::server::Config::default()
                    .with_min_ttl(ttl)
                    .with_max_registration_per_peer(config.rendezvous_registrations_per_peer)
                    .with_max_registration_total(config.rendezvous_registrations_total),
            )
        });

        let limits = connection_limits::ConnectionLimits::default()
            .with_max_pending_incoming(Some(config.max_pending_incoming))
            .with_max_established_incoming(Some(config.max_incoming_connections))
            .with_max_established_per_peer(Some(config.max_connections_per_peer));
        Ok(Self {
            limits: connection_limits::Behaviour::new(limits),
            streams: FrameStreams::new(config.request_timeout),
            identify,
            relay_client,
            ping: config
                .ping_interval
                .filter(|_| features.ping)
                .map(|every| {
                    ping::Behaviour::new(ping::Config::new().with_interval(every).with_timeout(config.request_timeout))
                })
                .into(),
            discovery: Discovery::new(
                peer_id,
                features.rendezvous_client.then(|| rendezvous::client::Behaviour::new(keypair.clone())),
                kad,
                rendezvous_servers,
                // Twice a request's timeout: a first dial to a server (an
                // onion service) fits, while a server that does not answer
                // holds up the others no longer.
                config.request_timeout.saturating_mul(2),
            ),
            rendezvous_server: rendezvous_server.into(),
            mdns: mdns.into(),
            relay_server: relay_server.into(),
            dcutr: features.dcutr.then(|| dcutr::Behaviour::new(peer_id)).into(),
            autonat: features.autonat.then(|| autonat::Behaviour::new(peer_id, autonat::Config::default())).into(),
            contact: request_response::Behaviour::with_codec(
                FrameCodec::symmetric(config.max_frame_size),
                [(CONTACT_PROTOCOL, request_response::ProtocolSupport::Full)],
                // The requester's handle gives up after `request_timeout`;
                // the responder keeps a request answerable twice as long, so
                // the requester sees its own timeout, not the stream closing.
                request_response::Config::default()
                    .with_request_timeout(config.request_timeout.saturating_mul(2))
                    .with_max_concurrent_streams(config.max_concurrent_streams),
            ),
        })
    }
}
