//! The `NetworkPeriod` actor: what changes in the network at each rendezvous
//! period boundary.
//!
//! * **A fresh peer id.** With `rotate_key` (the default) the node takes a
//!   new network key from the vault at every boundary and restarts the swarm
//!   under it, so relays, rendezvous servers and DHT peers cannot link the
//!   node across periods by peer id. Connections close; the courier's outbox
//!   resends what was not acknowledged, and contacts find the node again at
//!   the new period's points.
//! * **A random relay.** Under `Relayed` the node reserves a slot on a relay
//!   drawn at random among the known relays (configured, or learned from
//!   contacts: the relays they are reachable through), drawn again each
//!   period; it is reachable only through that relay's `/p2p-circuit`
//!   address. Under `Direct` it does the same when relays are known, so a
//!   node behind a NAT is reachable, and hole punching upgrades the relayed
//!   connections contacts open. A lost reservation (the relay went away) is replaced by a new
//!   draw at the next check, among the relays that have not failed this
//!   period.
//!
//! Period starts come from the `RendezvousRotator` (which reads the
//! injected clock), with the new period's points, which the other actors
//! hold until the restart and then announce under the new id only. A
//! rotation that fails is tried again at every check, since those points
//! wait for it. Every `check_every` a relayed node checks it still listens
//! through a relay.

use crate::supervision::GuardedMap;
use crate::supervision::GuardedTimers;
use crate::time::Time;
use std::{collections::HashSet, time::Duration};

use actix::{Actor, AsyncContext, Context, Handler, Recipient, Supervised, WrapFuture};
use veil_crypto::{Entropy, OsEntropy};
use veil_transports::{NetworkHandle, Policy, libp2p::Multiaddr, policy::is_circuit};

use crate::{
    Error, Result,
    messages::{rendezvous::PeriodStarted, vault::RotateNetworkKey},
    supervision::{guarded_with, mailbox},
};

const NAME: &str = "network-period";

/// What the actor needs.
pub(crate) struct NetworkPeriodDeps {
    pub(crate) network: NetworkHandle,
    pub(crate) vault: Recipient<RotateNetworkKey>,
    /// How often a relayed node checks it still listens through a relay.
    pub(crate) check_every: Duration,
    /// Take a fresh network key at every period boundary.
    pub(crate) rotate_key: bool,
    /// Where its timers read the time.
    pub(crate) time: Time,
}

/// Rotates the peer id and re-draws the relay every rendezvous period.
pub struct NetworkPeriod {
    deps: NetworkPeriodDeps,
    /// A change is under way (they take network round trips).
    busy: bool,
    /// A new peer id is owed for the current period: its points wait for it
    /// (`PointsRotated::awaits_new_peer_id`), so a failed rotation is tried
    /// again at every check until it succeeds.
    rotation_owed: bool,
    /// Set at a period start: the next change draws a relay afresh even if the node still listens through one.
    redraw_owed: bool,
    /// The relays that refused a reservation (or were unreachable) this
    /// period: later draws of the period leave them out, so one relay that
    /// is down does not keep a node unreachable.
    failed: HashSet<Multiaddr>,
}

impl core::fmt::Debug for NetworkPeriod {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NetworkPeriod")
            .field("busy", &self.busy)
            .field("rotation_owed", &self.rotation_owed)
            .finish_non_exhaustive()
    }
}

/// Which step of a change failed.
enum Failed {
    Rotation(Error),
    Relay(Option<Multiaddr>, Error),
}

impl NetworkPeriod {
    pub(crate) fn new(deps: NetworkPeriodDeps) -> Self {
        Self { deps, busy: false, rotation_owed: false, redraw_owed: false, failed: HashSet::new() }
    }

    /// Does what is owed: a new key (at a period start, if configured, or
    /// after a failed attempt), a relay draw (at a period start), or else
    /// gives a relayed node without a circuit one.
    fn change(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        let rotate = std::mem::take(&mut self.rotation_owed);
        let redraw = std::mem::take(&mut self.redraw_owed);
        let (network, vault) = (self.deps.network.clone(), self.deps.vault.clone());
        let failed = self.failed.clone();
        self.busy = true;
        let work = async move {
            if rotate {
                rotate_key(&network, &vault).await.map_err(Failed::Rotation)?;
            }
            reserve_relay(&network, redraw, &failed).await
        };
        ctx.spawn(work.into_actor(self).guarded_map(NAME, move |outcome, act, ctx| {
            act.busy = false;
            match outcome {
                Ok(()) => {
                    // A period started meanwhile: its change is due now.
                    if act.rotation_owed || act.redraw_owed {
                        act.change(ctx);
                    }
                }
                Err(Failed::Rotation(e)) => {
                    // Tried again at the next check; the relay draw with it.
                    tracing::warn!(actor = NAME, error = %e, "no new peer id yet for the new period");
                    act.rotation_owed = true;
                    act.redraw_owed |= redraw;
                }
                // The node is stopping: nothing to retry.
                Err(Failed::Relay(_, Error::Network(veil_transports::Error::Shutdown))) => {}
                // Another relay is drawn at the next check.
                Err(Failed::Relay(relay, e)) => {
                    tracing::warn!(actor = NAME, error = %e, "no relay for the period yet");
                    act.failed.extend(relay);
                }
            }
        }));
    }
}

