//! `veil demo`.

use anyhow::{Result, bail};

use crate::output::Out;

/// Runs the demo.
pub(crate) async fn run(_script: bool, _out: Out) -> Result<()> {
    bail!("the demo is not built yet")
}
