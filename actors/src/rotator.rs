//! The `RendezvousRotator`: knows every rendezvous point this node must
//! announce or look up, and tells its subscribers when they change.
//!
//! What to watch is derived from storage (own link if enabled, every group,
//! every contact we are still sending a request to), so a restarted rotator
//! rebuilds the same schedule. Time comes from the injected clock; the
//! rotator re-checks it every `check_every`, so a test clock that jumps is
//! noticed within one check.

use crate::supervision::GuardedMap;
use crate::supervision::GuardedTimers;
use crate::time::{Time, TokioTimers};
use std::{collections::HashMap, sync::Arc, time::Duration};

use actix::{Actor, Context, Handler, Recipient, ResponseActFuture, Supervised, WrapFuture};
use veil_crypto::{
    GroupKeys, RendezvousSeed,
    rendezvous::{ActivePoints, Schedule, Topic},
    time::Clock,
};
use veil_storage::{ContactState, Store};

use crate::{
    Result,
    messages::rendezvous::{GetActivePoints, PeriodStarted, PointsRotated, Refresh, Subscribe, WatchKey},
    point_clock::PointClock,
    supervision::{guarded, load_state},
};
use std::rc::Rc;

const NAME: &str = "rendezvous-rotator";

struct Watched {
    topic: Topic,
    seed: RendezvousSeed,
    last: Option<ActivePoints>,
}

/// Computes rendezvous points and announces their rotation.
pub struct RendezvousRotator {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    schedule: Schedule,
    check_every: Duration,
    watches: HashMap<WatchKey, Watched>,
    subscribers: Vec<Recipient<PointsRotated>>,
    /// Told when a new period starts, in the check that tells the
    /// subscribers its points.
    periods: Option<Recipient<PeriodStarted>>,
    /// The period subscriber takes a new peer id at every period start.
    new_peer_id_each_period: bool,
    /// The number of the period the last check ran in (`None` before the first and after a restart); a change starts a
    /// period.
    period: Option<u64>,
    /// The time points are computed for (the clock's, unless it went back).
    points_clock: Arc<PointClock>,
    /// Its interval's time.
    time: Time,
}

impl core::fmt::Debug for RendezvousRotator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RendezvousRotator").field("watches", &self.watches.len()).finish_non_exhaustive()
    }
}

impl RendezvousRotator {
    /// A rotator; `subscribers` receive every [`PointsRotated`].
    pub fn new(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        schedule: Schedule,
        check_every: Duration,
        subscribers: Vec<Recipient<PointsRotated>>,
    ) -> Self {
        let points_clock = Arc::new(PointClock::new(clock.clone(), schedule.period()));
        Self {
            store,
            clock,
            schedule,
            check_every,
            watches: HashMap::new(),
            subscribers,
            periods: None,
            new_peer_id_each_period: false,
            period: None,
            points_clock,
            time: Arc::new(TokioTimers),
        }
    }

    /// Computes points at the time of `points_clock`, shared with whoever
    /// else computes them (the contact book).
    pub(crate) fn with_points_clock(mut self, points_clock: Arc<PointClock>) -> Self {
        self.points_clock = points_clock;
        self
    }

    /// Where it reads the time for its interval (default: the machine's).
    pub fn with_time(mut self, time: Time) -> Self {
        self.time = time;
        self
    }

    /// Also tells `to` when each new period starts; `new_peer_id` says it
    /// takes a new peer id then.
    pub(crate) fn with_period_subscriber(mut self, to: Recipient<PeriodStarted>, new_peer_id: bool) -> Self {
        self.periods = Some(to);
        self.new_peer_id_each_period = new_peer_id;
        self
    }

    /// Recomputes every watch's points and notifies the changed ones; at a
    /// boundary, tells the period subscriber too. When the period brings a
    /// new peer id, the new points are flagged `awaits_new_peer_id`: they
    /// are announced only once the network restarted under it, never under
    /// the old id (which would let a rendezvous server link the two). Both
    /// notices leave in this one synchronous step, so every subscriber has
    /// the new points in its mailbox before the restart can be reported.
    fn check(&mut self) {
        let (now, held) = self.points_clock.now();
        if held {
            tracing::debug!(actor = NAME, "the clock is back in a period already left: points held");
            // No period start either: the network keeps its peer id.
            self.notify_points(now, false);
            return;
        }
        let period = now.0 / self.schedule.period();
        let mut awaits_new_peer_id = false;
        if self.period.is_some_and(|p| p != period)
            && let Some(to) = &self.periods
        {
            if to.try_send(PeriodStarted { period }).is_ok() {
                awaits_new_peer_id = self.new_peer_id_each_period;
            } else {
                tracing::warn!(actor = NAME, "the period subscriber missed a period start");
            }
        }
        self.period = Some(period);
        if self.points_clock.announced(now) {
            // Kept so a restarted node never brings this period back.
            let (points_clock, store) = (self.points_clock.clone(), self.store.clone());
            actix::spawn(async move {
                if let Err(e) = points_clock.persist(&store).await {
                    tracing::warn!(actor = NAME, error = %e, "keeping the announced periods failed");
                }
            });
        }
        self.notify_points(now, awaits_new_peer_id);
    }

