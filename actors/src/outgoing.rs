//! The courier's bookkeeping for the message path: entries pushed from
//! memory as they are written, and acknowledgements recorded in batches.
//!
//! A message used to cost its sender three write transactions besides its
//! append (the push marked it sent; the ack removed it) and one outbox read
//! per push, each an fsync or a round trip on the one writer the appends
//! need. Now the group log writes a contact group's messages with their
//! outbox rows already due only after the resend delay and hands the sealed
//! entries over; the courier pushes them straight from memory
//! ([`LiveQueue`]) and reads the outbox only for what must go again (a new
//! session, a lost connection, a resend delay run out). Acknowledgements
//! that arrive while one batch of them is being recorded wait and go
//! together in the next transaction ([`PendingAcks`]).

use std::collections::HashMap;

use veil_crypto::{
    GroupId,
    envelope::{EntryHash, SealedEntry},
};
use veil_storage::Peer;
use veil_transports::libp2p::PeerId;

/// Most entries waiting in memory for one peer of one group. Beyond this a
/// peer is far behind: the rest are made due in the outbox instead, and go
/// from there at the pace the peer takes them.
pub(crate) const MAX_LIVE: usize = 4096;

/// Most acknowledged hashes waiting to be recorded. Beyond this the courier
/// reads no more frames until the batch being recorded is done.
pub(crate) const MAX_PENDING_ACKS: usize = 65_536;

/// Entries written while a push to their peer was under way, waiting for
/// the next push.
#[derive(Default)]
pub(crate) struct LiveQueue {
    queues: HashMap<(GroupId, PeerId), Vec<(EntryHash, SealedEntry)>>,
}

impl LiveQueue {
    /// Queues `entries` for `peer` in `group`; returns the hashes of those
    /// that did not fit (to be made due in the outbox).
    pub(crate) fn add(&mut self, group: GroupId, peer: PeerId, entries: &[(EntryHash, SealedEntry)]) -> Vec<EntryHash> {
        let queue = self.queues.entry((group, peer)).or_default();
        let room = MAX_LIVE.saturating_sub(queue.len()).min(entries.len());
        queue.extend_from_slice(&entries[..room]);
        entries[room..].iter().map(|(hash, _)| *hash).collect()
    }

    /// Everything waiting for `peer` in `group`, oldest first.
    pub(crate) fn take(&mut self, group: GroupId, peer: PeerId) -> Vec<(EntryHash, SealedEntry)> {
        self.queues.remove(&(group, peer)).unwrap_or_default()
    }

    /// Forgets what waits for `peer` (it left: its entries are due in the
    /// outbox again, see `Courier::reschedule`).
    pub(crate) fn forget_peer(&mut self, peer: &PeerId) {
        self.queues.retain(|(_, p), _| p != peer);
    }

    /// Forgets everything (the network restarted).
    pub(crate) fn clear(&mut self) {
        self.queues.clear();
    }
}

/// One acknowledgement frame: `hashes` of `group`, held by the peer on
/// behalf of `members`.
pub(crate) struct Ack {
    pub group: GroupId,
    pub members: Vec<Peer>,
    pub hashes: Vec<EntryHash>,
}

/// Acknowledgements waiting to be recorded.
#[derive(Default)]
pub(crate) struct PendingAcks {
    waiting: Vec<Ack>,
    hashes: usize,
    /// A batch is being recorded.
    recording: bool,
}

impl PendingAcks {
    /// Adds an acknowledgement; `true` if a batch should start now (none
    /// is being recorded).
    pub(crate) fn add(&mut self, ack: Ack) -> bool {
        self.hashes += ack.hashes.len();
        self.waiting.push(ack);
        !self.recording
    }

    /// Whether the waiting acknowledgements hold as many hashes as allowed.
    pub(crate) fn full(&self) -> bool {
        self.hashes >= MAX_PENDING_ACKS
    }

    /// The next batch to record, if any is waiting and none is being
    /// recorded; marks it being recorded.
    pub(crate) fn next_batch(&mut self) -> Option<Vec<Ack>> {
        if self.recording || self.waiting.is_empty() {
            return None;
        }
        self.recording = true;
        self.hashes = 0;
        Some(std::mem::take(&mut self.waiting))
    }

