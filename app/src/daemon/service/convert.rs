//! From the node's types to the API's: contacts, links, connections,
//! events, and node errors to gRPC statuses.

use std::pin::Pin;

use futures::Stream;
use tokio::sync::{broadcast, watch};
use tonic::Status;
use veil_actors::crypto::{GroupId, VerifyKey};
use veil_actors::{NodeEvent, messages::contacts::Contact as NodeContact};

use crate::api::{self, event::Kind};

pub(super) fn connections(open: &[veil_actors::transports::OpenConnection]) -> Vec<api::Connection> {
    open.iter()
        .map(|c| api::Connection {
            peer_id: c.peer.to_string(),
            transport: c.transport.to_string(),
            route: c.route.to_string(),
        })
        .collect()
}

/// Maps a node error to a gRPC status by its kind, with a one-line
/// message; an internal failure's details go to the log, not to the user
/// (a library's text, such as SQLite's, means nothing to them).
pub(crate) fn node_error(e: veil_actors::Error) -> Status {
    use veil_actors::crypto::{ErrorKind as K, HasKind};
    let msg = e.to_string();
    match e.kind() {
        K::NotFound if matches!(e, veil_actors::Error::UnknownGroup) => Status::not_found("unknown conversation"),
        K::NotFound => Status::not_found(msg),
        K::InvalidInput => Status::invalid_argument(msg),
        K::AlreadyExists => Status::already_exists(msg),
        K::Refused | K::LocalResource => Status::failed_precondition(msg),
        K::Transient => Status::unavailable(msg),
        K::TimedOut => Status::deadline_exceeded(msg),
        K::Corrupt => Status::data_loss(msg),
        _ => {
            tracing::warn!(error = %msg, "internal error");
            Status::internal("internal error (the daemon's log has the details)")
        }
    }
}

pub(super) fn group_hex(g: &GroupId) -> String {
    hex::encode(g.0)
}

pub(super) fn contact_state(s: veil_actors::storage::ContactState) -> api::ContactState {
    use veil_actors::storage::ContactState as S;
    match s {
        S::OutgoingEnqueued => api::ContactState::OutgoingEnqueued,
        S::OutgoingSent => api::ContactState::OutgoingSent,
        S::IncomingReceived => api::ContactState::IncomingReceived,
        S::Accepted => api::ContactState::Accepted,
        S::Discarded => api::ContactState::Discarded,
        S::Blocked => api::ContactState::Blocked,
    }
}

pub(super) fn contact(c: &NodeContact) -> api::Contact {
    api::Contact {
        account: hex::encode(c.account.signing.to_bytes()),
        display_name: c.display_name.clone().unwrap_or_default(),
        state: contact_state(c.state).into(),
        conversation: c.group.as_ref().map(group_hex).unwrap_or_default(),
        nickname: c.nickname.clone().unwrap_or_default(),
        name: c.name().unwrap_or_default().to_owned(),
    }
}

pub(super) fn link(l: veil_actors::messages::contacts::LinkInfo) -> api::Link {
    api::Link {
        uri: l.uri,
        qr: l.qr,
        enabled: l.enabled,
        expires_at: l.limits.expires_at.map_or(0, |t| t.0),
        uses_left: l.limits.uses,
        answers: l.answers,
    }
}

pub(super) fn short(hex: &str) -> &str {
    hex.get(..8).unwrap_or(hex)
}

