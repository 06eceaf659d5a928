//! The first device's offers and their sessions, as the identity vault
//! holds them: message 2 is signed with the account key, and the session
//! carries a copy of the whole store, so both stay where the keys are.
//!
//! No I/O here: the vault makes the store's copy and records the new
//! device; this decides who is answered, and with what.

use std::collections::BTreeMap;

use veil_crypto::{
    AccountKeys, AgreementPublic, Entropy, VerifyKey,
    device_link::{DeviceOffer, DeviceSession, LinkingDevice, ShortCode, UnconfirmedSession},
    time::UnixTime,
};
use veil_proto::device::{DeviceReply, DeviceRequest, PIECE_LEN};
use veil_storage::DeviceCopy;
use veil_transports::libp2p::PeerId;
use zeroize::Zeroizing;

use crate::{Error, Result, messages::device::OfferId};

/// Most offers live at once; a new one drops the oldest.
pub(crate) const MAX_OFFERS: usize = 4;
/// Message 1s that fail (a wrong pre-shared key: whoever sent them never
/// saw the offer) before the offer is withdrawn.
pub(crate) const MAX_FAILED_HELLOS: u32 = 16;
/// Sessions one offer starts at most (each valid message 1 starts one and
/// replaces the unconfirmed one before it).
pub(crate) const MAX_SESSIONS: u32 = 8;

/// Where an offer's session is.
enum Session {
    /// Nobody answered yet.
    Idle,
    /// A device answered; the user has not confirmed the code.
    Unconfirmed { peer: PeerId, session: Box<UnconfirmedSession> },
    /// The user confirmed: the session seals and opens.
    Confirmed { peer: PeerId, session: Box<DeviceSession> },
}

struct Offer {
    linking: LinkingDevice,
    failed: u32,
    sessions: u32,
    session: Session,
    copy: Option<DeviceCopy>,
    /// The new device's own key and agreement key, from its first request.
    device: Option<(VerifyKey, AgreementPublic)>,
}

/// What a session message from the new device asks for, once opened.
// One at a time, answered at once: boxing the request would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Opened {
    /// The user has not confirmed yet: the new device asks again later
    /// with the same message, which stays unopened.
    Waiting,
    /// A request to answer.
    Request(DeviceRequest),
}

/// Every live offer of this node.
#[derive(Default)]
pub(crate) struct Offers {
    live: BTreeMap<OfferId, Offer>,
    next: u64,
}

impl Offers {
    /// A new offer of `account`, valid until `expires_at`.
    pub(crate) fn create(
        &mut self,
        account: &AccountKeys,
        expires_at: UnixTime,
        entropy: &mut impl Entropy,
    ) -> Result<(OfferId, DeviceOffer)> {
        let offer = DeviceOffer::new(account.public(), expires_at, entropy)?;
        let linking = LinkingDevice::new(account, offer.clone())?;
        while self.live.len() >= MAX_OFFERS {
            self.live.pop_first();
        }
        let id = OfferId(self.next);
        self.next = self.next.wrapping_add(1);
        self.live
            .insert(id, Offer { linking, failed: 0, sessions: 0, session: Session::Idle, copy: None, device: None });
        Ok((id, offer))
    }

    /// Whether `id` is live.
    pub(crate) fn is_live(&self, id: OfferId) -> bool {
        self.live.contains_key(&id)
    }

    /// Withdraws an offer (expired, cancelled, done).
    pub(crate) fn drop_offer(&mut self, id: OfferId) {
        self.live.remove(&id);
    }

    /// Answers a message 1 sent by `peer`: message 2 and the code to show.
    /// A confirmed offer answers no one else; an expired one is dropped.
    pub(crate) fn hello(
        &mut self,
        id: OfferId,
        peer: PeerId,
        msg1: &[u8],
        now: UnixTime,
        entropy: &mut impl Entropy,
    ) -> Result<(ShortCode, Vec<u8>)> {
        let offer = self.live.get_mut(&id).ok_or(Error::Refused("no such device offer"))?;
        if offer.linking.offer().check_expiry(now).is_err() {
            self.live.remove(&id);
            return Err(Error::Refused("the device offer expired"));
        }
        if matches!(offer.session, Session::Confirmed { .. }) {
            return Err(Error::Refused("the device offer is in use"));
        }
        if offer.sessions >= MAX_SESSIONS {
            // The last one may still be confirmed; nobody else is answered.
            return Err(Error::Refused("the device offer answered enough devices"));
        }
        match offer.linking.respond(msg1, now, entropy) {
            Ok((session, msg2)) => {
                let code = session.short_code();
                offer.sessions += 1;
                offer.session = Session::Unconfirmed { peer, session: Box::new(session) };
                Ok((code, msg2))
            }
            Err(e) => {
                offer.failed += 1;
                if offer.failed >= MAX_FAILED_HELLOS {
                    self.live.remove(&id);
                }
                Err(e.into())
            }
        }
    }

