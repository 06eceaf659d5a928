//! What the Tor transport reports: how far bootstrapping got, and the
//! onion service of the current network key.

use std::fmt;
use std::time::Duration;

use libp2p::Multiaddr;
use tokio::sync::watch;

/// How far the Tor client is in reaching the network.
#[derive(Debug, Clone, PartialEq)]
pub enum Bootstrap {
    /// Not started yet.
    Starting,
    /// Fetching the directory and building circuits.
    Progress {
        /// 0–100.
        percent: u8,
        /// What holds it up, if arti knows ("cannot reach any relay", …).
        blocked: Option<String>,
    },
    /// Usable: circuits can be built.
    Ready,
    /// The last attempt failed; another starts after `retry_in`.
    Retrying {
        /// Why it failed.
        error: String,
        /// Failed attempts so far.
        attempts: u32,
        /// The wait before the next attempt.
        retry_in: Duration,
    },
}

impl fmt::Display for Bootstrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Starting => f.write_str("starting"),
            Self::Progress { percent, blocked: None } => write!(f, "bootstrapping {percent}%"),
            Self::Progress { percent, blocked: Some(why) } => write!(f, "bootstrapping {percent}% (blocked: {why})"),
            Self::Ready => f.write_str("ready"),
            Self::Retrying { error, attempts, retry_in } => {
                write!(f, "unreachable after {attempts} attempt(s), retrying in {}s: {error}", retry_in.as_secs())
            }
        }
    }
}

/// The state of the current network key's onion service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceState {
    /// No service runs (nothing listens on Tor).
    Stopped,
    /// Launched: building introduction points, publishing the descriptor.
    Publishing,
    /// The descriptor is published: the service can be reached.
    Reachable,
    /// Introduction points or descriptor uploads fail; arti keeps trying.
    Degraded,
    /// The service failed and does not recover by itself.
    Broken,
}

impl From<tor_hsservice::status::State> for ServiceState {
    fn from(state: tor_hsservice::status::State) -> Self {
        use tor_hsservice::status::State;
        match state {
            State::Shutdown => Self::Stopped,
            State::Bootstrapping => Self::Publishing,
            State::Running | State::DegradedReachable => Self::Reachable,
            State::Broken => Self::Broken,
            _ => Self::Degraded,
        }
    }
}

impl fmt::Display for ServiceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Stopped => "stopped",
            Self::Publishing => "publishing",
            Self::Reachable => "reachable",
            Self::Degraded => "degraded",
            Self::Broken => "broken",
        })
    }
}

/// A snapshot of the Tor transport.
#[derive(Debug, Clone, PartialEq)]
pub struct TorStatus {
    /// How far the arti client is in reaching the Tor network; circuits can be built once it is `Ready`.
    pub bootstrap: Bootstrap,
    /// The onion address of the running service, if one runs.
    pub onion: Option<Multiaddr>,
    /// That service's state.
    pub service: ServiceState,
}

impl Default for TorStatus {
    fn default() -> Self {
        Self { bootstrap: Bootstrap::Starting, onion: None, service: ServiceState::Stopped }
    }
}

/// The shared, observable status (one value: a watch channel is bounded).
#[derive(Debug, Clone)]
pub(crate) struct StatusCell(watch::Sender<TorStatus>);

impl StatusCell {
    pub(crate) fn new() -> Self {
        Self(watch::Sender::new(TorStatus::default()))
    }

    pub(crate) fn get(&self) -> TorStatus {
        self.0.borrow().clone()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<TorStatus> {
        self.0.subscribe()
    }

    pub(crate) fn set_bootstrap(&self, bootstrap: Bootstrap) {
        self.0.send_if_modified(|s| {
            let changed = s.bootstrap != bootstrap;
            s.bootstrap = bootstrap;
            changed
        });
    }

    /// Bootstrap progress, unless it is complete already (arti reports
    /// progress after readiness too, as circuits come and go).
    pub(crate) fn set_progress(&self, percent: u8, blocked: Option<String>) {
        self.0.send_if_modified(|s| {
            if s.bootstrap == Bootstrap::Ready {
                return false;
            }
            let next = Bootstrap::Progress { percent, blocked };
            let changed = s.bootstrap != next;
            s.bootstrap = next;
            changed
        });
    }

    pub(crate) fn set_service(&self, onion: Option<Multiaddr>, service: ServiceState) {
        self.0.send_if_modified(|s| {
            let changed = s.onion != onion || s.service != service;
            s.onion = onion;
            s.service = service;
            changed
        });
    }
}
