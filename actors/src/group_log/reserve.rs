//! Sending positions reserved ahead of the chain, raised early and synced
//! beside the message path (see `append` for why positions are reserved).
//!
//! A batch that ended past the durable reservation used to raise it and
//! wait for that commit's sync before its push: one batch in
//! `RESERVE_AHEAD`, and every batch behind it, waited a sync (1-8 ms under
//! load at a million entries; the p99 of a conversation). Now the
//! reservation is raised once the chain comes within half of it, in the
//! batch's own transaction, and that commit is synced beside the path like
//! any other (`synced_then_reply`); only then does the raise count as
//! durable. By the time the chain reaches the old reservation the new one
//! is durable, so no batch waits unless a flood outruns the syncs. A log
//! loaded from the store counts nothing past its chain as durable (its last
//! raise may not have been synced before a restart), so its first batch
//! reserves and waits, as before.

/// Positions reserved ahead of the chain at a time.
pub(super) const RESERVE_AHEAD: u64 = 512;

/// Where a log's reservation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Reservation {
    /// Positions below this may be pushed before the commit that stored
    /// them is durable: a durable commit reserved them.
    durable: u64,
    /// The reservation written last, durable or not.
    written: u64,
}

/// What storing a batch does about the reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Plan {
    /// The reservation to write with the batch (never lower than stored).
    pub(super) write: u64,
    /// The batch raises it: once its commit is synced, `write` is durable.
    pub(super) raises: bool,
    /// The batch ends past the durable reservation: its commit must be
    /// synced before it is pushed.
    pub(super) wait: bool,
}

impl Reservation {
    /// A chain at `next` as loaded: nothing past it is known durable.
    pub(super) fn at(next: u64) -> Self {
        Self { durable: next, written: next }
    }

    /// The plan for a batch after which the chain is at `end`.
    pub(super) fn plan(&self, end: u64) -> Plan {
        let raises = end.saturating_add(RESERVE_AHEAD / 2) > self.written;
        let write = if raises { end.saturating_add(RESERVE_AHEAD) } else { self.written };
        Plan { write, raises, wait: end > self.durable }
    }

    /// The reservation once a batch stored under `plan` committed; `synced`:
    /// its commit was synced before the push.
    pub(super) fn stored(self, plan: Plan, synced: bool) -> Self {
        let written = self.written.max(plan.write);
        Self { durable: if synced { written } else { self.durable }, written }
    }

    /// A raise to `up_to` was synced.
    pub(super) fn synced(&mut self, up_to: u64) {
        self.durable = self.durable.max(up_to.min(self.written));
    }

    /// Positions below this may be pushed before their commit is durable.
    #[cfg(test)]
    pub(super) fn durable(&self) -> u64 {
        self.durable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conversation_raises_the_reservation_early_and_never_waits_once_it_is_synced() {
        // Loaded at position 10: the first batch reserves and waits.
        let r = Reservation::at(10);
        let plan = r.plan(11);
        assert_eq!(plan, Plan { write: 11 + RESERVE_AHEAD, raises: true, wait: true });
        let mut r = r.stored(plan, true);
        assert_eq!(r.durable(), 11 + RESERVE_AHEAD);
        // Message after message: no raise, no wait, until within half of it.
        let mut end = 11;
        loop {
            end += 1;
            let plan = r.plan(end);
            assert!(!plan.wait, "inside the durable reservation");
            r = r.stored(plan, false);
            if plan.raises {
                break;
            }
        }
        assert_eq!(end, 11 + RESERVE_AHEAD / 2 + 1, "raised on coming within half of it");
        // Its sync lands beside the path; until then the old one holds.
        assert_eq!(r.durable(), 11 + RESERVE_AHEAD);
        r.synced(end + RESERVE_AHEAD);
        assert_eq!(r.durable(), end + RESERVE_AHEAD);
        assert!(!r.plan(11 + RESERVE_AHEAD + 1).wait, "past the old reservation: no wait");
    }

    #[test]
    fn a_batch_past_an_unsynced_raise_waits_and_nothing_moves_backwards() {
        let mut r = Reservation::at(0).stored(Reservation::at(0).plan(1), true);
        let durable = r.durable();
        // A raise not yet synced, then a flood past the old reservation.
        let raise = r.plan(durable - 10);
        assert!(raise.raises && !raise.wait);
        r = r.stored(raise, false);
        let within = r.plan(durable + 100);
        assert!(within.wait && !within.raises, "inside what was written, past what is durable");
        assert_eq!(r.stored(within, true).durable(), raise.write, "synced: what was written is durable");
        let flood = r.plan(durable + 600);
        assert!(flood.wait && flood.raises, "past both");
        r = r.stored(flood, true);
        assert_eq!(r.durable(), durable + 600 + RESERVE_AHEAD);
        // The earlier raise's sync, landing late, lowers nothing.
        r.synced(raise.write);
        assert_eq!(r.durable(), durable + 600 + RESERVE_AHEAD);
        // Nor does a plan ever write less than was written.
        assert!(r.plan(durable).write >= durable + 600 + RESERVE_AHEAD);
    }

    #[test]
    fn a_sync_counts_only_for_what_was_written() {
        let mut r = Reservation::at(5);
        r.synced(1_000);
        assert_eq!(r.durable(), 5, "nothing past the chain was written");
    }
}