/// Maps a node event to an API event (`None` for internal ones).
pub(super) fn event(e: NodeEvent) -> Option<api::Event> {
    let contact_event =
        |account: &VerifyKey, name: Option<String>, group: Option<GroupId>, failures: u32| api::ContactEvent {
            account: hex::encode(account.to_bytes()),
            display_name: name.unwrap_or_default(),
            conversation: group.as_ref().map(group_hex).unwrap_or_default(),
            failures,
        };
    let kind = match e {
        NodeEvent::MessageReceived { group, hash } => {
            Kind::MessageReceived(api::MessageEvent { conversation: group_hex(&group), hash: hex::encode(hash.0) })
        }
        NodeEvent::EntryAdded { group, hash } => {
            Kind::MessageSent(api::MessageEvent { conversation: group_hex(&group), hash: hex::encode(hash.0) })
        }
        NodeEvent::EntriesDelivered { group, hashes } => Kind::Delivered(api::DeliveredEvent {
            conversation: group_hex(&group),
            hashes: hashes.iter().map(|h| hex::encode(h.0)).collect(),
        }),
        NodeEvent::ContactRequestReceived { account, display_name } => {
            Kind::ContactRequest(contact_event(&account.signing, display_name, None, 0))
        }
        NodeEvent::ContactAccepted { account, group } => Kind::ContactAccepted(contact_event(&account, None, group, 0)),
        NodeEvent::ContactRequestDelivered { account } => {
            Kind::RequestDelivered(contact_event(&account, None, None, 0))
        }
        NodeEvent::ContactRequestUndelivered { account, failures } => {
            Kind::RequestUndelivered(contact_event(&account, None, None, failures))
        }
        NodeEvent::PeerConnected { peer, transport } => {
            Kind::PeerConnected(api::PeerEvent { peer_id: peer.to_string(), transport: transport.to_string() })
        }
        NodeEvent::PeerDisconnected { peer } => {
            Kind::PeerDisconnected(api::PeerEvent { peer_id: peer.to_string(), transport: String::new() })
        }
        NodeEvent::Listening { addr } => Kind::Listening(addr.to_string()),
        NodeEvent::NetworkRestarted { peer_id } => Kind::NetworkRestarted(peer_id.to_string()),
        NodeEvent::GroupCreated { group } => {
            Kind::ConversationCreated(api::ConversationEvent { conversation: group_hex(&group) })
        }
        NodeEvent::RendezvousRotated { .. } => Kind::RendezvousRotated(api::RotationEvent {}),
        _ => return None,
    };
    Some(api::Event { kind: Some(kind) })
}

pub(super) type EventStream = Pin<Box<dyn Stream<Item = Result<api::Event, Status>> + Send>>;

/// The node's events as API events, until the daemon stops.
pub(super) fn event_stream(rx: broadcast::Receiver<NodeEvent>, stop: watch::Receiver<bool>) -> EventStream {
    Box::pin(futures::stream::unfold((rx, stop), |(mut rx, mut stop)| async move {
        loop {
            let next = tokio::select! {
                r = rx.recv() => r,
                _ = stop.wait_for(|s| *s) => return None,
            };
            match next {
                Ok(e) => {
                    if let Some(ev) = event(e) {
                        return Some((Ok(ev), (rx, stop)));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    return Some((Ok(api::Event { kind: Some(Kind::Lagged(n)) }), (rx, stop)));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use tonic::Code;
    use veil_actors::Error as E;

    use super::node_error;

    #[test]
    fn node_errors_become_statuses_by_kind_and_internal_details_stay_in_the_log() {
        let cases = [
            (E::UnknownGroup, Code::NotFound),
            (E::Wire(veil_actors::proto::Error::Checksum), Code::InvalidArgument),
            (
                E::Network(veil_actors::transports::Error::NotAttached(veil_actors::transports::TransportId::TCP)),
                Code::FailedPrecondition,
            ),
            (E::Network(veil_actors::transports::Error::Timeout), Code::DeadlineExceeded),
            (E::Storage(veil_actors::storage::Error::DiskFull), Code::Unavailable),
            (E::Restarting("courier"), Code::Unavailable),
            (E::Storage(veil_actors::storage::Error::Unknown("contact")), Code::NotFound),
        ];
        for (error, code) in cases {
            let shown = error.to_string();
            let status = node_error(error);
            assert_eq!(status.code(), code, "{shown}");
            assert_eq!(
                status.message(),
                if code == Code::NotFound && shown == "unknown group" { "unknown conversation" } else { &shown }
            );
        }
        let status = node_error(E::Runtime("thread 'x' panicked at src/secret.rs".into()));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("panicked"), "{}", status.message());
    }
}
