//! Contact requests this node answers: the handshake's responder side,
//! and the user's decision (accept, discard, block).

use super::*;
use crate::supervision::GuardedMap;

impl Handler<Decide> for ContactBook {
    type Result = ResponseActFuture<Self, Result<Contact>>;

    fn handle(&mut self, msg: Decide, _: &mut Self::Context) -> Self::Result {
        let deps = self.deps.clone();
        Box::pin(
            async move {
                let record = deps
                    .store
                    .contact(&msg.account)
                    .await?
                    .ok_or(Error::Storage(veil_storage::Error::Unknown("contact")))?;
                match msg.decision {
                    Decision::Accept => {
                        if record.state != ContactState::Accepted {
                            open_contact_group(&deps, &record.account, ContactState::Accepted).await?;
                            let _ = deps.events.send(NodeEvent::ContactAccepted {
                                account: record.account.signing,
                                group: deps.store.contact(&msg.account).await?.and_then(|c| c.group),
                            });
                        }
                    }
                    Decision::Discard => {
                        deps.store.set_contact_state(&msg.account, ContactState::Discarded, None).await?
                    }
                    Decision::Block => deps.store.set_contact_state(&msg.account, ContactState::Blocked, None).await?,
                }
                let record = deps.store.contact(&msg.account).await?;
                if let Some(r) = &record {
                    changed(&deps, r.account, Some(r.state), false);
                }
                record.map(contact_of).ok_or(Error::Storage(veil_storage::Error::Unknown("contact")))
            }
            .into_actor(self),
        )
    }
}

/// The responder's answer to one `/veil/contact/1` request.
enum Answer {
    /// Message 2 for `peer`; keep the handshake for its message 3.
    Started(HandshakeId, Vec<u8>),
    /// Any other answer (an empty one refuses).
    Reply(Vec<u8>),
    /// The answer to message 3: the request is recorded; `true` if it used
    /// the link up.
    Recorded(Vec<u8>, bool),
}

/// Answers message 1 only when it proves knowledge of an active link point.
async fn answer_start(deps: &ContactBookDeps, message: Vec<u8>, proof: [u8; 32]) -> Result<Answer> {
    let now = deps.clock.now();
    let Some(link) = deps.store.link().await?.filter(|l| l.answers_at(now)) else {
        return Ok(Answer::Reply(Vec::new()));
    };
    let me = deps.vault.identity.send(GetIdentity).await.map_err(mailbox("identity-vault"))??;
    let points = points_of(deps, Topic::contact(&me.account.signing), link.seed).await?;
    if !points.all().any(|p| check_point_proof(&p, &message, &proof)) {
        return Ok(Answer::Reply(Vec::new()));
    }
    let (handshake, response) =
        deps.vault.answer.send(AnswerRequest { message }).await.map_err(mailbox("identity-vault"))??;
    Ok(Answer::Started(handshake, HandshakeFrame::Response(response).encode()))
}

/// Reads message 3 and records the request.
async fn answer_finish(deps: &ContactBookDeps, handshake: HandshakeId, message: Vec<u8>) -> Result<Answer> {
    let received =
        deps.vault.read.send(ReadRequest { handshake, message }).await.map_err(mailbox("identity-vault"))??;
    let request = ContactRequest::decode(&received.payload).map_err(Error::Wire)?;
    let from = received.requester;
    // A completed request is one use of the link.
    let spent = deps.store.use_link().await? == Some(0);
    let name = request.display_name.as_ref().map(|n| n.as_str().to_owned());
    match deps.store.contact(&from.signing).await?.map(|c| c.state) {
        // Acknowledged like any request, so the requester learns nothing.
        Some(ContactState::Blocked | ContactState::Accepted) => {}
        Some(ContactState::OutgoingEnqueued | ContactState::OutgoingSent) => {
            // Crossed requests: both want it.
            deps.store.upsert_contact(&from, name.as_deref(), Some(&request.seed), ContactState::Accepted).await?;
            let group = open_contact_group(deps, &from, ContactState::Accepted).await?;
            let _ = deps.events.send(NodeEvent::ContactAccepted { account: from.signing, group: Some(group) });
            changed(deps, from, Some(ContactState::Accepted), false);
        }
        _ => {
            deps.store
                .upsert_contact(&from, name.as_deref(), Some(&request.seed), ContactState::IncomingReceived)
                .await?;
            let _ = deps.events.send(NodeEvent::ContactRequestReceived { account: from, display_name: name });
        }
    }
    Ok(Answer::Recorded(HandshakeFrame::Response(Vec::new()).encode(), spent))
}

