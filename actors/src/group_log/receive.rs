//! Receiving entries: each batch verified, opened with the author's chain,
//! ordered after its parents (orphans wait), and stored in one transaction.

use super::*;
use crate::supervision::GuardedMap;

/// What happened to one received entry.
enum Received {
    /// Stored now.
    Stored { lamport: u64, joined: Option<Box<MemberJoined>> },
    /// Stored before.
    Known,
    /// Refused for good (forged, undecryptable, not a member's).
    Refused(&'static str),
    /// Waiting for this parent; kept in memory until it is stored.
    Orphan(EntryHash),
    /// Waiting for what has not arrived (its author's announcement, earlier
    /// messages of its chain); not stored.
    Later(&'static str),
    /// A message, read (or not readable by us) and queued: the batch's
    /// messages are stored together.
    Queued,
}

/// A message of the batch being received, stored with the others at the end.
struct QueuedMessage {
    entry: SealedEntry,
    links: Links,
    author: VerifyKey,
    payload: Option<zeroize::Zeroizing<Vec<u8>>>,
    /// Past its author's chain as stored, so certainly not stored yet.
    unseen: bool,
}

/// A snapshot of what receiving needs, taken from the actor.
struct Receiver {
    group: GroupId,
    deps: GroupLogDeps,
    epochs: Epochs,
    kind: GroupKind,
    me: MemberPublic,
    membership: Membership,
    writer: Writer,
    members: Vec<Peer>,
    /// Log and Lamport clock of stored entries: those stored lately, those
    /// the batch names as parents, and the batch's own as they are taken.
    positions: Known,
    /// Receiving chains as stored, then as this batch's messages move them.
    chains: HashMap<VerifyKey, ReceiverChain>,
    /// The message log's heads, as this batch's messages move them.
    heads: Vec<EntryHash>,
    /// Entries waiting for a parent.
    orphans: Orphans,
    /// Authors' keys, parsed once.
    authors: AuthorKeys,
    /// This batch's messages, stored together.
    queued: Vec<QueuedMessage>,
    /// The last of this batch's commits (a sync covers the earlier ones
    /// too), durable once synced: messages are
    /// reported received at once, acknowledged only after the sync (by the
    /// courier, see `Receipt`).
    unsynced: Option<Unsynced>,
}

impl Receiver {
    /// After a batch: if the current epoch changed, starts writing in it
    /// (sharing the new chain with the epoch's members at once).
    async fn follow_epoch(&mut self) -> Result<()> {
        if self.kind != GroupKind::MultiMember || self.membership.is_removed(&self.me.signing) {
            return Ok(());
        }
        let current = self.epochs.current(&self.membership);
        if current != self.writer.epoch {
            let recipients = others(&self.membership, &current, &self.me);
            (self.writer, _) = enter_epoch(
                &self.deps,
                self.group,
                &self.epochs,
                current,
                &self.members,
                recipients,
                &mut self.membership,
                &self.me,
            )
            .await?;
        }
        Ok(())
    }

    /// A message at or past its author's chain position as held: storing
    /// it would have moved the chain past it, so it is not stored yet.
    fn is_new(&self, opened: &OpenedEntry) -> bool {
        opened.links.kind == EntryKind::Message
            && self.chains.get(&opened.author).is_some_and(|chain| opened.counter >= chain.state().next)
    }

    async fn receive(&mut self, entry: &SealedEntry, epoch: EpochId, opened: &OpenedEntry) -> Result<Received> {
        let hash = entry.hash();
        if self.positions.contains_key(&hash) {
            return Ok(Received::Known);
        }
        // Parents first, all of them in the same log and earlier in it (so
        // no cycle can ever be stored).
        for parent in &opened.links.parents {
            match self.positions.get(parent) {
                None => return Ok(Received::Orphan(*parent)),
                Some((kind, lamport)) if *kind != opened.links.kind || *lamport >= opened.links.lamport => {
                    return Ok(Received::Refused("parents out of order"));
                }
                Some(_) => {}
            }
        }
        let received = match opened.links.kind {
            EntryKind::Metadata => self.receive_metadata(entry, epoch, opened).await?,
            EntryKind::Message => self.receive_message(entry, epoch, opened).await?,
        };
        if matches!(received, Received::Stored { .. } | Received::Queued) {
            self.positions.insert(hash, (opened.links.kind, opened.links.lamport));
        }
        Ok(received)
    }

    async fn receive_metadata(
        &mut self,
        entry: &SealedEntry,
        epoch: EpochId,
        opened: &OpenedEntry,
    ) -> Result<Received> {
        let keys = self.epochs.keys(&epoch).ok_or(Error::Unavailable(NAME))?;
        let Ok(payload) = opened.read_metadata(keys) else { return Ok(Received::Refused("unreadable")) };
        match MetadataEvent::decode(&payload) {
            Ok(MetadataEvent::MemberJoined(joined)) => {
                self.receive_joined(entry, epoch, opened, joined, &payload).await
            }
            Ok(MetadataEvent::MemberRemoved(removal)) => {
                self.receive_removal(entry, epoch, opened, removal, &payload).await
            }
            Err(_) => Ok(Received::Refused("unknown metadata event")),
        }
    }

    async fn receive_joined(
        &mut self,
        entry: &SealedEntry,
        epoch: EpochId,
        opened: &OpenedEntry,
        joined: MemberJoined,
        payload: &[u8],
    ) -> Result<Received> {
        if joined.device != opened.author
            || joined.member.verify_device(&self.group, &joined.device, &joined.device_cert).is_err()
        {
            return Ok(Received::Refused("device not certified by its member"));
        }
        if joined.epoch != epoch {
            return Ok(Received::Refused("announced outside its epoch"));
        }
        if self.membership.is_removed(&joined.member.signing) {
            return Ok(Received::Refused("its member was removed"));
        }
        if self.kind == GroupKind::Contact {
            // Only the two accounts can write in a 1:1 group; the group
            // secret already proves the author is one of them.
            let other = contact_recipients(&self.deps.store, &self.group).await?;
            if joined.member != self.me && !other.contains(&joined.member) {
                return Ok(Received::Refused("not a member of this contact group"));
            }
        }
        // Our share of the author's chain, if it gave us one and we have
        // none yet (a later share must not overwrite a chain in use).
        let mut ratchet_chain = None;
        let share = joined.chain_shares.iter().find(|s| s.recipient == self.me.signing);
        if let Some(share) = share
            && !self.chains.contains_key(&joined.device)
            && self.deps.store.receiver_chain(&self.group, &joined.device).await?.is_none()
        {
            let opened_share = self
                .deps
                .open_share
                .send(OpenChainShare { group: self.group, sealed: share.sealed_state.clone() })
                .await
                .map_err(mailbox("identity-vault"))?;
            match opened_share {
                Ok((device, state)) if device == joined.device => {
                    ratchet_chain = Some(ReceiverChain::new(state, DEFAULT_WINDOW)?);
                }
                _ => return Ok(Received::Refused("bad chain share")),
            }
        }
        let ratchet = ratchet_chain.as_ref().map(|chain| RatchetUpdate::Receiver { device: joined.device, chain });
        let stored = self.store(entry, opened, Some(payload), ratchet).await?;
        if self.membership.joined(&joined) && joined.member != self.me {
            let _ = self.deps.events.send(NodeEvent::MemberJoined { group: self.group, member: joined.member });
        }
        if let Some(chain) = ratchet_chain {
            self.reveal(joined.device, chain).await?;
        }
        Ok(if stored {
            Received::Stored { lamport: opened.links.lamport, joined: Some(Box::new(joined)) }
        } else {
            Received::Known
        })
    }

    /// A removal by a member device (written in that device's epoch) starts
    /// a new epoch; its secret is kept if it was sealed to this member.
    async fn receive_removal(
        &mut self,
        entry: &SealedEntry,
        epoch: EpochId,
        opened: &OpenedEntry,
        removal: MemberRemoved,
        payload: &[u8],
    ) -> Result<Received> {
        if self.kind != GroupKind::MultiMember {
            return Ok(Received::Refused("contact groups have no removals"));
        }
        let Some((author, author_epoch)) = self.membership.device(&opened.author).copied() else {
            return Ok(Received::Later("its author's announcement"));
        };
        if author_epoch != epoch {
            return Ok(Received::Refused("written outside its device's epoch"));
        }
        if self.membership.is_removed(&author.signing) {
            return Ok(Received::Refused("its author was removed"));
        }
        let mut secret = None;
        if let Some(share) = removal.shares.iter().find(|s| s.recipient == self.me.signing)
            && !self.epochs.holds(&removal.epoch)
        {
            match open_epoch(&self.deps, self.group, &self.epochs, &removal, &share.sealed_secret).await? {
                Ok(s) => secret = Some(s),
                Err(()) => return Ok(Received::Refused("bad epoch share")),
            }
        }
        // The entry first: if the node stops in between, loading opens
        // the share again.
        let stored = self.store(entry, opened, Some(payload), None).await?;
        if let Some(secret) = secret {
            self.deps.store.add_epoch(&self.group, &secret).await?;
            self.epochs.add(&secret);
        }
        self.membership.removed(&removal, opened.links.lamport, opened.hash);
        let _ = self.deps.events.send(NodeEvent::MemberRemoved { group: self.group, member: removal.member });
        Ok(if stored { Received::Stored { lamport: opened.links.lamport, joined: None } } else { Received::Known })
    }

    /// Opens what `device` wrote before its chain reached us and that
    /// `chain` can read (from its shared position on); older entries stay
    /// unread for good.
    async fn reveal(&mut self, device: VerifyKey, mut chain: ReceiverChain) -> Result<()> {
        for record in self.deps.store.unread(&self.group, &device, MAX_REVEAL).await? {
            let Ok((_, opened)) = self.epochs.open(&record.sealed, &mut self.authors) else { continue };
            let Ok(payload) = opened.read_message(&mut chain) else { continue };
            if self.deps.store.reveal(&self.group, &record.hash, &payload, &device, &chain).await? {
                let _ = self.deps.events.send(NodeEvent::MessageReceived { group: self.group, hash: record.hash });
            }
        }
        Ok(())
    }

    /// Stores a received entry with its decrypted payload (if readable) and
    /// chain state; `false` if it was already there.
    async fn store(
        &self,
        entry: &SealedEntry,
        opened: &OpenedEntry,
        payload: Option<&[u8]>,
        ratchet: Option<RatchetUpdate<'_>>,
    ) -> Result<bool> {
        let outcome = self
            .deps
            .store
            .append(NewEntry {
                group: self.group,
                entry,
                links: &opened.links,
                author: Some(opened.author),
                payload,
                ratchet,
                outbox: &[],
            })
            .await?;
        Ok(outcome == Appended::Stored)
    }

    /// A message from a member device is kept even when it cannot be read
    /// (no chain from its author yet, or written before ours began), so
    /// the log stays whole; it is opened if its chain arrives later.
    async fn receive_message(&mut self, entry: &SealedEntry, epoch: EpochId, opened: &OpenedEntry) -> Result<Received> {
        let author = opened.author;
        match self.membership.device(&author) {
            None => return Ok(Received::Later("its author's announcement")),
            Some((_, device_epoch)) if *device_epoch != epoch => {
                return Ok(Received::Refused("written outside its device's epoch"));
            }
            Some(_) => {}
        }
        if !self.chains.contains_key(&author)
            && let Some(chain) = self.deps.store.receiver_chain(&self.group, &author).await?
        {
            self.chains.insert(author, chain);
        }
        let unseen = self.is_new(opened);
        let payload = match self.chains.get_mut(&author) {
            None => None,
            Some(chain) => match opened.read_message(chain) {
                Ok(payload) => Some(payload),
                Err(veil_crypto::Error::Replay { .. }) => None,
                Err(veil_crypto::Error::TooFarAhead { .. }) => return Ok(Received::Later("earlier messages")),
                Err(_) => return Ok(Received::Refused("undecryptable")),
            },
        };
        self.queued.push(QueuedMessage { entry: entry.clone(), links: opened.links.clone(), author, payload, unseen });
        Ok(Received::Queued)
    }

    /// Stores the queued messages, with the chains they moved, in one
    /// transaction; returns them with what became of each.
    async fn store_queued(&mut self) -> Result<Vec<(QueuedMessage, Appended)>> {
        let queued = std::mem::take(&mut self.queued);
        if queued.is_empty() {
            return Ok(Vec::new());
        }
        let batch: Vec<NewEntry<'_>> = queued
            .iter()
            .map(|q| NewEntry {
                group: self.group,
                entry: &q.entry,
                links: &q.links,
                author: Some(q.author),
                payload: q.payload.as_deref().map(|p| &p[..]),
                // The last update of each chain wins: its state after the batch.
                ratchet: q.payload.as_ref().and_then(|_| {
                    self.chains.get(&q.author).map(|chain| RatchetUpdate::Receiver { device: q.author, chain })
                }),
                outbox: &[],
            })
            .collect();
        // Messages past their chains need no lookup of what is stored: one
        // round trip to SQLite instead of two, on every message received
        // in order.
        let (outcomes, unsynced) = match queued.iter().all(|q| q.unseen) {
            true => self.deps.store.append_unseen_deferred(&batch).await?,
            false => self.deps.store.append_batch_deferred(&batch).await?,
        };
        self.unsynced = Some(unsynced);
        drop(batch);
        Ok(queued.into_iter().zip(outcomes).collect())
    }
}

/// What a batch of received entries changed.
struct BatchOutcome {
    receipt: Receipt,
    /// The message log's heads now.
    heads: Vec<EntryHash>,
    /// The largest Lamport clock stored.
    lamport: u64,
    /// Epochs, members and this device's writer now.
    epochs: Epochs,
    membership: Membership,
    writer: Writer,
    /// The receiving chains, as stored now.
    chains: HashMap<VerifyKey, ReceiverChain>,
    /// Entries waiting for a parent.
    orphans: Orphans,
    /// Authors' keys, parsed once.
    authors: AuthorKeys,
    /// Positions of the entries stored lately.
    known: Known,
}

impl Handler<ReceiveEntries> for GroupLog {
    // Atomic: receiving moves ratchet state, so batches are handled in order.
    type Result = AtomicResponse<Self, Result<Receipt>>;

    fn handle(&mut self, msg: ReceiveEntries, ctx: &mut Self::Context) -> Self::Result {
        let snapshot = guarded(NAME, ctx, || {
            let s = self.state.as_mut().ok_or(Error::Unavailable(NAME))?;
            Ok(Receiver {
                group: self.group,
                deps: self.deps.clone(),
                epochs: s.epochs.clone(),
                kind: s.kind,
                me: s.me,
                membership: s.membership.clone(),
                writer: s.writer.clone(),
                members: self.members.clone(),
                positions: std::mem::take(&mut s.known),
                // Back in the state once the batch is stored.
                chains: std::mem::take(&mut s.chains),
                orphans: std::mem::take(&mut s.orphans),
                authors: std::mem::take(&mut s.authors),
                heads: s.heads.clone(),
                queued: Vec::new(),
                unsynced: None,
            })
        });
        let group = self.group;
        AtomicResponse::new(Box::pin(
            async move {
                let mut receiver = snapshot?;
                let refuse = |receiver: &Receiver, hash, reason| {
                    tracing::debug!(actor = NAME, reason, "refused an entry");
                    receiver.deps.refusals.entry();
                    let _ = receiver.deps.events.send(NodeEvent::EntryRefused { group, hash, reason });
                };
                let mut receipt = Receipt::default();
                let (mut lamport, mut joined_other, mut their_name) = (0, false, None);
                // Open everything first, then take announcements before
                // messages and parents before children, whatever the order
                // the batch came in.
                let removed = receiver.membership.is_removed(&receiver.me.signing);
                let mut round = Vec::with_capacity(msg.entries.len());
                let mut checks = Vec::with_capacity(msg.entries.len());
                for entry in msg.entries {
                    match receiver.epochs.open_unchecked(&entry, &mut receiver.authors) {
                        Ok((epoch, opened, check)) => {
                            round.push(Arrived { entry, epoch, opened });
                            checks.push(check);
                        }
                        Err(Unopened::Forged) => {
                            refuse(&receiver, entry.hash(), "forged entry");
                            receipt.ack.push(entry.hash());
                        }
                        // A removed member never gets the keys of later epochs.
                        Err(Unopened::NoKey) if removed => receipt.ack.push(entry.hash()),
                        Err(Unopened::NoKey) => {
                            let _ = receiver.deps.events.send(NodeEvent::EntryHeldBack {
                                group,
                                hash: entry.hash(),
                                reason: "the keys of its epoch",
                            });
                            receipt.waiting = true;
                        }
                    }
                }
                // Every signature at once (PROTOCOL.md §7); forgeries leave.
                for i in failed_signatures(&checks).into_iter().rev() {
                    let forged = round.remove(i).entry.hash();
                    refuse(&receiver, forged, "forged entry");
                    receipt.ack.push(forged);
                }
                // Entries whose parent this round stored are taken in the
                // next (see `orphans`).
                while !round.is_empty() {
                    round.sort_by_key(|o| {
                        (o.opened.links.kind != EntryKind::Metadata, o.opened.links.lamport, o.opened.hash)
                    });
                    // One query for what is stored of the round and its
                    // parents, unless they are known (see `known`).
                    let asked: Vec<EntryHash> = round
                        .iter()
                        .flat_map(|o| {
                            let own = (!receiver.is_new(&o.opened)).then_some(o.opened.hash);
                            o.opened.links.parents.iter().copied().chain(own)
                        })
                        .filter(|hash| !receiver.positions.contains_key(hash))
                        .collect();
                    if !asked.is_empty() {
                        for (hash, kind, l) in receiver.deps.store.positions(&group, &asked).await? {
                            receiver.positions.insert(hash, (kind, l));
                        }
                    }
                    let mut stored = Vec::new();
                    for item in round {
                        let (hash, metadata) = (item.opened.hash, item.opened.links.kind == EntryKind::Metadata);
                        match receiver.receive(&item.entry, item.epoch, &item.opened).await? {
                            Received::Stored { lamport: l, joined, .. } => {
                                if metadata {
                                    receipt.metadata.push(hash);
                                }
                                lamport = lamport.max(l);
                                if let Some(j) = joined.filter(|j| j.member != receiver.me) {
                                    joined_other = true;
                                    their_name = j.display_name.map(|n| n.as_str().to_owned());
                                }
                                receipt.ack.push(hash);
                                stored.push(hash);
                            }
                            Received::Known => {
                                if metadata {
                                    receipt.metadata.push(hash);
                                }
                                receipt.ack.push(hash);
                            }
                            Received::Refused(why) => {
                                refuse(&receiver, hash, why);
                                receipt.ack.push(hash);
                            }
                            Received::Orphan(parent) => {
                                receiver.orphans.hold(parent, item);
                                let reason = "a parent";
                                let _ = receiver.deps.events.send(NodeEvent::EntryHeldBack { group, hash, reason });
                                receipt.waiting = true;
                            }
                            Received::Later(reason) => {
                                let _ = receiver.deps.events.send(NodeEvent::EntryHeldBack { group, hash, reason });
                                receipt.waiting = true;
                            }
                            Received::Queued => {}
                        }
                    }
                    for (message, outcome) in receiver.store_queued().await? {
                        let hash = message.entry.hash();
                        if outcome == Appended::Stored {
                            // Parents are stored before their children (or
                            // the entry waits), so no missing parent is named.
                            receiver.heads = heads_after(&receiver.heads, &message.links.parents, hash);
                            lamport = lamport.max(message.links.lamport);
                            if message.payload.is_some() {
                                let _ = receiver.deps.events.send(NodeEvent::MessageReceived { group, hash });
                            }
                            stored.push(hash);
                        }
                        receipt.ack.push(hash);
                    }
                    round = receiver.orphans.unlocked(&stored);
                }
                if joined_other && receiver.kind == GroupKind::Contact {
                    // Waits for room in the contact book's mailbox (never
                    // dropped: the contact would stay "request sent"),
                    // without holding this batch up.
                    let joined = receiver.deps.joined.clone();
                    actix_rt::spawn(async move {
                        if joined.send(ContactJoined { group, display_name: their_name }).await.is_err() {
                            tracing::debug!(actor = NAME, "the contact book is not running");
                        }
                    });
                }
                receipt.unsynced = receiver.unsynced;
                receiver.follow_epoch().await?;
                Ok(BatchOutcome {
                    receipt,
                    heads: receiver.heads,
                    lamport,
                    epochs: receiver.epochs,
                    membership: receiver.membership,
                    writer: receiver.writer,
                    chains: receiver.chains,
                    orphans: receiver.orphans,
                    authors: receiver.authors,
                    known: receiver.positions,
                })
            }
            .into_actor(self)
            .guarded_map(NAME, |r: Result<BatchOutcome>, act, ctx| {
                let BatchOutcome {
                    receipt,
                    heads,
                    lamport,
                    epochs,
                    membership,
                    writer,
                    chains,
                    orphans,
                    authors,
                    mut known,
                } = r?;
                known.trim();
                if let Some(state) = act.state.as_mut() {
                    state.heads = heads;
                    state.lamport = state.lamport.max(lamport);
                    state.epochs = epochs;
                    state.membership = membership;
                    state.writer = writer;
                    state.chains = chains;
                    state.orphans = orphans;
                    state.authors = authors;
                    state.known = known;
                }
                // Members learned: share this device's chain with them
                // shortly, together with whoever else turns up meanwhile
                // (one announcement, not one per batch: joins come in
                // bursts), or before this device's next message.
                share::schedule(act, ctx);
                Ok(receipt)
            }),
        ))
    }
}

impl Handler<EntriesHeld> for GroupLog {
    type Result = ();

    fn handle(&mut self, msg: EntriesHeld, _: &mut Self::Context) {
        let joining = &mut self.joining;
        if !joining.held && joining.announcement.is_some_and(|a| msg.hashes.contains(&a)) {
            joining.held = true;
            for waiter in joining.waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }
}
