//! Receiving entries: the actor's side of [`Reception`]. It fetches what a
//! decision needs from the store and the vault, stores what was decided
//! (each round's messages in one transaction), and carries out the events
//! and refusals; the decisions are `reception`'s.

use super::*;
use crate::supervision::GuardedMap;
use reception::{Joining, Need, Reception, Removing, Verdict};

/// What a batch of received entries changed.
struct BatchOutcome {
    receipt: Receipt,
    reception: Reception,
    /// This device's writer now (a new one if the epoch changed).
    writer: Writer,
}

/// The I/O of one batch: the store, the vault and the node's channels.
struct Io {
    group: GroupId,
    deps: GroupLogDeps,
}

impl Io {
    /// Sends the events and counts the refusals the decisions so far made.
    fn carry_out(&self, reception: &mut Reception) {
        let (events, refusals) = reception.take_effects();
        for _ in 0..refusals {
            self.deps.refusals.entry();
        }
        for event in events {
            let _ = self.deps.events.send(event);
        }
    }

    /// Judges `item`, fetching what the decision needs, and stores it if it
    /// is an announcement or a removal.
    async fn receive(&self, reception: &mut Reception, mut item: orphans::Arrived) -> Result<()> {
        loop {
            match reception.judge(item)? {
                Verdict::Done => return Ok(()),
                Verdict::Need(again, need) => {
                    match need {
                        Need::Chain(device) => {
                            let chain = self.deps.store.receiver_chain(&self.group, &device).await?;
                            reception.chain_loaded(device, chain);
                        }
                        Need::Contacts => {
                            reception.contacts_loaded(contact_recipients(&self.deps.store, &self.group).await?);
                        }
                    }
                    item = *again;
                }
                Verdict::Joined(joining) => return self.store_joined(reception, *joining).await,
                Verdict::Removal(removing) => return self.store_removal(reception, *removing).await,
            }
        }
    }

    async fn store_joined(&self, reception: &mut Reception, joining: Joining) -> Result<()> {
        let chain = match &joining.share {
            None => None,
            Some(sealed) => {
                let opened = self
                    .deps
                    .open_share
                    .send(OpenChainShare { group: self.group, sealed: sealed.clone() })
                    .await
                    .map_err(mailbox("identity-vault"))?;
                match reception.share_opened(&joining, opened)? {
                    Some(chain) => Some(chain),
                    None => return Ok(()),
                }
            }
        };
        let device = joining.joined.device;
        let ratchet = chain.as_ref().map(|chain| RatchetUpdate::Receiver { device, chain });
        let stored = self.store(&joining.item, Some(&joining.payload), ratchet).await?;
        reception.joined_stored(joining, stored);
        if let Some(chain) = chain {
            self.reveal(reception, device, chain).await?;
        }
        Ok(())
    }

    async fn store_removal(&self, reception: &mut Reception, removing: Removing) -> Result<()> {
        let mut secret = None;
        if let Some(sealed) = &removing.share {
            match open_epoch(&self.deps, self.group, &reception.epochs, &removing.start, sealed).await? {
                Ok(s) => secret = Some(s),
                // None is this device's: the account removed it. The
                // renewal is authentic all the same.
                Err(()) if matches!(sealed, SealedShare::Devices(_)) => {}
                Err(()) => {
                    reception.refuse(removing.item.opened.hash, "bad epoch share");
                    return Ok(());
                }
            }
        }
        // The entry first: if the node stops in between, loading opens the
        // share again.
        let stored = self.store(&removing.item, Some(&removing.payload), None).await?;
        if let Some(secret) = &secret {
            self.deps.store.add_epoch(&self.group, secret).await?;
        }
        reception.removal_stored(removing, stored, secret.as_ref());
        Ok(())
    }

    /// Opens what `device` wrote before its chain reached us and that
    /// `chain` can read (from its shared position on); older entries stay
    /// unread for good.
    async fn reveal(&self, reception: &mut Reception, device: VerifyKey, mut chain: ReceiverChain) -> Result<()> {
        for record in self.deps.store.unread(&self.group, &device, MAX_REVEAL).await? {
            let Some(payload) = reception.read_unread(&record.sealed, &mut chain) else { continue };
            if self.deps.store.reveal(&self.group, &record.hash, &payload, &device, &chain).await? {
                reception.revealed(record.hash);
            }
        }
        Ok(())
    }

    /// Stores a received metadata entry with its payload and chain state;
    /// `false` if it was already there.
    async fn store(
        &self,
        item: &orphans::Arrived,
        payload: Option<&[u8]>,
        ratchet: Option<RatchetUpdate<'_>>,
    ) -> Result<bool> {
        let outcome = self
            .deps
            .store
            .append(NewEntry {
                group: self.group,
                entry: &item.entry,
                position: &item.opened.position,
                author: Some(item.opened.author),
                payload,
                ratchet,
                outbox: &[],
            })
            .await?;
        Ok(outcome == Appended::Stored)
    }

