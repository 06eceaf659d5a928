//! The terminal chat UI.

use anyhow::{Result, bail};

use crate::client::Client;

/// Runs the chat UI against a daemon.
pub(crate) async fn run(_client: Client) -> Result<()> {
    bail!("the chat UI is not built yet")
}
