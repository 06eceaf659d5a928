#![allow(clippy::unwrap_used)]

use veil_crypto::{Identity, OsEntropy, device_link::JoiningDevice};

use super::*;

const NOW: UnixTime = UnixTime(1_000_000);

fn account() -> AccountKeys {
    Identity::generate(&mut OsEntropy).unwrap().account
}

/// A new device's message 1 for `offer`, and its side of the handshake.
fn hello(offer: &DeviceOffer) -> (JoiningDevice, Vec<u8>) {
    JoiningDevice::start(offer, NOW, &mut OsEntropy).unwrap()
}

fn peer() -> PeerId {
    PeerId::random()
}

#[test]
fn the_typed_code_confirms_the_session_and_a_wrong_one_withdraws_the_offer() {
    let mut offers = Offers::default();
    let (id, offer) = offers.create(&account(), UnixTime(NOW.0 + 600), &mut OsEntropy).unwrap();
    let (joining, msg1) = hello(&offer);
    let alice = peer();
    let (code, msg2) = offers.hello(id, alice, &msg1, NOW, &mut OsEntropy).unwrap();
    let new_device = joining.read_response(&msg2).unwrap();
    assert_eq!(new_device.short_code(), code, "both sides show the same code");
    // Before the user confirms, the session opens nothing.
    assert!(matches!(offers.open(id, alice, b"anything").unwrap(), Opened::Waiting));
    assert!(offers.open(id, peer(), b"anything").is_err(), "only the session's peer is heard");
    assert!(offers.confirm(id, code).unwrap());
    let mut session = new_device.confirm();
    let device = veil_crypto::SigningSecret::generate(&mut OsEntropy).unwrap().verify_key();
    let agreement = veil_crypto::AgreementPublic([4; 32]);
    let start = session.seal(&DeviceRequest::Start { device, agreement }.encode()).unwrap();
    assert!(matches!(offers.open(id, alice, &start).unwrap(), Opened::Request(DeviceRequest::Start { .. })));
    assert_eq!(offers.device(id), Some((device, agreement)));
    // A confirmed offer answers nobody else.
    let (_, other) = hello(&offer);
    assert!(offers.hello(id, peer(), &other, NOW, &mut OsEntropy).is_err());

    // A code that differs: someone else holds the offer.
    let (id, offer) = offers.create(&account(), UnixTime(NOW.0 + 600), &mut OsEntropy).unwrap();
    let (_, msg1) = hello(&offer);
    let (code, _) = offers.hello(id, peer(), &msg1, NOW, &mut OsEntropy).unwrap();
    let wrong: ShortCode = format!("{:06}", (code.value() + 1) % 1_000_000).parse().unwrap();
    assert!(!offers.confirm(id, wrong).unwrap());
    assert!(!offers.is_live(id), "withdrawn");
}

#[test]
fn a_message_that_fails_to_open_ends_the_offer() {
    let mut offers = Offers::default();
    let (id, offer) = offers.create(&account(), UnixTime(NOW.0 + 600), &mut OsEntropy).unwrap();
    let (joining, msg1) = hello(&offer);
    let alice = peer();
    let (code, msg2) = offers.hello(id, alice, &msg1, NOW, &mut OsEntropy).unwrap();
    let mut session = joining.read_response(&msg2).unwrap().confirm();
    assert!(offers.confirm(id, code).unwrap());
    let mut sealed = session.seal(&DeviceRequest::Next.encode()).unwrap();
    sealed[0] ^= 1;
    assert!(offers.open(id, alice, &sealed).is_err());
    assert!(!offers.is_live(id));
}

#[test]
fn failed_hellos_and_expiry_withdraw_an_offer_and_the_oldest_offer_makes_room() {
    let mut offers = Offers::default();
    let (id, offer) = offers.create(&account(), UnixTime(NOW.0 + 600), &mut OsEntropy).unwrap();
    // Someone without the offer: the pre-shared key is wrong.
    let (stranger, _) = offers.create(&account(), UnixTime(NOW.0 + 600), &mut OsEntropy).unwrap();
    let (_, foreign) = hello(&offers_offer(&mut offers, stranger));
    for _ in 0..MAX_FAILED_HELLOS {
        assert!(offers.hello(id, peer(), &foreign, NOW, &mut OsEntropy).is_err());
    }
    assert!(!offers.is_live(id), "too many failed message 1s");

    // Expired: no answer, and dropped.
    let (id, offer2) = offers.create(&account(), UnixTime(NOW.0 + 10), &mut OsEntropy).unwrap();
    let (_, msg1) = JoiningDevice::start(&offer2, NOW, &mut OsEntropy).unwrap();
    assert!(offers.hello(id, peer(), &msg1, UnixTime(NOW.0 + 10), &mut OsEntropy).is_err());
    assert!(!offers.is_live(id));
    let (id, _) = offers.create(&account(), UnixTime(NOW.0 + 10), &mut OsEntropy).unwrap();
    assert_eq!(offers.expire(UnixTime(NOW.0 + 10)), vec![id]);

    let ids: Vec<OfferId> = (0..MAX_OFFERS + 1)
        .map(|_| offers.create(&account(), UnixTime(NOW.0 + 600), &mut OsEntropy).unwrap().0)
        .collect();
    assert!(!offers.is_live(ids[0]) && ids[1..].iter().all(|id| offers.is_live(*id)));
    let _ = offer;
}

#[test]
fn valid_hellos_replace_the_unconfirmed_session_up_to_a_limit() {
    let mut offers = Offers::default();
    let (id, offer) = offers.create(&account(), UnixTime(NOW.0 + 600), &mut OsEntropy).unwrap();
    let mut last = None;
    for _ in 0..MAX_SESSIONS {
        let (joining, msg1) = hello(&offer);
        let who = peer();
        let (code, msg2) = offers.hello(id, who, &msg1, NOW, &mut OsEntropy).unwrap();
        last = Some((joining.read_response(&msg2).unwrap(), who, code));
    }
    let (_, msg1) = hello(&offer);
    assert!(offers.hello(id, peer(), &msg1, NOW, &mut OsEntropy).is_err(), "no more sessions");
    let (_, who, code) = last.unwrap();
    // The last session may still be confirmed.
    assert!(matches!(offers.open(id, who, b"x").unwrap(), Opened::Waiting));
    assert!(offers.confirm(id, code).unwrap());
}

/// The offer a live id stands for (rebuilt: the table keeps the linking side only).
fn offers_offer(offers: &mut Offers, id: OfferId) -> DeviceOffer {
    offers.live.get(&id).unwrap().linking.offer().clone()
}
