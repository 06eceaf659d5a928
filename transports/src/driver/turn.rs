//! The network task's loop: one turn at a time, whatever is ready first,
//! each turn guarded so a panic rebuilds the swarm instead of ending the
//! task.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio::sync::{mpsc, oneshot};

use super::{BATCH, Command, Driver};
use crate::error::Error;
use crate::stream::{Inbound, Stop};

/// How one turn of the network task's loop ended.
enum Turn {
    Go,
    /// Shut down (answering the caller that asked, if any).
    Stop(Option<oneshot::Sender<()>>),
}

/// Panics the task survives: at most [`PanicBudget::MAX`] within
/// [`PanicBudget::WINDOW`]; past that it stops rather than rebuild its
/// swarm yet again (a fault that comes back at once would otherwise spin).
#[derive(Debug, Default)]
pub(super) struct PanicBudget(VecDeque<tokio::time::Instant>);

impl PanicBudget {
    const MAX: usize = 5;
    const WINDOW: Duration = Duration::from_secs(60);

    /// Counts a panic at `now`; `false` once the budget is spent.
    pub(super) fn spend(&mut self, now: tokio::time::Instant) -> bool {
        self.0.retain(|at| now.duration_since(*at) < Self::WINDOW);
        self.0.push_back(now);
        self.0.len() <= Self::MAX
    }
}

impl Driver {
    /// Runs the task until shut down. It is guarded like an actor: a panic
    /// anywhere in a turn (a command, a swarm event, a behaviour's poll)
    /// is caught and the swarm is rebuilt with the same identity, as a
    /// rotation would (pending requests fail with [`Error::Restarted`],
    /// unacknowledged frames are resent by their senders, listeners
    /// reopen); the handle and the event channel carry on.
    pub(crate) async fn run(mut self) {
        let mut inbound = Vec::with_capacity(BATCH);
        let shutdown_reply = loop {
            match AssertUnwindSafe(self.turn(&mut inbound)).catch_unwind().await {
                Ok(Turn::Go) => {}
                Ok(Turn::Stop(reply)) => break reply,
                Err(_) => {
                    // Frames taken but not handled were never acknowledged.
                    inbound.clear();
                    if !self.recover() {
                        break None;
                    }
                }
            }
        };
        self.swarm_state.fail_pending(Stop::Shutdown, || Error::Shutdown);
        self.streams.clear();
        let local = *self.swarm_state.swarm.local_peer_id();
        drop(self);
        tracing::debug!(peer = %local, "network stopped");
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
    }

    /// After a panic: rebuilds the swarm, unless the task keeps panicking.
    /// `false`: the task stops (every call then fails with
    /// [`Error::Shutdown`]).
    fn recover(&mut self) -> bool {
        if !self.panics.spend(tokio::time::Instant::now()) {
            tracing::error!("the network task panicked more than {} times within a minute: it stops", PanicBudget::MAX);
            return false;
        }
        tracing::error!("the network task panicked: its swarm is rebuilt, what was in flight is sent again");
        match self.restart(self.keypair.clone(), self.policy) {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(error = %e, "the network task could not rebuild its swarm: it stops");
                false
            }
        }
    }

    /// One turn of the loop: whatever is ready first.
    async fn turn(&mut self, inbound: &mut Vec<Inbound>) -> Turn {
        // Stop reading from the swarm while the consumer is behind: this
        // is the backpressure (nothing is acknowledged meanwhile).
        let room = self.outbox.len() < self.config.event_capacity;
        let starting = self.swarm_state.starting();
        let expiry = self.swarm_state.swarm.behaviour().discovery.next_deadline();
        tokio::select! {
        command = self.commands.recv(), if !starting => {
            // Take what else is queued too, so a burst of sends costs
            // one swarm poll, not one each.
            let mut command = command;
            for _ in 0..BATCH {
                match command {
                    Some(Command::Shutdown { reply }) => return Turn::Stop(Some(reply)),
                    Some(c) => self.command(c),
                    None => return Turn::Stop(None),
                }
                    command = match self.commands.try_recv() {
                        Ok(c) => Some(c),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => None,
                    };
                }
            },
            // Frames read by the inbound frame streams.
            n = self.inbound_rx.recv_many(inbound, BATCH), if room => {
                for item in inbound.drain(..n) {
                    self.inbound_frame(item);
                }
                self.flush();
            },
            // Room in the event channel again (the permit is released
            // at once; `flush` takes it back).
            open = self.events.reserve().map(|permit| permit.is_ok()), if !self.outbox.is_empty() => {
                if open { self.flush() } else { self.outbox.clear() }
            },
            // Announcements and lookups whose servers did not all answer
            // in time are answered with what came.
            () = until(expiry), if expiry.is_some() => {
                self.swarm_state.swarm.behaviour_mut().discovery.expire(tokio::time::Instant::now());
            },
            // Listeners that never answer do not hold commands for good.
            () = tokio::time::sleep_until(self.swarm_state.starting_until), if starting => {
                self.swarm_state.starting.clear();
                self.started();
            },
            event = self.swarm_state.swarm.select_next_some(), if room => {
                self.swarm_event(event);
                self.flush();
                // Handle whatever else is ready in the same turn.
                for _ in 1..BATCH {
                    if self.outbox.len() >= self.config.event_capacity {
                        break;
                    }
                    match futures::poll!(self.swarm_state.swarm.next()) {
                        std::task::Poll::Ready(Some(event)) => {
                            self.swarm_event(event);
                            self.flush();
                        }
                        _ => break,
                    }
                }
            },
        }
        Turn::Go
    }
}

/// Sleeps until `deadline` (for ever if there is none).
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_task_survives_five_panics_a_minute_and_stops_at_the_sixth() {
        let start = tokio::time::Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut budget = PanicBudget::default();
        for i in 0..5 {
            assert!(budget.spend(at(i * 1000)), "panic {i}");
        }
        assert!(!budget.spend(at(5000)), "the sixth within the minute");

        let mut budget = PanicBudget::default();
        for i in 0..5 {
            assert!(budget.spend(at(i * 1000)));
        }
        // The first has left the window by then.
        assert!(budget.spend(at(60_000)));
        assert!(budget.spend(at(61_000 + 1)), "the second has left too");
        assert!(!budget.spend(at(61_500)));
    }
}
