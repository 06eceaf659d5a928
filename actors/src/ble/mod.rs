//! The `BleTransport` actor: veil over Bluetooth LE, on a radio
//! ([`veil_ble::air::Air`]: BlueZ, or an in-process air in tests).
//!
//! It follows the radio, and while BLE is enabled (`veil transport attach
//! ble`), allowed by the policy (`offline` and `direct`) and the radio
//! ready, it keeps the `ble` plug-in attached and listening, a token on the
//! air (`veil_crypto::advert`: a fresh salt every `resalt_every`, under a
//! key drawn for each rendezvous period and kept in memory), and scans and
//! dials the veil devices in range (`cycle` decides what to do when). A
//! connection over BLE, whichever side dialed, is a peer found nearby (the
//! transport reports it, as mDNS would): proximity discovery offers it
//! this node's membership tokens and pending contact requests go to it.
//!
//! Radio faults are normal: an adapter powered off, removed or its BlueZ
//! restarted takes the token, the scan and the plug-in down (connections
//! close; what they did not carry stays in the outbox), and they come back
//! when the radio does. The actor is supervised; a restart puts the token
//! on the air again and scans again.

mod cycle;

use crate::supervision::GuardedMap;
use crate::supervision::GuardedTimers;
use crate::time::{Time, within};
use std::{sync::Arc, time::Duration};

use actix::{
    Actor, AsyncContext, Context, Handler, Message, ResponseFuture, SpawnHandle, StreamHandler, Supervised, WrapFuture,
};
pub use cycle::BleTiming;
use cycle::{Action, Cycle, Outcome};
use futures::StreamExt;
/// The BlueZ radio and the air the actor talks over.
pub use veil_ble::{air, radio};
use veil_ble::{
    air::{Air, InRange, OnAir},
    l2cap::BLE,
    radio::RadioState,
};
use veil_crypto::{
    OsEntropy,
    advert::{AdvertKey, AdvertToken},
    rendezvous::Schedule,
    time::{Clock, UnixTime},
};
use veil_transports::{
    Error as NetError, NetworkHandle, TransportPlugin,
    libp2p::{Multiaddr, PeerId},
};

use crate::{Result, supervision::guarded_with};

const NAME: &str = "ble-transport";

/// How long a dial may take (the plug-in bounds a connection at 20 s;
/// Noise and yamux follow).
const DIAL_LIMIT: Duration = Duration::from_secs(30);
/// How long a stopped scan may take to end on the radio.
const SCAN_STOP_LIMIT: Duration = Duration::from_secs(5);

/// What the actor needs.
pub(crate) struct BleDeps {
    pub(crate) air: Arc<dyn Air>,
    pub(crate) network: NetworkHandle,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) schedule: Schedule,
    pub(crate) timing: BleTiming,
    /// Whether the policy at start allows proximity transports.
    pub(crate) allowed: bool,
    /// Where its timers read the time.
    pub(crate) time: Time,
}

/// BLE as `veil status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BleStatus {
    /// The radio as last read (`None`: not read yet).
    pub radio: Option<RadioState>,
    /// Whether BLE is enabled (`veil transport attach ble`).
    pub enabled: bool,
    /// Whether the `ble` plug-in is attached and listening.
    pub attached: bool,
    /// Whether this node's token is on the air.
    pub advertising: bool,
    /// The peers connected over BLE now.
    pub in_range: Vec<PeerId>,
}

impl BleStatus {
    /// The line `veil status` shows: the radio, and what BLE does on it.
    pub fn describe(&self) -> String {
        let radio = self.radio.as_ref().map_or_else(|| "BLE: checking the radio".to_owned(), RadioState::describe);
        match (self.enabled, &self.radio) {
            (true, Some(RadioState::Ready { .. })) => format!(
                "{radio}; {}, {} peer{} in range",
                if self.advertising { "advertising" } else { "not advertising" },
                self.in_range.len(),
                if self.in_range.len() == 1 { "" } else { "s" }
            ),
            (false, Some(RadioState::Ready { .. })) => format!("{radio}; not attached"),
            _ => radio,
        }
    }
}

/// Command: enable or disable BLE.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct EnableBle(pub(crate) bool);

/// Command: whether the policy allows proximity transports now.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct BleAllowed(pub(crate) bool);

/// Query: BLE's state.
#[derive(Debug, Message)]
#[rtype(result = "Result<BleStatus>")]
pub(crate) struct GetBleStatus;

