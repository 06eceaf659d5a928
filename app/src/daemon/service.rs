//! The gRPC service: the daemon API implemented over a [`Node`].

use std::{
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use tokio::sync::watch;
use tonic::{Request, Response, Status};
use veil_actors::Node;
use veil_actors::crypto::{envelope::EntryHash, time::UnixTime};
use veil_actors::transports::{Policy, Quic, Tcp, TransportId, TransportPlugin};

mod args;
mod convert;
mod devices;
mod views;

use args::{checked_arg, entry_hash};
pub(crate) use convert::node_error;
use convert::{EventStream, connections, contact, event_stream, group_hex, link, short};

use super::tor::{TOR, TorSlot};
use crate::{
    api::{self, MAX_BODY, MAX_HISTORY_LIMIT, MAX_LINK, daemon_server::Daemon as DaemonApi},
    config::Settings,
};

/// The shortest backup passphrase accepted.
pub(crate) const MIN_BACKUP_PASSPHRASE: usize = 12;
/// The longest retention period (ten years); longer is "for ever" (0).
const MAX_RETENTION_SECONDS: u64 = 10 * 366 * 86_400;
/// The longest an invitation may be valid for.
const MAX_INVITATION_SECONDS: u64 = 365 * 24 * 3600;
/// The shortest id prefix accepted for a conversation or a contact.
const MIN_PREFIX: usize = 6;
/// Transports `AttachTransport` knows how to build.
const AVAILABLE: [&str; 4] = ["tcp", "quic", "tor", "ble"];

/// The gRPC service of one node: it checks each call's arguments, calls the node, and turns errors into statuses by
/// kind.
pub(crate) struct Service {
    node: Node,
    settings: Settings,
    stop: watch::Sender<bool>,
    tor: Arc<TorSlot>,
}

impl Service {
    pub(crate) fn new(node: Node, settings: Settings, stop: watch::Sender<bool>, tor: Arc<TorSlot>) -> Self {
        Self { node, settings, stop, tor }
    }
}

#[tonic::async_trait]
impl DaemonApi for Service {
    async fn get_identity(&self, _: Request<api::GetIdentityRequest>) -> Result<Response<api::Identity>, Status> {
        let id = self.node.identity().await.map_err(node_error)?;
        Ok(Response::new(api::Identity {
            account: hex::encode(id.account.signing.to_bytes()),
            agreement: hex::encode(id.account.agreement.0),
            device: hex::encode(id.device.to_bytes()),
        }))
    }

    async fn get_link(&self, _: Request<api::GetLinkRequest>) -> Result<Response<api::Link>, Status> {
        Ok(Response::new(link(self.node.share_link().await.map_err(node_error)?)))
    }

    async fn set_link_enabled(&self, r: Request<api::SetLinkEnabledRequest>) -> Result<Response<api::Link>, Status> {
        let enabled = r.into_inner().enabled;
        Ok(Response::new(link(self.node.set_link_enabled(enabled).await.map_err(node_error)?)))
    }

    async fn reset_link(&self, r: Request<api::ResetLinkRequest>) -> Result<Response<api::Link>, Status> {
        let r = r.into_inner();
        if r.expires_in_seconds > MAX_INVITATION_SECONDS {
            return Err(Status::invalid_argument("a link expires within a year at most"));
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        let limits = veil_actors::storage::LinkLimits {
            expires_at: (r.expires_in_seconds > 0).then(|| UnixTime(now.saturating_add(r.expires_in_seconds))),
            uses: (r.uses > 0).then_some(r.uses),
        };
        Ok(Response::new(link(self.node.reset_link_with(limits).await.map_err(node_error)?)))
    }

    async fn add_contact(&self, r: Request<api::AddContactRequest>) -> Result<Response<api::Contact>, Status> {
        let r = r.into_inner();
        let text = r.link.trim();
        if text.is_empty() {
            return Err(Status::invalid_argument("no link given"));
        }
        if text.len() > MAX_LINK {
            return Err(Status::invalid_argument(format!("the link is longer than {MAX_LINK} bytes; not a veil link")));
        }
        veil_actors::proto::link::parse_contact(text)
            .map_err(|e| Status::invalid_argument(format!("malformed link: {e}")))?;
        let name =
            Some(r.display_name.trim().to_owned()).filter(|n| !n.is_empty()).or_else(|| self.settings.name.clone());
        if let Some(n) = &name {
            veil_actors::crypto::Name::new(n).map_err(|e| Status::invalid_argument(format!("invalid name: {e}")))?;
        }
        let c = self.node.send_request(text, name.as_deref()).await.map_err(node_error)?;
        Ok(Response::new(contact(&c)))
    }

    async fn list_contacts(
        &self,
        _: Request<api::ListContactsRequest>,
    ) -> Result<Response<api::ListContactsResponse>, Status> {
        let contacts = self.contacts().await?.iter().map(contact).collect();
        Ok(Response::new(api::ListContactsResponse { contacts }))
    }

    async fn decide_contact(&self, r: Request<api::DecideContactRequest>) -> Result<Response<api::Contact>, Status> {
        let r = r.into_inner();
        let decision = api::Decision::try_from(r.decision).unwrap_or(api::Decision::Unspecified);
        let who = self.resolve_contact(&r.contact).await?;
        let key = who.account.signing;
        let c = match decision {
            api::Decision::Accept => self.node.accept_contact(&key).await,
            api::Decision::Discard => self.node.discard_contact(&key).await,
            api::Decision::Block => self.node.block_contact(&key).await,
            api::Decision::Unspecified => return Err(Status::invalid_argument("no decision given")),
        }
        .map_err(node_error)?;
        Ok(Response::new(contact(&c)))
    }

    async fn rename_contact(&self, r: Request<api::RenameContactRequest>) -> Result<Response<api::Contact>, Status> {
        let r = r.into_inner();
        let who = self.resolve_contact(&r.contact).await?;
        let nickname = match r.nickname.trim() {
            "" => None,
            name => Some(checked_arg("nickname", name)?),
        };
        let c = self.node.rename_contact(&who.account.signing, nickname).await.map_err(node_error)?;
        Ok(Response::new(contact(&c)))
    }

    async fn remove_contact(&self, r: Request<api::RemoveContactRequest>) -> Result<Response<api::Contact>, Status> {
        let who = self.resolve_contact(&r.into_inner().contact).await?;
        self.node.remove_contact(&who.account.signing).await.map_err(node_error)?;
        Ok(Response::new(contact(&who)))
    }

    async fn list_conversations(
        &self,
        _: Request<api::ListConversationsRequest>,
    ) -> Result<Response<api::ListConversationsResponse>, Status> {
        let groups = self.node.groups().await.map_err(node_error)?;
        let conversations = self.conversations(&groups).await?;
        Ok(Response::new(api::ListConversationsResponse { conversations }))
    }

    async fn mark_read(&self, r: Request<api::MarkReadRequest>) -> Result<Response<api::Conversation>, Status> {
        let r = r.into_inner();
        let group = self.resolve_conversation(&r.conversation).await?;
        let up_to = match r.hash.trim() {
            "" => None,
            hash => Some((r.lamport, entry_hash(hash, "hash")?)),
        };
        self.node.mark_read(&group, up_to).await.map_err(node_error)?;
        let mut one = self.conversations(&[group]).await?;
        one.pop().map(Response::new).ok_or_else(|| Status::not_found("unknown conversation"))
    }

    async fn forget_history(
        &self,
        r: Request<api::ForgetHistoryRequest>,
    ) -> Result<Response<api::ForgetHistoryResponse>, Status> {
        let group = self.resolve_conversation(&r.into_inner().conversation).await?;
        let erased = self.node.forget_history(&group).await.map_err(node_error)?;
        Ok(Response::new(api::ForgetHistoryResponse { conversation: group_hex(&group), erased }))
    }

    async fn set_retention(&self, r: Request<api::SetRetentionRequest>) -> Result<Response<api::Conversation>, Status> {
        let r = r.into_inner();
        let group = self.resolve_conversation(&r.conversation).await?;
        if r.keep_seconds > MAX_RETENTION_SECONDS {
            return Err(Status::invalid_argument("messages are kept for at most ten years, or for ever"));
        }
        let keep = (r.keep_seconds > 0).then(|| std::time::Duration::from_secs(r.keep_seconds));
        self.node.set_retention(&group, keep).await.map_err(node_error)?;
        let mut one = self.conversations(&[group]).await?;
        one.pop().map(Response::new).ok_or_else(|| Status::not_found("unknown conversation"))
    }

    async fn send(&self, r: Request<api::SendRequest>) -> Result<Response<api::SendResponse>, Status> {
        let r = r.into_inner();
        if r.body.is_empty() {
            return Err(Status::invalid_argument("empty message"));
        }
        if r.body.len() > MAX_BODY {
            return Err(Status::invalid_argument(format!(
                "the message is {} bytes; at most {MAX_BODY} fit in one message",
                r.body.len()
            )));
        }
        let group = self.resolve_conversation(&r.conversation).await?;
        let message = self.node.post(&group, &r.body).await.map_err(node_error)?.map(Self::message);
        Ok(Response::new(api::SendResponse { conversation: group_hex(&group), message }))
    }

    async fn history(&self, r: Request<api::HistoryRequest>) -> Result<Response<api::HistoryResponse>, Status> {
        let r = r.into_inner();
        let limit = match r.limit {
            0 => 100,
            l if l > MAX_HISTORY_LIMIT => {
                return Err(Status::invalid_argument(format!("limit {l} is above the maximum of {MAX_HISTORY_LIMIT}")));
            }
            l => l,
        };
        let group = self.resolve_conversation(&r.conversation).await?;
        let position = |lamport: u64, hash: &str, what: &str| -> Result<Option<(u64, EntryHash)>, Status> {
            match hash.trim() {
                "" => Ok(None),
                hash => Ok(Some((lamport, entry_hash(hash, what)?))),
            }
        };
        let after = position(r.after_lamport, &r.after_hash, "after_hash")?;
        let before = position(r.before_lamport, &r.before_hash, "before_hash")?;
        let entries = match (after, before) {
            (Some(_), Some(_)) => return Err(Status::invalid_argument("give after or before, not both")),
            (Some(after), None) => self.node.history(&group, Some(after), limit).await,
            (None, before) => self.node.history_before(&group, before, limit).await,
        }
        .map_err(node_error)?;
        let messages = entries.into_iter().map(Self::message).collect();
        Ok(Response::new(api::HistoryResponse { conversation: group_hex(&group), messages }))
    }

    async fn create_group(&self, r: Request<api::CreateGroupRequest>) -> Result<Response<api::Conversation>, Status> {
        let name = r.into_inner().name.trim().to_owned();
        let name = Some(name).filter(|n| !n.is_empty());
        if let Some(n) = &name {
            veil_actors::crypto::Name::new(n)
                .map_err(|e| Status::invalid_argument(format!("invalid group name: {e}")))?;
        }
        let group = self.node.create_group(name.as_deref()).await.map_err(node_error)?;
        let id = group_hex(&group);
        Ok(Response::new(api::Conversation {
            title: name.unwrap_or_else(|| format!("group {}", short(&id))),
            id,
            kind: api::ConversationKind::Group.into(),
            contact: String::new(),
            ..Default::default()
        }))
    }

    async fn invite_to_group(
        &self,
        r: Request<api::InviteToGroupRequest>,
    ) -> Result<Response<api::Invitation>, Status> {
        let r = r.into_inner();
        let group = self.resolve_conversation(&r.conversation).await?;
        let valid_for = match r.expires_in_seconds {
            0 => None,
            s if s > MAX_INVITATION_SECONDS => {
                return Err(Status::invalid_argument("an invitation is valid for at most a year"));
            }
            s => Some(std::time::Duration::from_secs(s)),
        };
        let uri = self.node.invite(&group, valid_for).await.map_err(node_error)?;
        let invitation = veil_actors::proto::link::parse_invitation(&uri)
            .map_err(|e| Status::internal(format!("the invitation does not parse back: {e}")))?;
        Ok(Response::new(api::Invitation {
            qr: veil_actors::proto::link::invitation_qr(&invitation),
            uri,
            expires_at: invitation.expires_at.map_or(0, |t| t.0),
        }))
    }

    async fn join_group(&self, r: Request<api::JoinGroupRequest>) -> Result<Response<api::Conversation>, Status> {
        let text = r.into_inner().invitation;
        let text = text.trim();
        if text.is_empty() || text.len() > MAX_LINK {
            return Err(Status::invalid_argument("not a veil group invitation"));
        }
        veil_actors::proto::link::parse_invitation(text)
            .map_err(|e| Status::invalid_argument(format!("malformed invitation: {e}")))?;
        let group = self.node.join(text).await.map_err(node_error)?;
        let id = group_hex(&group);
        let name = self.node.group_names().await.map_err(node_error)?.remove(&group);
        Ok(Response::new(api::Conversation {
            title: name.unwrap_or_else(|| format!("group {}", short(&id))),
            id,
            kind: api::ConversationKind::Group.into(),
            contact: String::new(),
            ..Default::default()
        }))
    }

    async fn leave_group(
        &self,
        r: Request<api::LeaveGroupRequest>,
    ) -> Result<Response<api::LeaveGroupResponse>, Status> {
        let group = self.resolve_conversation(&r.into_inner().conversation).await?;
        self.node.leave(&group).await.map_err(node_error)?;
        Ok(Response::new(api::LeaveGroupResponse {}))
    }

    async fn replica_credential(
        &self,
        r: Request<api::ReplicaCredentialRequest>,
    ) -> Result<Response<api::ReplicaCredentialResponse>, Status> {
        let group = self.resolve_conversation(&r.into_inner().conversation).await?;
        let uri = self.node.replication_credential(&group).await.map_err(node_error)?;
        Ok(Response::new(api::ReplicaCredentialResponse { uri }))
    }

    async fn replicate(&self, r: Request<api::ReplicateRequest>) -> Result<Response<api::ReplicateResponse>, Status> {
        let text = r.into_inner().credential;
        if text.trim().is_empty() || text.len() > MAX_LINK {
            return Err(Status::invalid_argument("not a veil replication credential"));
        }
        veil_actors::proto::link::parse_replication(&text)
            .map_err(|e| Status::invalid_argument(format!("malformed replication credential: {e}")))?;
        let id = self.node.replicate(&text).await.map_err(node_error)?;
        Ok(Response::new(api::ReplicateResponse { replication_id: hex::encode(id.0) }))
    }

    async fn remove_member(
        &self,
        r: Request<api::RemoveMemberRequest>,
    ) -> Result<Response<api::ListMembersResponse>, Status> {
        let r = r.into_inner();
        let group = self.resolve_conversation(&r.conversation).await?;
        let member = hex::decode(r.member.trim())
            .ok()
            .and_then(|b| veil_actors::crypto::VerifyKey::from_slice(&b).ok())
            .ok_or_else(|| Status::invalid_argument("not a member key (64 hex digits, as `group members` prints)"))?;
        self.node.remove_member(&group, &member).await.map_err(node_error)?;
        let members = self.node.members(&group).await.map_err(node_error)?;
        let members = members.iter().map(|m| hex::encode(m.signing.to_bytes())).collect();
        Ok(Response::new(api::ListMembersResponse { members }))
    }

    async fn list_members(
        &self,
        r: Request<api::ListMembersRequest>,
    ) -> Result<Response<api::ListMembersResponse>, Status> {
        let group = self.resolve_conversation(&r.into_inner().conversation).await?;
        let members = self.node.members(&group).await.map_err(node_error)?;
        let members = members.iter().map(|m| hex::encode(m.signing.to_bytes())).collect();
        Ok(Response::new(api::ListMembersResponse { members }))
    }

    async fn get_status(&self, _: Request<api::GetStatusRequest>) -> Result<Response<api::Status>, Status> {
        Ok(Response::new(self.status().await?))
    }

    async fn set_policy(&self, r: Request<api::SetPolicyRequest>) -> Result<Response<api::Status>, Status> {
        let text = r.into_inner().policy;
        let policy = crate::config::parse_policy(checked_arg("policy", &text)?)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        // Anonymous means Tor: attach it first (its onion service comes up
        // under the new policy once the network restarts).
        let attached = self.node.network_status().await.map_err(node_error)?.transports;
        if policy == Policy::Anonymous && !attached.contains(&TOR) {
            self.tor.attach(&self.node).await?;
        }
        // Listeners a stricter policy closed are reopened by the network
        // itself when a policy allows them again.
        self.node.set_policy(policy).await.map_err(node_error)?;
        Ok(Response::new(self.status().await?))
    }

    async fn list_transports(
        &self,
        _: Request<api::ListTransportsRequest>,
    ) -> Result<Response<api::ListTransportsResponse>, Status> {
        Ok(Response::new(self.transports().await?))
    }

    async fn attach_transport(
        &self,
        r: Request<api::AttachTransportRequest>,
    ) -> Result<Response<api::ListTransportsResponse>, Status> {
        let name = r.into_inner().name;
        let plugin: Arc<dyn TransportPlugin> = match checked_arg("transport", &name)? {
            "tcp" => Arc::new(Tcp::new()),
            "quic" => Arc::new(Quic::new()),
            "tor" => {
                self.tor.attach(&self.node).await?;
                return Ok(Response::new(self.transports().await?));
            }
            "ble" => {
                super::ble::attach(&self.node).await?;
                return Ok(Response::new(self.transports().await?));
            }
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown transport {other:?} (available: {})",
                    AVAILABLE.join(", ")
                )));
            }
        };
        self.node.attach_transport(plugin).await.map_err(node_error)?;
        Ok(Response::new(self.transports().await?))
    }

    async fn detach_transport(
        &self,
        r: Request<api::DetachTransportRequest>,
    ) -> Result<Response<api::ListTransportsResponse>, Status> {
        let name = r.into_inner().name;
        let id = TransportId::new(checked_arg("transport", &name)?);
        if id.as_str() == "ble" {
            // The BLE actor owns the plug-in: disabled, it detaches it.
            super::ble::detach(&self.node).await?;
            return Ok(Response::new(self.transports().await?));
        }
        self.node.detach_transport(id).await.map_err(node_error)?;
        Ok(Response::new(self.transports().await?))
    }

    async fn list_peers(&self, _: Request<api::ListPeersRequest>) -> Result<Response<api::ListPeersResponse>, Status> {
        let learned = self.node.learned_addresses().await.map_err(node_error)?;
        let net = self.node.network_status().await.map_err(node_error)?;
        let addresses = learned
            .into_iter()
            .map(|l| api::LearnedAddress {
                peer_id: l.peer.to_string(),
                addr: l.addr.to_string(),
                sources: l.sources.iter().map(ToString::to_string).collect(),
            })
            .collect();
        Ok(Response::new(api::ListPeersResponse { addresses, connections: connections(&net.connections) }))
    }

    async fn audit(&self, _: Request<api::AuditRequest>) -> Result<Response<api::AuditReport>, Status> {
        let report = self.node.audit().await.map_err(node_error)?;
        let exposures = report
            .exposures
            .into_iter()
            .map(|e| api::Exposure {
                observer: e.observer.to_string(),
                applies: e.applies,
                learns: e.learns,
                does_not_learn: e.does_not_learn,
            })
            .collect();
        Ok(Response::new(api::AuditReport {
            policy: report.policy.to_string(),
            rotating_peer_id: report.rotating_peer_id,
            period_seconds: report.period_secs,
            exposures,
        }))
    }

    type SubscribeStream = EventStream;

    async fn subscribe(&self, _: Request<api::SubscribeRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        Ok(Response::new(event_stream(self.node.events(), self.stop.subscribe())))
    }

    async fn backup(&self, r: Request<api::BackupRequest>) -> Result<Response<api::BackupResponse>, Status> {
        let r = r.into_inner();
        let path = std::path::PathBuf::from(r.path.trim());
        if !path.is_absolute() {
            return Err(Status::invalid_argument("give the backup file as an absolute path"));
        }
        if r.passphrase.chars().count() < MIN_BACKUP_PASSPHRASE {
            return Err(Status::invalid_argument(format!(
                "a backup passphrase has at least {MIN_BACKUP_PASSPHRASE} characters"
            )));
        }
        self.node.backup(&path, &r.passphrase).await.map_err(node_error)?;
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        Ok(Response::new(api::BackupResponse { path: path.display().to_string(), bytes }))
    }

    async fn shutdown(&self, _: Request<api::ShutdownRequest>) -> Result<Response<api::ShutdownResponse>, Status> {
        tracing::info!("shutdown requested through the API");
        self.stop.send_replace(true);
        Ok(Response::new(api::ShutdownResponse {}))
    }

    type LinkDeviceStream = devices::DeviceLinkStream;

    async fn link_device(
        &self,
        r: Request<api::LinkDeviceRequest>,
    ) -> Result<Response<Self::LinkDeviceStream>, Status> {
        Ok(Response::new(devices::link_device(&self.node, r.into_inner(), self.stop.subscribe()).await?))
    }

    async fn confirm_device(
        &self,
        r: Request<api::ConfirmDeviceRequest>,
    ) -> Result<Response<api::ConfirmDeviceResponse>, Status> {
        devices::confirm_device(&self.node, r.into_inner()).await?;
        Ok(Response::new(api::ConfirmDeviceResponse {}))
    }

    async fn list_devices(
        &self,
        _: Request<api::ListDevicesRequest>,
    ) -> Result<Response<api::ListDevicesResponse>, Status> {
        Ok(Response::new(devices::list_devices(&self.node).await?))
    }

    async fn remove_device(
        &self,
        r: Request<api::RemoveDeviceRequest>,
    ) -> Result<Response<api::RemoveDeviceResponse>, Status> {
        Ok(Response::new(devices::remove_device(&self.node, r.into_inner()).await?))
    }
}
