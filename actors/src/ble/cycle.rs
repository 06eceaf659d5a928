//! What the BLE actor does next, as a state machine without I/O: it takes
//! the radio's state, the user's and the policy's word, sightings, the
//! outcome of each action and the time, and answers with one action at a
//! time (the actor carries it out and reports back).
//!
//! While BLE is wanted (enabled, allowed by the policy) and the radio is
//! ready: the `ble` plug-in is attached and listens; a token is on the air,
//! re-salted every `resalt_every`; the radio scans for `scan_for`, then
//! dials what it saw one device at a time (a radio connects only once its
//! scan ended), then rests until the next scan. A device is not dialed
//! while the peer last reached there is still connected, nor again within
//! `retry_after` of a failure. Otherwise everything is taken down: the
//! token withdrawn, the scan stopped, the plug-in detached (its connections
//! close; the outbox keeps what they did not carry).

use std::{
    collections::{HashMap, HashSet, VecDeque},
    time::{Duration, Instant},
};

use veil_transports::libp2p::{Multiaddr, PeerId};

/// Most devices dialed after one scan, and most remembered.
const MAX_DEVICES: usize = 64;

/// How the radio's time is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BleTiming {
    /// How long each scan lasts.
    pub scan_for: Duration,
    /// The rest between the end of one round of dials and the next scan.
    pub rest_for: Duration,
    /// How long one token stays on the air before a fresh salt replaces it
    /// (BlueZ changes a private device address every 15 minutes).
    pub resalt_every: Duration,
    /// How long a device that failed (a dial, or an attach or advertisement
    /// on this radio) is left alone.
    pub retry_after: Duration,
}

impl Default for BleTiming {
    fn default() -> Self {
        Self {
            scan_for: Duration::from_secs(4),
            rest_for: Duration::from_secs(6),
            resalt_every: Duration::from_secs(10 * 60),
            retry_after: Duration::from_secs(30),
        }
    }
}

/// What the radio should do next; the actor carries it out and reports the `Outcome` to `Cycle::done`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Attach the plug-in and listen at these addresses.
    Attach(Vec<Multiaddr>),
    /// Detach the plug-in.
    Detach,
    /// Put a fresh token on the air (replacing the one there).
    Advertise,
    /// Take the token off the air.
    Withdraw,
    /// Start scanning.
    Scan,
    /// Stop scanning, and wait until the radio really stopped.
    StopScan,
    /// Dial this device.
    Dial(Multiaddr),
}

/// How an action ended (or what the radio did meanwhile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Attached(bool),
    Detached,
    Advertised(bool),
    Withdrawn,
    Scanning(bool),
    /// The scan stopped (asked to, or the radio ended it).
    ScanStopped,
    Dialed(Multiaddr, Option<PeerId>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// Resting until then.
    Resting(Instant),
    Running(Instant),
    /// Asked to stop; the radio has not said it did.
    Stopping,
    Dialing,
}

/// The BLE actor's decisions.
#[derive(Debug)]
pub(crate) struct Cycle {
    timing: BleTiming,
    enabled: bool,
    allowed: bool,
    /// Where to listen, while the radio is ready.
    radio: Option<Vec<Multiaddr>>,
    /// Where the plug-in listens, while attached.
    attached: Option<Vec<Multiaddr>>,
    /// Since when the token on the air is there.
    advertised: Option<Instant>,
    /// That token must be replaced now.
    stale: bool,
    scan: Option<Scan>,
    /// An action was handed out and its outcome has not come back; nothing more is handed out meanwhile.
    busy: bool,
    /// When attaching or advertising may be tried again.
    attach_after: Option<Instant>,
    advertise_after: Option<Instant>,
    /// Devices seen by the current scan, to dial.
    seen: VecDeque<Multiaddr>,
    /// Devices that failed, until when.
    failed: HashMap<Multiaddr, Instant>,
    /// The peer last reached at each device.
    reached: HashMap<Multiaddr, PeerId>,
    /// Peers connected over this radio.
    connected: HashSet<PeerId>,
}

impl Cycle {
    pub(crate) fn new(timing: BleTiming, allowed: bool) -> Self {
        Self {
            timing,
            enabled: false,
            allowed,
            radio: None,
            attached: None,
            advertised: None,
            stale: false,
            scan: None,
            busy: false,
            attach_after: None,
            advertise_after: None,
            seen: VecDeque::new(),
            failed: HashMap::new(),
            reached: HashMap::new(),
            connected: HashSet::new(),
        }
    }

