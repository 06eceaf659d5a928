//! The home directory and its configuration file, `veil.toml`.
//!
//! Every setting can come from the file, from an environment variable or from
//! a flag of `veil daemon`; a flag beats the environment, which beats the file.
//!
//! ```toml
//! # How to introduce yourself in contact requests.
//! name = "Alice"
//! # Addresses to listen on (multiaddrs).
//! listen = ["/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"]
//! # Rendezvous servers, each ending in /p2p/<peer id>.
//! rendezvous_servers = []
//! # direct | relayed | anonymous | offline
//! policy = "direct"
//! # Relays a relayed node reserves on (one drawn at random each period).
//! relays = []
//! # DHT peers to join the Kademlia DHT through.
//! bootstrap = []
//! # Roles this node serves for others: "rendezvous", "relay", "dht".
//! serve = []
//! mdns = true
//! # A fresh peer id every rendezvous period (default: on unless serving).
//! rotate_peer_id = true
//!
//! [tor]
//! # The Tor transport (default: on under the anonymous policy).
//! enabled = true
//!
//! [ble]
//! # Bluetooth LE through BlueZ (default: on under the offline policy).
//! enabled = true
//! # The adapter to use (default: BlueZ's default one).
//! adapter = "hci0"
//! ```

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use veil_actors::transports::{NetworkConfig, Policy, libp2p::Multiaddr};
use veil_tor::{Fallback, PrivateNetwork, TorConfig};

/// The configuration file's name inside the home directory.
pub const CONFIG_FILE: &str = "veil.toml";
/// The daemon's socket inside the home directory.
pub const SOCKET_FILE: &str = "veil.sock";
/// The largest configuration file read.
const MAX_CONFIG: u64 = 64 * 1024;

/// The default home: `$XDG_DATA_HOME/veil` (usually `~/.local/share/veil`).
pub fn default_home() -> Result<PathBuf> {
    directories::ProjectDirs::from("", "", "veil")
        .map(|d| d.data_dir().to_path_buf())
        .ok_or_else(|| anyhow!("no home directory found; pass --home DIR"))
}

/// Where the daemon of `home` listens.
pub fn socket_path(home: &Path) -> PathBuf {
    home.join(SOCKET_FILE)
}

/// `veil.toml` as written on disk; every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigFile {
    /// How to introduce yourself in contact requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Addresses to listen on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<Vec<String>>,
    /// Rendezvous servers (each ending in `/p2p/<peer id>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rendezvous_servers: Option<Vec<String>>,
    /// Relays (for the `relayed` policy), each ending in `/p2p/<peer id>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relays: Option<Vec<String>>,
    /// The privacy policy: `direct` (the default), `relayed`, `anonymous` or `offline`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Kademlia peers to join the DHT through (each ending in `/p2p/<peer id>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<Vec<String>>,
    /// Roles served for others: `rendezvous`, `relay`, `dht`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serve: Option<Vec<String>>,
    /// A fresh network key (peer id) every rendezvous period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotate_peer_id: Option<bool>,
    /// As a relay: the most reservations held at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_max_reservations: Option<usize>,
    /// As a relay: the most circuits open at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_max_circuits: Option<usize>,
    /// As a relay: reservations a peer may make per minute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_reservations_per_minute: Option<u32>,
    /// Inbound connections established at once; more are closed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_incoming_connections: Option<u32>,
    /// LAN discovery (only honoured under the `direct` policy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mdns: Option<bool>,
    /// How often unacknowledged messages are looked after, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_interval_ms: Option<u64>,
    /// First retry delay of an undelivered contact request, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact_retry_ms: Option<u64>,
    /// The `[tor]` table: whether Tor is attached at start, its onion port, a private network for tests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tor: Option<TorFile>,
    /// The `[ble]` table: whether BLE is enabled at start, and on which adapter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ble: Option<BleFile>,
}

