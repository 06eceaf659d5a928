//! The courier's bookkeeping for the message path: entries pushed from
//! memory as they are written, and acknowledgements recorded in batches.
//!
//! A message used to cost its sender three write transactions besides its
//! append (the push marked it sent; the ack removed it) and one outbox read
//! per push, each an fsync or a round trip on the one writer the appends
//! need. Now the group log writes a contact group's messages with their
//! outbox rows already due only after the resend delay and hands the sealed
//! entries over; the courier pushes them straight from memory and reads the
//! outbox only for what must go again (a new session, a lost connection, a
//! failed push, a resend delay run out). While anything is due there, what
//! is written goes through the outbox too, so nothing overtakes an older
//! entry ([`Lanes`]). Acknowledgements wait a few milliseconds, and while
//! one batch of them is being recorded, and go together in one transaction
//! (see `coalesce`).

use std::collections::HashMap;

use veil_crypto::{
    GroupId,
    envelope::{EntryHash, SealedEntry},
};
use veil_storage::Addressee;
use veil_transports::libp2p::PeerId;

/// Most entries waiting in memory for one peer of one group. Beyond this a
/// peer is far behind: its entries go through the outbox (see [`Lanes`]),
/// at the pace the peer takes them.
pub(crate) const MAX_LIVE: usize = 4096;

/// Most acknowledged hashes waiting to be recorded. Beyond this the courier
/// reads no more frames until the batch being recorded is done.
pub(crate) const MAX_PENDING_ACKS: usize = 65_536;

/// How entries reach one peer of one group.
enum Lane {
    /// Pushed from memory as they are written (these wait for the push
    /// under way to end).
    Live(Vec<(EntryHash, SealedEntry)>),
    /// Read from the outbox, in order, until it holds nothing due: entries
    /// written meanwhile are made due there first (these hashes) rather than
    /// pushed from memory, so none overtakes an older one.
    Outbox(Vec<EntryHash>),
}

/// What the next push to a peer sends.
pub(crate) enum Next {
    /// Entries written lately, from memory; none: what the outbox says is
    /// due (resends).
    Live(Vec<(EntryHash, SealedEntry)>),
    /// What the outbox says is due, once `make_due` are made due.
    Outbox { make_due: Vec<EntryHash> },
}

/// The lane of every peer of every group (none: live, nothing waiting).
#[derive(Default)]
pub(crate) struct Lanes {
    lanes: HashMap<(GroupId, PeerId), Lane>,
}

impl Lanes {
    /// Entries just written, for `peer` in `group`. Past [`MAX_LIVE`]
    /// waiting, the lane turns to the outbox.
    pub(crate) fn add(&mut self, group: GroupId, peer: PeerId, entries: Vec<(EntryHash, SealedEntry)>) {
        let lane = self.lanes.entry((group, peer)).or_insert_with(|| Lane::Live(Vec::new()));
        match lane {
            Lane::Live(queue) if queue.len() + entries.len() <= MAX_LIVE => queue.extend(entries),
            Lane::Live(queue) => {
                let due = queue.drain(..).chain(entries).map(|(hash, _)| hash).collect();
                *lane = Lane::Outbox(due);
            }
            Lane::Outbox(due) => due.extend(entries.into_iter().map(|(hash, _)| hash)),
        }
    }

    /// Entries owed to `peer` are (or are to be made: `unsent`, older than
    /// whatever waits) due in the outbox: a new session, a failed push.
    /// They go from there before anything written later.
    pub(crate) fn through_outbox(&mut self, group: GroupId, peer: PeerId, unsent: Vec<EntryHash>) {
        let lane = self.lanes.entry((group, peer)).or_insert_with(|| Lane::Live(Vec::new()));
        match lane {
            Lane::Live(queue) => {
                let due = unsent.into_iter().chain(queue.drain(..).map(|(hash, _)| hash)).collect();
                *lane = Lane::Outbox(due);
            }
            Lane::Outbox(due) => {
                let later = std::mem::take(due);
                *due = unsent.into_iter().chain(later).collect();
            }
        }
    }

    /// What the next push to `peer` in `group` sends.
    pub(crate) fn next(&mut self, group: GroupId, peer: PeerId) -> Next {
        match self.lanes.get_mut(&(group, peer)) {
            None => Next::Live(Vec::new()),
            Some(Lane::Live(queue)) => Next::Live(std::mem::take(queue)),
            Some(Lane::Outbox(due)) => Next::Outbox { make_due: std::mem::take(due) },
        }
    }

    /// A push through the outbox ended; `drained`: it found less due than
    /// it could take. Back to live pushes if nothing was written
    /// meanwhile; `true` if another push should follow at once.
    pub(crate) fn outbox_pushed(&mut self, group: GroupId, peer: PeerId, drained: bool) -> bool {
        match self.lanes.get_mut(&(group, peer)) {
            Some(lane @ Lane::Outbox(_)) => {
                if drained && matches!(lane, Lane::Outbox(due) if due.is_empty()) {
                    *lane = Lane::Live(Vec::new());
                    false
                } else {
                    true
                }
            }
            _ => false,
        }
    }

    /// Forgets `peer` (it left: everything owed is due in the outbox
    /// again, see `Courier::reschedule`).
    pub(crate) fn forget_peer(&mut self, peer: &PeerId) {
        self.lanes.retain(|(_, p), _| p != peer);
    }

