//! A group's history as this device reads and keeps it: pages of it,
//! the read position, and erasing it (at once, or past a retention period).
//! The log is the only writer of its group's entries; these handlers are
//! the reading side and the erasing side.

use std::{collections::HashMap, time::Duration};

use actix::{Handler, ResponseActFuture, ResponseFuture, WrapFuture};
use veil_crypto::{
    VerifyKey,
    envelope::{EntryHash, EntryKind},
    time::UnixTime,
};

use super::{GroupLog, NAME};
use crate::{
    Result,
    messages::group::{
        ApplyRetention, ForgetHistory, GetEntry, GetHistory, GetUnread, HistoryEntry, MarkRead, Page, SetRetention,
    },
};

impl GroupLog {
    /// The devices this member announced in the group's log (none before
    /// the log is loaded).
    fn own_devices(&self) -> Vec<VerifyKey> {
        self.state.as_ref().map(|s| s.membership.devices_of(&s.me)).unwrap_or_default()
    }
}

impl Handler<MarkRead> for GroupLog {
    type Result = ResponseFuture<Result<()>>;

    fn handle(&mut self, msg: MarkRead, _: &mut Self::Context) -> Self::Result {
        let (store, group) = (self.deps.store.clone(), self.group);
        Box::pin(async move {
            let up_to = match msg.up_to {
                Some(position) => Some(position),
                None => {
                    let latest = store.entries_before(&group, EntryKind::Message, None, 1).await?;
                    latest.first().map(|e| (e.lamport, e.hash))
                }
            };
            if let Some(position) = up_to {
                store.mark_read(&group, position).await?;
            }
            Ok(())
        })
    }
}

impl Handler<GetUnread> for GroupLog {
    type Result = ResponseFuture<Result<u64>>;

    fn handle(&mut self, _: GetUnread, _: &mut Self::Context) -> Self::Result {
        let (store, group, own) = (self.deps.store.clone(), self.group, self.own_devices());
        Box::pin(async move { Ok(store.unread_count(&group, &own).await?) })
    }
}

impl Handler<GetHistory> for GroupLog {
    type Result = ResponseActFuture<Self, Result<Vec<HistoryEntry>>>;

    fn handle(&mut self, msg: GetHistory, _: &mut Self::Context) -> Self::Result {
        let (store, group, members) = (self.deps.store.clone(), self.group, self.members.clone());
        // The devices this member announced in the log.
        let own = self.own_devices();
        Box::pin(
            async move {
                let entry = |e| history_entry(e, &own);
                // Entries stored unread (before this member's time) are not
                // part of its history: read on until the page is full.
                let (limit, mut out) = (msg.limit as usize, Vec::new());
                match msg.page {
                    Page::After(mut after) => {
                        while out.len() < limit {
                            let page = store.entries_after(&group, EntryKind::Message, after, msg.limit).await?;
                            let short = page.len() < limit;
                            after = page.last().map(|e| (e.lamport, e.hash));
                            out.extend(page.into_iter().filter_map(entry));
                            if short {
                                break;
                            }
                        }
                        out.truncate(limit);
                    }
                    Page::Before(mut before) => {
                        while out.len() < limit {
                            let page = store.entries_before(&group, EntryKind::Message, before, msg.limit).await?;
                            let short = page.len() < limit;
                            before = page.first().map(|e| (e.lamport, e.hash));
                            let mut older: Vec<HistoryEntry> = page.into_iter().filter_map(entry).collect();
                            older.append(&mut out);
                            out = older;
                            if short {
                                break;
                            }
                        }
                        out.drain(..out.len().saturating_sub(limit));
                    }
                }
                with_delivery(&store, &members, &mut out).await?;
                Ok(out)
            }
            .into_actor(self),
        )
    }
}

impl Handler<GetEntry> for GroupLog {
    type Result = ResponseFuture<Result<Option<HistoryEntry>>>;

