//! What requests name, resolved (conversations and contacts by id prefix),
//! and the views answers are built from (conversations, status, transports).

use std::time::{SystemTime, UNIX_EPOCH};

use tonic::Status;
use veil_actors::crypto::{GroupId, rendezvous::Schedule, time::UnixTime};
use veil_actors::{messages::contacts::Contact as NodeContact, messages::group::HistoryEntry};

use super::{
    AVAILABLE, MIN_PREFIX, Service,
    args::{checked_arg, is_hex},
    convert::{connections, group_hex, node_error, short},
};
use crate::api;
use crate::daemon::tor::TOR;

impl Service {
    pub(super) async fn contacts(&self) -> Result<Vec<NodeContact>, Status> {
        self.node.contacts().await.map_err(node_error)
    }

    /// Finds a conversation by id, unique id prefix, contact name (nickname,
    /// else the name it gave) or group name.
    pub(super) async fn resolve_conversation(&self, text: &str) -> Result<GroupId, Status> {
        let text = checked_arg("conversation", text)?;
        let groups = self.node.groups().await.map_err(node_error)?;
        if is_hex(text) && text.len() >= MIN_PREFIX {
            let lower = text.to_ascii_lowercase();
            let hits: Vec<GroupId> = groups.iter().filter(|g| hex::encode(g.0).starts_with(&lower)).copied().collect();
            match hits.as_slice() {
                [one] => return Ok(*one),
                [] => {}
                _ => {
                    return Err(Status::invalid_argument(format!(
                        "{text:?} matches several conversations; give more digits"
                    )));
                }
            }
        }
        let contacts = self.contacts().await?;
        let mut hits: Vec<GroupId> = contacts
            .iter()
            .filter(|c| c.name().is_some_and(|n| n.eq_ignore_ascii_case(text)))
            .filter_map(|c| c.group)
            .collect();
        for (g, name) in self.node.group_names().await.map_err(node_error)? {
            if name.eq_ignore_ascii_case(text) && !hits.contains(&g) {
                hits.push(g);
            }
        }
        match hits.as_slice() {
            [one] => Ok(*one),
            [] => Err(Status::not_found(format!("unknown conversation {text:?} (see `veil conversations`)"))),
            _ => Err(Status::invalid_argument(format!("{text:?} names several conversations; use its id"))),
        }
    }

    /// Finds a contact by account key, unique prefix or name (its nickname,
    /// else the name it gave).
    pub(super) async fn resolve_contact(&self, text: &str) -> Result<NodeContact, Status> {
        let text = checked_arg("contact", text)?;
        let contacts = self.contacts().await?;
        let lower = text.to_ascii_lowercase();
        let by_key: Vec<&NodeContact> = if is_hex(text) && text.len() >= MIN_PREFIX {
            contacts.iter().filter(|c| hex::encode(c.account.signing.to_bytes()).starts_with(&lower)).collect()
        } else {
            Vec::new()
        };
        let hits = if by_key.is_empty() {
            contacts.iter().filter(|c| c.name().is_some_and(|n| n.eq_ignore_ascii_case(text))).collect()
        } else {
            by_key
        };
        match hits.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(Status::not_found(format!("unknown contact {text:?} (see `veil contact list`)"))),
            _ => Err(Status::invalid_argument(format!("{text:?} matches several contacts; give more of the key"))),
        }
    }

    /// `groups` as conversations, sorted: contacts first, then by title.
    pub(super) async fn conversations(&self, groups: &[GroupId]) -> Result<Vec<api::Conversation>, Status> {
        let mut out = Vec::new();
        for c in self.node.conversations(Some(groups)).await.map_err(node_error)? {
            let g = c.group;
            let id = group_hex(&g);
            let retention_seconds = c.retention.map_or(0, |r| r.as_secs());
            let undelivered = self.node.undelivered(&g).await.map_err(node_error)?;
            let unread = self.node.unread(&g).await.map_err(node_error)?;
            let (kind, title, contact) = match &c.contact {
                Some(contact) => {
                    let account = hex::encode(contact.account.signing.to_bytes());
                    let title = contact.name().map_or_else(|| format!("contact {}", short(&account)), str::to_owned);
                    (api::ConversationKind::Contact, title, account)
                }
                None => {
                    let title = c.name.unwrap_or_else(|| format!("group {}", short(&id)));
                    (api::ConversationKind::Group, title, String::new())
                }
            };
            out.push(api::Conversation {
                kind: kind.into(),
                title,
                contact,
                undelivered,
                unread,
                retention_seconds,
                id,
            });
        }
        out.sort_by(|a, b| (a.kind, a.title.to_lowercase(), &a.id).cmp(&(b.kind, b.title.to_lowercase(), &b.id)));
        Ok(out)
    }

    pub(super) fn message(e: HistoryEntry) -> api::Message {
        api::Message {
            hash: hex::encode(e.hash.0),
            lamport: e.lamport,
            author: e.author.map(|a| hex::encode(a.to_bytes())).unwrap_or_default(),
            mine: e.mine,
            body: e.payload,
            waiting_for: e.waiting_for,
            owed_to: e.owed_to,
        }
    }

    pub(super) async fn status(&self) -> Result<api::Status, Status> {
        let net = self.node.network_status().await.map_err(node_error)?;
        let contacts = self.contacts().await?;
        let schedule = Schedule::DEFAULT;
        let now = UnixTime(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default());
        let count = |s| u32::try_from(contacts.iter().filter(|c| c.state == s).count()).unwrap_or(u32::MAX);
        Ok(api::Status {
            peer_id: net.peer_id.to_string(),
            policy: net.policy.to_string(),
            transports: net.transports.iter().map(ToString::to_string).collect(),
            listen_addrs: net.listen_addrs.iter().map(ToString::to_string).collect(),
            connected_peers: net.connected_peers.iter().map(ToString::to_string).collect(),
            rendezvous_period: now.0 / schedule.period(),
            period_seconds: schedule.period(),
            next_rotation_in: schedule.next_boundary(now).0.saturating_sub(now.0),
            serve: self.settings.serve.names(),
            contacts: count(veil_actors::storage::ContactState::Accepted),
            pending_requests: count(veil_actors::storage::ContactState::IncomingReceived),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            connections: connections(&net.connections),
            tor: self.tor.status(net.transports.contains(&TOR)),
            ble: crate::daemon::ble::line(&self.node).await?,
            refused: Some({
                let r = self.node.refusals();
                api::Refused { frames: r.frames, entries: r.entries, contact_requests: r.contact_requests }
            }),
        })
    }

    pub(super) async fn transports(&self) -> Result<api::ListTransportsResponse, Status> {
        let net = self.node.network_status().await.map_err(node_error)?;
        Ok(api::ListTransportsResponse {
            attached: net.transports.iter().map(ToString::to_string).collect(),
            available: AVAILABLE.iter().map(|s| (*s).to_owned()).collect(),
        })
    }
}
