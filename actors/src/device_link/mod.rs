//! Linking a new device to this account (issue 22; docs/PROTOCOL.md §14).
//!
//! The first device shows a one-time offer and waits at the offer's
//! rendezvous point; the new device looks it up and runs the handshake over
//! the contact protocol (`/veil/contact/1`, whose frames gained the device
//! variants). Both show a short code; once the user typed on the first
//! device the code the new device shows (and confirmed it on the new
//! device), the new device pulls a copy of the whole store, piece by piece,
//! sealed in the session, and becomes a new device of the same account
//! (`veil_storage::ReceivedCopy`).
//!
//! * [`offers`]: the offers and their sessions, held by the identity vault
//!   (message 2 is signed with the account key; the copy holds every key).
//! * [`vault`]: the vault's handlers.
//! * [`DeviceLinker`] (this file): the network side of the first device —
//!   announcing each live offer, answering its frames through the vault,
//!   expiring offers, telling the application the code to compare.
//! * [`join`]: the new device's side.

mod join;
mod offers;
mod vault;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use actix::{Actor, AsyncContext, Context, Handler, Recipient, ResponseActFuture, Supervised, WrapFuture};
use tokio::sync::broadcast;
use veil_crypto::{
    device_link::DeviceOffer,
    rendezvous::{RendezvousPoint, Topic, check_point_proof},
    time::{Clock, UnixTime},
};
use veil_proto::handshake::HandshakeFrame;
use veil_transports::{InboundRequestId, NetworkHandle, libp2p::PeerId};

pub use join::DeviceJoin;
pub(crate) use join::join;
pub(crate) use offers::Offers;

use crate::{
    Error, NodeEvent, Result,
    messages::{
        contacts::InboundRequest,
        courier::NetworkRestarted,
        device::{
            CancelOffer, ConfirmDevice, ConfirmOffer, CreateOffer, DropOffers, LinkDevice, OfferHello, OfferId,
            OfferMessage, SessionAnswer,
        },
        rendezvous::PointsOf,
    },
    supervision::{GuardedMap, GuardedTimers, guarded_with, mailbox},
    time::Time,
};

const NAME: &str = "device-linker";

/// The longest an offer may live: an offer is a key to the account for as
/// long as it is answered.
pub const MAX_OFFER_LIFETIME: Duration = Duration::from_secs(3_600);

/// How often live offers are checked against the vault (expired by the
/// wall clock, used up, withdrawn after failures) besides at their expiry.
const RECHECK: Duration = Duration::from_secs(5);

/// The vault's side of offers.
#[derive(Clone)]
pub(crate) struct OfferVault {
    pub(crate) create: Recipient<CreateOffer>,
    pub(crate) hello: Recipient<OfferHello>,
    pub(crate) confirm: Recipient<ConfirmOffer>,
    pub(crate) message: Recipient<OfferMessage>,
    pub(crate) drop: Recipient<DropOffers>,
}

/// What the linker needs from the rest of the node.
pub(crate) struct DeviceLinkerDeps {
    pub(crate) vault: OfferVault,
    pub(crate) network: NetworkHandle,
    /// The rotator: the offer's points, on the node's schedule.
    pub(crate) points: Recipient<PointsOf>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) events: broadcast::Sender<NodeEvent>,
    pub(crate) refusals: Arc<crate::refusals::RefusalCounters>,
    pub(crate) time: Time,
}

/// A live offer, as the network side sees it.
struct Live {
    offer: DeviceOffer,
    /// The point it is announced at.
    announced: Option<RendezvousPoint>,
    /// The peer whose session the vault holds.
    peer: Option<PeerId>,
}

/// The first device's network side of linking.
pub struct DeviceLinker {
    deps: Arc<DeviceLinkerDeps>,
    live: BTreeMap<OfferId, Live>,
    /// A check of the live offers is scheduled.
    checking: bool,
}

impl core::fmt::Debug for DeviceLinker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeviceLinker").field("live", &self.live.len()).finish_non_exhaustive()
    }
}

impl DeviceLinker {
    pub(crate) fn new(deps: DeviceLinkerDeps) -> Self {
        Self { deps: Arc::new(deps), live: BTreeMap::new(), checking: false }
    }

    /// Withdraws an offer the vault dropped (or is told to drop) and says why.
    fn close(&mut self, ctx: &mut Context<Self>, id: OfferId, reason: &'static str) {
        let Some(live) = self.live.remove(&id) else { return };
        let deps = self.deps.clone();
        let _ = deps.events.send(NodeEvent::DeviceOfferClosed { offer: id, reason });
        ctx.spawn(
            async move {
                let _ = deps.vault.drop.send(DropOffers::One(id)).await;
                if let Some(point) = live.announced {
                    let _ = deps.network.withdraw(point.0).await;
                }
            }
            .into_actor(self),
        );
    }

