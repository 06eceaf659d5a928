//! What each command does. Everything but `init`, `daemon` and `demo` goes
//! through the daemon API.

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use serde_json::json;
use tokio_stream::StreamExt;

use crate::{
    api::{self, MAX_BODY},
    cli::{
        Cli, Command, ContactAction, DaemonAction, DaemonArgs, DeviceAction, GroupAction, LinkAction, TransportAction,
    },
    client::{self, Client},
    config::{self, ConfigFile, Overrides, Settings},
    daemon::{self, Daemon},
    output::{self as out, Out},
    qr,
};

/// An error the daemon answered with.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The gRPC status code; the CLI's exit code and error name follow from it.
    pub code: tonic::Code,
    /// The daemon's one-line message.
    pub message: String,
}

impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> Self {
        let message = if s.message().is_empty() { s.code().description().to_owned() } else { s.message().to_owned() };
        Self { code: s.code(), message }
    }
}

/// Bad input caught before it reaches the daemon (same code as the daemon's).
fn invalid(message: String) -> anyhow::Error {
    ApiError { code: tonic::Code::InvalidArgument, message }.into()
}

/// Calls the daemon, turning a status into an [`ApiError`].
macro_rules! call {
    ($client:expr, $method:ident, $req:expr) => {
        $client.$method($req).await.map_err(ApiError::from)?.into_inner()
    };
}

pub(crate) fn home_of(cli: &Cli) -> Result<PathBuf> {
    match &cli.home {
        Some(h) => Ok(h.clone()),
        None => config::default_home(),
    }
}

async fn connect(home: &Path) -> Result<Client> {
    client::connect(&config::socket_path(home)).await
}

/// Runs one command.
pub(crate) async fn run(cli: Cli) -> Result<()> {
    let out = Out { json: cli.json };
    let home = home_of(&cli)?;
    match cli.command {
        Command::Init { name: _, link: Some(offer) } => crate::devices::join(&home, &offer, out).await,
        Command::Device { action: DeviceAction::Join { offer } } => crate::devices::join(&home, &offer, out).await,
        Command::Init { name, link: None } => init(&home, name, out).await,
        Command::Restore { file } => restore(&home, &file, out).await,
        Command::Daemon(args) => run_daemon(&home, args, out).await,
        Command::Demo { script } => crate::demo::run(script, out).await,
        Command::Chat => {
            let client = connect(&home).await?;
            crate::tui::run(client).await
        }
        command => {
            let mut client = connect(&home).await?;
            with_daemon(&mut client, command, out).await
        }
    }
}