/// The `[ble]` table of `veil.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BleFile {
    /// Enable BLE at start (default: under the `offline` policy only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The adapter (`hci1`; default: BlueZ's default adapter).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
}

/// The `[tor]` table of `veil.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TorFile {
    /// Attach Tor at start (default: under the `anonymous` policy only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The onion service's virtual port (default 443).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// A private Tor network's authorities (v3 identities, hex). Tests only:
    /// without them arti uses the public Tor network.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub authorities: Vec<String>,
    /// Where a private network's directory is fetched first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<TorFallback>,
    /// The private network's relays all share one IP address (loopback).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loopback: Option<bool>,
}

/// A relay of a private Tor network to fetch the directory from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TorFallback {
    /// RSA identity fingerprint (hex).
    pub rsa_identity: String,
    /// Ed25519 identity (base64).
    pub ed_identity: String,
    /// OR port, `ip:port`.
    pub orport: String,
}

impl ConfigFile {
    /// Reads `veil.toml` from `home`; a missing file is an empty configuration.
    pub fn load(home: &Path) -> Result<Self> {
        let path = home.join(CONFIG_FILE);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        if meta.len() > MAX_CONFIG {
            bail!("{} is larger than {MAX_CONFIG} bytes; refusing to read it", path.display());
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("{} is invalid", path.display()))
    }

    /// Parses the text of a `veil.toml`.
    pub fn parse(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| anyhow!("{}", e.message()))
    }
}

/// The text of a new home's `veil.toml`.
pub const DEFAULT_CONFIG: &str = r#"# veil configuration. Flags of `veil daemon` and VEIL_* environment
# variables override what is set here (see docs/APP.md).

# How to introduce yourself in contact requests (optional).
# name = "Alice"

# Addresses to listen on.
# listen = ["/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"]

# Rendezvous servers where contacts find each other, each ending in
# /p2p/<peer id>. Any veil node can serve (`serve = ["rendezvous"]`).
# rendezvous_servers = []

# Privacy policy: direct | relayed | anonymous | offline
# policy = "direct"

# Relays for the relayed policy, each ending in /p2p/<peer id>; one is
# drawn at random every rendezvous period.
# relays = []

# Kademlia DHT peers to join through, each ending in /p2p/<peer id>.
# bootstrap = []

# Roles this node serves for others: "rendezvous", "relay", "dht".
# serve = []

# A fresh peer id every rendezvous period (default: on, unless serving).
# rotate_peer_id = true

# As a relay: limits on what it carries for others.
# relay_max_reservations = 128
# relay_max_circuits = 16
# relay_reservations_per_minute = 30

# Inbound connections held at once; more are closed (raise it on a server
# for many nodes).
# max_incoming_connections = 512

# Find peers on the LAN with mDNS (direct policy only).
# mdns = true

# Tor (onion services through arti). On by default under the anonymous
# policy; `veil transport attach tor` attaches it under any policy.
# [tor]
# enabled = true

# Bluetooth LE through BlueZ. On by default under the offline policy;
# `veil transport attach ble` enables it under offline and direct.
# [ble]
# enabled = true
# adapter = "hci0"
"#;

/// Writes the default `veil.toml` into `home` unless one exists.
pub fn write_default_config(home: &Path) -> Result<bool> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let path = home.join(CONFIG_FILE);
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
        Ok(mut f) => {
            f.write_all(DEFAULT_CONFIG.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

/// Creates `home` (mode 0700) if needed, and makes an existing one open to
/// other users 0700 (its files are private, but their names and sizes were
/// not).
pub fn create_home(home: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(home)
        .with_context(|| format!("cannot create the home directory {}", home.display()))?;
    let mode = std::fs::metadata(home).with_context(|| format!("cannot read {}", home.display()))?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700)).with_context(|| {
            format!("the home directory {} is open to other users and cannot be made 0700", home.display())
        })?;
        tracing::info!("the home directory was open to other users: made it 0700");
    }
    Ok(())
}