/// Event (from the transport manager): a peer's first connection opened
/// over `transport`, or its last one closed (`None`).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct PeerConnection {
    pub(crate) peer: PeerId,
    pub(crate) transport: Option<veil_transports::TransportId>,
}

/// Whether this node dials the advertiser of `theirs`, this node's token
/// on the air being `mine`: of two nodes that see each other, only the one
/// with the lower token dials: one link a pair is all it takes, and two
/// radios initiating to each other at once each spend a connection attempt
/// on a link the other is making. A node with no token on the air dials:
/// nobody sees it to dial it.
fn dials(mine: Option<&AdvertToken>, theirs: &AdvertToken) -> bool {
    mine.is_none_or(|mine| mine.to_bytes() < theirs.to_bytes())
}

/// Starts the actor, supervised, on an arbiter of its own.
pub(crate) fn start(deps: BleDeps) -> (actix::Addr<BleTransport>, actix_rt::ArbiterHandle) {
    let arbiter = actix_rt::Arbiter::new().handle();
    let addr = actix::Supervisor::start_in_arbiter(&arbiter, move |_| BleTransport::new(deps));
    (addr, arbiter)
}

struct RadioChanged(RadioState);
struct Sighted(InRange);

/// Advertises, scans and connects over BLE; see the module docs.
pub struct BleTransport {
    deps: BleDeps,
    cycle: Cycle,
    radio: Option<RadioState>,
    /// The plug-in for the radio as last ready.
    plugin: Option<Arc<dyn TransportPlugin>>,
    on_air: Option<OnAir>,
    /// The token on the air now (`None`: nothing advertised); a sighted token is compared with it to decide who dials.
    token: Option<AdvertToken>,
    scan: Option<SpawnHandle>,
    /// The advertising key of the period starting then.
    key: Option<(UnixTime, AdvertKey)>,
    wake: Option<SpawnHandle>,
}

impl std::fmt::Debug for BleTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BleTransport").field("cycle", &self.cycle).field("radio", &self.radio).finish_non_exhaustive()
    }
}

impl BleTransport {
    pub(crate) fn new(deps: BleDeps) -> Self {
        let cycle = Cycle::new(deps.timing, deps.allowed);
        Self { deps, cycle, radio: None, plugin: None, on_air: None, token: None, scan: None, key: None, wake: None }
    }

    /// Carries out every action due now, and wakes up when the next one is.
    fn drive(&mut self, ctx: &mut Context<Self>) {
        let period = self.deps.schedule.period_start(self.deps.clock.now());
        if self.key.as_ref().is_some_and(|(start, _)| *start != period) {
            self.key = None;
            self.cycle.token_stale();
        }
        while let Some(action) = self.cycle.poll(self.deps.time.now()) {
            self.act(action, ctx);
        }
        if let Some(wake) = self.wake.take() {
            ctx.cancel_future(wake);
        }
        let boundary = self.deps.schedule.next_boundary(self.deps.clock.now());
        let to_boundary = Duration::from_secs(boundary.0.saturating_sub(self.deps.clock.now().0));
        let due = self.cycle.next_due().map(|t| t.saturating_duration_since(self.deps.time.now()));
        let after = due.map_or(to_boundary, |d| d.min(to_boundary));
        self.wake = Some(ctx.guarded_later(&self.deps.time, NAME, after, |act, ctx| {
            act.wake = None;
            act.drive(ctx);
        }));
    }

    /// Reports how an action ended, then drives on.
    fn finish(&mut self, outcome: Outcome, ctx: &mut Context<Self>) {
        self.cycle.done(outcome, self.deps.time.now());
        self.drive(ctx);
    }