    pub(crate) fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    pub(crate) fn set_allowed(&mut self, allowed: bool) {
        self.allowed = allowed;
    }

    /// The radio is ready (listen there) or not (`None`). A radio that went
    /// away took its advertisement, scan and channels with it; they are
    /// set up again when it returns, after everything was taken down.
    pub(crate) fn set_radio(&mut self, listen: Option<Vec<Multiaddr>>) {
        if listen.is_none() {
            self.attach_after = None;
            self.advertise_after = None;
        }
        self.radio = listen;
    }

    /// Whether the token is on the air.
    pub(crate) fn advertising(&self) -> bool {
        self.advertised.is_some()
    }

    /// Whether the plug-in is attached.
    pub(crate) fn attached(&self) -> bool {
        self.attached.is_some()
    }

    pub(crate) fn peer_connected(&mut self, peer: PeerId) {
        self.connected.insert(peer);
    }

    /// `peer`'s last connection closed. The devices it was reached at are
    /// left alone for `retry_after`: a device whose link just died is gone
    /// (out of range, its radio off) or comes back under a new address,
    /// and a dial onto a link the kernel is still tearing down is what made
    /// Linux 6.1 corrupt its channel list and stop (docs/TRANSPORTS.md).
    pub(crate) fn peer_disconnected(&mut self, peer: &PeerId, now: Instant) {
        self.connected.remove(peer);
        let until = now + self.timing.retry_after;
        for (at, _) in self.reached.iter().filter(|(_, p)| *p == peer) {
            if self.failed.len() < MAX_DEVICES {
                self.failed.insert(at.clone(), until);
            }
        }
    }

    /// The radio ended the scan by itself.
    pub(crate) fn scan_ended(&mut self) {
        if matches!(self.scan, Some(Scan::Running(_))) {
            self.scan = Some(Scan::Dialing);
        }
    }

    /// The token on the air belongs to a past period: replace it now.
    pub(crate) fn token_stale(&mut self) {
        self.stale = self.advertised.is_some();
    }

    /// The actor restarted: what was under way, on the air or scanning is
    /// gone; the plug-in, the wishes and what was learnt stay.
    pub(crate) fn restarted(&mut self) {
        self.busy = false;
        self.advertised = None;
        self.scan = None;
        self.seen.clear();
    }

    /// A scan saw a veil device this node should dial (the actor applied the lower-token rule); kept only while the
    /// scan runs, at most 64.
    pub(crate) fn seen(&mut self, at: Multiaddr) {
        if matches!(self.scan, Some(Scan::Running(_))) && !self.seen.contains(&at) && self.seen.len() < MAX_DEVICES {
            self.seen.push_back(at);
        }
    }

    pub(crate) fn done(&mut self, outcome: Outcome, now: Instant) {
        self.busy = false;
        let later = now + self.timing.retry_after;
        match outcome {
            Outcome::Attached(true) => self.attached = self.radio.clone(),
            Outcome::Attached(false) => self.attach_after = Some(later),
            Outcome::Detached => {
                self.attached = None;
                self.connected.clear();
            }
            Outcome::Advertised(true) => {
                self.advertised = Some(now);
                self.stale = false;
            }
            Outcome::Advertised(false) => {
                self.advertised = None;
                self.advertise_after = Some(later);
            }
            Outcome::Withdrawn => self.advertised = None,
            Outcome::Scanning(true) => self.scan = Some(Scan::Running(now + self.timing.scan_for)),
            Outcome::Scanning(false) => self.scan = Some(Scan::Resting(now + self.timing.rest_for)),
            Outcome::ScanStopped => self.scan = self.scan.map(|_| Scan::Dialing),
            Outcome::Dialed(at, Some(peer)) => {
                self.failed.remove(&at);
                if self.reached.len() >= MAX_DEVICES {
                    self.reached.clear();
                }
                self.reached.insert(at, peer);
            }
            Outcome::Dialed(at, None) => {
                if self.failed.len() >= MAX_DEVICES {
                    self.failed.retain(|_, until| *until > now);
                }
                self.failed.insert(at, later);
            }
        }
    }

    fn wanted(&self) -> Option<&Vec<Multiaddr>> {
        self.radio.as_ref().filter(|_| self.enabled && self.allowed)
    }