impl Handler<InboundRequest> for ContactBook {
    type Result = ();

    fn handle(&mut self, msg: InboundRequest, ctx: &mut Self::Context) {
        // Network input: a panic reading it restarts the contact book; the
        // request goes unanswered and its sender tries again.
        let _ = guarded_with(NAME, ctx, |ctx| {
            self.answer(msg, ctx);
            Ok(())
        });
    }
}

impl ContactBook {
    /// Answers a contact request: the first message starts a handshake,
    /// the second finishes it; anything else gets an empty reply.
    fn answer(&mut self, InboundRequest { peer, id, request }: InboundRequest, ctx: &mut Context<Self>) {
        let deps = self.deps.clone();
        let frame = HandshakeFrame::decode(&request);
        if let Ok(HandshakeFrame::DeviceHello { .. } | HandshakeFrame::DeviceSealed(_)) = &frame {
            // Device linking shares the protocol; its linker answers.
            if let Err(e) = deps.devices.try_send(InboundRequest { peer, id, request }) {
                tracing::debug!(actor = NAME, error = %e, "the device linker is busy; the frame goes unanswered");
            }
            return;
        }
        let pending = match &frame {
            Ok(HandshakeFrame::RequestFinish(_)) => {
                let found = self.answering.iter().position(|(p, _)| *p == peer);
                found.and_then(|i| self.answering.remove(i)).map(|(_, h)| h)
            }
            _ => None,
        };
        ctx.spawn(
            async move {
                let answer = match frame {
                    Ok(HandshakeFrame::RequestStart { message, point_proof }) => {
                        answer_start(&deps, message, point_proof).await
                    }
                    Ok(HandshakeFrame::RequestFinish(message)) => match pending {
                        Some(h) => answer_finish(&deps, h, message).await,
                        None => Ok(Answer::Reply(Vec::new())),
                    },
                    _ => Ok(Answer::Reply(Vec::new())),
                };
                let answer = answer.unwrap_or_else(|e| {
                    tracing::debug!(actor = NAME, error = %e, "refused a contact request");
                    Answer::Reply(Vec::new())
                });
                match answer {
                    Answer::Started(h, bytes) => (Some(h), bytes, false),
                    // An empty reply answers what was refused.
                    Answer::Reply(bytes) => {
                        if bytes.is_empty() {
                            deps.refusals.contact_request();
                        }
                        (None, bytes, false)
                    }
                    Answer::Recorded(bytes, spent) => (None, bytes, spent),
                }
            }
            .into_actor(self)
            .guarded_map(NAME, move |(kept, bytes, spent), act, ctx| {
                if spent {
                    act.link_spent(ctx);
                }
                // Keep the handshake before answering, so message 3 finds it.
                if let Some(h) = kept {
                    act.answering.retain(|(p, _)| *p != peer);
                    if act.answering.len() >= MAX_ANSWERING {
                        act.answering.pop_front();
                    }
                    act.answering.push_back((peer, h));
                }
                let network = act.deps.network.clone();
                ctx.spawn(
                    async move {
                        if let Err(e) = network.respond(id, bytes).await {
                            tracing::debug!(actor = NAME, error = %e, "cannot answer a contact request");
                        }
                    }
                    .into_actor(act),
                );
            }),
        );
    }
}