    /// Drops what expired (a confirmed session finishes first).
    /// Withdraws the offers the vault no longer holds (expired now, or
    /// used up, or failed); checks again later while some are live.
    fn expire(&mut self, ctx: &mut Context<Self>) {
        let deps = self.deps.clone();
        let (now, known) = (deps.clock.now(), self.live.keys().copied().collect());
        ctx.spawn(
            async move { deps.vault.drop.send(DropOffers::Expired { now, known }).await.unwrap_or_default() }
                .into_actor(self)
                .guarded_map(NAME, |gone, act, ctx| {
                    for id in gone {
                        act.close(ctx, id, "expired");
                    }
                    act.check_later(ctx);
                }),
        );
    }

    /// Runs [`expire`](Self::expire) again in a while, while offers are live.
    fn check_later(&mut self, ctx: &mut Context<Self>) {
        if self.live.is_empty() || self.checking {
            return;
        }
        self.checking = true;
        let time = self.deps.time.clone();
        ctx.guarded_later(&time, NAME, RECHECK, |act, ctx| {
            act.checking = false;
            act.expire(ctx);
        });
    }
}

/// Announces `offer` at its current point; returns the point.
async fn announce(deps: &DeviceLinkerDeps, offer: &DeviceOffer) -> Result<RendezvousPoint> {
    let points = deps
        .points
        .send(PointsOf { topic: Topic::device(), seed: offer.rendezvous_seed() })
        .await
        .map_err(mailbox("rendezvous-rotator"))??;
    let left = offer.expires_at.0.saturating_sub(deps.clock.now().0);
    let ttl = Duration::from_secs(left).max(veil_transports::MIN_ANNOUNCE_TTL).min(veil_transports::MAX_ANNOUNCE_TTL);
    deps.network.announce(points.current.0, ttl).await?;
    Ok(points.current)
}

impl Actor for DeviceLinker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(256);
    }
}

impl Supervised for DeviceLinker {
    fn restarting(&mut self, _: &mut Self::Context) {
        tracing::warn!(actor = NAME, "restarting; live device offers are withdrawn");
        self.live.clear();
        self.checking = false;
    }
}

impl Handler<LinkDevice> for DeviceLinker {
    type Result = ResponseActFuture<Self, Result<(OfferId, DeviceOffer)>>;

    fn handle(&mut self, msg: LinkDevice, _: &mut Self::Context) -> Self::Result {
        let deps = self.deps.clone();
        Box::pin(
            async move {
                if msg.lifetime.is_zero() || msg.lifetime > MAX_OFFER_LIFETIME {
                    return Err(Error::Invalid("a device offer lives between 1 s and an hour"));
                }
                let expires_at = UnixTime(deps.clock.now().0.saturating_add(msg.lifetime.as_secs().max(1)));
                let (id, offer) =
                    deps.vault.create.send(CreateOffer { expires_at }).await.map_err(mailbox("identity-vault"))??;
                match announce(&deps, &offer).await {
                    Ok(point) => Ok((id, offer, point)),
                    Err(e) => {
                        let _ = deps.vault.drop.send(DropOffers::One(id)).await;
                        Err(e)
                    }
                }
            }
            .into_actor(self)
            .guarded_map(NAME, |made, act, ctx| {
                let (id, offer, point) = made?;
                act.live.insert(id, Live { offer: offer.clone(), announced: Some(point), peer: None });
                act.check_later(ctx);
                Ok((id, offer))
            }),
        )
    }
}

impl Handler<ConfirmDevice> for DeviceLinker {
    type Result = ResponseActFuture<Self, Result<()>>;

    fn handle(&mut self, msg: ConfirmDevice, _: &mut Self::Context) -> Self::Result {
        let deps = self.deps.clone();
        let ConfirmDevice { offer, code } = msg;
        Box::pin(
            async move { deps.vault.confirm.send(ConfirmOffer { offer, code }).await.map_err(mailbox("identity-vault"))? }
                .into_actor(self)
                .guarded_map(NAME, move |confirmed, act, ctx| match confirmed {
                    Ok(true) => Ok(()),
                    Ok(false) => {
                        act.close(ctx, offer, "the codes differ");
                        Err(Error::Refused(
                            "the codes differ: another device answered the offer, which is now withdrawn",
                        ))
                    }
                    Err(e) => Err(e),
                }),
        )
    }
}

impl Handler<CancelOffer> for DeviceLinker {
    type Result = ();

    fn handle(&mut self, msg: CancelOffer, ctx: &mut Self::Context) {
        self.close(ctx, msg.0, "withdrawn");
    }
}

impl Handler<NetworkRestarted> for DeviceLinker {
    type Result = ();

    fn handle(&mut self, _: NetworkRestarted, ctx: &mut Self::Context) {
        // A new peer id (and maybe a new period): announce again, under it.
        for (id, live) in &self.live {
            let (deps, offer, id) = (self.deps.clone(), live.offer.clone(), *id);
            ctx.spawn(async move { announce(&deps, &offer).await.ok() }.into_actor(self).guarded_map(
                NAME,
                move |point, act, _| {
                    if let (Some(point), Some(live)) = (point, act.live.get_mut(&id)) {
                        live.announced = Some(point);
                    }
                },
            ));
        }
    }
}