/// Overrides from the environment and the command line (already merged by
/// clap: a flag beats its environment variable). `None` leaves the file's value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--name` / `VEIL_NAME`.
    pub name: Option<String>,
    /// `--listen` / `VEIL_LISTEN`.
    pub listen: Option<Vec<String>>,
    /// `--rendezvous` / `VEIL_RENDEZVOUS`.
    pub rendezvous_servers: Option<Vec<String>>,
    /// `--relay` / `VEIL_RELAYS`.
    pub relays: Option<Vec<String>>,
    /// `--bootstrap` / `VEIL_BOOTSTRAP`.
    pub bootstrap: Option<Vec<String>>,
    /// `--policy` / `VEIL_POLICY`.
    pub policy: Option<String>,
    /// `--serve` / `VEIL_SERVE`.
    pub serve: Option<Vec<String>>,
    /// `--no-mdns` / `VEIL_NO_MDNS`, which give `Some(false)`.
    pub mdns: Option<bool>,
}

/// Roles a node serves for others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Roles {
    /// A libp2p rendezvous server (where contacts and group members meet).
    pub rendezvous: bool,
    /// A circuit relay: peers reserve slots on it and are reached through it.
    pub relay: bool,
    /// A Kademlia DHT node (others bootstrap through it).
    pub dht: bool,
}

impl Roles {
    /// The role names, for status output.
    pub fn names(self) -> Vec<String> {
        let mut out = Vec::new();
        if self.rendezvous {
            out.push("rendezvous".to_owned());
        }
        if self.relay {
            out.push("relay".to_owned());
        }
        if self.dht {
            out.push("dht".to_owned());
        }
        out
    }

    /// Whether any role is served.
    pub fn any(self) -> bool {
        self.rendezvous || self.relay || self.dht
    }
}

/// The validated settings a daemon runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How to introduce ourselves in contact requests.
    pub name: Option<String>,
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Rendezvous servers to register and look up points at, each ending in `/p2p/<peer id>`.
    pub rendezvous_servers: Vec<Multiaddr>,
    /// Relays configured to reserve on (under `relayed`, and under `direct` to stay reachable behind a NAT); more are
    /// learned from contacts.
    pub relays: Vec<Multiaddr>,
    /// Kademlia bootstrap peers.
    pub bootstrap: Vec<Multiaddr>,
    /// A fresh peer id every rendezvous period.
    pub rotate_peer_id: bool,
    /// Relay limits: reservations, circuits, reservations per peer per minute.
    pub relay_limits: (usize, usize, u32),
    /// Inbound connections established at once.
    pub max_incoming_connections: u32,
    /// The privacy policy the node starts with; clients may change it while the daemon runs.
    pub policy: Policy,
    /// Roles served.
    pub serve: Roles,
    /// Whether mDNS was asked for: `direct` honours it, `offline` runs mDNS regardless.
    pub mdns: bool,
    /// The courier's sync interval (`None`: the node's default).
    pub sync_interval: Option<Duration>,
    /// The contact-request retry base (`None`: the node's default).
    pub contact_retry: Option<Duration>,
    /// How the Tor transport runs (attached at start by default under `anonymous` only).
    pub tor: TorSettings,
    /// How BLE runs (enabled at start by default under `offline` only).
    pub ble: BleSettings,
}

/// How BLE runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BleSettings {
    /// Enabled at start.
    pub enabled: bool,
    /// The adapter (`None`: BlueZ's default one).
    pub adapter: Option<String>,
}

impl BleSettings {
    fn resolve(file: Option<&BleFile>, policy: Policy) -> Result<Self> {
        let empty = BleFile::default();
        let file = file.unwrap_or(&empty);
        if let Some(name) = &file.adapter
            && (name.is_empty() || name.len() > 32 || !name.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            bail!("[ble] adapter must be an adapter's name such as hci0, not {name:?}");
        }
        Ok(Self { enabled: file.enabled.unwrap_or(policy == Policy::Offline), adapter: file.adapter.clone() })
    }
}

