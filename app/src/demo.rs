//! `veil demo`: a rendezvous server, your daemon and three bots (Bob,
//! Carol, Dave) on loopback in this process. Bob and Carol become your
//! contacts and answer what you write; Dave's request waits for you to
//! accept it. The chat UI then opens on your daemon, through its API like
//! any client; `--script` runs a short conversation instead, prints it and
//! exits (for CI and the README).

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;
use tokio::{sync::broadcast, task::JoinHandle, time::timeout};
use tokio_stream::StreamExt;
use veil_actors::crypto::{GroupId, VerifyKey};
use veil_actors::transports::libp2p::{Multiaddr, multiaddr::Protocol};
use veil_actors::{Node, NodeEvent, messages::group::HistoryEntry};

use crate::{
    api,
    client::{self, Client},
    config::{Roles, Settings},
    daemon::{self, Daemon},
    output::{self, Out},
};

/// The longest any step of the demo may take.
const STEP: Duration = Duration::from_secs(60);

/// Loopback TCP on a free port.
fn loopback() -> Vec<Multiaddr> {
    vec![Multiaddr::empty().with(Protocol::Ip4(std::net::Ipv4Addr::LOCALHOST)).with(Protocol::Tcp(0))]
}

/// Settings of a node on loopback that meets others at `rendezvous`, with
/// short retry and sync intervals so everything happens within a second.
pub(crate) fn peer_settings(name: &str, rendezvous: &[Multiaddr]) -> Settings {
    Settings {
        name: Some(name.to_owned()),
        listen: loopback(),
        rendezvous_servers: rendezvous.to_vec(),
        mdns: false,
        sync_interval: Some(Duration::from_millis(200)),
        contact_retry: Some(Duration::from_millis(200)),
        ..Settings::default()
    }
}

/// Starts a node serving rendezvous on loopback; returns it and the
/// addresses others use for it (ending in its peer id).
pub(crate) async fn rendezvous_server(home: &Path) -> Result<(Node, Vec<Multiaddr>)> {
    let settings = Settings {
        listen: loopback(),
        mdns: false,
        serve: Roles { rendezvous: true, ..Roles::default() },
        rotate_peer_id: false,
        ..Settings::default()
    };
    let node = daemon::start_node(home, &settings).await?;
    let status = node.network_status().await?;
    let p2p = Protocol::P2p(status.peer_id);
    let addrs = status.listen_addrs.into_iter().map(|a| a.with(p2p.clone())).collect();
    Ok((node, addrs))
}