    /// The next action, if one is due now.
    pub(crate) fn poll(&mut self, now: Instant) -> Option<Action> {
        if self.busy {
            return None;
        }
        let action = match self.wanted().cloned() {
            None => self.take_down(),
            Some(listen) => self.bring_up(listen, now),
        };
        self.busy = action.is_some();
        action
    }

    fn take_down(&mut self) -> Option<Action> {
        self.seen.clear();
        if self.advertised.is_some() {
            return Some(Action::Withdraw);
        }
        if matches!(self.scan, Some(Scan::Running(_))) {
            self.scan = Some(Scan::Stopping);
            return Some(Action::StopScan);
        }
        self.scan = None;
        self.attached.is_some().then_some(Action::Detach)
    }

    fn bring_up(&mut self, listen: Vec<Multiaddr>, now: Instant) -> Option<Action> {
        if self.attached.as_ref() != Some(&listen) {
            if self.attached.is_some() {
                return Some(Action::Detach);
            }
            return due(self.attach_after, now).then_some(Action::Attach(listen));
        }
        if self.scan == Some(Scan::Dialing) {
            while let Some(at) = self.seen.pop_front() {
                let failed = self.failed.get(&at).is_some_and(|until| *until > now);
                let there = self.reached.get(&at).is_some_and(|peer| self.connected.contains(peer));
                if !failed && !there {
                    return Some(Action::Dial(at));
                }
            }
            self.scan = Some(Scan::Resting(now + self.timing.rest_for));
        }
        // A radio changes its random address for a new advertisement, which
        // it refuses while it scans or connects (Command Disallowed): a
        // token goes on the air only while the radio rests.
        let quiet = matches!(self.scan, None | Some(Scan::Resting(_)));
        let resalt = self.stale || self.advertised.is_none_or(|since| now >= since + self.timing.resalt_every);
        if quiet && resalt && due(self.advertise_after, now) {
            return Some(Action::Advertise);
        }
        match self.scan {
            None => Some(Action::Scan),
            Some(Scan::Resting(until)) => (now >= until).then_some(Action::Scan),
            Some(Scan::Running(until)) if now >= until => {
                self.scan = Some(Scan::Stopping);
                Some(Action::StopScan)
            }
            Some(Scan::Running(_) | Scan::Stopping | Scan::Dialing) => None,
        }
    }

    /// When [`Cycle::poll`] may have something to do without any new input.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        if self.busy || self.wanted().is_none() {
            return None;
        }
        if self.attached.as_ref() != self.wanted() {
            return self.attach_after;
        }
        let resalt = self.advertised.map(|since| since + self.timing.resalt_every).or(self.advertise_after);
        let scan = match self.scan {
            Some(Scan::Resting(until) | Scan::Running(until)) => Some(until),
            _ => None,
        };
        [resalt, scan, self.attach_after].into_iter().flatten().min()
    }
}

