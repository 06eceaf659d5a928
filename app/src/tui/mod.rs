//! `veil chat`: the terminal chat UI (ratatui). It talks to the daemon only
//! through the daemon API, like any other client.
//!
//! [`state`] holds what is shown and what keys do (pure), [`ui`] draws it,
//! and [`Ui`] connects the two to the daemon: keys become API calls, daemon
//! events refresh what they touch.

mod state;
mod ui;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result};
use ratatui::{
    Terminal,
    backend::Backend,
    crossterm::event::{self, Event, KeyEvent, KeyEventKind},
};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::Streaming;

pub(crate) use state::{Action, App};

use crate::{
    api::{self, event::Kind},
    client::Client,
    output::short,
    qr,
};

/// Messages loaded for the open conversation.
const HISTORY: u32 = 200;
/// How often the status bar (peers, rotation, messages being sent) refreshes.
const TICK: Duration = Duration::from_secs(2);
/// Terminal events waiting to be handled.
const INPUT_QUEUE: usize = 64;

/// The chat UI: what it shows, the client it acts through, and the daemon's event stream while it is up.
pub(crate) struct Ui {
    client: Client,
    events: Option<Streaming<api::Event>>,
    pub(crate) app: App,
}

impl Ui {
    /// Subscribes to the daemon's events and loads everything shown.
    pub(crate) async fn connect(mut client: Client) -> Result<Self> {
        let events = client.subscribe(api::SubscribeRequest {}).await.context("cannot subscribe to events")?;
        let mut ui = Self { client, events: Some(events.into_inner()), app: App::default() };
        ui.refresh_all().await;
        Ok(ui)
    }

    /// Draws the UI.
    pub(crate) fn draw<B: Backend>(&self, terminal: &mut Terminal<B>) -> Result<()> {
        terminal.draw(|f| ui::draw(f, &self.app)).map_err(|e| anyhow::anyhow!("cannot draw: {e}"))?;
        Ok(())
    }

    /// The next daemon event (`None`: the stream ended); pending forever once
    /// it has ended.
    pub(crate) async fn next_event(&mut self) -> Option<api::Event> {
        match self.events.as_mut() {
            Some(s) => s.next().await.and_then(Result::ok),
            None => std::future::pending().await,
        }
    }

    fn fail(&mut self, what: &str, e: tonic::Status) {
        self.app.notice = Some(format!("{what}: {}", e.message()));
    }

    async fn refresh_all(&mut self) {
        self.refresh_conversations().await;
        self.refresh_contacts().await;
        self.refresh_status().await;
        self.refresh_link(None).await;
        self.load_history().await;
    }

    async fn refresh_conversations(&mut self) {
        match self.client.list_conversations(api::ListConversationsRequest {}).await {
            Ok(r) => {
                if self.app.set_conversations(r.into_inner().conversations) {
                    self.load_history().await;
                }
            }
            Err(e) => self.fail("conversations", e),
        }
    }

    async fn refresh_contacts(&mut self) {
        match self.client.list_contacts(api::ListContactsRequest {}).await {
            Ok(r) => self.app.set_contacts(r.into_inner().contacts),
            Err(e) => self.fail("contacts", e),
        }
    }

    async fn refresh_status(&mut self) {
        match self.client.get_status(api::GetStatusRequest {}).await {
            Ok(r) => self.app.status = Some(r.into_inner()),
            Err(e) => self.fail("status", e),
        }
    }

    /// Shows `link`, or reads the current one.
    async fn refresh_link(&mut self, link: Option<api::Link>) {
        let link = match link {
            Some(l) => l,
            None => match self.client.get_link(api::GetLinkRequest {}).await {
                Ok(r) => r.into_inner(),
                Err(e) => return self.fail("link", e),
            },
        };
        self.app.qr = qr::render(&link.qr).ok();
        self.app.link = Some(link);
    }

    async fn load_history(&mut self) {
        let Some(id) = self.app.current().map(|c| c.id.clone()) else {
            self.app.messages.clear();
            return;
        };
        let request = api::HistoryRequest { conversation: id.clone(), limit: HISTORY, ..Default::default() };
        match self.client.history(request).await {
            Ok(r) => {
                // The selection may have moved while the call ran.
                if self.app.current().is_some_and(|c| c.id == id) {
                    self.app.messages = r.into_inner().messages;
                    // Shown: read, here and for every other client.
                    let read = api::MarkReadRequest { conversation: id, ..Default::default() };
                    match self.client.mark_read(read).await {
                        Ok(r) => self.app.read(r.into_inner()),
                        Err(e) => self.fail("marking read", e),
                    }
                }
            }
            Err(e) => self.fail("messages", e),
        }
    }

