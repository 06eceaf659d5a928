//! The swarm's network behaviour: every libp2p protocol a veil node speaks.

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{StreamProtocol, autonat, dcutr, identify, kad, mdns, ping, relay, rendezvous, request_response};

use crate::codec::{FRAME_PROTOCOL, FrameCodec};
use crate::error::Error;
use crate::network::NetworkConfig;
use crate::policy::Policy;

/// The Kademlia protocol name: veil nodes form their own DHT.
pub(crate) const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/veil/kad/1");

/// The identify protocol version announced by veil nodes.
const IDENTIFY_PROTOCOL: &str = "/veil/1";

/// The agent string: deliberately uninformative (no version, no platform).
const AGENT: &str = "veil";

/// All protocols of a veil node. Server roles and the policy-dependent parts
/// are [`Toggle`]d at construction.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) kad: kad::Behaviour<kad::store::MemoryStore>,
    pub(crate) rendezvous: rendezvous::client::Behaviour,
    pub(crate) rendezvous_server: Toggle<rendezvous::server::Behaviour>,
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
    pub(crate) relay_client: relay::client::Behaviour,
    pub(crate) relay_server: Toggle<relay::Behaviour>,
    pub(crate) dcutr: Toggle<dcutr::Behaviour>,
    pub(crate) autonat: Toggle<autonat::Behaviour>,
    pub(crate) frame: request_response::Behaviour<FrameCodec>,
}

impl Behaviour {
    /// Builds the behaviour for `policy` and `config`.
    pub(crate) fn new(
        keypair: &Keypair,
        relay_client: relay::client::Behaviour,
        policy: Policy,
        config: &NetworkConfig,
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

        let mut kad =
            kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad::Config::new(KAD_PROTOCOL));
        kad.set_mode(policy.kad_mode());

        let mdns = if policy.mdns(config.mdns) {
            match mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id) {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::warn!(error = %e, "mDNS unavailable; continuing without it");
                    None
                }
            }
        } else {
            None
        };

        let relay_server = config.relay_server.then(|| {
            let cfg = relay::Config {
                max_circuit_duration: config.relay_circuit_duration,
                max_circuit_bytes: config.relay_circuit_bytes,
                ..relay::Config::default()
            };
            relay::Behaviour::new(peer_id, cfg)
        });

        let frame = request_response::Behaviour::with_codec(
            FrameCodec::new(config.max_frame_size),
            [(FRAME_PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(config.request_timeout)
                .with_max_concurrent_streams(config.max_concurrent_streams),
        );

        Ok(Self {
            identify,
            ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(30))),
            kad,
            rendezvous: rendezvous::client::Behaviour::new(keypair.clone()),
            rendezvous_server: config
                .rendezvous_server
                .then(|| rendezvous::server::Behaviour::new(rendezvous::server::Config::default()))
                .into(),
            mdns: mdns.into(),
            relay_client,
            relay_server: relay_server.into(),
            dcutr: policy.hole_punching().then(|| dcutr::Behaviour::new(peer_id)).into(),
            autonat: policy.autonat().then(|| autonat::Behaviour::new(peer_id, autonat::Config::default())).into(),
            frame,
        })
    }
}