    /// Forgets a group's lanes (it is no longer served).
    pub(crate) fn forget_group(&mut self, group: &GroupId) {
        self.lanes.retain(|(g, _), _| g != group);
    }

    /// Forgets everything (the network restarted).
    pub(crate) fn clear(&mut self) {
        self.lanes.clear();
    }
}

/// One acknowledgement frame: `hashes` of `group`, held by the peer on
/// behalf of `members`.
pub(crate) struct Ack {
    pub group: GroupId,
    pub members: Vec<Addressee>,
    pub hashes: Vec<EntryHash>,
}

/// How long acknowledgements wait to be recorded together. Recording one
/// is a write transaction on the store's one writer, the one a sender's
/// appends need: at 1 000 messages/s, recorded one by one, every append
/// risked waiting behind one (one core: p50 3.5 ms with, 1.4 ms without).
/// Only the `EntriesDelivered` event waits this long; the entries are
/// delivered already.
pub(crate) const ACK_DELAY: std::time::Duration = std::time::Duration::from_millis(10);

/// As many acknowledged hashes as go at once without waiting [`ACK_DELAY`].
pub(crate) const ACK_BATCH: usize = 512;

/// The rows one batch of acknowledgements removes: one `(member, hashes)`
/// per member of each acknowledgement, in order.
pub(crate) fn ack_rows(batch: &[Ack]) -> Vec<(Addressee, Vec<EntryHash>)> {
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
        let sealed = SealedEntry { position: vec![i], header: vec![], body: vec![], tag: [i; 32] };
        (sealed.hash(), sealed)
    }

    fn hashes(entries: &[(EntryHash, SealedEntry)]) -> Vec<EntryHash> {
        entries.iter().map(|(h, _)| *h).collect()
    }

    #[test]
    fn a_lane_stays_live_until_a_peer_falls_behind_then_keeps_order_through_the_outbox() {
        let (group, peer, other) = (GroupId([1; 32]), PeerId::random(), PeerId::random());
        let mut lanes = Lanes::default();
        assert!(matches!(lanes.next(group, peer), Next::Live(e) if e.is_empty()), "nothing waits: resends only");
        let first: Vec<_> = (0..3).map(entry).collect();
        lanes.add(group, peer, first.clone());
        lanes.add(group, other, first.clone());
        match lanes.next(group, peer) {
            Next::Live(e) => assert_eq!(hashes(&e), hashes(&first)),
            Next::Outbox { .. } => panic!("live"),
        }
        // Far behind: what waits and what comes go through the outbox, in order.
        let many: Vec<_> = (0..MAX_LIVE).map(|i| entry(i as u8)).collect();
        lanes.add(group, peer, first.clone());
        lanes.add(group, peer, many.clone());
        let later: Vec<_> = (200..203).map(entry).collect();
        lanes.add(group, peer, later.clone());
        match lanes.next(group, peer) {
            Next::Outbox { make_due } => {
                let expected: Vec<_> = hashes(&first).into_iter().chain(hashes(&many)).chain(hashes(&later)).collect();
                assert_eq!(make_due, expected);
            }
            Next::Live(_) => panic!("through the outbox"),
        }
        // Written while that push ran: the outbox once more, then live again.
        lanes.add(group, peer, later.clone());
        assert!(lanes.outbox_pushed(group, peer, true), "something was written meanwhile");
        assert!(matches!(lanes.next(group, peer), Next::Outbox { make_due } if make_due == hashes(&later)));
        assert!(lanes.outbox_pushed(group, peer, false), "not drained: again at once");
        assert!(matches!(lanes.next(group, peer), Next::Outbox { make_due } if make_due.is_empty()));
        assert!(!lanes.outbox_pushed(group, peer, true), "drained");
        lanes.add(group, peer, first.clone());
        assert!(matches!(lanes.next(group, peer), Next::Live(e) if e.len() == 3));
        // A failed push: its entries first, then what waits.
        lanes.add(group, peer, later.clone());
        lanes.through_outbox(group, peer, hashes(&first));
        let expected: Vec<_> = hashes(&first).into_iter().chain(hashes(&later)).collect();
        assert!(matches!(lanes.next(group, peer), Next::Outbox { make_due } if make_due == expected));
        // The other peer's lane was never touched.
        assert!(matches!(lanes.next(group, other), Next::Live(e) if e.len() == 3));
        lanes.forget_peer(&peer);
        assert!(matches!(lanes.next(group, peer), Next::Live(e) if e.is_empty()));
    }

    #[test]
    fn a_batch_of_acknowledgements_removes_one_row_set_per_member() {
        let ack = |n: u8, members: usize| Ack {
            group: GroupId([n; 32]),
            members: (0..members).map(|m| Addressee([m as u8; 32])).collect(),
            hashes: vec![EntryHash([n; 32])],
        };
        let batch = [ack(2, 2), ack(3, 1)];
        let rows = ack_rows(&batch);
        assert_eq!(rows.len(), 3, "one row set per member");
        let done = delivered(&batch, &[0, 1, 0]);
        assert_eq!(done.iter().map(|a| a.group).collect::<Vec<_>>(), [GroupId([2; 32])]);
    }
}