/// Takes a fresh network key from the vault and restarts the network under it.
async fn rotate_key(network: &NetworkHandle, vault: &Recipient<RotateNetworkKey>) -> Result<()> {
    let key = vault.send(RotateNetworkKey).await.map_err(mailbox("identity-vault"))??;
    let peer = network.rotate(&key).await?;
    tracing::info!(actor = NAME, "new peer id for the new period");
    tracing::debug!(actor = NAME, %peer, "rotated");
    Ok(())
}

/// Under `Relayed`, and under `Direct` when relays are known: listens
/// through a relay drawn at random among the known ones (configured, or
/// learned from contacts) that have not `failed` this period, unless the
/// node already listens through one and no new draw is due. If every known
/// relay failed, all are drawn from again. Under `Direct` the reservation
/// keeps a node behind a NAT reachable, and the relayed connections it
/// brings are upgraded to direct ones by hole punching (DCUtR).
async fn reserve_relay(network: &NetworkHandle, redraw: bool, failed: &HashSet<Multiaddr>) -> Result<(), Failed> {
    let asking = |e: veil_transports::Error| Failed::Relay(None, e.into());
    let policy = network.policy().await.map_err(asking)?;
    if !matches!(policy, Policy::Relayed | Policy::Direct) {
        return Ok(());
    }
    if !redraw && network.listen_addrs().await.map_err(asking)?.iter().any(is_circuit) {
        return Ok(());
    }
    let known: Vec<Multiaddr> = network.known_relays().await.map_err(asking)?.into_iter().map(|k| k.addr).collect();
    let untried: Vec<Multiaddr> = known.iter().filter(|r| !failed.contains(*r)).cloned().collect();
    let candidates = if untried.is_empty() { known } else { untried };
    let Some(relay) = pick(&candidates).map_err(|e| Failed::Relay(None, e))? else {
        if policy == Policy::Relayed {
            tracing::warn!(actor = NAME, "the relayed policy is on but no relay is known");
        }
        return Ok(());
    };
    match network.use_relay(relay.clone()).await {
        Ok(circuit) => {
            tracing::debug!(actor = NAME, %circuit, "reachable through a relay");
            Ok(())
        }
        Err(e) => Err(Failed::Relay(Some(relay.clone()), e.into())),
    }
}

/// One of `relays`, drawn uniformly with the operating system's randomness.
fn pick(relays: &[Multiaddr]) -> Result<Option<&Multiaddr>> {
    if relays.is_empty() {
        return Ok(None);
    }
    let mut bytes = [0u8; 8];
    OsEntropy.fill(&mut bytes).map_err(Error::from)?;
    // The modulo bias over 2^64 is negligible for any realistic relay count.
    let len = u64::try_from(relays.len()).unwrap_or(u64::MAX);
    let index = usize::try_from(u64::from_le_bytes(bytes) % len).unwrap_or(0);
    Ok(relays.get(index))
}

impl Actor for NetworkPeriod {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(16);
        ctx.guarded_interval(&self.deps.time, NAME, self.deps.check_every, |act, ctx| {
            let _ = guarded_with(NAME, ctx, |ctx| {
                act.change(ctx);
                Ok(())
            });
        });
        self.change(ctx);
    }
}

impl Supervised for NetworkPeriod {
    fn restarting(&mut self, _: &mut Self::Context) {
        tracing::warn!(actor = NAME, "restarting");
        self.busy = false;
    }
}

impl Handler<PeriodStarted> for NetworkPeriod {
    type Result = ();

    fn handle(&mut self, _: PeriodStarted, ctx: &mut Self::Context) {
        self.rotation_owed |= self.deps.rotate_key;
        self.redraw_owed = true;
        self.failed.clear();
        let _ = guarded_with(NAME, ctx, |ctx| {
            self.change(ctx);
            Ok(())
        });
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<crate::messages::InjectPanic> for NetworkPeriod {
    type Result = Result<()>;

    fn handle(&mut self, _: crate::messages::InjectPanic, ctx: &mut Self::Context) -> Self::Result {
        crate::supervision::guarded(NAME, ctx, || panic!("injected fault"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_relay_gets_drawn() {
        let relays: Vec<Multiaddr> = (0..3).map(|i| format!("/memory/{i}").parse().unwrap()).collect();
        let drawn: HashSet<&Multiaddr> = (0..200).map(|_| pick(&relays).unwrap().unwrap()).collect();
        assert_eq!(drawn.len(), 3);
        assert!(pick(&[]).unwrap().is_none());
    }
}