    fn act(&mut self, action: Action, ctx: &mut Context<Self>) {
        tracing::debug!(?action, "ble");
        let network = self.deps.network.clone();
        match action {
            Action::Withdraw => {
                self.on_air = None;
                self.token = None;
                self.cycle.done(Outcome::Withdrawn, self.deps.time.now());
            }
            Action::StopScan => {
                if let Some(scan) = self.scan.take() {
                    ctx.cancel_future(scan);
                }
                let stopped = self.deps.air.scan_stopped(SCAN_STOP_LIMIT);
                ctx.spawn(
                    stopped.into_actor(self).guarded_map(NAME, |_, act, ctx| act.finish(Outcome::ScanStopped, ctx)),
                );
            }
            Action::Attach(listen) => {
                let Some(plugin) = self.plugin.clone() else {
                    // Never: the cycle attaches only with a radio ready.
                    self.cycle.done(Outcome::Attached(false), self.deps.time.now());
                    return;
                };
                let attach = async move {
                    let id = plugin.id();
                    match network.attach(plugin).await {
                        Ok(()) | Err(NetError::AlreadyAttached(_)) => {}
                        Err(e) => return Err(e),
                    }
                    // Listening on one of them is enough (a controller
                    // without L2CAP channels still serves GATT).
                    let mut failed = None;
                    let mut listening = false;
                    for addr in listen {
                        match network.listen(addr).await {
                            Ok(_) => listening = true,
                            Err(e) => failed = Some(e),
                        }
                    }
                    match (listening, failed) {
                        (false, Some(e)) => {
                            let _ = network.detach(id).await;
                            Err(e)
                        }
                        _ => Ok(()),
                    }
                };
                ctx.spawn(attach.into_actor(self).guarded_map(NAME, |attached, act, ctx| {
                    if let Err(e) = &attached {
                        tracing::warn!(error = %e, "BLE: the plug-in could not listen; trying again later");
                    }
                    act.finish(Outcome::Attached(attached.is_ok()), ctx);
                }));
            }
            Action::Detach => {
                let detach = async move { network.detach(BLE).await };
                ctx.spawn(detach.into_actor(self).guarded_map(NAME, |_, act, ctx| act.finish(Outcome::Detached, ctx)));
            }
            Action::Advertise => {
                // The old token leaves the air first: radios hold few.
                self.on_air = None;
                self.token = None;
                let advertise = self.fresh_token().map(|token| (token, self.deps.air.advertise(token)));
                let advertise = async move {
                    match advertise {
                        Ok((token, advertise)) => {
                            advertise.await.map(|on_air| (token, on_air)).map_err(|why| why.to_string())
                        }
                        Err(e) => Err(e.to_string()),
                    }
                };
                ctx.spawn(advertise.into_actor(self).guarded_map(NAME, |on_air, act, ctx| {
                    let ok = match on_air {
                        Ok((token, on_air)) => {
                            act.on_air = Some(on_air);
                            act.token = Some(token);
                            true
                        }
                        Err(why) => {
                            tracing::info!(%why, "BLE: not advertising; trying again later");
                            false
                        }
                    };
                    act.finish(Outcome::Advertised(ok), ctx);
                }));
            }
            Action::Scan => {
                let scan = self.deps.air.scan();
                ctx.spawn(scan.into_actor(self).guarded_map(NAME, |sightings, act, ctx| {
                    let ok = match sightings {
                        Ok(sightings) => {
                            act.scan = Some(ctx.add_stream(sightings.map(Sighted)));
                            true
                        }
                        Err(why) => {
                            tracing::info!(%why, "BLE: not scanning; trying again later");
                            false
                        }
                    };
                    act.finish(Outcome::Scanning(ok), ctx);
                }));
            }
            Action::Dial(at) => {
                let dial = {
                    let (at, fallback) = (at.clone(), self.deps.air.fallback(&at));
                    let time = self.deps.time.clone();
                    async move {
                        let reach = |addr| {
                            let (network, time) = (network.clone(), time.clone());
                            async move { within(&*time, DIAL_LIMIT, network.dial(addr)).await.and_then(|r| r.ok()) }
                        };
                        match reach(at).await {
                            Some(peer) => Some(peer),
                            None => match fallback {
                                Some(other) => {
                                    tracing::debug!(at = %other, "BLE: its L2CAP channel out of reach, dialing GATT");
                                    reach(other).await
                                }
                                None => None,
                            },
                        }
                    }
                };
                ctx.spawn(dial.into_actor(self).guarded_map(NAME, move |peer, act, ctx| {
                    tracing::debug!(reached = peer.is_some(), "BLE: dialed a device in range");
                    act.finish(Outcome::Dialed(at, peer), ctx);
                }));
            }
        }
    }

    /// A token of this period's key (drawn when the period began).
    fn fresh_token(&mut self) -> veil_crypto::Result<AdvertToken> {
        let period = self.deps.schedule.period_start(self.deps.clock.now());
        let key = match self.key.take() {
            Some((start, key)) if start == period => key,
            _ => AdvertKey::generate(&mut OsEntropy)?,
        };
        let token = AdvertToken::fresh(&key, &mut OsEntropy);
        self.key = Some((period, key));
        token
    }
}

impl Actor for BleTransport {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
        ctx.add_stream(self.deps.air.states().map(RadioChanged));
        self.drive(ctx);
    }
}