/// How the Tor transport runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorSettings {
    /// Attached at start.
    pub enabled: bool,
    /// The onion service's virtual port.
    pub port: u16,
    /// A private Tor network instead of the public one (tests).
    pub network: Option<PrivateNetwork>,
}

impl Default for TorSettings {
    fn default() -> Self {
        Self { enabled: false, port: veil_tor::addr::DEFAULT_PORT, network: None }
    }
}

impl TorSettings {
    fn resolve(file: Option<&TorFile>, policy: Policy) -> Result<Self> {
        let empty = TorFile::default();
        let file = file.unwrap_or(&empty);
        let network = if file.authorities.is_empty() && file.fallbacks.is_empty() {
            None
        } else {
            if file.authorities.is_empty() || file.fallbacks.is_empty() {
                bail!("[tor] a private network needs both authorities and fallbacks");
            }
            let fallbacks = file
                .fallbacks
                .iter()
                .map(|f| {
                    Ok(Fallback {
                        rsa_identity: f.rsa_identity.clone(),
                        ed_identity: f.ed_identity.clone(),
                        orport: f.orport.parse().map_err(|e| anyhow!("[tor] invalid orport {:?}: {e}", f.orport))?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Some(PrivateNetwork {
                authorities: file.authorities.clone(),
                fallbacks,
                loopback: file.loopback.unwrap_or(false),
            })
        };
        Ok(Self {
            enabled: file.enabled.unwrap_or(policy == Policy::Anonymous),
            port: file.port.unwrap_or(veil_tor::addr::DEFAULT_PORT),
            network,
        })
    }

    /// The transport's configuration, its files under `home`.
    pub fn config(&self, home: &Path) -> TorConfig {
        let mut config = TorConfig::new(home.join("tor"));
        config.port = self.port;
        config.network = self.network.clone();
        config
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            name: None,
            listen: default_listen(),
            rendezvous_servers: Vec::new(),
            relays: Vec::new(),
            bootstrap: Vec::new(),
            rotate_peer_id: true,
            relay_limits: default_relay_limits(),
            max_incoming_connections: NetworkConfig::default().max_incoming_connections,
            policy: Policy::Direct,
            serve: Roles::default(),
            mdns: true,
            sync_interval: None,
            contact_retry: None,
            tor: TorSettings::default(),
            ble: BleSettings::default(),
        }
    }
}

fn default_listen() -> Vec<Multiaddr> {
    ["/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"].iter().filter_map(|a| a.parse().ok()).collect()
}

fn default_relay_limits() -> (usize, usize, u32) {
    let d = NetworkConfig::default();
    (d.relay_max_reservations, d.relay_max_circuits, d.relay_reservations_per_minute)
}

fn addrs(what: &str, list: &[String]) -> Result<Vec<Multiaddr>> {
    list.iter()
        .map(|a| a.trim().parse::<Multiaddr>().map_err(|e| anyhow!("invalid {what} address {a:?}: {e}")))
        .collect()
}

/// Parses a policy name.
pub fn parse_policy(name: &str) -> Result<Policy> {
    name.trim().parse().map_err(|_| anyhow!("unknown policy {name:?} (expected direct, relayed, anonymous or offline)"))
}

/// Parses role names.
pub fn parse_roles(names: &[String]) -> Result<Roles> {
    let mut roles = Roles::default();
    for n in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        match n {
            "rendezvous" => roles.rendezvous = true,
            "relay" => roles.relay = true,
            "dht" => roles.dht = true,
            other => bail!("unknown role {other:?} (expected rendezvous, relay or dht)"),
        }
    }
    Ok(roles)
}

impl Settings {
    /// Merges the file with the overrides and validates the result.
    pub fn resolve(file: &ConfigFile, over: &Overrides) -> Result<Self> {
        let name = over.name.clone().or_else(|| file.name.clone()).filter(|n| !n.trim().is_empty());
        if let Some(n) = &name {
            veil_actors::crypto::Name::new(n).map_err(|e| anyhow!("invalid name {n:?}: {e}"))?;
        }
        let policy = match over.policy.as_ref().or(file.policy.as_ref()) {
            Some(p) => parse_policy(p)?,
            None => Policy::Direct,
        };
        let listen = match over.listen.as_ref().or(file.listen.as_ref()) {
            Some(l) => addrs("listen", l)?,
            // A relayed node is reachable through its relay only; an
            // anonymous one through its mixnet transports.
            None if matches!(policy, Policy::Relayed | Policy::Anonymous) => Vec::new(),
            None => default_listen(),
        };
        let rendezvous_servers = addrs(
            "rendezvous server",
            over.rendezvous_servers.as_ref().or(file.rendezvous_servers.as_ref()).map_or(&[], |v| v),
        )?;
        let relays = addrs("relay", over.relays.as_ref().or(file.relays.as_ref()).map_or(&[], |v| v))?;
        let bootstrap = addrs("bootstrap", over.bootstrap.as_ref().or(file.bootstrap.as_ref()).map_or(&[], |v| v))?;
        for a in relays.iter().chain(&bootstrap) {
            if veil_actors::transports::policy::peer_of(a).is_none() {
                bail!("relay and bootstrap addresses must end in /p2p/<peer id>: {a}");
            }
        }
        let serve = parse_roles(over.serve.as_ref().or(file.serve.as_ref()).map_or(&[], |v| v))?;
        let mdns = over.mdns.or(file.mdns).unwrap_or(true);
        // Servers keep their peer id: others address them by it.
        let rotate_peer_id = file.rotate_peer_id.unwrap_or(!serve.any());
        let max_incoming_connections =
            file.max_incoming_connections.unwrap_or(NetworkConfig::default().max_incoming_connections);
        if max_incoming_connections == 0 {
            bail!("max_incoming_connections must be at least 1");
        }
        let d = default_relay_limits();
        let relay_limits = (
            file.relay_max_reservations.unwrap_or(d.0),
            file.relay_max_circuits.unwrap_or(d.1),
            file.relay_reservations_per_minute.unwrap_or(d.2),
        );
        Ok(Self {
            name,
            listen,
            rendezvous_servers,
            relays,
            bootstrap,
            rotate_peer_id,
            relay_limits,
            max_incoming_connections,
            policy,
            serve,
            mdns,
            sync_interval: file.sync_interval_ms.map(Duration::from_millis),
            contact_retry: file.contact_retry_ms.map(Duration::from_millis),
            tor: TorSettings::resolve(file.tor.as_ref(), policy)?,
            ble: BleSettings::resolve(file.ble.as_ref(), policy)?,
        })
    }

    /// Reads `home`'s `veil.toml` and applies `over`.
    pub fn load(home: &Path, over: &Overrides) -> Result<Self> {
        Self::resolve(&ConfigFile::load(home)?, over)
    }

    /// The network configuration these settings describe.
    pub fn network_config(&self) -> NetworkConfig {
        let mut config = NetworkConfig::default();
        config.mdns = self.mdns;
        config.rendezvous_server = self.serve.rendezvous;
        config.relay_server = self.serve.relay;
        config.rendezvous_servers = self.rendezvous_servers.clone();
        config.relays = self.relays.clone();
        config.bootstrap = self.bootstrap.clone();
        config.kad = self.serve.dht;
        (config.relay_max_reservations, config.relay_max_circuits, config.relay_reservations_per_minute) =
            self.relay_limits;
        config.max_incoming_connections = self.max_incoming_connections;
        config
    }
}

#[cfg(test)]
mod tests;