    /// Handles a key; returns `false` when the UI should close.
    pub(crate) async fn key(&mut self, key: KeyEvent) -> bool {
        match self.app.on_key(key) {
            Action::None => {}
            Action::Quit => return false,
            Action::LoadHistory => self.load_history().await,
            Action::Send { conversation, body } => {
                match self.client.send(api::SendRequest { conversation, body }).await {
                    Ok(_) => self.app.notice = None,
                    Err(e) => self.fail("not sent", e),
                }
                self.load_history().await;
                self.refresh_conversations().await;
            }
            Action::Decide { contact, decision } => {
                let request = api::DecideContactRequest { contact, decision: decision.into() };
                match self.client.decide_contact(request).await {
                    Ok(r) => {
                        let c = r.into_inner();
                        let name = if c.name.is_empty() { short(&c.account).to_owned() } else { c.name };
                        let verb = match decision {
                            api::Decision::Accept => "accepted",
                            api::Decision::Discard => "discarded",
                            api::Decision::Block => "blocked",
                            api::Decision::Unspecified => "answered",
                        };
                        self.app.notice = Some(format!("{verb} {name}"));
                    }
                    Err(e) => self.fail("request", e),
                }
                self.refresh_contacts().await;
                self.refresh_conversations().await;
            }
            Action::SetLinkEnabled(enabled) => {
                match self.client.set_link_enabled(api::SetLinkEnabledRequest { enabled }).await {
                    Ok(r) => self.refresh_link(Some(r.into_inner())).await,
                    Err(e) => self.fail("link", e),
                }
            }
            Action::ResetLink => match self.client.reset_link(api::ResetLinkRequest::default()).await {
                Ok(r) => {
                    self.refresh_link(Some(r.into_inner())).await;
                    self.app.notice = Some("new link: every earlier link stopped working".into());
                }
                Err(e) => self.fail("link", e),
            },
        }
        true
    }

    /// Refreshes what a daemon event touches (`None`: the daemon went away).
    pub(crate) async fn on_event(&mut self, event: Option<api::Event>) {
        let Some(kind) = event.and_then(|e| e.kind) else {
            if self.events.take().is_some() {
                self.app.connected = false;
                self.app.notice = Some("the daemon stopped; Ctrl-C to quit".into());
            }
            return;
        };
        match kind {
            Kind::MessageReceived(m) | Kind::MessageSent(m) => {
                if self.app.current().is_some_and(|c| c.id == m.conversation) {
                    self.load_history().await;
                } else {
                    self.app.mark_unread(&m.conversation);
                }
                self.refresh_conversations().await;
            }
            Kind::Delivered(_) | Kind::ConversationCreated(_) => self.refresh_conversations().await,
            Kind::ContactRequest(c) => {
                let name = if c.display_name.is_empty() { short(&c.account).to_owned() } else { c.display_name };
                self.app.notice = Some(format!("contact request from {name} (↑ in Chats to answer it)"));
                self.refresh_contacts().await;
            }
            Kind::ContactAccepted(_) | Kind::RequestDelivered(_) | Kind::RequestUndelivered(_) => {
                self.refresh_contacts().await;
                self.refresh_conversations().await;
            }
            Kind::PeerConnected(_) | Kind::PeerDisconnected(_) | Kind::Listening(_) | Kind::NetworkRestarted(_) => {
                self.refresh_status().await;
            }
            Kind::Lagged(_) => self.refresh_all().await,
            Kind::RendezvousRotated(_) => {}
        }
    }

    /// The periodic refresh: connection state and messages being sent.
    pub(crate) async fn tick(&mut self) {
        if self.app.connected {
            self.refresh_status().await;
            self.refresh_conversations().await;
        }
    }
}

/// Reads terminal events on a thread of its own into a bounded queue, until
/// `stop` is set or the queue is closed.
fn spawn_input(stop: Arc<AtomicBool>) -> mpsc::Receiver<Event> {
    let (tx, rx) = mpsc::channel(INPUT_QUEUE);
    let spawned = std::thread::Builder::new().name("veil-tui-input".into()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match event::poll(Duration::from_millis(100)) {
                Ok(true) => match event::read() {
                    Ok(e) => {
                        if tx.blocking_send(e).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                },
                Ok(false) => {}
                Err(_) => break,
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot read the keyboard");
    }
    rx
}

/// Runs the UI in the terminal until the user quits.
pub(crate) async fn run(client: Client) -> Result<()> {
    let mut ui = Ui::connect(client).await?;
    let mut terminal = ratatui::try_init().context("cannot open the terminal UI")?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut input = spawn_input(stop.clone());
    let result = event_loop(&mut ui, &mut terminal, &mut input).await;
    stop.store(true, Ordering::Relaxed);
    let restored = ratatui::try_restore().context("cannot restore the terminal");
    result.and(restored)
}

async fn event_loop<B: Backend>(
    ui: &mut Ui,
    terminal: &mut Terminal<B>,
    input: &mut mpsc::Receiver<Event>,
) -> Result<()> {
    let mut tick = tokio::time::interval(TICK);
    loop {
        ui.draw(terminal)?;
        tokio::select! {
            e = input.recv() => match e {
                Some(Event::Key(key)) if key.kind == KeyEventKind::Press => {
                    if !ui.key(key).await {
                        return Ok(());
                    }
                }
                Some(_) => {}
                None => return Ok(()),
            },
            e = ui.next_event() => ui.on_event(e).await,
            _ = tick.tick() => ui.tick().await,
        }
    }
}

#[cfg(test)]
mod tests;