fn due(after: Option<Instant>, now: Instant) -> bool {
    after.is_none_or(|t| now >= t)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn addr(n: u64) -> Multiaddr {
        format!("/memory/{n}").parse().unwrap_or_else(|_| Multiaddr::empty())
    }

    fn timing() -> BleTiming {
        BleTiming { scan_for: 40 * MS, rest_for: 60 * MS, resalt_every: 1000 * MS, retry_after: 300 * MS }
    }

    /// A cycle brought up at `t0`: attached, advertising, scanning.
    fn running(t0: Instant) -> Cycle {
        let mut c = Cycle::new(timing(), true);
        c.set_enabled(true);
        assert_eq!(c.poll(t0), None, "nothing without a radio");
        c.set_radio(Some(vec![addr(1)]));
        assert_eq!(c.poll(t0), Some(Action::Attach(vec![addr(1)])));
        assert_eq!(c.poll(t0), None, "one action at a time");
        c.done(Outcome::Attached(true), t0);
        assert_eq!(c.poll(t0), Some(Action::Advertise));
        c.done(Outcome::Advertised(true), t0);
        assert_eq!(c.poll(t0), Some(Action::Scan));
        c.done(Outcome::Scanning(true), t0);
        c
    }

    #[test]
    fn it_scans_then_dials_what_it_saw_one_at_a_time_then_rests() {
        let t0 = Instant::now();
        let mut c = running(t0);
        assert_eq!(c.poll(t0 + 10 * MS), None);
        assert_eq!(c.next_due(), Some(t0 + 40 * MS));
        for n in [2, 3, 2] {
            c.seen(addr(n));
        }
        assert_eq!(c.poll(t0 + 40 * MS), Some(Action::StopScan));
        c.seen(addr(4)); // still reported while it stops: too late
        c.done(Outcome::ScanStopped, t0 + 41 * MS);
        assert_eq!(c.poll(t0 + 41 * MS), Some(Action::Dial(addr(2))));
        c.done(Outcome::Dialed(addr(2), Some(PeerId::random())), t0 + 50 * MS);
        assert_eq!(c.poll(t0 + 50 * MS), Some(Action::Dial(addr(3))));
        c.done(Outcome::Dialed(addr(3), None), t0 + 60 * MS);
        assert_eq!(c.poll(t0 + 60 * MS), None, "resting");
        assert_eq!(c.next_due(), Some(t0 + 120 * MS));
        assert_eq!(c.poll(t0 + 120 * MS), Some(Action::Scan));
    }

    #[test]
    fn connected_devices_and_recent_failures_are_not_dialed_again() {
        let t0 = Instant::now();
        let mut c = running(t0);
        let peer = PeerId::random();
        c.seen(addr(2));
        c.seen(addr(3));
        assert_eq!(c.poll(t0 + 40 * MS), Some(Action::StopScan));
        c.done(Outcome::ScanStopped, t0 + 40 * MS);
        assert_eq!(c.poll(t0 + 40 * MS), Some(Action::Dial(addr(2))));
        c.done(Outcome::Dialed(addr(2), Some(peer)), t0 + 40 * MS);
        c.peer_connected(peer);
        assert_eq!(c.poll(t0 + 40 * MS), Some(Action::Dial(addr(3))));
        c.done(Outcome::Dialed(addr(3), None), t0 + 40 * MS);
        assert_eq!(c.poll(t0 + 40 * MS), None);

        // Seen again: one still connected, the other failed 100 ms ago.
        c.done(Outcome::Scanning(true), t0 + 100 * MS);
        c.seen(addr(2));
        c.seen(addr(3));
        assert_eq!(c.poll(t0 + 140 * MS), Some(Action::StopScan));
        c.done(Outcome::ScanStopped, t0 + 140 * MS);
        assert_eq!(c.poll(t0 + 140 * MS), None);

        // The peer left: its device is left alone for a while, then
        // dialed again (and the failure is old).
        c.peer_disconnected(&peer, t0 + 140 * MS);
        c.done(Outcome::Scanning(true), t0 + 200 * MS);
        c.seen(addr(2));
        c.done(Outcome::ScanStopped, t0 + 240 * MS);
        assert_eq!(c.poll(t0 + 240 * MS), None, "a link that just died is not dialed again");
        c.done(Outcome::Scanning(true), t0 + 400 * MS);
        c.seen(addr(2));
        c.seen(addr(3));
        c.done(Outcome::ScanStopped, t0 + 440 * MS);
        assert_eq!(c.poll(t0 + 440 * MS), Some(Action::Dial(addr(2))));
        c.done(Outcome::Dialed(addr(2), Some(peer)), t0 + 440 * MS);
        assert_eq!(c.poll(t0 + 440 * MS), Some(Action::Dial(addr(3))));
    }

    #[test]
    fn the_token_is_resalted_on_time_and_a_failed_advertisement_retried_later() {
        let t0 = Instant::now();
        let mut c = running(t0);
        assert_eq!(c.poll(t0 + 999 * MS), Some(Action::StopScan));
        c.done(Outcome::ScanStopped, t0 + 999 * MS);
        assert_eq!(c.poll(t0 + 999 * MS), None);
        assert_eq!(c.poll(t0 + 1000 * MS), Some(Action::Advertise));
        c.done(Outcome::Advertised(false), t0 + 1000 * MS);
        assert!(!c.advertising());
        assert_eq!(c.poll(t0 + 1100 * MS), Some(Action::Scan), "scanning goes on");
        c.done(Outcome::Scanning(false), t0 + 1100 * MS);
        assert_eq!(c.next_due(), Some(t0 + 1160 * MS));
        assert_eq!(c.poll(t0 + 1300 * MS), Some(Action::Advertise));
    }

    #[test]
    fn a_scan_the_radio_ended_is_dialed_from_and_a_past_period_s_token_replaced_at_once() {
        let t0 = Instant::now();
        let mut c = running(t0);
        c.seen(addr(2));
        c.scan_ended();
        assert_eq!(c.poll(t0 + MS), Some(Action::Dial(addr(2))));
        c.token_stale();
        c.done(Outcome::Dialed(addr(2), None), t0 + 2 * MS);
        assert_eq!(c.poll(t0 + 2 * MS), Some(Action::Advertise));
        c.done(Outcome::Advertised(true), t0 + 2 * MS);
        assert_eq!(c.poll(t0 + 3 * MS), None);
        c.restarted();
        assert!(c.attached() && !c.advertising());
        assert_eq!(c.poll(t0 + 3 * MS), Some(Action::Advertise), "back on the air after a restart");
    }

    #[test]
    fn a_token_goes_on_the_air_only_while_the_radio_rests() {
        let t0 = Instant::now();
        let mut c = running(t0);
        c.token_stale();
        assert_eq!(c.poll(t0 + 10 * MS), None, "not while scanning");
        c.seen(addr(2));
        assert_eq!(c.poll(t0 + 40 * MS), Some(Action::StopScan));
        c.done(Outcome::ScanStopped, t0 + 40 * MS);
        assert_eq!(c.poll(t0 + 40 * MS), Some(Action::Dial(addr(2))), "not while dialing");
        c.done(Outcome::Dialed(addr(2), None), t0 + 50 * MS);
        assert_eq!(c.poll(t0 + 50 * MS), Some(Action::Advertise), "at rest");
    }

    #[test]
    fn a_radio_lost_takes_everything_down_and_its_return_brings_it_back() {
        let t0 = Instant::now();
        let mut c = running(t0);
        c.seen(addr(2));
        c.peer_connected(PeerId::random());
        c.set_radio(None);
        assert_eq!(c.poll(t0), Some(Action::Withdraw));
        c.done(Outcome::Withdrawn, t0);
        assert_eq!(c.poll(t0), Some(Action::StopScan));
        c.done(Outcome::ScanStopped, t0);
        assert_eq!(c.poll(t0), Some(Action::Detach));
        c.done(Outcome::Detached, t0);
        assert_eq!(c.poll(t0), None);
        assert_eq!(c.next_due(), None);
        assert!(c.connected.is_empty(), "the radio's connections went with it");

        c.set_radio(Some(vec![addr(1)]));
        assert_eq!(c.poll(t0 + MS), Some(Action::Attach(vec![addr(1)])));
        c.done(Outcome::Attached(true), t0 + MS);
        assert_eq!(c.poll(t0 + MS), Some(Action::Advertise));
        c.done(Outcome::Advertised(true), t0 + MS);
        assert_eq!(c.poll(t0 + MS), Some(Action::Scan), "nothing seen before the loss is dialed");
        c.done(Outcome::Scanning(true), t0 + MS);
        c.done(Outcome::ScanStopped, t0 + 41 * MS);
        assert_eq!(c.poll(t0 + 41 * MS), None);
    }

    #[test]
    fn disabled_or_forbidden_means_off_and_a_new_listen_address_reattaches() {
        let t0 = Instant::now();
        let mut c = running(t0);
        c.set_allowed(false);
        assert_eq!(c.poll(t0), Some(Action::Withdraw));
        c.done(Outcome::Withdrawn, t0);
        assert_eq!(c.poll(t0), Some(Action::StopScan));
        c.set_allowed(true);
        c.done(Outcome::ScanStopped, t0);
        // Allowed again before it was all down: it dials nothing stale,
        // advertises again and goes on.
        assert_eq!(c.poll(t0), Some(Action::Advertise));
        c.done(Outcome::Advertised(true), t0);
        assert_eq!(c.poll(t0), None);
        c.set_radio(Some(vec![addr(9)]));
        assert_eq!(c.poll(t0), Some(Action::Detach));
        c.done(Outcome::Detached, t0);
        assert_eq!(c.poll(t0), Some(Action::Attach(vec![addr(9)])));
        c.done(Outcome::Attached(false), t0);
        assert_eq!(c.poll(t0 + 100 * MS), None, "a failed attach waits");
        assert_eq!(c.next_due(), Some(t0 + 300 * MS));
        assert_eq!(c.poll(t0 + 300 * MS), Some(Action::Attach(vec![addr(9)])));
        c.set_enabled(false);
        c.done(Outcome::Attached(true), t0 + 300 * MS);
        assert_eq!(c.poll(t0 + 300 * MS), Some(Action::Withdraw));
    }
}