async fn with_daemon(c: &mut Client, command: Command, out: Out) -> Result<()> {
    match command {
        Command::Backup { file } => {
            let path = std::path::absolute(&file).with_context(|| format!("{}", file.display()))?;
            let request = api::BackupRequest { path: path.display().to_string(), passphrase: backup_passphrase()? };
            let b = call!(c, backup, request);
            let v = json!({ "path": b.path, "bytes": b.bytes });
            out.emit(&v, || format!("backup written to {} ({} bytes)", b.path, b.bytes))
        }
        Command::Id => {
            let id = call!(c, get_identity, api::GetIdentityRequest {});
            out.emit(&out::identity(&id), || format!("account {}\ndevice  {}", id.account, id.device))
        }
        Command::Link { action } => link(c, action.unwrap_or(LinkAction::Show), out).await,
        Command::Contact { action } => contact(c, action.unwrap_or(ContactAction::List), out).await,
        Command::Conversations => {
            let list = call!(c, list_conversations, api::ListConversationsRequest {}).conversations;
            out.emit(&json!({ "conversations": list.iter().map(out::conversation).collect::<Vec<_>>() }), || {
                if list.is_empty() {
                    "no conversations yet (add a contact: `veil contact add LINK`)".to_owned()
                } else {
                    list.iter().map(out::conversation_line).collect::<Vec<_>>().join("\n")
                }
            })
        }
        Command::Send { conversation, text } => {
            let body = message_body(&text)?;
            let sent = call!(c, send, api::SendRequest { conversation, body });
            let m = sent.message.unwrap_or_default();
            out.emit(&json!({ "conversation": sent.conversation, "message": out::message(&m) }), || {
                format!("sent {} to {}", out::short(&m.hash), out::short(&sent.conversation))
            })
        }
        Command::Read { conversation } => {
            let read = call!(c, mark_read, api::MarkReadRequest { conversation, ..Default::default() });
            out.emit(&out::conversation(&read), || format!("read: {}", out::conversation_line(&read)))
        }
        Command::Forget { conversation } => {
            let f = call!(c, forget_history, api::ForgetHistoryRequest { conversation });
            let v = json!({ "conversation": f.conversation, "erased": f.erased });
            out.emit(&v, || format!("erased {} messages of {} from this device", f.erased, out::short(&f.conversation)))
        }
        Command::Retention { conversation, keep } => {
            let c = call!(c, set_retention, api::SetRetentionRequest { conversation, keep_seconds: keep });
            let kept = match c.retention_seconds {
                0 => "kept for ever".to_owned(),
                s => format!("kept {} on this device", out::duration(s)),
            };
            out.emit(&out::conversation(&c), || format!("{}: messages {kept}", out::conversation_line(&c)))
        }
        Command::Log { conversation, follow, limit } => log(c, conversation, follow, limit, out).await,
        Command::Group { action } => group(c, action, out).await,
        Command::Status => {
            let s = call!(c, get_status, api::GetStatusRequest {});
            out.emit(&out::status(&s), || out::status_text(&s))
        }
        Command::Policy { policy } => {
            let s = match policy {
                Some(policy) => call!(c, set_policy, api::SetPolicyRequest { policy }),
                None => call!(c, get_status, api::GetStatusRequest {}),
            };
            out.emit(&json!({ "policy": s.policy }), || format!("policy {}", s.policy))
        }
        Command::Transport { action } => {
            let t = match action.unwrap_or(TransportAction::List) {
                TransportAction::List => call!(c, list_transports, api::ListTransportsRequest {}),
                TransportAction::Attach { name } => call!(c, attach_transport, api::AttachTransportRequest { name }),
                TransportAction::Detach { name } => call!(c, detach_transport, api::DetachTransportRequest { name }),
            };
            out.emit(&out::transports(&t), || {
                format!("attached   {}\navailable  {}", t.attached.join(", "), t.available.join(", "))
            })
        }
        Command::Peers => {
            let p = call!(c, list_peers, api::ListPeersRequest {});
            out.emit(&out::peers(&p), || out::peers_text(&p))
        }
        Command::Audit => {
            let a = call!(c, audit, api::AuditRequest {});
            out.emit(&out::audit(&a), || out::audit_text(&a))
        }
        Command::Events => {
            let mut events = call!(c, subscribe, api::SubscribeRequest {});
            // The daemon is subscribed once the call returns: say so, so a
            // script can act and then wait without missing anything.
            let ready = json!({ "event": "subscribed" });
            out.emit(&ready, || out::event_line(&ready))?;
            while let Some(e) = events.next().await {
                let e = e.map_err(ApiError::from)?;
                if let Some(v) = out::event(&e) {
                    out.emit(&v, || out::event_line(&v))?;
                }
            }
            Ok(())
        }
        Command::Device { action: DeviceAction::Link { lifetime } } => crate::devices::link(c, lifetime, out).await,
        Command::Device { action: DeviceAction::List } => crate::devices::list(c, out).await,
        Command::Device { action: DeviceAction::Remove { device } } => crate::devices::remove(c, &device, out).await,
        Command::Init { .. }
        | Command::Restore { .. }
        | Command::Daemon(_)
        | Command::Demo { .. }
        | Command::Chat
        | Command::Device { action: DeviceAction::Join { .. } } => {
            bail!("this command does not use a running daemon")
        }
    }
}

/// The message from the command line, or standard input for "-".
fn message_body(text: &[String]) -> Result<Vec<u8>> {
    let from_stdin = text.len() == 1 && text[0] == "-";
    let body = if from_stdin {
        let mut buf = Vec::new();
        std::io::stdin().take(MAX_BODY as u64 + 1).read_to_end(&mut buf).context("cannot read standard input")?;
        buf
    } else {
        text.join(" ").into_bytes()
    };
    if body.len() > MAX_BODY {
        let size = if from_stdin { format!("more than {MAX_BODY}") } else { body.len().to_string() };
        return Err(invalid(format!("the message is {size} bytes; at most {MAX_BODY} fit in one message")));
    }
    if body.is_empty() {
        return Err(invalid("empty message".to_owned()));
    }
    Ok(body)
}

