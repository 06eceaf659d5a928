//! `veil-echo-bot DATA_DIR [RENDEZVOUS_ADDR…]`: runs the bot on loopback
//! TCP and prints its contact link.

use std::{io::Write, sync::Arc};

use anyhow::{Context, Result};
use veil_actors::Node;
use veil_transports::{NetworkConfig, Tcp};

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().context("usage: veil-echo-bot DATA_DIR [RENDEZVOUS_ADDR…]")?;
    let mut config = NetworkConfig::default();
    config.rendezvous_servers = args.map(|a| a.parse()).collect::<Result<_, _>>()?;
    let node = Node::builder()
        .data_dir(dir)
        .network_config(config)
        .transport(Arc::new(Tcp::new()))
        .listen("/ip4/127.0.0.1/tcp/0".parse()?)
        .spawn()
        .await?;
    writeln!(std::io::stdout(), "{}", node.share_link().await?.uri)?;
    veil_echo_bot::serve(&node, None).await?;
    node.shutdown().await?;
    Ok(())
}