    /// The batch being recorded is done.
    pub(crate) fn recorded(&mut self) {
        self.recording = false;
    }
}

/// The rows one batch of acknowledgements removes: one `(member, hashes)`
/// per member of each acknowledgement, in order.
pub(crate) fn ack_rows(batch: &[Ack]) -> Vec<(Peer, Vec<EntryHash>)> {
    batch.iter().flat_map(|ack| ack.members.iter().map(|m| (*m, ack.hashes.clone()))).collect()
}

/// Which acknowledgements of `batch` removed something, given the rows
/// removed per [`ack_rows`] entry.
pub(crate) fn delivered<'a>(batch: &'a [Ack], removed: &[u64]) -> Vec<&'a Ack> {
    let mut removed = removed.iter();
    batch
        .iter()
        .filter(|ack| ack.members.iter().map(|_| removed.next().copied().unwrap_or(0)).sum::<u64>() > 0)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(i: u8) -> (EntryHash, SealedEntry) {
        let sealed = SealedEntry { links: vec![i], header: vec![], body: vec![], tag: [i; 32] };
        (sealed.hash(), sealed)
    }

    #[test]
    fn a_live_queue_keeps_order_and_hands_back_what_does_not_fit() {
        let (group, peer, other) = (GroupId([1; 32]), PeerId::random(), PeerId::random());
        let mut live = LiveQueue::default();
        let first: Vec<_> = (0..3).map(entry).collect();
        assert!(live.add(group, peer, &first).is_empty());
        let many: Vec<_> = (0..MAX_LIVE).map(|i| entry(i as u8)).collect();
        let over = live.add(group, peer, &many);
        assert_eq!(over.len(), 3, "room for MAX_LIVE in all");
        assert_eq!(over, many[MAX_LIVE - 3..].iter().map(|(h, _)| *h).collect::<Vec<_>>());
        assert!(live.add(group, other, &first).is_empty(), "each peer has its own room");
        let taken = live.take(group, peer);
        assert_eq!(taken.len(), MAX_LIVE);
        assert_eq!(
            taken[..3].iter().map(|(h, _)| *h).collect::<Vec<_>>(),
            first.iter().map(|(h, _)| *h).collect::<Vec<_>>()
        );
        assert!(live.take(group, peer).is_empty());
        live.forget_peer(&other);
        assert!(live.take(group, other).is_empty());
    }

    #[test]
    fn acknowledgements_arriving_while_a_batch_is_recorded_form_the_next() {
        let mut acks = PendingAcks::default();
        let ack = |n: u8, members: usize| Ack {
            group: GroupId([n; 32]),
            members: (0..members).map(|m| Peer([m as u8; 32])).collect(),
            hashes: vec![EntryHash([n; 32])],
        };
        assert!(acks.add(ack(1, 1)), "nothing is being recorded: start");
        let first = acks.next_batch().unwrap();
        assert_eq!(first.len(), 1);
        assert!(!acks.add(ack(2, 2)), "one is being recorded: wait");
        assert!(!acks.add(ack(3, 1)));
        assert!(acks.next_batch().is_none(), "one batch at a time");
        acks.recorded();
        let second = acks.next_batch().unwrap();
        assert_eq!(second.iter().map(|a| a.group).collect::<Vec<_>>(), [GroupId([2; 32]), GroupId([3; 32])]);
        let rows = ack_rows(&second);
        assert_eq!(rows.len(), 3, "one row set per member");
        let done = delivered(&second, &[0, 1, 0]);
        assert_eq!(done.iter().map(|a| a.group).collect::<Vec<_>>(), [GroupId([2; 32])]);
        acks.recorded();
        assert!(acks.next_batch().is_none());
    }

    #[test]
    fn pending_acknowledgements_are_bounded() {
        let mut acks = PendingAcks::default();
        let hashes = vec![EntryHash([0; 32]); MAX_PENDING_ACKS];
        acks.add(Ack { group: GroupId([0; 32]), members: vec![], hashes });
        assert!(acks.full());
        acks.next_batch().unwrap();
        assert!(!acks.full(), "the batch being recorded no longer counts");
    }
}