async fn link(c: &mut Client, action: LinkAction, out: Out) -> Result<()> {
    let l = match action {
        LinkAction::Show | LinkAction::Qr => call!(c, get_link, api::GetLinkRequest {}),
        LinkAction::Enable => call!(c, set_link_enabled, api::SetLinkEnabledRequest { enabled: true }),
        LinkAction::Disable => call!(c, set_link_enabled, api::SetLinkEnabledRequest { enabled: false }),
        LinkAction::Reset { expires, uses } => call!(
            c,
            reset_link,
            api::ResetLinkRequest { expires_in_seconds: expires.unwrap_or(0), uses: uses.unwrap_or(0) }
        ),
    };
    let state = out::link_state(&l);
    if matches!(action, LinkAction::Qr) {
        let drawn = qr::render(&l.qr)?;
        let mut v = out::link(&l);
        v["qr_lines"] = json!(drawn.lines().collect::<Vec<_>>());
        return out.emit(&v, || format!("{drawn}\n{}\n({state})", l.uri));
    }
    let note = if matches!(action, LinkAction::Reset { .. }) { "\nevery earlier link stopped working" } else { "" };
    out.emit(&out::link(&l), || format!("{}\n({state}){note}", l.uri))
}

async fn contact(c: &mut Client, action: ContactAction, out: Out) -> Result<()> {
    let decide =
        |contact: String, decision: api::Decision| api::DecideContactRequest { contact, decision: decision.into() };
    let (done, verb) = match action {
        ContactAction::List => {
            let list = call!(c, list_contacts, api::ListContactsRequest {}).contacts;
            return out.emit(&json!({ "contacts": list.iter().map(out::contact).collect::<Vec<_>>() }), || {
                if list.is_empty() {
                    "no contacts yet: share `veil link` or add someone's with `veil contact add LINK`".to_owned()
                } else {
                    list.iter().map(out::contact_line).collect::<Vec<_>>().join("\n")
                }
            });
        }
        ContactAction::Add { link, name } => (
            call!(c, add_contact, api::AddContactRequest { link, display_name: name.unwrap_or_default() }),
            "request sent (it is retried until delivered)",
        ),
        ContactAction::Accept { contact } => {
            (call!(c, decide_contact, decide(contact, api::Decision::Accept)), "accepted")
        }
        ContactAction::Discard { contact } => {
            (call!(c, decide_contact, decide(contact, api::Decision::Discard)), "discarded")
        }
        ContactAction::Block { contact } => {
            (call!(c, decide_contact, decide(contact, api::Decision::Block)), "blocked")
        }
        ContactAction::Rename { contact, nickname } => {
            let nickname = nickname.unwrap_or_default();
            let verb = if nickname.trim().is_empty() { "nickname cleared" } else { "renamed" };
            (call!(c, rename_contact, api::RenameContactRequest { contact, nickname }), verb)
        }
        ContactAction::Remove { contact } => {
            (call!(c, remove_contact, api::RemoveContactRequest { contact }), "removed, with your conversation")
        }
    };
    out.emit(&out::contact(&done), || format!("{verb}: {}", out::contact_line(&done)))
}

async fn group(c: &mut Client, action: GroupAction, out: Out) -> Result<()> {
    match action {
        GroupAction::Create { name } => {
            let g = call!(c, create_group, api::CreateGroupRequest { name: name.unwrap_or_default() });
            out.emit(&out::conversation(&g), || format!("created {}", out::conversation_line(&g)))
        }
        GroupAction::Invite { conversation, expires } => {
            let request = api::InviteToGroupRequest { conversation, expires_in_seconds: expires.unwrap_or(0) };
            let i = call!(c, invite_to_group, request);
            out.emit(&json!({ "uri": i.uri, "qr": i.qr, "expires_at": i.expires_at }), || i.uri.clone())
        }
        GroupAction::Join { invitation } => {
            let g = call!(c, join_group, api::JoinGroupRequest { invitation });
            out.emit(&out::conversation(&g), || format!("joined {}", out::conversation_line(&g)))
        }
        GroupAction::Leave { conversation } => {
            call!(c, leave_group, api::LeaveGroupRequest { conversation });
            out.emit(&json!({ "left": true }), || "left".to_owned())
        }
        GroupAction::Remove { conversation, member } => {
            let m = call!(c, remove_member, api::RemoveMemberRequest { conversation, member }).members;
            out.emit(&json!({ "members": m }), || m.join("\n"))
        }
        GroupAction::Credential { conversation } => {
            let uri = call!(c, replica_credential, api::ReplicaCredentialRequest { conversation }).uri;
            out.emit(&json!({ "uri": uri }), || uri.clone())
        }
        GroupAction::Replicate { credential } => {
            let id = call!(c, replicate, api::ReplicateRequest { credential }).replication_id;
            out.emit(&json!({ "replication_id": id }), || format!("replicating {id}"))
        }
        GroupAction::Members { conversation } => {
            let m = call!(c, list_members, api::ListMembersRequest { conversation }).members;
            out.emit(&json!({ "members": m }), || m.join("\n"))
        }
    }
}

