//! What the Tor transport is told: where arti keeps its caches, and, for
//! tests only, which (private) Tor network to use instead of the public one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use arti_client::TorClientConfig;
use arti_client::config::{CfgPath, dir};
use tor_config::ExplicitOrAuto;
use tor_keymgr::config::ArtiKeystoreKind;
use tor_llcrypto::pk::{ed25519::Ed25519Identity, rsa::RsaIdentity};

use crate::addr::DEFAULT_PORT;
use crate::error::{Error, Result};

/// How long a bootstrap attempt may take by default: arti itself keeps
/// waiting, however hopeless; after this the status says so and the attempt
/// starts over.
pub const DEFAULT_BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(120);

/// The Tor transport's settings. With `network: None` (the default) arti
/// uses the public Tor network with its own defaults.
#[derive(Debug, Clone)]
pub struct TorConfig {
    /// Where arti keeps its directory cache (consensus, descriptors).
    pub cache_dir: PathBuf,
    /// Where arti keeps its state (guards, onion service replay logs). Keys
    /// are never written here: onion service keys come from the node and
    /// live in memory only.
    pub state_dir: PathBuf,
    /// The virtual port onion services listen on and dials use by default.
    pub port: u16,
    /// A Tor network other than the public one (a private test network).
    pub network: Option<PrivateNetwork>,
    /// How long one bootstrap attempt may make no headway before it counts
    /// as failed (and is retried, with back-off).
    pub bootstrap_timeout: Duration,
}

impl TorConfig {
    /// Settings for the public Tor network, keeping arti's files under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        Self {
            cache_dir: dir.join("cache"),
            state_dir: dir.join("state"),
            port: DEFAULT_PORT,
            network: None,
            bootstrap_timeout: DEFAULT_BOOTSTRAP_TIMEOUT,
        }
    }

    /// The same, on the private network `network`.
    pub fn on_network(mut self, network: PrivateNetwork) -> Self {
        self.network = Some(network);
        self
    }

    /// arti's configuration for these settings (for tools and benchmarks
    /// that drive arti beside the transport).
    pub fn arti(&self) -> Result<TorClientConfig> {
        let mut b = TorClientConfig::builder();
        b.storage()
            .cache_dir(CfgPath::new_literal(self.cache_dir.clone()))
            .state_dir(CfgPath::new_literal(self.state_dir.clone()));
        // Onion service identities are derived from the node's network key:
        // arti must not write them (or anything else secret) to disk.
        b.storage().keystore().primary().kind(ExplicitOrAuto::Explicit(ArtiKeystoreKind::Ephemeral));
        if let Some(network) = &self.network {
            network.apply(&mut b)?;
        }
        b.build().map_err(|e| Error::Config(e.to_string()))
    }
}

/// A private Tor network: its directory authorities and the relays to fetch
/// the first consensus from. Test settings; production never sets them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateNetwork {
    /// The authorities' v3 identities (hex).
    pub authorities: Vec<String>,
    /// Where to fetch the directory first.
    pub fallbacks: Vec<Fallback>,
    /// Every relay of the network shares one IP address (loopback), so
    /// arti's rule that relays of one /16 are one family must be off.
    pub loopback: bool,
}

/// A relay to fetch the directory from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    /// Its RSA identity fingerprint (hex).
    pub rsa_identity: String,
    /// Its Ed25519 identity (base64).
    pub ed_identity: String,
    /// Its OR port, where arti connects to fetch the directory.
    pub orport: SocketAddr,
}

impl PrivateNetwork {
    fn apply(&self, b: &mut arti_client::config::TorClientConfigBuilder) -> Result<()> {
        let bad = |what: &str, value: &str| Error::Config(format!("private network: bad {what} {value:?}"));
        for v3 in &self.authorities {
            let id = RsaIdentity::from_hex(v3).ok_or_else(|| bad("authority identity", v3))?;
            b.tor_network().authorities().v3idents().push(id);
        }
        let mut fallbacks = Vec::with_capacity(self.fallbacks.len());
        for f in &self.fallbacks {
            let mut fb = dir::FallbackDir::builder();
            fb.rsa_identity(
                RsaIdentity::from_hex(&f.rsa_identity).ok_or_else(|| bad("rsa identity", &f.rsa_identity))?,
            )
            .ed_identity(
                Ed25519Identity::from_base64(&f.ed_identity).ok_or_else(|| bad("ed25519 identity", &f.ed_identity))?,
            )
            .orports()
            .push(f.orport);
            fallbacks.push(fb);
        }
        b.tor_network().set_fallback_caches(fallbacks);
        if self.loopback {
            b.path_rules().ipv4_subnet_family_prefix(33).ipv6_subnet_family_prefix(129);
            b.address_filter().allow_local_addrs(true);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_public_network_needs_no_settings_and_a_private_one_is_checked() {
        // Only configuration: nothing here touches a network.
        TorConfig::new("/tmp/veil-tor-config-test").arti().unwrap();
        let bad = PrivateNetwork { authorities: vec!["not hex".into()], fallbacks: vec![], loopback: true };
        let err = TorConfig::new("/tmp/x").on_network(bad).arti().unwrap_err();
        assert!(err.to_string().contains("authority identity"), "{err}");
    }
}
