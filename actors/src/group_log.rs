//! `GroupLog`: one actor per group, owning the group's logs. It seals new
//! entries with the group's keys and this device's ratchet (the signature is
//! asked of the vault), and stores each with its ratchet state in one
//! transaction. Sync with members fills in later.

use std::sync::Arc;

use actix::{
    Actor, ActorFutureExt, AtomicResponse, Context, Handler, Recipient, ResponseActFuture, Supervised, WrapFuture,
};
use tokio::sync::broadcast;
use veil_crypto::{
    GroupId, GroupKeys, OsEntropy, SenderChain,
    envelope::{BodyKey, EntryHash, EntryKind, Links, begin_entry},
};
use veil_storage::{NewEntry, RatchetUpdate, Store};

use crate::{
    Error, NodeEvent, Result,
    messages::{
        group::{AppendMessage, GetHistory, HistoryEntry},
        vault::{GetDeviceKey, SignAsDevice},
    },
    supervision::{guarded, load_state, mailbox},
};
use std::rc::Rc;

const NAME: &str = "group-log";

struct Loaded {
    keys: GroupKeys,
    chain: SenderChain,
    heads: Vec<EntryHash>,
    lamport: u64,
}

/// The logs of one group.
pub struct GroupLog {
    group: GroupId,
    store: Arc<Store>,
    device: Recipient<GetDeviceKey>,
    signer: Recipient<SignAsDevice>,
    events: broadcast::Sender<NodeEvent>,
    state: Option<Loaded>,
}

impl core::fmt::Debug for GroupLog {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GroupLog").field("group", &self.group).finish_non_exhaustive()
    }
}

impl GroupLog {
    /// The log actor of `group`, signing through the vault.
    pub fn new(
        group: GroupId,
        store: Arc<Store>,
        device: Recipient<GetDeviceKey>,
        signer: Recipient<SignAsDevice>,
        events: broadcast::Sender<NodeEvent>,
    ) -> Self {
        Self { group, store, device, signer, events, state: None }
    }
}

/// Rebuilds the in-memory view from storage: keys, this device's chain
/// (created on first use), heads and the next Lamport clock.
async fn load(store: Arc<Store>, group: GroupId) -> Result<Loaded> {
    let record = store.group(&group).await?.ok_or(Error::UnknownGroup)?;
    let keys = GroupKeys::derive(&record.secret);
    let chain = match store.sender_chain(&group).await? {
        Some(state) => SenderChain::from_state(state),
        None => {
            let chain = SenderChain::generate(&mut OsEntropy)?;
            store.save_sender_chain(&group, chain.state()).await?;
            chain
        }
    };
    let heads = store.heads(&group, EntryKind::Message).await?;
    let mut lamport = 0;
    for h in &heads {
        if let Some(e) = store.entry(h).await? {
            lamport = lamport.max(e.lamport);
        }
    }
    Ok(Loaded { keys, chain, heads, lamport })
}

impl Actor for GroupLog {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        load_state(
            NAME,
            self,
            ctx,
            Rc::new(|act: &Self| Box::pin(load(act.store.clone(), act.group))),
            Rc::new(|act: &mut Self, loaded| act.state = Some(loaded)),
            0,
        );
    }
}

impl Supervised for GroupLog {
    fn restarting(&mut self, _: &mut Self::Context) {
        tracing::warn!(actor = NAME, "restarting; reloading the group from storage");
        self.state = None;
    }
}

impl Handler<AppendMessage> for GroupLog {
    // Atomic: appends are sealed and stored one after another, in order.
    type Result = AtomicResponse<Self, Result<EntryHash>>;

    fn handle(&mut self, msg: AppendMessage, ctx: &mut Self::Context) -> Self::Result {
        let group = self.group;
        let (store, device, signer, events) =
            (self.store.clone(), self.device.clone(), self.signer.clone(), self.events.clone());
        // Seal on a copy of the chain: the actor's chain only moves once the
        // entry (and the chain state with it) is stored.
        let prepared = guarded(NAME, ctx, || {
            let state = self.state.as_ref().ok_or(Error::Unavailable(NAME))?;
            let links = Links { kind: EntryKind::Message, lamport: state.lamport + 1, parents: state.heads.clone() };
            Ok((state.keys.clone(), state.chain.clone(), links))
        });
        AtomicResponse::new(Box::pin(
            async move {
                let (keys, mut chain, links) = prepared?;
                let author = device.send(GetDeviceKey { group }).await.map_err(mailbox("identity-vault"))??;
                let pending =
                    begin_entry(&keys, &author, &links, BodyKey::Message(&mut chain), &msg.payload, &mut OsEntropy)?;
                let signature = signer
                    .send(SignAsDevice { group, message: pending.to_sign().to_vec() })
                    .await
                    .map_err(mailbox("identity-vault"))??;
                let entry = pending.finish(&keys, signature, &mut OsEntropy)?;
                store
                    .append(NewEntry {
                        group,
                        entry: &entry,
                        links: &links,
                        author: Some(author),
                        payload: Some(&msg.payload),
                        ratchet: Some(RatchetUpdate::Sender(chain.state())),
                        outbox: &[],
                    })
                    .await?;
                let hash = entry.hash();
                // No subscriber is fine; a lagging one sees `Lagged`.
                let _ = events.send(NodeEvent::EntryAdded { group, hash });
                Ok((hash, chain, links.lamport))
            }
            .into_actor(self)
            .map(|r: Result<(EntryHash, SenderChain, u64)>, act, _| {
                let (hash, chain, lamport) = r?;
                if let Some(state) = act.state.as_mut() {
                    state.chain = chain;
                    state.heads = vec![hash];
                    state.lamport = lamport;
                }
                Ok(hash)
            }),
        ))
    }
}

impl Handler<GetHistory> for GroupLog {
    type Result = ResponseActFuture<Self, Result<Vec<HistoryEntry>>>;

    fn handle(&mut self, msg: GetHistory, _: &mut Self::Context) -> Self::Result {
        let (store, group) = (self.store.clone(), self.group);
        Box::pin(
            async move {
                let entries = store.entries_after(&group, EntryKind::Message, msg.after, msg.limit).await?;
                Ok(entries
                    .into_iter()
                    .map(|e| HistoryEntry {
                        hash: e.hash,
                        author: e.author,
                        lamport: e.lamport,
                        payload: e.payload.map(|p| p.to_vec()).unwrap_or_default(),
                    })
                    .collect())
            }
            .into_actor(self),
        )
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<crate::messages::InjectPanic> for GroupLog {
    type Result = Result<()>;

    fn handle(&mut self, _: crate::messages::InjectPanic, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || panic!("injected fault"))
    }
}
