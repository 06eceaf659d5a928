//! Process-level tests: real `veil daemon` processes on loopback with
//! temporary homes, driven only through the `veil` CLI with `--json`.
//! Waiting is on `veil events` (which says when it is subscribed), never on
//! sleeps.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use veil_testkit::daemon::*;
#[test]
fn link_contact_accept_send_and_log_between_two_daemons() {
    let server = Daemon::start("", &["--serve", "rendezvous"]);
    let rendezvous = server.addr();
    let alice = Daemon::start(FAST, &["--rendezvous", &rendezvous, "--name", "Alice"]);
    let bob = Daemon::start(&format!("{FAST}name = \"Bob\"\n"), &["--rendezvous", &rendezvous]);

    // status reports the peer id and the addresses the daemon listens on.
    let status = alice.ok(&["status"]);
    assert_eq!(status["peer_id"], alice.ready["peer_id"]);
    assert_eq!(status["listen_addrs"], alice.ready["listen_addrs"]);
    assert!(status["listen_addrs"][0].as_str().unwrap().starts_with("/ip4/127.0.0.1/tcp/"));
    // ... and what it refused from the network (nothing yet).
    assert_eq!(status["refused"], json!({ "frames": 0, "entries": 0, "contact_requests": 0 }));
    assert_eq!(server.ok(&["status"])["serve"], json!(["rendezvous"]));

    let link = bob.ok(&["link"])["uri"].as_str().unwrap().to_owned();
    assert!(link.starts_with("veil://contact/"));
    let (alice_events, bob_events) = (alice.events(), bob.events());

    let sent = alice.ok(&["contact", "add", &link]);
    assert!(sent["state"].as_str().unwrap().starts_with("outgoing-"), "{sent}");
    bob_events.until("Alice's request", || {
        contact_named(&bob.ok(&["contact", "list"]), "Alice").is_some_and(|c| c["state"] == "incoming-received")
    });
    let accepted = bob.ok(&["contact", "accept", "Alice"]);
    assert_eq!(accepted["state"], "accepted");
    let conversation = accepted["conversation"].as_str().unwrap().to_owned();
    assert_eq!(conversation.len(), 64);
    let bob_account = bob.ok(&["id"])["account"].as_str().unwrap().to_owned();
    alice_events.until("Bob's acceptance", || {
        alice.ok(&["contact", "list"])["contacts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["account"] == bob_account.as_str() && c["state"] == "accepted")
    });

    // Both sides name the same conversation; each can use its own handle.
    let sent = alice.ok(&["send", &conversation[..8], "hello", "from", "Alice"]);
    assert_eq!(sent["conversation"], conversation.as_str());
    assert_eq!(sent["message"]["mine"], true);
    bob_events.until("Alice's message", || !texts(&bob.ok(&["log", "Alice"])).is_empty());
    assert_eq!(texts(&bob.ok(&["log", &conversation])), vec![(false, "hello from Alice".to_owned())]);

    bob.ok(&["send", "Alice", "hi Alice"]);
    alice_events.until("Bob's answer", || texts(&alice.ok(&["log", &conversation])).len() == 2);
    assert_eq!(
        texts(&alice.ok(&["log", &conversation])),
        vec![(true, "hello from Alice".to_owned()), (false, "hi Alice".to_owned())]
    );
    // `log --follow` prints what is there, then each new message as it comes.
    let mut follow = veil()
        .arg("--home")
        .arg(bob.path())
        .args(["--json", "log", "--follow", "Alice"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let followed = lines_of(&mut follow);
    let next_text = || {
        let line: Value = serde_json::from_str(&followed.recv_timeout(WAIT).unwrap()).unwrap();
        assert_eq!(line["conversation"], conversation.as_str());
        line["text"].as_str().unwrap().to_owned()
    };
    assert_eq!((next_text(), next_text()), ("hello from Alice".to_owned(), "hi Alice".to_owned()));
    alice.ok(&["send", &conversation, "third"]);
    assert_eq!(next_text(), "third");
    let _ = follow.kill();
    let _ = follow.wait();

    let conversations = alice.ok(&["conversations"]);
    assert_eq!(conversations["conversations"][0]["id"], conversation.as_str());
    assert_eq!(conversations["conversations"][0]["kind"], "contact");
    assert!(!alice.ok(&["status"])["connected_peers"].as_array().unwrap().is_empty());
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    // No daemon running.
    let empty = tempfile::tempdir().unwrap();
    let r = run_in(empty.path(), &["status"]);
    assert_eq!(r.code, 3);
    assert_eq!(r.json["error"]["code"], "no_daemon");
    assert!(r.stderr.trim().lines().count() == 1 && r.stderr.contains("no veil daemon is running"), "{}", r.stderr);

    let d = Daemon::start("", &[]);
    let notes = d.ok(&["group", "create", "notes"])["id"].as_str().unwrap().to_owned();
    d.ok(&["send", &notes, "kept"]);
    let transports = d.ok(&["transport"]);

    let expect = |args: &[&str], code: i32, kind: &str, needle: &str| {
        let r = d.run(args);
        assert_eq!((r.code, r.json["error"]["code"].as_str()), (code, Some(kind)), "veil {args:?}: {}", r.json);
        let message = r.json["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "veil {args:?}: {message}");
        assert_eq!(r.stderr.trim().lines().count(), 1, "one line: {}", r.stderr);
    };
    expect(&["contact", "add", "veil://contact/AAAA"], 2, "invalid_argument", "malformed link");
    expect(&["contact", "add", "hello"], 2, "invalid_argument", "not a veil link");
    expect(&["contact", "add", &format!("veil://contact/{}", "A".repeat(5000))], 2, "invalid_argument", "longer than");
    expect(&["contact", "accept", "nobody"], 4, "not_found", "unknown contact");
    expect(&["send", "nosuch", "hi"], 4, "not_found", "unknown conversation");
    expect(&["send", "0123456789abcdef", "hi"], 4, "not_found", "unknown conversation");
    expect(&["log", "nosuch"], 4, "not_found", "unknown conversation");
    let big = "x".repeat(70_000);
    expect(&["send", &notes, &big], 2, "invalid_argument", "at most 65532");
    expect(&["log", &notes, "--limit", "5000"], 2, "invalid_argument", "--limit");
    expect(&["policy", "loud"], 2, "invalid_argument", "unknown policy");
    expect(&["transport", "attach", "pigeon"], 2, "invalid_argument", "unknown transport");
    expect(&["transport", "detach", "pigeon"], 1, "refused", "not attached");
    let invitation = d.ok(&["group", "invite", &notes]);
    assert!(invitation["uri"].as_str().unwrap().starts_with("veil://group/"), "{invitation}");
    assert_eq!(d.ok(&["group", "members", &notes])["members"].as_array().unwrap().len(), 1);
    expect(&["group", "join", "veil://group/x"], 2, "invalid_argument", "malformed invitation");
    expect(&["group", "remove", &notes, "cafe"], 2, "invalid_argument", "not a member key");

    // An oversize message on standard input is refused too.
    let mut child = veil()
        .arg("--home")
        .arg(d.path())
        .args(["--json", "send", &notes, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `veil` may stop reading (and exit) once the message is too long, so
    // the rest of the write can meet a closed pipe.
    match child.stdin.take().unwrap().write_all(big.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("writing to veil: {e}"),
        _ => {}
    }
    let r = parse(child.wait_with_output().unwrap());
    assert_eq!(r.code, 2, "{}", r.json);

    // Nothing changed.
    assert_eq!(d.ok(&["contact", "list"])["contacts"], json!([]));
    assert_eq!(d.ok(&["conversations"])["conversations"].as_array().unwrap().len(), 1);
    assert_eq!(texts(&d.ok(&["log", "notes"])), vec![(true, "kept".to_owned())]);
    assert_eq!(d.ok(&["transport"]), transports);

    // A replication credential, and serving one (a node may replicate its
    // own group; a contact link is no credential).
    let credential = d.ok(&["group", "credential", &notes])["uri"].as_str().unwrap().to_owned();
    assert!(credential.starts_with("veil://replica/"), "{credential}");
    assert_eq!(d.ok(&["group", "replicate", &credential])["replication_id"].as_str().unwrap().len(), 64);
    expect(&["group", "replicate", "veil://replica/AAAA"], 2, "invalid_argument", "malformed");

    // Leaving: the history stays, writing and removing are refused.
    let me = d.ok(&["group", "members", &notes])["members"][0].as_str().unwrap().to_owned();
    assert_eq!(d.ok(&["group", "leave", &notes])["left"], true);
    assert!(d.ok(&["group", "members", &notes])["members"].as_array().unwrap().is_empty());
    expect(&["group", "remove", &notes, &me], 1, "refused", "no longer a member");
    expect(&["send", &notes, "anyone?"], 1, "refused", "no longer a member");
    assert_eq!(texts(&d.ok(&["log", "notes"])), vec![(true, "kept".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_bad_input_and_keeps_serving() {
    use veil_app::api;
    let d = Daemon::start("", &[]);
    let mut c = veil_app::client::connect(&d.path().join("veil.sock")).await.unwrap();
    let notes = c.create_group(api::CreateGroupRequest { name: "notes".into() }).await.unwrap().into_inner().id;
    let send = |body: Vec<u8>| api::SendRequest { conversation: notes.clone(), body };

    let e = c.send(send(vec![b'x'; 70_000])).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("at most 65532"), "{}", e.message());
    assert_eq!(c.send(send(Vec::new())).await.unwrap_err().code(), tonic::Code::InvalidArgument);
    // Beyond the decoder's limit: refused before it is read.
    assert_ne!(c.send(send(vec![b'x'; 2 << 20])).await.unwrap_err().code(), tonic::Code::Ok);

    let history = |after_hash: &str, limit| api::HistoryRequest {
        conversation: notes.clone(),
        after_hash: after_hash.into(),
        limit,
        ..Default::default()
    };
    assert_eq!(c.history(history("", 5000)).await.unwrap_err().code(), tonic::Code::InvalidArgument);
    assert_eq!(c.history(history("zz", 10)).await.unwrap_err().code(), tonic::Code::InvalidArgument);
    let unknown = api::HistoryRequest { conversation: "ab".repeat(32), ..Default::default() };
    assert_eq!(c.history(unknown).await.unwrap_err().code(), tonic::Code::NotFound);
    let long = api::HistoryRequest { conversation: "a".repeat(1000), ..Default::default() };
    assert_eq!(c.history(long).await.unwrap_err().code(), tonic::Code::InvalidArgument);
    let undecided = api::DecideContactRequest { contact: "x".into(), decision: 0 };
    assert_eq!(c.decide_contact(undecided).await.unwrap_err().code(), tonic::Code::NotFound);
    let link =
        api::AddContactRequest { link: "veil://contact/".to_owned() + &"A".repeat(100), display_name: String::new() };
    assert_eq!(c.add_contact(link).await.unwrap_err().code(), tonic::Code::InvalidArgument);

    // Still serving, and nothing was stored.
    c.send(send(b"fine".to_vec())).await.unwrap();
    let messages = c.history(history("", 10)).await.unwrap().into_inner().messages;
    assert_eq!(messages.iter().map(|m| m.body.as_slice()).collect::<Vec<_>>(), vec![b"fine".as_slice()]);
    let both = api::HistoryRequest { before_hash: "ab".repeat(32), ..history(&"cd".repeat(32), 10) };
    assert_eq!(c.history(both).await.unwrap_err().code(), tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_back_from_the_latest_and_forward_again() {
    use veil_app::api;
    let d = Daemon::start("", &[]);
    let mut c = veil_app::client::connect(&d.path().join("veil.sock")).await.unwrap();
    let notes = c.create_group(api::CreateGroupRequest { name: "notes".into() }).await.unwrap().into_inner().id;
    for i in 0..25 {
        let body = format!("note {i}").into_bytes();
        c.send(api::SendRequest { conversation: notes.clone(), body }).await.unwrap();
    }
    let page = |r: api::HistoryRequest| {
        let mut c = c.clone();
        async move {
            let messages = c.history(r).await.unwrap().into_inner().messages;
            assert!(messages.iter().all(|m| m.mine));
            messages
        }
    };
    let texts = |m: &[api::Message]| m.iter().map(|m| String::from_utf8(m.body.clone()).unwrap()).collect::<Vec<_>>();
    let notes_from = |range: std::ops::Range<i32>| range.map(|i| format!("note {i}")).collect::<Vec<_>>();
    let base = api::HistoryRequest { conversation: notes.clone(), limit: 10, ..Default::default() };
    // The latest first, then back a page at a time from the first one shown.
    let latest = page(base.clone()).await;
    assert_eq!(texts(&latest), notes_from(15..25));
    let back = |m: &api::Message| api::HistoryRequest {
        before_lamport: m.lamport,
        before_hash: m.hash.clone(),
        ..base.clone()
    };
    let older = page(back(&latest[0])).await;
    assert_eq!(texts(&older), notes_from(5..15));
    let oldest = page(back(&older[0])).await;
    assert_eq!(texts(&oldest), notes_from(0..5));
    assert!(page(back(&oldest[0])).await.is_empty());
    // And forward again from the last one shown.
    let forward =
        api::HistoryRequest { after_lamport: oldest[4].lamport, after_hash: oldest[4].hash.clone(), ..base.clone() };
    assert_eq!(texts(&page(forward).await), notes_from(5..15));
}

#[test]
fn a_sender_killed_mid_conversation_comes_back_and_its_contact_reads_everything() {
    let Befriended { server: _server, rendezvous, mut alice, bob, bob_events, conversation } = befriended();
    let before: Vec<String> = (0..10).map(|i| format!("before {i}")).collect();
    let alice_events = alice.events();
    alice_events.until("Bob's acceptance", || alice.run(&["send", &conversation, &before[0]]).code == 0);
    for text in &before[1..] {
        alice.ok(&["send", &conversation, text]);
    }
    bob_events.until("Alice's first messages", || texts(&bob.ok(&["log", &conversation])).len() == before.len());
    drop(alice_events);

    // Killed: no clean close, so the sending chain resumes past the
    // positions it had reserved; Bob steps over them.
    alice.stop(rustix::process::Signal::KILL);
    let (child, ready) = spawn_daemon(alice.path(), &["--rendezvous", &rendezvous]);
    (alice.child, alice.ready) = (Some(child), ready);
    // Which messages are hers comes from the store, not from what this
    // daemon process sent.
    let hers: Vec<(bool, String)> = before.iter().map(|t| (true, t.clone())).collect();
    assert_eq!(texts(&alice.ok(&["log", &conversation])), hers);
    let after: Vec<String> = (0..3).map(|i| format!("after {i}")).collect();
    for text in &after {
        alice.ok(&["send", &conversation, text]);
    }
    let all: Vec<(bool, String)> = before.iter().chain(&after).map(|t| (false, t.clone())).collect();
    bob_events
        .until("Alice's messages after her restart", || texts(&bob.ok(&["log", &conversation])).len() >= all.len());
    assert_eq!(texts(&bob.ok(&["log", &conversation])), all);
    let mine: Vec<(bool, String)> = all.iter().map(|(_, t)| (true, t.clone())).collect();
    assert_eq!(texts(&alice.ok(&["log", &conversation])), mine);
}

#[test]
fn a_nickname_names_a_contact_in_every_command_and_stays_on_this_device() {
    let Befriended { server: _server, alice, bob, bob_events, conversation, .. } = befriended();
    let bob_account = bob.ok(&["id"])["account"].as_str().unwrap().to_owned();
    let alice_events = alice.events();
    alice_events.until("Bob's acceptance", || alice.ok(&["contact", "list"])["contacts"][0]["state"] == "accepted");

    let renamed = alice.ok(&["contact", "rename", &bob_account[..12], "Bobby (work)"]);
    assert_eq!((renamed["nickname"].as_str(), renamed["name"].as_str()), (Some("Bobby (work)"), Some("Bobby (work)")));
    // Every command knows him by it: send, log, contact list, conversations.
    alice.ok(&["send", "bobby (WORK)", "hi Bob"]);
    bob_events.until("Alice's message", || texts(&bob.ok(&["log", &conversation])).len() == 1);
    assert_eq!(texts(&alice.ok(&["log", "Bobby (work)"])), vec![(true, "hi Bob".to_owned())]);
    assert!(contact_named(&alice.ok(&["contact", "list"]), "Bobby (work)").is_some());
    assert_eq!(alice.ok(&["conversations"])["conversations"][0]["title"], "Bobby (work)");
    // Bob never hears of it: his side still knows Alice by her own name.
    assert!(contact_named(&bob.ok(&["contact", "list"]), "Alice").is_some());

    // Cleared, his own name (if he gave one) shows again; the old nickname
    // names nobody.
    let cleared = alice.ok(&["contact", "rename", "Bobby (work)"]);
    assert_eq!(cleared["nickname"], "");
    assert_eq!(cleared["name"], cleared["display_name"]);
    let gone = alice.run(&["send", "Bobby (work)", "hello?"]);
    assert_ne!(gone.code, 0);
    assert!(gone.stderr.contains("unknown conversation"), "{}", gone.stderr);
    let nobody = alice.run(&["contact", "rename", "Carol", "C"]);
    assert_ne!(nobody.code, 0);
    assert!(nobody.stderr.contains("unknown contact"), "{}", nobody.stderr);
}

#[test]
fn group_names_outlive_a_restart_and_travel_with_invitations() {
    let server = Daemon::start("", &["--serve", "rendezvous"]);
    let rendezvous = server.addr();
    let mut alice = Daemon::start(FAST, &["--rendezvous", &rendezvous]);
    let club = alice.ok(&["group", "create", "Book club"])["id"].as_str().unwrap().to_owned();
    let invited = alice.ok(&["group", "invite", &club]);
    assert_eq!(invited["expires_at"], 0, "never, unless asked");
    let invitation = invited["uri"].as_str().unwrap().to_owned();
    // `--expires` puts the expiry into the invitation itself.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let short = alice.ok(&["group", "invite", &club, "--expires", "1h"]);
    let expires_at = short["expires_at"].as_u64().unwrap();
    assert!((now + 3600..=now + 3660).contains(&expires_at), "{short}");
    let carried =
        veil_actors::proto::link::parse_invitation(short["uri"].as_str().unwrap()).unwrap().expires_at.unwrap();
    assert_eq!(carried.0, expires_at);
    assert_ne!(alice.run(&["group", "invite", &club, "--expires", "soon"]).code, 0);
    assert_eq!(alice.stop(rustix::process::Signal::INT), 0);
    let (child, ready) = spawn_daemon(alice.path(), &["--rendezvous", &rendezvous]);
    (alice.child, alice.ready) = (Some(child), ready);

    // The node kept the name: the conversation is titled and found by it.
    let conversations = alice.ok(&["conversations"]);
    assert_eq!(conversations["conversations"][0]["title"], "Book club");
    assert_eq!(alice.ok(&["send", "book CLUB", "first"])["conversation"], club.as_str());

    // Whoever joins with an invitation knows the group by its name too.
    let bob = Daemon::start(FAST, &["--rendezvous", &rendezvous]);
    let joined = bob.ok(&["group", "join", &invitation]);
    assert_eq!((joined["id"].as_str(), joined["title"].as_str()), (Some(club.as_str()), Some("Book club")));
    assert_eq!(bob.ok(&["conversations"])["conversations"][0]["title"], "Book club");
}

#[test]
fn unread_counts_what_others_wrote_since_the_conversation_was_read() {
    let Befriended { server: _server, alice, bob, bob_events, conversation, .. } = befriended();
    let alice_events = alice.events();
    alice_events.until("Bob's acceptance", || alice.run(&["send", &conversation, "one"]).code == 0);
    for text in ["two", "three"] {
        alice.ok(&["send", &conversation, text]);
    }
    bob_events.until("Alice's messages", || texts(&bob.ok(&["log", &conversation])).len() == 3);
    let unread = |d: &Daemon| d.ok(&["conversations"])["conversations"][0]["unread"].as_u64().unwrap();
    assert_eq!(unread(&bob), 3);
    assert_eq!(unread(&alice), 0, "her own messages are never unread");
    bob.ok(&["send", "Alice", "hi"]);
    assert_eq!(unread(&bob), 3, "nor are his");

    let read = bob.ok(&["read", "Alice"]);
    assert_eq!(read["unread"], 0);
    alice_events.until("Bob's message", || texts(&alice.ok(&["log", &conversation])).len() == 4);
    assert_eq!(unread(&alice), 1);
    alice.ok(&["send", &conversation, "four"]);
    bob_events.until("Alice's fourth", || texts(&bob.ok(&["log", &conversation])).len() == 5);
    assert_eq!(unread(&bob), 1, "only what came after he read");
    assert_eq!(bob.ok(&["read", "Alice"])["unread"], 0);
}

#[test]
fn a_message_shows_whether_it_was_delivered() {
    let Befriended { server: _server, rendezvous, alice, mut bob, bob_events, conversation } = befriended();
    let alice_events = alice.events();
    alice_events.until("Bob's acceptance", || alice.run(&["send", &conversation, "one"]).code == 0);
    let waiting = |text: &str| {
        let log = alice.ok(&["log", &conversation]);
        let m = log["messages"].as_array().unwrap().iter().find(|m| m["text"] == text).cloned();
        m.map(|m| m["waiting_for"].as_u64().unwrap())
    };
    alice_events.until("one delivered", || waiting("one") == Some(0));
    let log = alice.ok(&["log", &conversation]);
    let one = &log["messages"][0];
    assert_eq!((one["owed_to"].as_u64(), one["delivered_to"].as_u64()), (Some(1), Some(1)), "{one}");
    // In a group, delivery is not known (messages are pulled, not acknowledged).
    let club = alice.ok(&["group", "create", "club"])["id"].as_str().unwrap().to_owned();
    alice.ok(&["send", &club, "to whoever pulls it"]);
    assert_eq!(alice.ok(&["log", &club])["messages"][0]["owed_to"], 0);
    drop(bob_events);

    // Bob is away: Alice's next message waits for him, and says so.
    assert_eq!(bob.stop(rustix::process::Signal::INT), 0);
    alice.ok(&["send", &conversation, "two"]);
    assert_eq!(waiting("two"), Some(1));
    let (child, ready) = spawn_daemon(bob.path(), &["--rendezvous", &rendezvous]);
    (bob.child, bob.ready) = (Some(child), ready);
    alice_events.until("two delivered once Bob is back", || waiting("two") == Some(0));
    assert_eq!(texts(&bob.ok(&["log", &conversation])), vec![(false, "one".to_owned()), (false, "two".to_owned())]);
}

#[test]
fn a_one_time_link_answers_once_and_then_nobody() {
    let server = Daemon::start("", &["--serve", "rendezvous"]);
    let rendezvous = server.addr();
    let start = |name: &str| Daemon::start(FAST, &["--rendezvous", &rendezvous, "--name", name]);
    let (alice, bob, carol) = (start("Alice"), start("Bob"), start("Carol"));
    let once = alice.ok(&["link", "reset", "--uses", "1"]);
    assert_eq!((once["answers"].as_bool(), once["uses_left"].as_u64()), (Some(true), Some(1)), "{once}");
    let uri = once["uri"].as_str().unwrap().to_owned();
    let text = |d: &Daemon| String::from_utf8(veil().arg("--home").arg(d.path()).arg("link").output().unwrap().stdout);
    assert!(text(&alice).unwrap().contains("1 use left"), "{:?}", text(&alice));

    request_contact(&bob, &alice, "Bob");
    let spent = alice.ok(&["link"]);
    assert_eq!((spent["answers"].as_bool(), spent["uses_left"].as_u64()), (Some(false), Some(0)), "{spent}");
    assert!(text(&alice).unwrap().contains("used up"), "{:?}", text(&alice));

    // Carol's request through the same link gets no answer, again and again.
    let carol_events = carol.events();
    carol.ok(&["contact", "add", &uri]);
    loop {
        let failed = carol_events.next_event("a failed request", |e| {
            assert_ne!(e["event"], "request_delivered", "{e}");
            e["event"] == "request_undelivered"
        });
        if failed["failures"].as_u64().unwrap() >= 3 {
            break;
        }
    }
    assert_eq!(alice.ok(&["contact", "list"])["contacts"].as_array().unwrap().len(), 1, "only Bob reached Alice");

    // An expiry from the CLI, and bad limits refused.
    let timed = alice.ok(&["link", "reset", "--expires", "1h"]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let expires_at = timed["expires_at"].as_u64().unwrap();
    assert!((now + 3590..=now + 3610).contains(&expires_at), "{timed}");
    assert_eq!(timed["uses_left"], Value::Null);
    for bad in [&["--uses", "0"][..], &["--expires", "soon"], &["--expires", "400d"]] {
        assert_ne!(alice.run(&[&["link", "reset"][..], bad].concat()).code, 0, "{bad:?}");
    }
}

#[test]
fn the_acceptor_introduces_itself_and_is_known_by_that_name() {
    // Bob's link carries no name: Alice learns it from his acceptance.
    let Befriended { server: _server, alice, bob: _bob, conversation, .. } = befriended();
    let alice_events = alice.events();
    alice_events.until("Bob's acceptance, introducing him", || {
        contact_named(&alice.ok(&["contact", "list"]), "Bob").is_some_and(|c| c["state"] == "accepted")
    });
    assert_eq!(alice.ok(&["send", "Bob", "hi Bob"])["conversation"], conversation.as_str());
    // A nickname still wins.
    alice.ok(&["contact", "rename", "Bob", "Robert"]);
    assert!(contact_named(&alice.ok(&["contact", "list"]), "Robert").is_some());
}

#[test]
fn forgetting_erases_history_here_and_retention_keeps_it_short() {
    let Befriended { server: _server, alice, bob, bob_events, conversation, .. } = befriended();
    let alice_events = alice.events();
    alice_events.until("Bob's acceptance", || alice.run(&["send", &conversation, "one"]).code == 0);
    alice.ok(&["send", &conversation, "two"]);
    bob_events.until("both messages", || texts(&bob.ok(&["log", "Alice"])).len() == 2);

    // Bob forgets his copy; Alice keeps hers.
    let forgot = bob.ok(&["forget", "Alice"]);
    assert_eq!((forgot["erased"].as_u64(), forgot["conversation"].as_str()), (Some(2), Some(conversation.as_str())));
    assert!(texts(&bob.ok(&["log", "Alice"])).is_empty());
    assert_eq!(texts(&alice.ok(&["log", &conversation])).len(), 2);
    // The conversation goes on; what was forgotten is not fetched again.
    alice.ok(&["send", &conversation, "three"]);
    bob_events.until("the next message", || !texts(&bob.ok(&["log", "Alice"])).is_empty());
    assert_eq!(texts(&bob.ok(&["log", "Alice"])), vec![(false, "three".to_owned())]);

    // A retention of one second: the node erases what is older by itself.
    let kept = bob.ok(&["retention", "Alice", "1s"]);
    assert_eq!(kept["retention_seconds"], 1, "{kept}");
    bob_events.until("the retention sweep", || texts(&bob.ok(&["log", "Alice"])).is_empty());
    let forever = bob.ok(&["retention", "Alice", "forever"]);
    assert_eq!(forever["retention_seconds"], Value::Null, "{forever}");
    assert_ne!(bob.run(&["retention", "Alice", "soon"]).code, 0);
    assert_ne!(bob.run(&["forget", "nosuch"]).code, 0);
}

#[test]
fn a_removed_contact_and_its_conversation_are_gone() {
    let Befriended { server: _server, alice, bob, bob_events, conversation, .. } = befriended();
    let alice_events = alice.events();
    alice_events.until("Bob's acceptance", || alice.run(&["send", &conversation, "one"]).code == 0);
    bob_events.until("Alice's message", || texts(&bob.ok(&["log", "Alice"])).len() == 1);

    let removed = bob.ok(&["contact", "remove", "Alice"]);
    assert_eq!(removed["name"], "Alice", "{removed}");
    assert!(contact_named(&bob.ok(&["contact", "list"]), "Alice").is_none());
    assert!(bob.ok(&["conversations"])["conversations"].as_array().unwrap().is_empty());
    assert_ne!(bob.run(&["log", &conversation]).code, 0, "the conversation is gone");
    assert_ne!(bob.run(&["send", &conversation, "hi"]).code, 0);
    assert_ne!(bob.run(&["contact", "remove", "Alice"]).code, 0, "nobody left to remove");
    // Alice still writes; Bob's node has nothing to take it into.
    alice.ok(&["send", &conversation, "two"]);
    assert!(bob.ok(&["conversations"])["conversations"].as_array().unwrap().is_empty());
}

/// `veil` on `home` with the backup passphrase in its environment.
fn with_passphrase(home: &Path, passphrase: &str, args: &[&str]) -> Run {
    parse(
        veil()
            .env("VEIL_BACKUP_PASSPHRASE", passphrase)
            .arg("--home")
            .arg(home)
            .arg("--json")
            .args(args)
            .output()
            .unwrap(),
    )
}

#[test]
fn a_backup_restores_the_account_elsewhere_as_a_new_device_that_talks_on() {
    let Befriended { server: _server, rendezvous, mut alice, bob, bob_events, conversation } = befriended();
    let alice_events = alice.events();
    alice_events.until("Bob's acceptance", || alice.run(&["send", &conversation, "before the backup"]).code == 0);
    bob_events.until("Alice's message", || texts(&bob.ok(&["log", "Alice"])).len() == 1);
    let account = alice.ok(&["id"])["account"].as_str().unwrap().to_owned();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alice.veilbackup");
    let file_arg = file.to_str().unwrap();
    let secret = "a long backup passphrase";
    assert_ne!(with_passphrase(alice.path(), "short", &["backup", file_arg]).code, 0, "a short passphrase is refused");
    let written = with_passphrase(alice.path(), secret, &["backup", file_arg]);
    assert_eq!(written.code, 0, "{}", written.stderr);
    assert!(written.json["bytes"].as_u64().unwrap() > 1000);
    assert_ne!(with_passphrase(alice.path(), secret, &["backup", file_arg]).code, 0, "it never overwrites");
    drop(alice_events);
    assert_eq!(alice.stop(rustix::process::Signal::INT), 0);

    // On "another machine": a wrong passphrase restores nothing.
    let new_home = tempfile::tempdir().unwrap();
    let wrong = with_passphrase(new_home.path(), "not the passphrase", &["restore", file_arg]);
    assert_ne!(wrong.code, 0);
    assert!(wrong.stderr.contains("wrong backup passphrase"), "{}", wrong.stderr);
    assert!(!new_home.path().join("veil.db").exists());
    let restored = with_passphrase(new_home.path(), secret, &["restore", file_arg]);
    assert_eq!(restored.code, 0, "{}", restored.stderr);
    assert_eq!(restored.json["account"], account.as_str());
    assert_ne!(with_passphrase(new_home.path(), secret, &["restore", file_arg]).code, 0, "not over a node");

    // The restored node is Alice: same account, her history, and it talks on
    // as a new device that Bob reads.
    std::fs::write(new_home.path().join("veil.toml"), FAST).unwrap();
    let (child, ready) = spawn_daemon(new_home.path(), &["--rendezvous", &rendezvous, "--name", "Alice"]);
    let alice = Daemon { home: new_home, child: Some(child), ready };
    assert_eq!(alice.ok(&["id"])["account"], account.as_str());
    assert_eq!(texts(&alice.ok(&["log", &conversation])), vec![(true, "before the backup".to_owned())]);
    alice.ok(&["send", &conversation, "from the restored device"]);
    bob_events.until("the restored device's message", || texts(&bob.ok(&["log", "Alice"])).len() == 2);
    assert_eq!(texts(&bob.ok(&["log", "Alice"]))[1], (false, "from the restored device".to_owned()));
    bob.ok(&["send", "Alice", "welcome back"]);
    let alice_events = alice.events();
    alice_events.until("Bob's answer", || texts(&alice.ok(&["log", &conversation])).len() == 3);
}