    /// The user typed `code`: the session is confirmed if it is the one
    /// shown (`true`); otherwise someone else holds the offer, and it is
    /// dropped (`false`).
    pub(crate) fn confirm(&mut self, id: OfferId, code: ShortCode) -> Result<bool> {
        let offer = self.live.get_mut(&id).ok_or(Error::Refused("no such device offer"))?;
        match std::mem::replace(&mut offer.session, Session::Idle) {
            Session::Unconfirmed { peer, session } if session.short_code() == code => {
                offer.session = Session::Confirmed { peer, session: Box::new((*session).confirm()) };
                Ok(true)
            }
            Session::Unconfirmed { .. } => {
                self.live.remove(&id);
                Ok(false)
            }
            Session::Idle => Err(Error::Refused("no device has answered the offer yet")),
            confirmed @ Session::Confirmed { .. } => {
                offer.session = confirmed;
                Err(Error::Refused("the code was confirmed already"))
            }
        }
    }

    /// Opens a session message from `peer`. A message that does not open
    /// ends the offer: the session refuses everything after a failure.
    pub(crate) fn open(&mut self, id: OfferId, peer: PeerId, message: &[u8]) -> Result<Opened> {
        let offer = self.live.get_mut(&id).ok_or(Error::Refused("no such device offer"))?;
        let opened = match &mut offer.session {
            Session::Unconfirmed { peer: p, .. } if *p == peer => return Ok(Opened::Waiting),
            Session::Confirmed { peer: p, session } if *p == peer => {
                session.open(message).map_err(Error::from).and_then(|plain| Ok(DeviceRequest::decode(&plain)?))
            }
            _ => return Err(Error::Refused("no session with this peer")),
        };
        match opened {
            Ok(request) => {
                if let DeviceRequest::Start { device, agreement } = &request {
                    offer.device.get_or_insert((*device, *agreement));
                }
                Ok(Opened::Request(request))
            }
            Err(e) => {
                self.live.remove(&id);
                Err(e)
            }
        }
    }

    /// The new device's own key and agreement key, once it said them.
    pub(crate) fn device(&self, id: OfferId) -> Option<(VerifyKey, AgreementPublic)> {
        self.live.get(&id).and_then(|o| o.device)
    }

    /// Whether the offer holds its store copy already.
    pub(crate) fn has_copy(&self, id: OfferId) -> bool {
        self.live.get(&id).is_some_and(|o| o.copy.is_some())
    }

    /// Keeps the store copy the new device is sent.
    pub(crate) fn set_copy(&mut self, id: OfferId, copy: DeviceCopy) {
        if let Some(offer) = self.live.get_mut(&id) {
            offer.copy = Some(copy);
        }
    }

    /// The next piece of the copy, sealed.
    pub(crate) fn next_piece(&mut self, id: OfferId) -> Result<Vec<u8>> {
        let offer = self.live.get_mut(&id).ok_or(Error::Refused("no such device offer"))?;
        let (Session::Confirmed { session, .. }, Some(copy)) = (&mut offer.session, offer.copy.as_mut()) else {
            return Err(Error::Refused("the session has no copy to send"));
        };
        let data: Zeroizing<Vec<u8>> = copy.next_piece(PIECE_LEN)?;
        let reply = DeviceReply::Piece { total_len: copy.total_len(), data }.encode();
        Ok(session.seal(&reply)?)
    }

    /// The last reply; the offer is used up.
    pub(crate) fn farewell(&mut self, id: OfferId) -> Result<Vec<u8>> {
        let mut offer = self.live.remove(&id).ok_or(Error::Refused("no such device offer"))?;
        let Session::Confirmed { session, .. } = &mut offer.session else {
            return Err(Error::Refused("the session is not confirmed"));
        };
        Ok(session.seal(&DeviceReply::Farewell.encode())?)
    }

    /// Drops the offers expired at `now`; returns them.
    pub(crate) fn expire(&mut self, now: UnixTime) -> Vec<OfferId> {
        let expired: Vec<OfferId> = self
            .live
            .iter()
            // A confirmed session finishes sending what it started.
            .filter(|(_, o)| {
                o.linking.offer().check_expiry(now).is_err() && !matches!(o.session, Session::Confirmed { .. })
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            self.live.remove(id);
        }
        expired
    }

    /// Forgets every offer (a vault restart: sessions cannot survive it).
    pub(crate) fn clear(&mut self) {
        self.live.clear();
    }
}

#[cfg(test)]
#[path = "offers_tests.rs"]
mod tests;
