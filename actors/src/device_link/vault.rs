//! The identity vault's side of device linking: offers are made, answered
//! (message 2 is signed with the account key) and served (a copy of the
//! whole store, keys included) where the keys are.

use actix::{AtomicResponse, Handler, WrapFuture};
use veil_crypto::{OsEntropy, VerifyKey};
use veil_proto::device::DeviceRequest;

use super::offers::Opened;
use crate::{
    Error, IdentityVault, Result,
    messages::device::{ConfirmOffer, CreateOffer, DropOffers, OfferHello, OfferId, OfferMessage, SessionAnswer},
    supervision::{GuardedMap, guarded},
};

const NAME: &str = "identity-vault";

impl Handler<CreateOffer> for IdentityVault {
    type Result = Result<(OfferId, veil_crypto::device_link::DeviceOffer)>;

    fn handle(&mut self, msg: CreateOffer, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || {
            let account = self.identity()?.account.clone();
            self.offers.create(&account, msg.expires_at, &mut OsEntropy)
        })
    }
}

impl Handler<crate::messages::vault::GetAccountGroupSecret> for IdentityVault {
    type Result = Result<veil_crypto::GroupSecret>;

    fn handle(&mut self, _: crate::messages::vault::GetAccountGroupSecret, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || Ok(veil_crypto::account_group_secret(&self.identity()?.alias)))
    }
}

impl Handler<crate::messages::vault::RecordDevice> for IdentityVault {
    type Result = AtomicResponse<Self, Result<()>>;

    fn handle(&mut self, msg: crate::messages::vault::RecordDevice, _: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        AtomicResponse::new(Box::pin(
            async move { Ok(store.add_device(&msg.device, &msg.agreement, None).await?) }.into_actor(self),
        ))
    }
}

impl Handler<OfferHello> for IdentityVault {
    type Result = Result<(veil_crypto::device_link::ShortCode, Vec<u8>)>;

    fn handle(&mut self, msg: OfferHello, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || self.offers.hello(msg.offer, msg.peer, &msg.message, msg.now, &mut OsEntropy))
    }
}

impl Handler<ConfirmOffer> for IdentityVault {
    type Result = Result<bool>;

    fn handle(&mut self, msg: ConfirmOffer, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || self.offers.confirm(msg.offer, msg.code))
    }
}

impl Handler<DropOffers> for IdentityVault {
    type Result = Vec<OfferId>;

    fn handle(&mut self, msg: DropOffers, _: &mut Self::Context) -> Self::Result {
        match msg {
            DropOffers::One(id) => {
                let live = self.offers.is_live(id);
                self.offers.drop_offer(id);
                if live { vec![id] } else { Vec::new() }
            }
            DropOffers::Expired { now, known } => {
                self.offers.expire(now);
                known.into_iter().filter(|id| !self.offers.is_live(*id)).collect()
            }
        }
    }
}

/// What answering a request needs done outside the actor first.
enum Step {
    Answer(SessionAnswer),
    /// The first request: the store's copy is made, then its first piece sent.
    Copy,
    /// The last: the new device is recorded, then the farewell sent.
    Record((VerifyKey, veil_crypto::AgreementPublic)),
}

impl Handler<OfferMessage> for IdentityVault {
    // One at a time: pieces leave in order.
    type Result = AtomicResponse<Self, Result<SessionAnswer>>;

    fn handle(&mut self, msg: OfferMessage, ctx: &mut Self::Context) -> Self::Result {
        let OfferMessage { offer, peer, message } = msg;
        let step = guarded(NAME, ctx, || {
            Ok(match self.offers.open(offer, peer, &message)? {
                Opened::Waiting => Step::Answer(SessionAnswer::Waiting),
                Opened::Request(DeviceRequest::Start { .. }) if self.offers.has_copy(offer) => {
                    return Err(Error::Refused("the new device started twice"));
                }
                Opened::Request(DeviceRequest::Start { .. }) => Step::Copy,
                Opened::Request(DeviceRequest::Next) => {
                    Step::Answer(SessionAnswer::Reply(self.offers.next_piece(offer)?))
                }
                Opened::Request(DeviceRequest::Done) => match self.offers.device(offer) {
                    Some(device) => Step::Record(device),
                    None => return Err(Error::Refused("the new device never started")),
                },
            })
        });
        let (store, keys, dir) = (self.store.clone(), self.keys.clone(), self.copy_dir.clone());
        AtomicResponse::new(Box::pin(
            async move {
                match step? {
                    Step::Answer(answer) => Ok((Some(answer), None, None)),
                    Step::Copy => Ok((None, Some(store.device_copy(&keys, &dir).await?), None)),
                    Step::Record((device, agreement)) => {
                        store.add_device(&device, &agreement, None).await?;
                        Ok((None, None, Some(device)))
                    }
                }
            }
            .into_actor(self)
            .guarded_map(NAME, move |done: Result<_>, act, _| {
                let (answer, copy, recorded) = done.inspect_err(|_| act.offers.drop_offer(offer))?;
                if let Some(answer) = answer {
                    return Ok(answer);
                }
                if let Some(copy) = copy {
                    act.offers.set_copy(offer, copy);
                    return Ok(SessionAnswer::Reply(act.offers.next_piece(offer)?));
                }
                let device = recorded.ok_or(Error::Refused("nothing to answer"))?;
                Ok(SessionAnswer::Linked { reply: act.offers.farewell(offer)?, device })
            }),
        ))
    }
}