async fn log(c: &mut Client, conversation: String, follow: bool, limit: u32, out: Out) -> Result<()> {
    if limit == 0 || limit > api::MAX_HISTORY_LIMIT {
        return Err(invalid(format!("--limit must be between 1 and {}", api::MAX_HISTORY_LIMIT)));
    }
    // Subscribe before reading, so nothing falls between the two.
    let mut events = if follow { Some(call!(c, subscribe, api::SubscribeRequest {})) } else { None };
    let page =
        call!(c, history, api::HistoryRequest { conversation: conversation.clone(), limit, ..Default::default() });
    let id = page.conversation.clone();
    let conversations = call!(c, list_conversations, api::ListConversationsRequest {}).conversations;
    let them = conversations
        .iter()
        .find(|v| v.id == id && v.kind() == api::ConversationKind::Contact)
        .map(|v| v.title.clone());
    let print = |m: &api::Message| {
        let mut v = out::message(m);
        v["conversation"] = json!(id);
        out.emit(&v, || out::message_line(m, them.as_deref()))
    };
    let Some(events) = events.as_mut() else {
        let messages: Vec<_> = page.messages.iter().map(out::message).collect();
        return out.emit(&json!({ "conversation": id, "messages": messages }), || {
            if page.messages.is_empty() {
                "no messages yet".to_owned()
            } else {
                page.messages.iter().map(|m| out::message_line(m, them.as_deref())).collect::<Vec<_>>().join("\n")
            }
        });
    };
    let mut last = page.messages.last().map(|m| (m.lamport, m.hash.clone()));
    for m in &page.messages {
        print(m)?;
    }
    while let Some(e) = events.next().await {
        let e = e.map_err(ApiError::from)?;
        let relevant = match &e.kind {
            Some(api::event::Kind::MessageReceived(m) | api::event::Kind::MessageSent(m)) => m.conversation == id,
            Some(api::event::Kind::Lagged(_)) => true,
            _ => false,
        };
        if !relevant {
            continue;
        }
        let (after_lamport, after_hash) = last.clone().unwrap_or_default();
        let next = call!(
            c,
            history,
            api::HistoryRequest {
                conversation: id.clone(),
                after_lamport,
                after_hash,
                limit: api::MAX_HISTORY_LIMIT,
                ..api::HistoryRequest::default()
            }
        );
        for m in &next.messages {
            print(m)?;
            last = Some((m.lamport, m.hash.clone()));
        }
    }
    Ok(())
}

/// The passphrase a backup is sealed under: `VEIL_BACKUP_PASSPHRASE`, else
/// one line of standard input.
fn backup_passphrase() -> Result<String> {
    if let Ok(p) = std::env::var("VEIL_BACKUP_PASSPHRASE") {
        return Ok(p);
    }
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::stdin().lock().take(1024), &mut line)
        .context("cannot read the backup passphrase")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Restores a backup into `home`, offline.
async fn restore(home: &Path, file: &Path, out: Out) -> Result<()> {
    if connect(home).await.is_ok() {
        bail!("a daemon runs on {}: restore into a home of its own", home.display());
    }
    config::create_home(home)?;
    let passphrase = backup_passphrase()?;
    let options = veil_actors::storage::StoreOptions::default();
    let (db, key) = (home.join("veil.db"), home.join("storage.key"));
    let store =
        veil_actors::storage::Store::restore(file, &passphrase, &db, &key, options).await.map_err(|e| match e {
            veil_actors::storage::Error::AlreadyExists { .. } => {
                anyhow::anyhow!("{} already holds a node: restore into a new home", home.display())
            }
            e => anyhow::Error::new(e).context(format!("cannot restore {}", file.display())),
        })?;
    let account = store.account().await?.map(|a| hex::encode(a.signing.to_bytes()));
    store.close().await?;
    config::write_default_config(home)?;
    let account = account.unwrap_or_default();
    let v = json!({ "home": home.display().to_string(), "account": account });
    out.emit(&v, || format!("restored account {account} into {}; start it with `veil daemon`", home.display()))
}