    fn notify_points(&mut self, now: veil_crypto::time::UnixTime, awaits_new_peer_id: bool) {
        for (key, w) in &mut self.watches {
            let points = self.schedule.active_points(&w.topic, &w.seed, now);
            if w.last != Some(points) {
                w.last = Some(points);
                for s in &self.subscribers {
                    // A full subscriber mailbox drops this notice; the next
                    // check re-sends nothing, so subscribers re-query with
                    // `GetActivePoints` when they start.
                    if s.try_send(PointsRotated { key: *key, points, awaits_new_peer_id }).is_err() {
                        tracing::warn!(actor = NAME, "a subscriber missed a rotation notice");
                    }
                }
            }
        }
    }

    fn replace_watches(&mut self, wanted: Vec<(WatchKey, Topic, RendezvousSeed)>) {
        let mut next = HashMap::with_capacity(wanted.len());
        for (key, topic, seed) in wanted {
            // Keep `last` when nothing changed, so unchanged watches are not re-announced.
            let last = self.watches.remove(&key).filter(|w| w.topic == topic && w.seed == seed).and_then(|w| w.last);
            next.insert(key, Watched { topic, seed, last });
        }
        self.watches = next;
        self.check();
    }
}

/// Everything to watch, from storage.
async fn wanted(store: Arc<Store>, now: veil_crypto::time::UnixTime) -> Result<Vec<(WatchKey, Topic, RendezvousSeed)>> {
    let mut out = Vec::new();
    // A disabled, expired or used-up link is not announced.
    if let (Some(link), Some(account)) = (store.link().await?, store.account().await?)
        && link.answers_at(now)
    {
        out.push((WatchKey::OwnLink, Topic::contact(&account.signing), link.seed));
    }
    for group in store.groups().await? {
        let keys = GroupKeys::derive(&group.secret);
        if group.kind == veil_storage::GroupKind::MultiMember {
            let credential = keys.replication_credential();
            out.push((WatchKey::Replica(credential.replication_id), Topic::replica(), credential.rendezvous_seed()));
        }
        out.push((WatchKey::Group(group.id), Topic::group(), keys.rendezvous_seed));
    }
    for credential in store.replicas().await? {
        out.push((WatchKey::Replica(credential.replication_id), Topic::replica(), credential.rendezvous_seed()));
    }
    for c in store.contacts(Some(ContactState::OutgoingEnqueued)).await? {
        if let Some(seed) = c.seed {
            out.push((WatchKey::Contact(c.account.signing), Topic::contact(&c.account.signing), seed));
        }
    }
    Ok(out)
}

impl Actor for RendezvousRotator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(256);
        load_state(
            NAME,
            self,
            ctx,
            self.time.clone(),
            Rc::new(|act: &Self| Box::pin(wanted(act.store.clone(), act.clock.now()))),
            Rc::new(|act: &mut Self, w| act.replace_watches(w)),
            0,
        );
        ctx.guarded_interval(&self.time, NAME, self.check_every, |act, ctx| {
            let _ = guarded(NAME, ctx, || {
                act.check();
                Ok(())
            });
        });
    }
}

impl Supervised for RendezvousRotator {
    fn restarting(&mut self, _: &mut Self::Context) {
        tracing::warn!(actor = NAME, "restarting; reloading watches from storage");
        self.watches.clear();
        // No boundary is reported for the period the restart happens in.
        self.period = None;
    }
}

impl Handler<Refresh> for RendezvousRotator {
    type Result = ResponseActFuture<Self, Result<()>>;

    fn handle(&mut self, _: Refresh, _: &mut Self::Context) -> Self::Result {
        Box::pin(wanted(self.store.clone(), self.clock.now()).into_actor(self).guarded_map(NAME, |w, act, _| {
            act.replace_watches(w?);
            Ok(())
        }))
    }
}

impl Handler<Subscribe> for RendezvousRotator {
    type Result = ();

    fn handle(&mut self, Subscribe(subscriber): Subscribe, _: &mut Self::Context) {
        for (key, w) in &self.watches {
            if let Some(points) = w.last
                && subscriber.try_send(PointsRotated { key: *key, points, awaits_new_peer_id: false }).is_err()
            {
                tracing::warn!(actor = NAME, "a new subscriber missed a rotation notice");
            }
        }
        self.subscribers.push(subscriber);
    }
}

impl Handler<crate::messages::rendezvous::PointsOf> for RendezvousRotator {
    type Result = Result<ActivePoints>;

    fn handle(&mut self, msg: crate::messages::rendezvous::PointsOf, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || Ok(self.schedule.active_points(&msg.topic, &msg.seed, self.points_clock.now().0)))
    }
}

impl Handler<GetActivePoints> for RendezvousRotator {
    type Result = Result<Vec<(WatchKey, ActivePoints)>>;

    fn handle(&mut self, _: GetActivePoints, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || {
            let (now, _) = self.points_clock.now();
            Ok(self.watches.iter().map(|(k, w)| (*k, self.schedule.active_points(&w.topic, &w.seed, now))).collect())
        })
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<crate::messages::InjectPanic> for RendezvousRotator {
    type Result = Result<()>;

    fn handle(&mut self, _: crate::messages::InjectPanic, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || panic!("injected fault"))
    }
}