/// How a frame was answered.
enum Outcome {
    Answered(Vec<u8>),
    Code { offer: OfferId, peer: PeerId, code: veil_crypto::device_link::ShortCode, reply: Vec<u8> },
    Linked { offer: OfferId, device: veil_crypto::VerifyKey, reply: Vec<u8> },
    Refused,
}

impl Handler<InboundRequest> for DeviceLinker {
    type Result = ();

    fn handle(&mut self, msg: InboundRequest, ctx: &mut Self::Context) {
        // Network input: a panic reading it restarts the linker.
        let _ = guarded_with(NAME, ctx, |ctx| {
            self.answer(msg, ctx);
            Ok(())
        });
    }
}

impl DeviceLinker {
    fn answer(&mut self, InboundRequest { peer, id, request }: InboundRequest, ctx: &mut Context<Self>) {
        let deps = self.deps.clone();
        let offers: Vec<(OfferId, DeviceOffer)> = self.live.iter().map(|(id, l)| (*id, l.offer.clone())).collect();
        let session = self.live.iter().find(|(_, l)| l.peer == Some(peer)).map(|(id, _)| *id);
        ctx.spawn(
            async move {
                let outcome = match HandshakeFrame::decode(&request) {
                    Ok(HandshakeFrame::DeviceHello { message, point_proof }) => {
                        hello(&deps, offers, peer, message, point_proof).await
                    }
                    Ok(HandshakeFrame::DeviceSealed(message)) => match session {
                        Some(offer) => sealed(&deps, offer, peer, message).await,
                        None => Ok(Outcome::Refused),
                    },
                    _ => Ok(Outcome::Refused),
                };
                let outcome = outcome.unwrap_or_else(|e| {
                    tracing::debug!(actor = NAME, error = %e, "refused a device-link message");
                    Outcome::Refused
                });
                answer_with(&deps, id, &outcome).await;
                outcome
            }
            .into_actor(self)
            .guarded_map(NAME, |outcome, act, ctx| match outcome {
                Outcome::Code { offer, peer, code, .. } => {
                    if let Some(live) = act.live.get_mut(&offer) {
                        live.peer = Some(peer);
                    }
                    let _ = act.deps.events.send(NodeEvent::DeviceLinkCode { offer, code });
                }
                Outcome::Linked { offer, device, .. } => {
                    let _ = act.deps.events.send(NodeEvent::DeviceLinked { offer, device });
                    act.close(ctx, offer, "linked");
                }
                Outcome::Refused => act.deps.refusals.contact_request(),
                Outcome::Answered(_) => {}
            }),
        );
    }
}

/// Sends the response a frame's outcome calls for (an empty one: refused).
async fn answer_with(deps: &DeviceLinkerDeps, id: InboundRequestId, outcome: &Outcome) {
    let bytes = match outcome {
        Outcome::Answered(b) => b.clone(),
        Outcome::Code { reply, .. } => HandshakeFrame::DeviceWelcome(reply.clone()).encode(),
        Outcome::Linked { reply, .. } => HandshakeFrame::DeviceSealed(reply.clone()).encode(),
        Outcome::Refused => Vec::new(),
    };
    if let Err(e) = deps.network.respond(id, bytes).await {
        tracing::debug!(actor = NAME, error = %e, "cannot answer a device-link message");
    }
}

/// A message 1: to the offer whose current point it proves.
async fn hello(
    deps: &DeviceLinkerDeps,
    offers: Vec<(OfferId, DeviceOffer)>,
    peer: PeerId,
    message: Vec<u8>,
    proof: [u8; 32],
) -> Result<Outcome> {
    for (offer, shown) in offers {
        let points = deps
            .points
            .send(PointsOf { topic: Topic::device(), seed: shown.rendezvous_seed() })
            .await
            .map_err(mailbox("rendezvous-rotator"))??;
        if points.all().any(|p| check_point_proof(&p, &message, &proof)) {
            let now = deps.clock.now();
            let (code, reply) = deps
                .vault
                .hello
                .send(OfferHello { offer, peer, message, now })
                .await
                .map_err(mailbox("identity-vault"))??;
            return Ok(Outcome::Code { offer, peer, code, reply });
        }
    }
    Ok(Outcome::Refused)
}

/// A session message of `offer`'s session with `peer`.
async fn sealed(deps: &DeviceLinkerDeps, offer: OfferId, peer: PeerId, message: Vec<u8>) -> Result<Outcome> {
    let answer =
        deps.vault.message.send(OfferMessage { offer, peer, message }).await.map_err(mailbox("identity-vault"))??;
    Ok(match answer {
        SessionAnswer::Waiting => Outcome::Answered(HandshakeFrame::DeviceWaiting.encode()),
        SessionAnswer::Reply(reply) => Outcome::Answered(HandshakeFrame::DeviceSealed(reply).encode()),
        SessionAnswer::Linked { reply, device } => Outcome::Linked { offer, device, reply },
    })
}
