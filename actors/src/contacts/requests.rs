//! Contact requests this node sends: stored, delivered at the responder's
//! rendezvous points (or to a LAN or BLE neighbour), retried until answered.

use super::*;

/// One delivery attempt of an outgoing request, to the peers found at the
/// responder's active points and to `lan` peers. `Ok(true)` once delivered.
pub(super) async fn deliver(deps: Arc<ContactBookDeps>, contact: ContactRecord, lan: Vec<PeerId>) -> Result<bool> {
    let Some(seed) = contact.seed.clone() else { return Ok(false) };
    let points = points_of(&deps, Topic::contact(&contact.account.signing), seed).await?;
    let request = my_request(&deps).await?;
    for point in points.all() {
        let mut peers = lan.clone();
        match deps.network.lookup(point.0).await {
            Ok(found) => peers.extend(found.into_iter().map(|(peer, _)| peer)),
            Err(e) => tracing::debug!(actor = NAME, error = %e, "lookup failed"),
        }
        peers.sort();
        peers.dedup();
        // Every peer at once: stale registrations of the responder's earlier
        // peer ids must not hold up the live one. The first handshake that
        // completes wins; the others are dropped.
        let attempts: Vec<_> = peers
            .into_iter()
            .map(|peer| Box::pin(handshake(&deps, peer, &point, &contact.account, &request)))
            .collect();
        if attempts.is_empty() {
            continue;
        }
        match futures::future::select_ok(attempts).await {
            Ok(((), _)) => {
                deps.store.set_contact_state(&contact.account.signing, ContactState::OutgoingSent, None).await?;
                open_contact_group(&deps, &contact.account, ContactState::OutgoingSent).await?;
                return Ok(true);
            }
            Err(e) => tracing::debug!(actor = NAME, error = %e, "no handshake completed"),
        }
    }
    Ok(false)
}

/// The request payload: our display name and our link seed (so the
/// responder could reach back).
pub(super) async fn my_request(deps: &ContactBookDeps) -> Result<Vec<u8>> {
    let name = display_name(&deps.store).await?;
    let seed = ensure_link(&deps.store).await?;
    Ok(ContactRequest { display_name: name, seed }.encode())
}

/// The requester's side of the handshake with one peer.
pub(super) async fn handshake(
    deps: &ContactBookDeps,
    peer: PeerId,
    point: &RendezvousPoint,
    responder: &AccountPublic,
    request: &[u8],
) -> Result<()> {
    let v = &deps.vault;
    deps.network.dial_peer(peer).await?;
    let (handshake, message) = v
        .begin
        .send(BeginRequest { responder: *responder, request: request.to_vec() })
        .await
        .map_err(mailbox("identity-vault"))??;
    let start = HandshakeFrame::RequestStart { point_proof: point_proof(point, &message), message };
    let answer = deps.network.request(peer, start.encode()).await?;
    let Ok(HandshakeFrame::Response(response)) = HandshakeFrame::decode(&answer) else { return Err(refused()) };
    // The vault checks message 2 proves the link's account.
    let finish =
        v.continue_request.send(ContinueRequest { handshake, response }).await.map_err(mailbox("identity-vault"))??;
    let done = deps.network.request(peer, HandshakeFrame::RequestFinish(finish).encode()).await?;
    match HandshakeFrame::decode(&done) {
        Ok(HandshakeFrame::Response(r)) if r.is_empty() => Ok(()),
        _ => Err(refused()),
    }
}

impl Handler<LanPeerFound> for ContactBook {
    type Result = ();

    fn handle(&mut self, msg: LanPeerFound, ctx: &mut Self::Context) {
        // Remembered (the most recent ones) for every later attempt; pending
        // requests are tried at once.
        self.lan.retain(|p| *p != msg.peer);
        if self.lan.len() >= MAX_LAN_PEERS {
            self.lan.pop_front();
        }
        self.lan.push_back(msg.peer);
        self.backoff.clear();
        self.retry_due(ctx);
    }
}

impl Handler<SendRequest> for ContactBook {
    type Result = ResponseActFuture<Self, Result<Contact>>;

    fn handle(&mut self, msg: SendRequest, _: &mut Self::Context) -> Self::Result {
        let deps = self.deps.clone();
        Box::pin(
            async move {
                let them = link::parse_contact(&msg.link).map_err(Error::Wire)?;
                let me = deps.vault.identity.send(GetIdentity).await.map_err(mailbox("identity-vault"))??;
                if them.account == me.account {
                    return Err(Error::Refused("this is our own link"));
                }
                if let Some(name) = &msg.display_name {
                    veil_crypto::Name::new(name)?;
                    deps.store.set_setting(DISPLAY_NAME, name.as_bytes()).await?;
                }
                let existing = deps.store.contact(&them.account.signing).await?;
                match existing.as_ref().map(|c| c.state) {
                    Some(ContactState::Accepted) => {}
                    Some(ContactState::IncomingReceived) => {
                        // They asked first: sending ours back is accepting theirs.
                        open_contact_group(&deps, &them.account, ContactState::Accepted).await?;
                    }
                    _ => {
                        let name = them.display_name.as_ref().map(veil_crypto::Name::as_str);
                        deps.store
                            .upsert_contact(&them.account, name, Some(&them.seed), ContactState::OutgoingEnqueued)
                            .await?;
                        // Watch the responder's points; the rotator reports them at once.
                        deps.rotator.send(Refresh).await.map_err(mailbox("rendezvous-rotator"))??;
                    }
                }
                let record = deps.store.contact(&them.account.signing).await?;
                record.map(contact_of).ok_or(Error::Storage(veil_storage::Error::Unknown("contact")))
            }
            .into_actor(self),
        )
    }
}
