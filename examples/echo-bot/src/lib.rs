//! An echo bot on the `Node` API: it accepts every contact request and
//! answers each message it receives with `echo: <message>`. A whole custom
//! messenger is this loop over [`Node::events`] plus the calls it makes.
//!
//! ```no_run
//! # async fn run(node: veil_actors::Node) -> anyhow::Result<()> {
//! println!("talk to me: {}", node.share_link().await?.uri);
//! veil_echo_bot::serve(&node, None).await?;
//! # Ok(())
//! # }
//! ```

use anyhow::Result;
use tokio::sync::broadcast::error::RecvError;
use veil_actors::{Node, NodeEvent};

/// How far back among the latest messages a received one is looked for.
const LOOK_BACK: u32 = 32;

/// Serves until the node stops, or after `replies` answers if given.
pub async fn serve(node: &Node, replies: Option<usize>) -> Result<()> {
    let mut events = node.events();
    let mut answered = 0;
    while replies.is_none_or(|n| answered < n) {
        match events.recv().await {
            Ok(NodeEvent::ContactRequestReceived { account, .. }) => {
                node.accept_contact(&account.signing).await?;
            }
            Ok(NodeEvent::MessageReceived { group, hash }) => {
                let latest = node.history_before(&group, None, LOOK_BACK).await?;
                let Some(message) = latest.into_iter().find(|m| m.hash == hash && !m.mine) else { continue };
                let text = String::from_utf8_lossy(&message.payload);
                node.send(&group, format!("echo: {text}").as_bytes()).await?;
                answered += 1;
            }
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => break,
        }
    }
    Ok(())
}
