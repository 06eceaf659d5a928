//! The new device's side of linking: find the first device at the offer's
//! points, run the handshake, show the code, and once the user confirmed
//! it, pull the copy of the account's store and make it this device's.

use std::{path::Path, time::Duration};

use veil_crypto::{
    AccountPublic, OsEntropy, SigningSecret,
    device_link::{DeviceOffer, JoiningDevice, ShortCode, UnconfirmedSession},
    rendezvous::{Topic, point_proof},
    time::Clock,
};
use veil_proto::{
    device::{DeviceReply, DeviceRequest},
    handshake::HandshakeFrame,
};
use veil_storage::{ReceivedCopy, Store, StoreOptions};
use veil_transports::{NetworkHandle, libp2p::PeerId};

use crate::{Error, Result, messages::rendezvous::PointsOf, supervision::mailbox, time::Time};

/// How often the new device asks again while the first device's user has
/// not typed the code yet.
const WAITING_POLL: Duration = Duration::from_millis(200);

/// A handshake with the first device that completed: show
/// [`code`](Self::code), and once the user says the first device shows the
/// same, [`complete`](Self::complete) the link.
#[derive(Debug)]
pub struct DeviceJoin {
    network: NetworkHandle,
    time: Time,
    clock: std::sync::Arc<dyn Clock>,
    peer: PeerId,
    offer: DeviceOffer,
    session: UnconfirmedSession,
}

/// Finds the first device of `offer` and runs the handshake with it.
pub(crate) async fn join(
    network: NetworkHandle,
    points: actix::Recipient<PointsOf>,
    clock: std::sync::Arc<dyn Clock>,
    time: Time,
    offer: DeviceOffer,
) -> Result<DeviceJoin> {
    offer.check_expiry(clock.now())?;
    let points = points
        .send(PointsOf { topic: Topic::device(), seed: offer.rendezvous_seed() })
        .await
        .map_err(mailbox("rendezvous-rotator"))??;
    let mut last = Error::Refused("nobody answers at the offer's rendezvous points");
    for point in points.all() {
        let found = match network.lookup(point.0).await {
            Ok(found) => found,
            Err(e) => {
                last = e.into();
                continue;
            }
        };
        for (peer, _) in found {
            let attempt = async {
                network.dial_peer(peer).await?;
                let (joining, message) = JoiningDevice::start(&offer, clock.now(), &mut OsEntropy)?;
                let hello = HandshakeFrame::DeviceHello { point_proof: point_proof(&point, &message), message };
                let answer = network.request(peer, hello.encode()).await?;
                match HandshakeFrame::decode(&answer) {
                    Ok(HandshakeFrame::DeviceWelcome(msg2)) => Ok(joining.read_response(&msg2)?),
                    _ => Err(Error::Refused("the first device did not answer the offer")),
                }
            };
            match attempt.await {
                Ok(session) => {
                    return Ok(DeviceJoin { network, time, clock, peer, offer, session });
                }
                Err(e) => last = e,
            }
        }
    }
    Err(last)
}

impl DeviceJoin {
    /// The code to show; the user compares it with the first device's (and
    /// types it there).
    pub fn code(&self) -> ShortCode {
        self.session.short_code()
    }

    /// The account this device joins (authenticated by the handshake).
    pub fn account(&self) -> AccountPublic {
        *self.session.info().account
    }

    /// The user confirmed that the first device shows `code`: waits for the
    /// first device's user to confirm too (until the offer expires), then
    /// receives the account's store and makes it this device's, at `db`
    /// unlocked by a new key file at `key_file` (neither may exist). This
    /// device gets a new device key of its own, which the first device
    /// records among the account's devices.
    pub async fn complete(self, code: ShortCode, db: &Path, key_file: &Path, options: StoreOptions) -> Result<Store> {
        if code != self.code() {
            return Err(Error::Refused("the codes differ: this is not your device; nothing was linked"));
        }
        let Self { network, time, clock, peer, offer, session } = self;
        let mut session = session.confirm();
        let device = SigningSecret::generate(&mut OsEntropy)?;
        let agreement = veil_crypto::epoch::device_agreement_key(&device).public();
        let start = session.seal(&DeviceRequest::Start { device: device.verify_key(), agreement }.encode())?;
        // The first answer comes once the other side confirmed.
        let mut reply = loop {
            let answer = network.request(peer, HandshakeFrame::DeviceSealed(start.clone()).encode()).await?;
            match HandshakeFrame::decode(&answer) {
                Ok(HandshakeFrame::DeviceWaiting) if offer.check_expiry(clock.now()).is_ok() => {
                    time.sleep(WAITING_POLL).await;
                }
                Ok(HandshakeFrame::DeviceWaiting) => {
                    return Err(Error::Refused("the offer expired before the first device confirmed the code"));
                }
                Ok(HandshakeFrame::DeviceSealed(sealed)) => break sealed,
                _ => return Err(Error::Refused("the first device ended the link")),
            }
        };
        let mut received: Option<ReceivedCopy> = None;
        let mut got = 0u64;
        loop {
            let DeviceReply::Piece { total_len, data } = DeviceReply::decode(&session.open(&reply)?)? else {
                return Err(Error::Refused("the first device ended the link early"));
            };
            let copy = match &mut received {
                Some(copy) => copy,
                None => received.insert(ReceivedCopy::begin(db, key_file, total_len)?),
            };
            if data.is_empty() {
                return Err(Error::Refused("the first device sent less than it announced"));
            }
            copy.push(&data)?;
            got = got.saturating_add(data.len() as u64);
            if got >= total_len {
                break;
            }
            reply = ask(&network, peer, session.seal(&DeviceRequest::Next.encode())?).await?;
        }
        let store = received.ok_or(Error::Refused("nothing was received"))?.finish(&device, options).await?;
        // The first device records this one among the account's devices.
        let done = async {
            let farewell = ask(&network, peer, session.seal(&DeviceRequest::Done.encode())?).await?;
            match DeviceReply::decode(&session.open(&farewell)?)? {
                DeviceReply::Farewell => Ok(()),
                DeviceReply::Piece { .. } => Err(Error::Refused("the first device did not say farewell")),
            }
        };
        if let Err(e) = done.await {
            tracing::warn!(error = %e, "linked, but the first device did not confirm it listed this device");
        }
        Ok(store)
    }
}

/// Sends a session message; the first device's sealed answer.
async fn ask(network: &NetworkHandle, peer: PeerId, sealed: Vec<u8>) -> Result<Vec<u8>> {
    let answer = network.request(peer, HandshakeFrame::DeviceSealed(sealed).encode()).await?;
    match HandshakeFrame::decode(&answer) {
        Ok(HandshakeFrame::DeviceSealed(reply)) => Ok(reply),
        _ => Err(Error::Refused("the first device ended the link")),
    }
}
