//! The chat UI on ratatui's test backend: what each screen shows, what keys
//! do, and the whole UI against real daemons accepting a contact request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ratatui::{
    Terminal,
    backend::TestBackend,
    crossterm::event::{KeyCode, KeyEvent, KeyModifiers},
};

use super::{
    Ui,
    state::{Action, App, Screen},
};
use crate::api;

fn screen(terminal: &Terminal<TestBackend>) -> String {
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..buffer.area.height {
        for x in 0..buffer.area.width {
            out.push_str(buffer[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

fn draw(app: &App) -> String {
    let mut terminal = Terminal::new(TestBackend::new(100, 30)).unwrap();
    terminal.draw(|f| super::ui::draw(f, app)).unwrap();
    screen(&terminal)
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn conversation(id: &str, title: &str, undelivered: u64) -> api::Conversation {
    api::Conversation {
        id: id.into(),
        kind: api::ConversationKind::Contact.into(),
        title: title.into(),
        contact: "ab".repeat(32),
        undelivered,
        ..api::Conversation::default()
    }
}

fn message(text: &str, mine: bool) -> api::Message {
    api::Message { body: text.as_bytes().to_vec(), mine, author: "cd".repeat(32), ..api::Message::default() }
}

fn request(name: &str, account: &str) -> api::Contact {
    api::Contact {
        account: account.into(),
        display_name: name.into(),
        name: name.into(),
        state: api::ContactState::IncomingReceived.into(),
        ..api::Contact::default()
    }
}

fn sample() -> App {
    let mut app = App::default();
    app.set_conversations(vec![conversation(&"11".repeat(32), "Bob", 0), conversation(&"22".repeat(32), "Carol", 3)]);
    app.messages = vec![message("Hi, I'm Bob", false), message("hello Bob", true)];
    app.mark_unread(&"22".repeat(32));
    app.status = Some(api::Status {
        policy: "direct".into(),
        connected_peers: vec!["peer".into()],
        next_rotation_in: 125,
        ..api::Status::default()
    });
    app
}

#[test]
fn the_chat_screen_shows_conversations_messages_and_the_status_bar() {
    let shown = draw(&sample());
    for expected in [
        "Conversations",
        "› Bob",
        "Carol ● ↑3",
        "Bob: Hi, I'm Bob",
        "you: hello Bob",
        "Message (Enter to send)",
        "policy direct",
        "online: 1 peer",
        "rotates in 2m 05s",
        "sending 3…",
    ] {
        assert!(shown.contains(expected), "{expected:?} missing from\n{shown}");
    }
}

#[test]
fn an_empty_node_says_what_to_do_next() {
    let app = App { connected: false, ..App::default() };
    let shown = draw(&app);
    assert!(shown.contains("No conversations yet."), "{shown}");
    assert!(shown.contains("daemon disconnected"), "{shown}");
}

#[test]
fn typing_and_enter_send_to_the_selected_conversation() {
    let mut app = sample();
    assert_eq!(app.on_key(key(KeyCode::Down)), Action::LoadHistory);
    assert_eq!(app.current().unwrap().title, "Carol");
    assert!(!app.unread.contains(&"22".repeat(32)), "opening a conversation marks it read");
    for c in "hi q".chars() {
        assert_eq!(app.on_key(key(KeyCode::Char(c))), Action::None);
    }
    app.on_key(key(KeyCode::Backspace));
    assert_eq!(app.input, "hi ");
    assert_eq!(app.on_key(key(KeyCode::Enter)), Action::Send { conversation: "22".repeat(32), body: b"hi".to_vec() });
    assert!(app.input.is_empty());
    assert_eq!(app.on_key(key(KeyCode::Enter)), Action::None, "nothing to send");
    assert_eq!(app.on_key(key(KeyCode::Esc)), Action::Quit);
    assert_eq!(app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)), Action::Quit);
}

#[test]
fn requests_are_listed_and_accepted_with_a_key() {
    let mut app = sample();
    app.set_contacts(vec![
        request("Dave", &"dd".repeat(32)),
        request("Eve", &"ee".repeat(32)),
        api::Contact { state: api::ContactState::Accepted.into(), ..request("Bob", &"bb".repeat(32)) },
    ]);
    assert_eq!(app.requests.len(), 2, "only requests waiting for an answer");
    app.on_key(key(KeyCode::Tab));
    assert_eq!(app.screen, Screen::Requests);
    let shown = draw(&app);
    assert!(shown.contains("Requests (2)"), "{shown}");
    assert!(shown.contains("› Dave"), "{shown}");
    assert!(shown.contains("account eeeeeeee"), "{shown}");
    app.on_key(key(KeyCode::Down));
    assert_eq!(
        app.on_key(key(KeyCode::Char('a'))),
        Action::Decide { contact: "ee".repeat(32), decision: api::Decision::Accept }
    );
    assert_eq!(
        app.on_key(key(KeyCode::Char('b'))),
        Action::Decide { contact: "ee".repeat(32), decision: api::Decision::Block }
    );
}

#[test]
fn the_link_screen_shows_the_link_and_its_qr_code_and_asks_before_a_reset() {
    let mut app = sample();
    app.link = Some(api::Link {
        uri: "veil://contact/ABC".into(),
        qr: "VEIL://C/ABC".into(),
        enabled: true,
        answers: true,
        ..Default::default()
    });
    app.qr = Some(crate::qr::render("VEIL://C/ABC").unwrap());
    app.on_key(key(KeyCode::F(3)));
    let shown = draw(&app);
    assert!(shown.contains("veil://contact/ABC"), "{shown}");
    assert!(shown.contains("enabled: people with this link"), "{shown}");
    assert!(shown.contains("█▀▀▀▀▀█") || shown.contains("▄▄▄▄▄"), "a QR code is drawn:\n{shown}");
    assert_eq!(app.on_key(key(KeyCode::Char('e'))), Action::SetLinkEnabled(false));
    assert_eq!(app.on_key(key(KeyCode::Char('R'))), Action::None, "the first R only asks");
    assert_eq!(app.on_key(key(KeyCode::Char('R'))), Action::ResetLink);
}

#[test]
fn long_messages_wrap_and_the_view_keeps_the_latest() {
    let mut app = sample();
    app.messages = (0..40).map(|i| message(&format!("message {i:02} {}", "x".repeat(150)), i % 2 == 0)).collect();
    let shown = draw(&app);
    assert!(shown.contains("message 39"), "the latest message is visible:\n{shown}");
    assert!(!shown.contains("message 00"), "the oldest scrolled away");
}

/// Waits (at most a minute) for daemon events until `check` holds.
async fn until(ui: &mut Ui, mut check: impl FnMut(&App) -> bool) {
    tokio::time::timeout(Duration::from_secs(60), async {
        while !check(&ui.app) {
            let e = ui.next_event().await;
            ui.on_event(e).await;
        }
    })
    .await
    .expect("the UI reached the expected state in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_accepts_a_request_and_shows_the_conversation_live() {
    let root = tempfile::tempdir().unwrap();
    let (server, rendezvous) = crate::demo::rendezvous_server(&root.path().join("r")).await.unwrap();
    let you = crate::daemon::Daemon::start(&root.path().join("you"), crate::demo::peer_settings("You", &rendezvous))
        .await
        .unwrap();
    let bob = crate::daemon::start_node(&root.path().join("bob"), &crate::demo::peer_settings("Bob", &rendezvous))
        .await
        .unwrap();
    let mut ui = Ui::connect(crate::client::connect(you.socket()).await.unwrap()).await.unwrap();
    let mut terminal = Terminal::new(TestBackend::new(100, 30)).unwrap();

    let link = you.node().share_link().await.unwrap().uri;
    let mut bob_events = bob.events();
    bob.send_request(&link, Some("Bob")).await.unwrap();
    until(&mut ui, |app| app.requests.iter().any(|r| r.display_name == "Bob")).await;
    assert!(ui.app.notice.as_deref().unwrap_or_default().contains("contact request from Bob"));

    assert!(ui.key(key(KeyCode::Tab)).await);
    ui.draw(&mut terminal).unwrap();
    assert!(screen(&terminal).contains("› Bob"), "{}", screen(&terminal));
    assert!(ui.key(key(KeyCode::Char('a'))).await);
    assert_eq!(ui.app.notice.as_deref(), Some("accepted Bob"));
    assert!(ui.app.requests.is_empty());
    assert!(ui.app.conversations.iter().any(|c| c.title == "Bob"));

    let group = crate::demo::wait_for(&mut bob_events, "the contact", |e| match e {
        veil_actors::NodeEvent::ContactAccepted { group: Some(g), .. } => Some(g),
        _ => None,
    })
    .await
    .unwrap();
    bob.send(&group, b"hi from Bob").await.unwrap();
    until(&mut ui, |app| app.messages.iter().any(|m| m.body == b"hi from Bob")).await;

    assert!(ui.key(key(KeyCode::BackTab)).await);
    for c in "hello".chars() {
        ui.key(key(KeyCode::Char(c))).await;
    }
    assert!(ui.key(key(KeyCode::Enter)).await);
    ui.draw(&mut terminal).unwrap();
    let shown = screen(&terminal);
    assert!(shown.contains("Bob: hi from Bob"), "{shown}");
    assert!(shown.contains("you: hello"), "{shown}");

    drop(ui);
    you.shutdown().await.unwrap();
    bob.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[test]
fn wrapping_breaks_between_words_and_cuts_only_overlong_ones() {
    assert_eq!(super::ui::wrap("hello big world", 9, 9), vec!["hello big", "world"]);
    assert_eq!(super::ui::wrap("abcdefghij k", 4, 6), vec!["abcd", "efghij", "k"]);
    assert_eq!(super::ui::wrap("", 5, 5), vec![""]);
    assert_eq!(super::ui::wrap("a  b", 10, 10), vec!["a  b"]);
}

#[test]
fn requests_show_and_are_answered_inline_in_the_chats() {
    let mut app = sample();
    app.set_contacts(vec![request("Dave", &"dd".repeat(32)), request("Eve", &"ee".repeat(32))]);
    let shown = draw(&app);
    assert!(shown.contains("✉ Dave") && shown.contains("✉ Eve"), "{shown}");
    assert!(shown.contains("› Bob"), "the first conversation is selected: {shown}");

    // Up from the first conversation reaches the requests, last first.
    assert_eq!(app.on_key(key(KeyCode::Up)), Action::None);
    assert_eq!(app.inline_request, Some(1));
    let shown = draw(&app);
    assert!(shown.contains("› ✉ Eve"), "{shown}");
    assert!(shown.contains("Eve asks to be your contact"), "{shown}");
    // Letters answer it instead of typing.
    assert_eq!(app.on_key(key(KeyCode::Char('x'))), Action::None);
    assert!(app.input.is_empty() && app.notice.as_deref().is_some_and(|n| n.contains("a accept")));
    app.on_key(key(KeyCode::Up));
    assert_eq!(
        app.on_key(key(KeyCode::Char('d'))),
        Action::Decide { contact: "dd".repeat(32), decision: api::Decision::Discard }
    );
    assert_eq!(
        app.on_key(key(KeyCode::Enter)),
        Action::Decide { contact: "dd".repeat(32), decision: api::Decision::Accept }
    );
    // Answered, the list shrinks and the selection stays in range; down leads back.
    app.set_contacts(vec![request("Eve", &"ee".repeat(32))]);
    assert_eq!(app.inline_request, Some(0));
    app.on_key(key(KeyCode::Down));
    assert_eq!(app.inline_request, None);
    app.on_key(key(KeyCode::Char('h')));
    assert_eq!(app.input, "h", "typing goes to the message again");
    app.set_contacts(Vec::new());
    assert_eq!(app.inline_request, None);
}

#[test]
fn ticks_show_delivery_where_it_is_known() {
    let mut app = sample();
    let mine =
        |text: &str, owed_to: u32, waiting_for: u32| api::Message { owed_to, waiting_for, ..message(text, true) };
    app.messages = vec![mine("delivered", 1, 0), mine("waiting", 1, 1), mine("in a group", 0, 0)];
    let shown = draw(&app);
    assert!(shown.contains("delivered ✓"), "{shown}");
    assert!(shown.contains("waiting …"), "{shown}");
    assert!(shown.contains("in a group") && !shown.contains("in a group ✓"), "{shown}");
}
