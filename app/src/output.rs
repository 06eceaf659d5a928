//! What commands print: one JSON document per result with `--json`, short
//! text otherwise. JSON field names follow the daemon API's field names.

use std::io::Write;

use anyhow::Result;
use serde_json::{Value, json};

use crate::api::{self, event::Kind};

/// Where results go (standard output).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Out {
    pub(crate) json: bool,
}

impl Out {
    /// Prints `value` as one JSON line, or `text()` for people.
    pub(crate) fn emit(&self, value: &Value, text: impl FnOnce() -> String) -> Result<()> {
        let mut stdout = std::io::stdout().lock();
        if self.json {
            writeln!(stdout, "{value}")?;
        } else {
            writeln!(stdout, "{}", text())?;
        }
        stdout.flush()?;
        Ok(())
    }
}

/// A message body as text (invalid UTF-8 is replaced).
pub(crate) fn text_of(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

/// The first 8 characters of a key or id.
pub(crate) fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

pub(crate) fn identity(i: &api::Identity) -> Value {
    json!({ "account": i.account, "agreement": i.agreement, "device": i.device })
}

pub(crate) fn link(l: &api::Link) -> Value {
    json!({
        "uri": l.uri,
        "qr": l.qr,
        "enabled": l.enabled,
        "answers": l.answers,
        "expires_at": (l.expires_at > 0).then_some(l.expires_at),
        "uses_left": l.uses_left,
    })
}

/// Whether a link answers, and its limits, in words.
pub(crate) fn link_state(l: &api::Link) -> String {
    if !l.enabled {
        return "disabled: nobody can reach you through it".to_owned();
    }
    if !l.answers {
        let why = if l.uses_left == Some(0) { "used up" } else { "expired" };
        return format!("{why}: nobody can reach you through it; `veil link reset` makes a new one");
    }
    let mut limits = Vec::new();
    if l.expires_at > 0 {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        limits.push(format!("expires in {}", duration(l.expires_at.saturating_sub(now))));
    }
    if let Some(n) = l.uses_left {
        limits.push(format!("{n} use{} left", if n == 1 { "" } else { "s" }));
    }
    if limits.is_empty() { "enabled".to_owned() } else { format!("enabled, {}", limits.join(", ")) }
}

pub(crate) fn contact(c: &api::Contact) -> Value {
    json!({
        "account": c.account,
        "display_name": c.display_name,
        "nickname": c.nickname,
        "name": c.name,
        "state": api::contact_state_name(c.state()),
        "conversation": c.conversation,
    })
}

pub(crate) fn contact_line(c: &api::Contact) -> String {
    let name = if c.name.is_empty() { "(no name)" } else { &c.name };
    let conv =
        if c.conversation.is_empty() { String::new() } else { format!("  conversation {}", short(&c.conversation)) };
    format!("{:<18} {:<18} {}{}", name, api::contact_state_name(c.state()), c.account, conv)
}

pub(crate) fn conversation(c: &api::Conversation) -> Value {
    json!({
        "id": c.id,
        "kind": api::conversation_kind_name(c.kind()),
        "title": c.title,
        "contact": c.contact,
        "undelivered": c.undelivered,
        "unread": c.unread,
        "retention_seconds": (c.retention_seconds > 0).then_some(c.retention_seconds),
    })
}

pub(crate) fn conversation_line(c: &api::Conversation) -> String {
    let unread = if c.unread > 0 { format!("  [{} unread]", c.unread) } else { String::new() };
    let pending = if c.undelivered > 0 { format!("  ({} sending)", c.undelivered) } else { String::new() };
    format!("{}  {:<8} {}{}{}", c.id, api::conversation_kind_name(c.kind()), c.title, unread, pending)
}

pub(crate) fn message(m: &api::Message) -> Value {
    json!({
        "hash": m.hash,
        "lamport": m.lamport,
        "author": m.author,
        "mine": m.mine,
        "waiting_for": m.waiting_for,
        "owed_to": m.owed_to,
        "delivered_to": m.owed_to.saturating_sub(m.waiting_for),
        "text": text_of(&m.body),
    })
}

/// `who: text`, where `who` is "you", the conversation's contact, or the
/// author's short key.
pub(crate) fn message_line(m: &api::Message, them: Option<&str>) -> String {
    let who = if m.mine {
        "you".to_owned()
    } else {
        match them {
            Some(name) => name.to_owned(),
            None if m.author.is_empty() => "?".to_owned(),
            None => short(&m.author).to_owned(),
        }
    };
    let pending = if m.waiting_for > 0 { "  (not delivered yet)" } else { "" };
    format!("{who}: {}{pending}", text_of(&m.body))
}

pub(crate) fn status(s: &api::Status) -> Value {
    json!({
        "peer_id": s.peer_id,
        "policy": s.policy,
        "transports": s.transports,
        "listen_addrs": s.listen_addrs,
        "connected_peers": s.connected_peers,
        "rendezvous_period": s.rendezvous_period,
        "period_seconds": s.period_seconds,
        "next_rotation_in": s.next_rotation_in,
        "serve": s.serve,
        "contacts": s.contacts,
        "pending_requests": s.pending_requests,
        "version": s.version,
        "connections": connections(&s.connections),
        "tor": s.tor.as_ref().map(|t| json!({
            "attached": t.attached, "bootstrap": t.bootstrap, "onion": t.onion, "service": t.service,
        })),
        "ble": s.ble,
        "refused": s.refused.as_ref().map(|r| json!({
            "frames": r.frames, "entries": r.entries, "contact_requests": r.contact_requests,
        })),
    })
}

fn connections(c: &[api::Connection]) -> Vec<Value> {
    c.iter().map(|c| json!({ "peer_id": c.peer_id, "transport": c.transport, "route": c.route })).collect()
}

/// `2 direct, 1 upgraded`: open connections counted by route.
fn routes(c: &[api::Connection]) -> String {
    let count = |r: &str| c.iter().filter(|c| c.route == r).count();
    let counted: Vec<String> = ["direct", "relayed", "upgraded"]
        .iter()
        .filter(|r| count(r) > 0)
        .map(|r| format!("{} {r}", count(r)))
        .collect();
    if counted.is_empty() { "no connections".to_owned() } else { counted.join(", ") }
}

pub(crate) fn status_text(s: &api::Status) -> String {
    let list = |v: &[String]| if v.is_empty() { "none".to_owned() } else { v.join(", ") };
    let mut out = vec![
        format!("peer id      {}", s.peer_id),
        format!("policy       {}", s.policy),
        format!("transports   {}", list(&s.transports)),
        format!("listening    {}", list(&s.listen_addrs)),
        format!("peers        {} connected ({})", s.connected_peers.len(), routes(&s.connections)),
        format!(
            "rendezvous   period {} ({} s long), next rotation in {}",
            s.rendezvous_period,
            s.period_seconds,
            duration(s.next_rotation_in)
        ),
        format!("contacts     {} ({} requests waiting)", s.contacts, s.pending_requests),
    ];
    if let Some(r) = &s.refused {
        out.push(format!(
            "refused      {} frames, {} entries, {} contact requests",
            r.frames, r.entries, r.contact_requests
        ));
    }
    if !s.serve.is_empty() {
        out.push(format!("serving      {}", s.serve.join(", ")));
    }
    if let Some(t) = &s.tor {
        let attached = if t.attached { "" } else { " (detached)" };
        let onion =
            if t.onion.is_empty() { "no onion service".to_owned() } else { format!("{} {}", t.onion, t.service) };
        out.push(format!("tor          {}{attached}; {onion}", t.bootstrap));
    }
    if !s.ble.is_empty() {
        out.push(format!("ble          {}", s.ble));
    }
    out.join("\n")
}

/// `1h 02m`, `3m 20s`, `45s`.
pub(crate) fn duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

pub(crate) fn transports(t: &api::ListTransportsResponse) -> Value {
    json!({ "attached": t.attached, "available": t.available })
}

/// The addresses learned for peers, as JSON.
pub(crate) fn peers(p: &api::ListPeersResponse) -> Value {
    let list: Vec<Value> =
        p.addresses.iter().map(|a| json!({ "peer_id": a.peer_id, "addr": a.addr, "sources": a.sources })).collect();
    json!({ "addresses": list, "connections": connections(&p.connections) })
}

/// The addresses learned for peers, one line each.
pub(crate) fn peers_text(p: &api::ListPeersResponse) -> String {
    let mut out: Vec<String> =
        p.connections.iter().map(|c| format!("connected  {}  {} over {}", c.peer_id, c.route, c.transport)).collect();
    if p.addresses.is_empty() {
        out.push("no peer addresses learned yet".to_owned());
    }
    out.extend(p.addresses.iter().map(|a| format!("{}  {}  ({})", a.peer_id, a.addr, a.sources.join(", "))));
    out.join("\n")
}

/// The exposure audit, as JSON.
pub(crate) fn audit(a: &api::AuditReport) -> Value {
    let exposures: Vec<Value> = a
        .exposures
        .iter()
        .map(|e| {
            json!({ "observer": e.observer, "applies": e.applies, "learns": e.learns, "does_not_learn": e.does_not_learn })
        })
        .collect();
    json!({
        "policy": a.policy,
        "rotating_peer_id": a.rotating_peer_id,
        "period_seconds": a.period_seconds,
        "exposures": exposures,
    })
}

/// The exposure audit, as text.
pub(crate) fn audit_text(a: &api::AuditReport) -> String {
    let mut out = vec![format!("what each observer learns under the {} policy", a.policy)];
    for e in &a.exposures {
        out.push(String::new());
        out.push(if e.applies { e.observer.clone() } else { format!("{} (not used now)", e.observer) });
        out.extend(e.learns.iter().map(|l| format!("  learns          {l}")));
        out.extend(e.does_not_learn.iter().map(|l| format!("  does not learn  {l}")));
    }
    out.join("\n")
}

/// An event as `(name, fields)`.
pub(crate) fn event(e: &api::Event) -> Option<Value> {
    let contact = |name: &str, c: &api::ContactEvent| {
        json!({
            "event": name,
            "account": c.account,
            "display_name": c.display_name,
            "conversation": c.conversation,
            "failures": c.failures,
        })
    };
    Some(match e.kind.as_ref()? {
        Kind::MessageReceived(m) => {
            json!({"event": "message_received", "conversation": m.conversation, "hash": m.hash})
        }
        Kind::MessageSent(m) => json!({"event": "message_sent", "conversation": m.conversation, "hash": m.hash}),
        Kind::Delivered(d) => json!({"event": "delivered", "conversation": d.conversation, "hashes": d.hashes}),
        Kind::ContactRequest(c) => contact("contact_request", c),
        Kind::ContactAccepted(c) => contact("contact_accepted", c),
        Kind::RequestDelivered(c) => contact("request_delivered", c),
        Kind::RequestUndelivered(c) => contact("request_undelivered", c),
        Kind::PeerConnected(p) => json!({"event": "peer_connected", "peer_id": p.peer_id, "transport": p.transport}),
        Kind::PeerDisconnected(p) => json!({"event": "peer_disconnected", "peer_id": p.peer_id}),
        Kind::Listening(a) => json!({"event": "listening", "addr": a}),
        Kind::NetworkRestarted(p) => json!({"event": "network_restarted", "peer_id": p}),
        Kind::ConversationCreated(c) => json!({"event": "conversation_created", "conversation": c.conversation}),
        Kind::Lagged(n) => json!({"event": "lagged", "missed": n}),
        Kind::RendezvousRotated(_) => json!({"event": "rendezvous_rotated"}),
    })
}

/// An event's JSON as one line for people: its name, then `key=value` per field, empty strings left out.
pub(crate) fn event_line(v: &Value) -> String {
    let name = v.get("event").and_then(Value::as_str).unwrap_or("event");
    let fields: Vec<String> = v
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, val)| k.as_str() != "event" && !matches!(val, Value::String(s) if s.is_empty()))
                .map(|(k, val)| match val {
                    Value::String(s) => format!("{k}={s}"),
                    other => format!("{k}={other}"),
                })
                .collect()
        })
        .unwrap_or_default();
    format!("{name} {}", fields.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(45), "45s");
        assert_eq!(duration(200), "3m 20s");
        assert_eq!(duration(3720), "1h 02m");
    }

    #[test]
    fn messages_name_their_author() {
        let m = api::Message { author: "abcdef0123".into(), body: b"hi".to_vec(), ..api::Message::default() };
        assert_eq!(message_line(&m, Some("Bob")), "Bob: hi");
        assert_eq!(message_line(&m, None), "abcdef01: hi");
        let mine = api::Message { mine: true, ..m };
        assert_eq!(message_line(&mine, Some("Bob")), "you: hi");
    }
}