    fn handle(&mut self, GetEntry { hash }: GetEntry, _: &mut Self::Context) -> Self::Result {
        let (store, group, members, own) =
            (self.deps.store.clone(), self.group, self.members.clone(), self.own_devices());
        Box::pin(async move {
            // Of this group's log, and a message.
            if !store.positions(&group, &[hash]).await?.iter().any(|(_, kind, _)| *kind == EntryKind::Message) {
                return Ok(None);
            }
            let Some(entry) = store.entry(&hash).await?.and_then(|e| history_entry(e, &own)) else { return Ok(None) };
            let mut out = vec![entry];
            with_delivery(&store, &members, &mut out).await?;
            Ok(out.pop())
        })
    }
}

/// A stored message as history shows it, before its delivery is filled in
/// (none if its payload is gone). `own`: this member's devices.
fn history_entry(e: veil_storage::EntryRecord, own: &[VerifyKey]) -> Option<HistoryEntry> {
    Some(HistoryEntry {
        hash: e.hash,
        author: e.author,
        mine: e.author.as_ref().is_some_and(|a| own.contains(a)),
        owed_to: 0,
        waiting_for: 0,
        lamport: e.lamport,
        payload: e.payload?.to_vec(),
    })
}

/// Fills in the delivery of this member's messages among `entries`: who
/// has not acknowledged them yet.
async fn with_delivery(
    store: &veil_storage::Store,
    members: &[veil_storage::Addressee],
    entries: &mut [HistoryEntry],
) -> Result<()> {
    let mine: Vec<EntryHash> = entries.iter().filter(|e| e.mine).map(|e| e.hash).collect();
    let waiting: HashMap<EntryHash, u32> = store.owed_counts(members, &mine).await?.into_iter().collect();
    let owed_to = u32::try_from(members.len()).unwrap_or(u32::MAX);
    for e in entries.iter_mut().filter(|e| e.mine) {
        e.owed_to = owed_to;
        e.waiting_for = waiting.get(&e.hash).copied().unwrap_or(0);
    }
    Ok(())
}

impl Handler<ForgetHistory> for GroupLog {
    type Result = ResponseFuture<Result<u64>>;

    fn handle(&mut self, _: ForgetHistory, _: &mut Self::Context) -> Self::Result {
        let (store, group) = (self.deps.store.clone(), self.group);
        Box::pin(async move { Ok(store.forget_messages(&group, None).await?) })
    }
}

impl Handler<SetRetention> for GroupLog {
    type Result = ResponseFuture<Result<()>>;

    fn handle(&mut self, SetRetention { keep, now }: SetRetention, _: &mut Self::Context) -> Self::Result {
        let (store, group) = (self.deps.store.clone(), self.group);
        Box::pin(async move {
            store.set_retention(&group, keep).await?;
            if let Some(keep) = keep {
                store.forget_messages(&group, Some(cutoff(now, keep))).await?;
            }
            Ok(())
        })
    }
}

impl Handler<ApplyRetention> for GroupLog {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, ApplyRetention { now }: ApplyRetention, _: &mut Self::Context) -> Self::Result {
        let (store, group) = (self.deps.store.clone(), self.group);
        Box::pin(async move {
            let keep = match store.retention_of(&group).await {
                Ok(Some(keep)) => keep,
                Ok(None) => return,
                Err(e) => return tracing::warn!(actor = NAME, error = %e, "cannot read the retention period"),
            };
            match store.forget_messages(&group, Some(cutoff(now, keep))).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(actor = NAME, erased = n, "messages past their retention erased"),
                Err(e) => tracing::warn!(actor = NAME, error = %e, "cannot erase messages past their retention"),
            }
        })
    }
}

/// What is older than this at `now` is past a retention of `keep`.
fn cutoff(now: UnixTime, keep: Duration) -> UnixTime {
    UnixTime(now.0.saturating_sub(keep.as_secs()))
}
