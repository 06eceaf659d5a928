//! The daemon's Tor transport: started on first use (at start under the
//! `anonymous` policy, or by `veil transport attach tor`) and kept when
//! detached, so attaching again reuses its circuits.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use tonic::Status;
use veil_actors::Node;
use veil_actors::transports::TransportId;
use veil_tor::Tor;

use crate::{api, config::TorSettings};

/// The Tor transport's id.
pub(crate) const TOR: TransportId = TransportId::from_static("tor");

/// The daemon's Tor client, once started.
#[derive(Debug)]
pub(crate) struct TorSlot {
    home: PathBuf,
    settings: TorSettings,
    tor: Mutex<Option<Tor>>,
}

impl TorSlot {
    pub(crate) fn new(home: PathBuf, settings: TorSettings) -> Self {
        Self { home, settings, tor: Mutex::new(None) }
    }

    fn get_or_start(&self) -> Result<Tor, Status> {
        let mut slot = self.tor.lock().map_err(|_| Status::internal("the Tor slot is poisoned"))?;
        if let Some(tor) = slot.as_ref() {
            return Ok(tor.clone());
        }
        let tor = Tor::start(self.settings.config(&self.home))
            .map_err(|e| Status::failed_precondition(format!("cannot start Tor: {e}")))?;
        *slot = Some(tor.clone());
        Ok(tor)
    }

    /// Attaches Tor to `node` and runs its onion service. The listen
    /// resolves once the service can be reached (seconds to minutes), so it
    /// runs in the background; `veil status` shows how far it got.
    pub(crate) async fn attach(&self, node: &Node) -> Result<(), Status> {
        let tor = self.get_or_start()?;
        node.attach_transport(Arc::new(tor.clone())).await.map_err(super::node_error)?;
        let (node, addr) = (node.clone(), tor.listen_addr());
        tokio::spawn(async move {
            match node.listen(addr).await {
                Ok(onion) => tracing::info!(onion = %veil_tor::addr::redacted(&onion), "onion service listening"),
                Err(e) => tracing::warn!(error = %e, "the onion service did not start"),
            }
        });
        Ok(())
    }

    /// The status for `veil status`; `None` if Tor never started.
    pub(crate) fn status(&self, attached: bool) -> Option<api::TorStatus> {
        let tor = self.tor.lock().ok()?.clone()?;
        let s = tor.status();
        Some(api::TorStatus {
            attached,
            bootstrap: s.bootstrap.to_string(),
            onion: s.onion.map(|a| a.to_string()).unwrap_or_default(),
            service: s.service.to_string(),
        })
    }
}