    /// Stores the round's messages in one transaction; returns the sync
    /// that makes them durable.
    async fn store_queued(&self, reception: &mut Reception) -> Result<Option<Unsynced>> {
        let batch = reception.queued();
        if batch.is_empty() {
            return Ok(None);
        }
        // Messages past their chains need no lookup of what is stored: one
        // round trip to SQLite instead of two, on every message received
        // in order.
        let (outcomes, unsynced) = match reception.queued_unseen() {
            true => self.deps.store.append_unseen_deferred(&batch).await?,
            false => self.deps.store.append_batch_deferred(&batch).await?,
        };
        drop(batch);
        reception.queued_stored(outcomes);
        Ok(Some(unsynced))
    }

    async fn receive_batch(&self, reception: &mut Reception, entries: Vec<SealedEntry>) -> Result<Option<Unsynced>> {
        let mut unsynced = None;
        let mut round = reception.open(entries);
        self.carry_out(reception);
        while !round.is_empty() {
            // One query for what is stored of the round and its parents,
            // unless they are known (see `known`).
            let asked = reception.order(&mut round);
            if !asked.is_empty() {
                reception.positions_found(self.deps.store.positions(&self.group, &asked).await?);
            }
            for item in round {
                self.receive(reception, item).await?;
                self.carry_out(reception);
            }
            // The last sync covers the earlier commits too.
            unsynced = self.store_queued(reception).await?.or(unsynced);
            self.carry_out(reception);
            round = reception.next_round();
        }
        reception.finish();
        self.carry_out(reception);
        Ok(unsynced)
    }
}

impl Handler<ReceiveEntries> for GroupLog {
    // Atomic: receiving moves ratchet state, so batches are handled in order.
    type Result = AtomicResponse<Self, Result<Receipt>>;

    fn handle(&mut self, msg: ReceiveEntries, ctx: &mut Self::Context) -> Self::Result {
        let group = self.group;
        let snapshot = guarded(NAME, ctx, || {
            let s = self.state.as_mut().ok_or(Error::Unavailable(NAME))?;
            let mut reception = Reception::new(group, s);
            reception.device_removed = self.deps.this_device_removed.load(std::sync::atomic::Ordering::Relaxed);
            Ok((reception, s.writer.clone(), s.me))
        });
        let (deps, members) = (self.deps.clone(), self.members.clone());
        AtomicResponse::new(Box::pin(
            async move {
                let (mut reception, mut writer, me) = snapshot?;
                let io = Io { group, deps };
                let unsynced = io.receive_batch(&mut reception, msg.entries).await?;
                if let Some(their_name) = reception.contact_joined.take() {
                    // Waits for room in the contact book's mailbox (never
                    // dropped: the contact would stay "request sent"),
                    // without holding this batch up.
                    let joined = io.deps.joined.clone();
                    actix_rt::spawn(async move {
                        if joined.send(ContactJoined { group, display_name: their_name }).await.is_err() {
                            tracing::debug!(actor = NAME, "the contact book is not running");
                        }
                    });
                }
                if let Some((epoch, recipients)) = reception.epoch_to_enter(&writer.epoch) {
                    (writer, _) = enter_epoch(
                        &io.deps,
                        group,
                        &reception.epochs,
                        epoch,
                        &members,
                        recipients,
                        &mut reception.membership,
                        &me,
                    )
                    .await?;
                }
                if reception.must_renew() {
                    // A start this account's removed devices may hold the
                    // secret of: renewed at once, before this device writes.
                    let devices = super::members::remaining_devices(&io.deps.store).await?;
                    let devices = devices.into_iter().map(|(_, agreement)| agreement).collect();
                    let state = (reception.epochs.clone(), reception.membership.clone(), writer);
                    let renewing = super::members::NewEpoch::Renewing(devices);
                    let (epochs, membership, renewed) =
                        super::members::write_epoch_start(&io.deps, group, &members, state, me, renewing).await?;
                    (reception.epochs, reception.membership, writer) = (epochs, membership, renewed);
                }
                let mut receipt = reception.take_receipt();
                receipt.unsynced = unsynced;
                Ok(BatchOutcome { receipt, reception, writer })
            }
            .into_actor(self)
            .guarded_map(NAME, |r: Result<BatchOutcome>, act, ctx| {
                let BatchOutcome { receipt, reception, writer } = r?;
                if let Some(state) = act.state.as_mut() {
                    reception.restore(state);
                    state.writer = writer;
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
