//! Work gathered for a few milliseconds and done in one go, one go at a
//! time: the courier records the acknowledgements it gets this way (one
//! write transaction for many), and sends the ones it owes (one fsync and
//! one frame for many).
//!
//! The first item to arrive starts a wait; what arrived by its end goes
//! together, or at once when it weighs enough. While one go is under way
//! the next items wait for it to end, so under load each go takes
//! whatever piled up meanwhile, with no wait of its own.

/// Where the wait for more items stands.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Delay {
    /// Not started: the next item starts it.
    #[default]
    Idle,
    /// Under way.
    Running,
    /// Over: what waits goes.
    Over,
}

/// What to do with the items waiting.
pub(crate) enum Due<T> {
    /// Do these now (the go is under way until [`Coalesced::done`]).
    Now(Vec<T>),
    /// Wait a little for more, then call [`Coalesced::waited`] and ask again.
    AfterDelay,
    /// Nothing now (nothing waits, a go is under way, or the wait is).
    Nothing,
}

/// Items waiting to be dealt with together.
pub(crate) struct Coalesced<T> {
    waiting: Vec<T>,
    /// The weight of what waits (hashes, not frames).
    weight: usize,
    /// At this weight what waits goes without waiting out the delay.
    enough: usize,
    /// A go is under way: set when [`Due::Now`] hands items out, cleared by [`Coalesced::done`]; nothing goes
    /// meanwhile.
    busy: bool,
    delay: Delay,
}

impl<T> Coalesced<T> {
    /// Nothing waiting; what weighs `enough` goes without waiting.
    pub(crate) fn new(enough: usize) -> Self {
        Self { waiting: Vec::new(), weight: 0, enough, busy: false, delay: Delay::Idle }
    }

    /// Adds an item of `weight`.
    pub(crate) fn add(&mut self, item: T, weight: usize) {
        self.weight = self.weight.saturating_add(weight);
        self.waiting.push(item);
    }

    /// The weight of what waits (not of the go under way).
    pub(crate) fn weight(&self) -> usize {
        self.weight
    }

    /// What to do next: the items waiting (marked under way) when the wait
    /// is over or they weigh enough, else start the wait.
    pub(crate) fn next_step(&mut self) -> Due<T> {
        if self.busy || self.waiting.is_empty() {
            return Due::Nothing;
        }
        match self.delay {
            _ if self.weight >= self.enough => {}
            Delay::Over => {}
            Delay::Running => return Due::Nothing,
            Delay::Idle => {
                self.delay = Delay::Running;
                return Due::AfterDelay;
            }
        }
        self.busy = true;
        self.weight = 0;
        self.delay = Delay::Idle;
        Due::Now(std::mem::take(&mut self.waiting))
    }

    /// The wait started by [`Due::AfterDelay`] is over.
    pub(crate) fn waited(&mut self) {
        if self.delay == Delay::Running {
            self.delay = Delay::Over;
        }
    }

    /// The go under way ended; call it whatever the outcome, or nothing waiting ever goes.
    pub(crate) fn done(&mut self) {
        self.busy = false;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn went(due: Due<u8>) -> Vec<u8> {
        match due {
            Due::Now(items) => items,
            Due::AfterDelay => panic!("waits"),
            Due::Nothing => panic!("does nothing"),
        }
    }

    #[test]
    fn items_wait_a_little_and_while_a_go_is_under_way_then_go_together() {
        let mut items = Coalesced::new(10);
        assert!(matches!(items.next_step(), Due::Nothing), "nothing waits");
        items.add(1, 1);
        assert!(matches!(items.next_step(), Due::AfterDelay), "a lone item waits for others");
        assert!(matches!(items.next_step(), Due::Nothing), "one wait at a time");
        items.add(4, 1);
        items.waited();
        assert_eq!(went(items.next_step()), [1, 4]);
        items.add(2, 2);
        items.add(3, 1);
        assert!(matches!(items.next_step(), Due::Nothing), "one go at a time");
        items.done();
        assert!(matches!(items.next_step(), Due::AfterDelay), "a new wait for the next go");
        items.waited();
        assert_eq!(went(items.next_step()), [2, 3]);
        items.done();
        assert!(matches!(items.next_step(), Due::Nothing));
    }

    #[test]
    fn enough_weight_goes_at_once() {
        let mut items = Coalesced::new(10);
        items.add(0, 10);
        assert_eq!(went(items.next_step()), [0], "no wait");
        items.done();
        items.add(1, 1);
        assert!(matches!(items.next_step(), Due::AfterDelay));
        items.add(2, 9);
        assert_eq!(went(items.next_step()), [1, 2], "enough while waiting: at once");
        items.done();
        items.waited();
        assert!(matches!(items.next_step(), Due::Nothing), "the old wait ends with nothing waiting");
    }

    #[test]
    fn the_weight_counts_what_waits_not_what_is_under_way() {
        let mut items = Coalesced::new(10);
        items.add(0, 25);
        assert_eq!(items.weight(), 25);
        went(items.next_step());
        assert_eq!(items.weight(), 0, "the go under way no longer counts");
        items.add(1, usize::MAX);
        items.add(2, 1);
        assert_eq!(items.weight(), usize::MAX, "saturates");
    }
}
