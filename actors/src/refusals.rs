//! What the node refused from the network since it started, counted where
//! it is refused (the courier for frames, the group logs for entries, the
//! contact book for contact requests), so a flood that outruns the event
//! channel is still counted in full. `veil status` shows the counts.

use std::sync::atomic::{AtomicU64, Ordering};

/// The counters, shared by the actors that refuse.
#[derive(Debug, Default)]
pub(crate) struct RefusalCounters {
    frames: AtomicU64,
    entries: AtomicU64,
    contact_requests: AtomicU64,
}

/// What the node refused since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refusals {
    /// Frames dropped whole: not a group frame, or over a limit.
    pub frames: u64,
    /// Entries refused for good: forged, unreadable, not a member's.
    pub entries: u64,
    /// Contact-protocol messages answered with nothing: malformed, without
    /// a valid point proof, or finishing no handshake in progress.
    pub contact_requests: u64,
}

impl RefusalCounters {
    /// Counts a frame dropped whole because it did not decode as a group frame.
    pub(crate) fn frame(&self) {
        self.frames.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an entry refused for good (forged, unreadable, not a member's); held-back entries are not counted.
    pub(crate) fn entry(&self) {
        self.entries.fetch_add(1, Ordering::Relaxed);
    }

    /// A contact-protocol message was refused.
    pub(crate) fn contact_request(&self) {
        self.contact_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts since the node started; each is read on its own, so the three need not be from one instant.
    pub(crate) fn snapshot(&self) -> Refusals {
        Refusals {
            frames: self.frames.load(Ordering::Relaxed),
            entries: self.entries.load(Ordering::Relaxed),
            contact_requests: self.contact_requests.load(Ordering::Relaxed),
        }
    }
}