impl Supervised for BleTransport {
    fn restarting(&mut self, ctx: &mut Self::Context) {
        tracing::warn!(actor = NAME, "restarting");
        self.on_air = None;
        self.token = None;
        if let Some(scan) = self.scan.take() {
            ctx.cancel_future(scan);
        }
        self.wake = None;
        self.cycle.restarted();
    }
}

impl StreamHandler<RadioChanged> for BleTransport {
    fn handle(&mut self, RadioChanged(state): RadioChanged, ctx: &mut Self::Context) {
        let _ = guarded_with(NAME, ctx, |ctx| {
            if self.radio.as_ref() != Some(&state) {
                tracing::info!(radio = %state.describe(), "BLE radio");
            }
            let link = matches!(state, RadioState::Ready { .. }).then(|| self.deps.air.link(&state));
            let listen: Option<Vec<Multiaddr>> = link.as_ref().map(|(_, listen)| listen.clone());
            if let Some((plugin, _)) = link {
                self.plugin = Some(plugin);
            }
            self.cycle.set_radio(listen);
            self.radio = Some(state);
            self.drive(ctx);
            Ok(())
        });
    }

    fn finished(&mut self, _: &mut Self::Context) {
        tracing::warn!("BLE: the radio's state can no longer be followed");
    }
}

impl StreamHandler<Sighted> for BleTransport {
    fn handle(&mut self, Sighted(seen): Sighted, ctx: &mut Self::Context) {
        let _ = guarded_with(NAME, ctx, |_| {
            if dials(self.token.as_ref(), &seen.token) {
                self.cycle.seen(seen.at);
            }
            Ok(())
        });
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        // Cancelled scans end silently; this one the radio ended.
        self.scan = None;
        self.cycle.scan_ended();
        self.drive(ctx);
    }
}

impl Handler<EnableBle> for BleTransport {
    type Result = ();

    fn handle(&mut self, EnableBle(on): EnableBle, ctx: &mut Self::Context) {
        self.cycle.set_enabled(on);
        self.drive(ctx);
    }
}

impl Handler<BleAllowed> for BleTransport {
    type Result = ();

    fn handle(&mut self, BleAllowed(allowed): BleAllowed, ctx: &mut Self::Context) {
        self.cycle.set_allowed(allowed);
        self.drive(ctx);
    }
}

impl Handler<PeerConnection> for BleTransport {
    type Result = ();

    fn handle(&mut self, msg: PeerConnection, _: &mut Self::Context) {
        match msg.transport {
            Some(t) if t == BLE => self.cycle.peer_connected(msg.peer),
            Some(_) => {}
            None => self.cycle.peer_disconnected(&msg.peer, self.deps.time.now()),
        }
    }
}

impl Handler<GetBleStatus> for BleTransport {
    type Result = ResponseFuture<Result<BleStatus>>;

    fn handle(&mut self, _: GetBleStatus, _: &mut Self::Context) -> Self::Result {
        let network = self.deps.network.clone();
        let mut status = BleStatus {
            radio: self.radio.clone(),
            enabled: self.cycle.enabled(),
            attached: self.cycle.attached(),
            advertising: self.cycle.advertising(),
            in_range: Vec::new(),
        };
        Box::pin(async move {
            let connections = network.connections().await?;
            status.in_range = connections.iter().filter(|c| c.transport == BLE).map(|c| c.peer).collect();
            status.in_range.sort();
            status.in_range.dedup();
            Ok(status)
        })
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<crate::messages::InjectPanic> for BleTransport {
    type Result = Result<()>;

    fn handle(&mut self, _: crate::messages::InjectPanic, ctx: &mut Self::Context) -> Self::Result {
        guarded_with(NAME, ctx, |_| panic!("injected fault"))
    }
}

#[cfg(test)]
mod tests {
    use veil_crypto::advert::{AdvertKey, AdvertToken};

    use super::dials;

    #[test]
    fn of_two_nodes_in_sight_of_each_other_exactly_one_dials() {
        for n in 0..64u8 {
            let a = AdvertToken::new(&AdvertKey::from_bytes([n; 32]), [n, 1, 2, 3]);
            let b = AdvertToken::new(&AdvertKey::from_bytes([n.wrapping_add(1); 32]), [n, 3, 2, 1]);
            assert!(dials(Some(&a), &b) ^ dials(Some(&b), &a), "{n}");
            assert!(dials(None, &a) && dials(None, &b), "off the air, it dials");
        }
    }
}