async fn init(home: &Path, name: Option<String>, out: Out) -> Result<()> {
    config::create_home(home)?;
    let created_config = match &name {
        Some(n) => {
            veil_actors::crypto::Name::new(n).map_err(|e| anyhow::anyhow!("invalid name {n:?}: {e}"))?;
            write_config_with_name(home, n)?
        }
        None => config::write_default_config(home)?,
    };
    // If a daemon runs, the identity exists; ask it.
    let identity = match connect(home).await {
        Ok(mut c) => call!(c, get_identity, api::GetIdentityRequest {}),
        Err(_) => {
            let mut settings = Settings::load(home, &Overrides::default())?;
            settings.listen.clear();
            settings.mdns = false;
            settings.serve = config::Roles::default();
            settings.tor.enabled = false;
            let node = daemon::start_node(home, &settings).await?;
            let id = node.identity().await;
            node.shutdown().await?;
            let id = id?;
            api::Identity {
                account: hex::encode(id.account.signing.to_bytes()),
                agreement: hex::encode(id.account.agreement.0),
                device: hex::encode(id.device.to_bytes()),
            }
        }
    };
    let config_path = home.join(config::CONFIG_FILE);
    let v = json!({
        "home": home.display().to_string(),
        "config": config_path.display().to_string(),
        "config_created": created_config,
        "account": identity.account,
    });
    out.emit(&v, || {
        format!(
            "veil home {}\naccount {}\nconfig {}{}\nnext: `veil daemon`, then `veil link` to share your contact link",
            home.display(),
            identity.account,
            config_path.display(),
            if created_config { " (new)" } else { "" }
        )
    })
}

/// Writes a `veil.toml` carrying `name`; an existing file must already say the same.
fn write_config_with_name(home: &Path, name: &str) -> Result<bool> {
    let path = home.join(config::CONFIG_FILE);
    if path.exists() {
        let existing = ConfigFile::load(home)?;
        if existing.name.as_deref() != Some(name) {
            bail!("{} exists; set `name = {:?}` in it instead", path.display(), name);
        }
        return Ok(false);
    }
    let line = format!("name = {}\n", toml::Value::String(name.to_owned()));
    std::fs::write(&path, format!("{line}\n{}", config::DEFAULT_CONFIG))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(true)
}

async fn run_daemon(home: &Path, args: DaemonArgs, out: Out) -> Result<()> {
    if let Some(DaemonAction::Stop) = args.action {
        let mut c = connect(home).await?;
        call!(c, shutdown, api::ShutdownRequest {});
        return out.emit(&json!({ "stopping": true }), || "the daemon is stopping".to_owned());
    }
    let settings = Settings::load(home, &args.overrides())?;
    let daemon = Daemon::start(home, settings).await?;
    let announced = announce(&daemon, out).await;
    if announced.is_ok() {
        wait_for_stop(&daemon).await;
    }
    tracing::info!("stopping");
    let stopped = daemon.shutdown().await;
    announced.and(stopped)
}

/// Prints the ready line: socket, peer id, addresses.
async fn announce(daemon: &Daemon, out: Out) -> Result<()> {
    let node = daemon.node();
    let status = node.network_status().await.map_err(daemon::node_error).map_err(ApiError::from)?;
    let id = node.identity().await.map_err(daemon::node_error).map_err(ApiError::from)?;
    let account = hex::encode(id.account.signing.to_bytes());
    let addrs: Vec<String> = status.listen_addrs.iter().map(ToString::to_string).collect();
    let v = json!({
        "socket": daemon.socket().display().to_string(),
        "home": daemon.home().display().to_string(),
        "peer_id": status.peer_id.to_string(),
        "listen_addrs": addrs,
        "policy": status.policy.to_string(),
        "account": account,
    });
    out.emit(&v, || {
        format!(
            "veil daemon running (account {})\n  socket    {}\n  peer id   {}\n  listening {}\nstop with Ctrl-C or `veil daemon stop`",
            out::short(&account),
            daemon.socket().display(),
            status.peer_id,
            if addrs.is_empty() { "nowhere".to_owned() } else { addrs.join(", ") }
        )
    })
}

async fn wait_for_stop(daemon: &Daemon) {
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    let mut term = match term {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = daemon.stop_requested() => {}
            }
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
        _ = term.recv() => tracing::info!("SIGTERM"),
        () = daemon.stop_requested() => {}
    }
}