/// Waits (at most [`STEP`]) for the first event `pick` maps to something.
pub(crate) async fn wait_for<T>(
    events: &mut broadcast::Receiver<NodeEvent>,
    what: &str,
    mut pick: impl FnMut(NodeEvent) -> Option<T>,
) -> Result<T> {
    timeout(STEP, async {
        loop {
            match events.recv().await {
                Ok(e) => {
                    if let Some(t) = pick(e) {
                        return Ok(t);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => bail!("the node stopped while waiting for {what}"),
            }
        }
    })
    .await
    .map_err(|_| anyhow!("timed out after {STEP:?} waiting for {what}"))?
}

/// The latest message of a group in history order, read 1000 at a time; `None` while it has none.
async fn last_message(node: &Node, group: &GroupId) -> Result<Option<HistoryEntry>> {
    let (mut after, mut last) = (None, None);
    loop {
        let page = node.history(group, after, 1000).await?;
        let full = page.len() == 1000;
        if let Some(e) = page.into_iter().last() {
            after = Some((e.lamport, e.hash));
            last = Some(e);
        }
        if !full {
            return Ok(last);
        }
    }
}

/// A bot: a node of its own that greets once it is your contact and
/// answers every message.
struct Bot {
    name: &'static str,
    node: Node,
    account: VerifyKey,
    events: Option<broadcast::Receiver<NodeEvent>>,
}

fn greeting(name: &str) -> &'static str {
    match name {
        "Bob" => "Hi, I'm Bob, a bot on another veil node in this process. Write something and I'll answer.",
        "Carol" => "Hello from Carol. Tab shows contact requests (Dave is waiting for you) and your link as a QR code.",
        _ => "Hi, Dave here. Thanks for accepting!",
    }
}

fn reply(name: &str, text: &str) -> String {
    match name {
        "Bob" => format!(
            "You said “{text}”. I read it on my own node after it crossed TCP on loopback, end-to-end encrypted."
        ),
        "Carol" => format!(
            "Carol here: {} characters received and acknowledged. Had I been offline, your node would have kept them for me.",
            text.chars().count()
        ),
        _ => format!("Dave heard “{text}”."),
    }
}

/// Greets `them` in the 1:1 group once it exists, then answers every message.
fn run_bot(
    name: &'static str,
    node: Node,
    mut events: broadcast::Receiver<NodeEvent>,
    them: VerifyKey,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let group = match wait_for(&mut events, "the contact", |e| match e {
            NodeEvent::ContactAccepted { account, group: Some(g) } if account == them => Some(g),
            _ => None,
        })
        .await
        {
            Ok(g) => g,
            Err(e) => return tracing::warn!(bot = name, error = %e, "the bot gives up"),
        };
        if let Err(e) = node.send(&group, greeting(name).as_bytes()).await {
            return tracing::warn!(bot = name, error = %e, "cannot greet");
        }
        loop {
            match events.recv().await {
                Ok(NodeEvent::MessageReceived { group: g, .. }) if g == group => {
                    let text = match last_message(&node, &group).await {
                        Ok(Some(m)) => String::from_utf8_lossy(&m.payload).into_owned(),
                        Ok(None) => continue,
                        Err(e) => return tracing::warn!(bot = name, error = %e, "cannot read"),
                    };
                    if let Err(e) = node.send(&group, reply(name, &text).as_bytes()).await {
                        return tracing::warn!(bot = name, error = %e, "cannot answer");
                    }
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    })
}

/// Everything the demo runs.
struct Cast {
    _root: tempfile::TempDir,
    server: Node,
    you: Daemon,
    bots: Vec<Bot>,
    tasks: Vec<JoinHandle<()>>,
}

impl Cast {
    async fn start(say: &impl Fn(&str)) -> Result<Self> {
        let root =
            tempfile::Builder::new().prefix("veil-demo-").tempdir().context("cannot make a temporary directory")?;
        let (server, rendezvous) = rendezvous_server(&root.path().join("rendezvous")).await?;
        say(&format!("  rendezvous server  {}", rendezvous.first().map(ToString::to_string).unwrap_or_default()));
        let you = Daemon::start(&root.path().join("you"), peer_settings("You", &rendezvous)).await?;
        say(&format!("  you                daemon API on {}", you.socket().display()));
        let mut bots = Vec::new();
        for name in ["Bob", "Carol", "Dave"] {
            let node =
                daemon::start_node(&root.path().join(name.to_lowercase()), &peer_settings(name, &rendezvous)).await?;
            let account = node.identity().await?.account.signing;
            let events = Some(node.events());
            bots.push(Bot { name, node, account, events });
        }
        say("  Bob, Carol, Dave   bots, each a node of its own");
        Ok(Self { _root: root, server, you, bots, tasks: Vec::new() })
    }

    /// Every bot asks to be your contact; you accept Bob and Carol.
    async fn befriend(&mut self) -> Result<()> {
        let you = self.you.node().clone();
        let link = you.share_link().await?.uri;
        let me = you.identity().await?.account.signing;
        let mut events = you.events();
        for bot in &self.bots {
            bot.node.send_request(&link, Some(bot.name)).await?;
        }
        let mut waiting: Vec<VerifyKey> = self.bots.iter().map(|b| b.account).collect();
        while !waiting.is_empty() {
            let from = wait_for(&mut events, "the bots' contact requests", |e| match e {
                NodeEvent::ContactRequestReceived { account, .. } => Some(account.signing),
                _ => None,
            })
            .await?;
            waiting.retain(|k| *k != from);
        }
        for bot in &mut self.bots {
            // The receiver subscribed before the request, so no event is missed.
            if let Some(events) = bot.events.take() {
                self.tasks.push(run_bot(bot.name, bot.node.clone(), events, me));
            }
        }
        for bot in self.bots.iter().filter(|b| b.name != "Dave") {
            you.accept_contact(&bot.account).await?;
        }
        Ok(())
    }

    async fn shutdown(self) -> Result<()> {
        for t in &self.tasks {
            t.abort();
        }
        let stopped = self.you.shutdown().await;
        for bot in &self.bots {
            bot.node.shutdown().await?;
        }
        self.server.shutdown().await?;
        stopped
    }
}

/// Runs the demo: the chat UI, or with `script` a scripted conversation.
pub(crate) async fn run(script: bool, out: Out) -> Result<()> {
    let started = Instant::now();
    let quiet = out.json;
    let say = |line: &str| {
        if !quiet {
            use std::io::Write;
            let _ = writeln!(std::io::stdout(), "{line}");
        }
    };
    say("veil demo: five nodes on loopback in this process");
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let script = script || {
        if !interactive {
            say("(standard output is not a terminal: running the scripted demo instead of the chat UI)");
        }
        !interactive
    };
    let mut cast = Cast::start(&say).await?;
    let result = async {
        cast.befriend().await?;
        say("Bob, Carol and Dave sent you contact requests; you accepted Bob and Carol.");
        let client = client::connect(cast.you.socket()).await?;
        if script { scripted(client, out, started).await } else { crate::tui::run(client).await }
    }
    .await;
    let stopped = cast.shutdown().await;
    result.and(stopped)
}

/// Waits for daemon events until `done` has seen what it needs.
async fn until_events(
    events: &mut tonic::Streaming<api::Event>,
    what: &str,
    mut done: impl FnMut(api::event::Kind) -> bool,
) -> Result<()> {
    timeout(STEP, async {
        while let Some(e) = events.next().await {
            if let Some(kind) = e?.kind
                && done(kind)
            {
                return Ok(());
            }
        }
        bail!("the daemon's event stream ended")
    })
    .await
    .map_err(|_| anyhow!("timed out after {STEP:?} waiting for {what}"))?
}

async fn history(api: &mut Client, conversation: &str) -> Result<Vec<api::Message>> {
    let request = api::HistoryRequest { conversation: conversation.to_owned(), limit: 100, ..Default::default() };
    Ok(api.history(request).await.map_err(crate::ApiError::from)?.into_inner().messages)
}

/// Through the daemon API: wait for Bob's greeting, write to him, wait for
/// his answer, accept Dave; print the conversation.
async fn scripted(mut api: Client, out: Out, started: Instant) -> Result<()> {
    let mut events = api.subscribe(api::SubscribeRequest {}).await?.into_inner();
    let conversations = api.list_conversations(api::ListConversationsRequest {}).await?.into_inner().conversations;
    let bob =
        conversations.iter().find(|c| c.title == "Bob").ok_or_else(|| anyhow!("no conversation with Bob"))?.id.clone();
    use api::event::Kind;
    if history(&mut api, &bob).await?.is_empty() {
        until_events(&mut events, "Bob's greeting", |k| matches!(k, Kind::MessageReceived(m) if m.conversation == bob))
            .await?;
    }
    let text = "Hello Bob! This is the veil demo.";
    let sent = api.send(api::SendRequest { conversation: bob.clone(), body: text.as_bytes().to_vec() }).await?;
    let hash = sent.into_inner().message.map(|m| m.hash).unwrap_or_default();
    // Bob's answer, and his acknowledgement of our message.
    let (mut answered, mut acknowledged) = (false, false);
    until_events(&mut events, "Bob's answer and acknowledgement", |k| {
        match k {
            Kind::MessageReceived(m) if m.conversation == bob => answered = true,
            Kind::Delivered(d) if d.hashes.contains(&hash) => acknowledged = true,
            _ => {}
        }
        answered && acknowledged
    })
    .await?;
    let dave = api
        .decide_contact(api::DecideContactRequest { contact: "Dave".into(), decision: api::Decision::Accept.into() })
        .await?
        .into_inner();
    let messages = history(&mut api, &bob).await?;
    let seconds = started.elapsed().as_secs_f64();
    let doc = json!({
        "conversation": bob,
        "messages": messages.iter().map(|m| {
            json!({ "from": if m.mine { "you" } else { "Bob" }, "text": output::text_of(&m.body) })
        }).collect::<Vec<_>>(),
        "accepted": dave.display_name,
        "nodes": 5,
        "seconds": seconds,
    });
    out.emit(&doc, || {
        let mut lines = vec![format!("conversation with Bob ({}):", output::short(&bob))];
        lines.extend(messages.iter().map(|m| format!("  {}", output::message_line(m, Some("Bob")))));
        lines.push(format!("accepted {}'s request through the daemon API", dave.display_name));
        lines.push(format!(
            "demo done in {seconds:.1} s: every message end-to-end encrypted, delivered and acknowledged over TCP on loopback"
        ));
        lines.join("\n")
    })
}
