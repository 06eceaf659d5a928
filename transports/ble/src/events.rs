//! What the BLE transports owe the swarm between two polls: the events
//! their listeners produced outside `poll` (a new address, a listener
//! closed), and the waker to call when there are some.

use std::{
    collections::VecDeque,
    io,
    task::{Context, Waker},
};

use libp2p::core::transport::{ListenerId, TransportEvent};

/// Events waiting for the next `poll`, and whom to wake for them.
pub(crate) struct Owed<U> {
    events: VecDeque<TransportEvent<U, io::Error>>,
    waker: Option<Waker>,
}

impl<U> Default for Owed<U> {
    fn default() -> Self {
        Self { events: VecDeque::new(), waker: None }
    }
}

impl<U> Owed<U> {
    /// Queues `event` and wakes the swarm.
    pub(crate) fn push(&mut self, event: TransportEvent<U, io::Error>) {
        self.events.push_back(event);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Takes the oldest queued event, for the transport's `poll` to return.
    pub(crate) fn pop(&mut self) -> Option<TransportEvent<U, io::Error>> {
        self.events.pop_front()
    }

    /// Nothing to report now: wake `cx` when there is.
    pub(crate) fn park(&mut self, cx: &Context<'_>) {
        self.waker = Some(cx.waker().clone());
    }

    /// Removes the listener `id` from `listeners` (each knowing its id) and
    /// reports it closed; `false` if there was none.
    pub(crate) fn remove<L>(
        &mut self,
        listeners: &mut Vec<L>,
        id: ListenerId,
        id_of: impl Fn(&L) -> ListenerId,
    ) -> bool {
        let before = listeners.len();
        listeners.retain(|l| id_of(l) != id);
        if listeners.len() == before {
            return false;
        }
        self.push(TransportEvent::ListenerClosed { listener_id: id, reason: Ok(()) });
        true
    }
}
