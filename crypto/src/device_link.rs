//! Linking a new device to an account, as a sans-IO state machine
//! (PROTOCOL.md §14).
//!
//! The account's first device makes a one-time [`DeviceOffer`] and shows it
//! as a link or QR code (its text forms are in `veil-proto`); the new device
//! reads it. From the offer's secret both derive the seed of the rendezvous
//! points they meet at ([`Topic::device`](crate::rendezvous::Topic::device))
//! and the pre-shared key of a two-message handshake:
//!
//! ```text
//! Noise_NNpsk0_25519_AESGCM_SHA256
//! prologue = "veil/v1/device-link" ‖ A_ed ‖ A_x ‖ u64_be(expires_at)
//! 1  new device → first device   psk, e    payload: empty
//! 2  first device → new device   e, ee     payload: Sig_A("veil/v1/device-link-existing" ‖ h1)
//! ```
//!
//! Only a holder of the offer's secret can write message 1; only a holder of
//! the account's signing key can write message 2, so someone who merely saw
//! the QR code cannot pose as the first device. Someone who saw it *can*
//! pose as the new device, which is why both devices then show a
//! [`ShortCode`] derived from the final handshake hash, and nothing can be
//! sealed until the user says the two codes match
//! ([`UnconfirmedSession::confirm`]). Each side draws its Noise ephemeral
//! key from the [`Entropy`] it is given (the OS in production), like every
//! other random value of this crate.
//!
//! ```
//! use veil_crypto::{
//!     device_link::{DeviceOffer, JoiningDevice, LinkingDevice, DEFAULT_OFFER_LIFETIME},
//!     time::UnixTime,
//!     Identity, OsEntropy,
//! };
//!
//! # fn main() -> Result<(), veil_crypto::Error> {
//! let mut rng = OsEntropy;
//! let first = Identity::generate(&mut rng)?;
//! let now = UnixTime(1_800_000_000);
//!
//! // The first device shows an offer; the new device scans it.
//! let offer = DeviceOffer::new(first.account.public(), now.plus(DEFAULT_OFFER_LIFETIME), &mut rng)?;
//! let linking = LinkingDevice::new(&first.account, offer.clone())?;
//!
//! let (joining, msg1) = JoiningDevice::start(&offer, now, &mut rng)?;
//! let (at_first, msg2) = linking.respond(&msg1, now, &mut rng)?;
//! let at_new = joining.read_response(&msg2)?;
//!
//! // Both screens show the same code, e.g. "042 917"; the user confirms on each.
//! assert_eq!(at_first.short_code(), at_new.short_code());
//! let (mut first_side, mut new_side) = (at_first.confirm(), at_new.confirm());
//!
//! let sealed = first_side.seal(b"the account's secrets")?;
//! assert_eq!(&new_side.open(&sealed)?[..], b"the account's secrets");
//! # Ok(())
//! # }
//! ```

use zeroize::Zeroizing;

use crate::{
    AccountKeys, AccountPublic, Entropy, Error, Result, SigningSecret,
    handshake::{answer_with_signature, read_signature_message, signed},
    kdf::{hkdf, label},
    rendezvous::RendezvousSeed,
    secret::secret32,
    time::UnixTime,
};

/// The Noise pattern and primitives of the device-link handshake (PROTOCOL.md §14).
pub const NOISE_PARAMS: &str = "Noise_NNpsk0_25519_AESGCM_SHA256";
/// Length of message 1: the new device's ephemeral key and the tag of its empty payload
/// (as in the contact handshake).
pub const MSG1_LEN: usize = crate::handshake::MSG1_LEN;
/// Length of message 2: the first device's ephemeral key, the account signature and its tag
/// (as in the contact handshake).
pub const MSG2_LEN: usize = crate::handshake::MSG2_LEN;
/// Bytes a sealed session message adds to its plaintext (the AES-GCM tag).
pub const TAG_LEN: usize = 16;
/// The largest sealed session message (Noise's own limit).
pub const MAX_MESSAGE_LEN: usize = 65_535;
/// The largest plaintext one session message carries; callers cut bigger
/// bundles into pieces of at most this size.
pub const MAX_PLAINTEXT: usize = MAX_MESSAGE_LEN - TAG_LEN;
/// A sensible lifetime for an offer, in seconds (the caller picks `expires_at`).
pub const DEFAULT_OFFER_LIFETIME: u64 = 600;
/// How many codes there are: six decimal digits.
const CODE_MODULUS: u64 = 1_000_000;

secret32!(
    /// The one-time secret of a [`DeviceOffer`]: whoever holds it can find
    /// the first device and start the handshake. Zeroized on drop, never
    /// printed.
    OfferSecret
);

/// What the first device shows (as `veil://device/…` or a QR code) so that a
/// new device can join its account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceOffer {
    /// The account the new device joins; message 2 must be signed by its Ed25519 key.
    pub account: AccountPublic,
    /// The one-time secret: the rendezvous seed and the handshake's pre-shared key follow from it.
    pub secret: OfferSecret,
    /// When the offer stops being honoured, on either device's clock.
    pub expires_at: UnixTime,
}

impl DeviceOffer {
    /// A new offer of `account` with a fresh secret, valid until `expires_at`
    /// (for instance now plus [`DEFAULT_OFFER_LIFETIME`]).
    pub fn new(account: AccountPublic, expires_at: UnixTime, entropy: &mut impl Entropy) -> Result<Self> {
        Ok(Self { account, secret: OfferSecret::generate(entropy)?, expires_at })
    }

    /// Refuses the offer at or after its expiry.
    pub fn check_expiry(&self, now: UnixTime) -> Result<()> {
        if now >= self.expires_at {
            return Err(Error::Expired { what: "device-link offer", expired_at: self.expires_at.0, now: now.0 });
        }
        Ok(())
    }

    /// The seed of the rendezvous points the two devices meet at, under
    /// [`Topic::device`](crate::rendezvous::Topic::device):
    /// `HKDF(salt = "veil/v1/device-offer", ikm = secret, info = "device-rendezvous-seed")`.
    pub fn rendezvous_seed(&self) -> RendezvousSeed {
        let seed = hkdf::<32>(label::DEVICE_OFFER, self.secret.expose_secret(), &[label::DEVICE_RENDEZVOUS]);
        RendezvousSeed::from_bytes(*seed)
    }

    /// The handshake's pre-shared key.
    fn psk(&self) -> Zeroizing<[u8; 32]> {
        hkdf::<32>(label::DEVICE_OFFER, self.secret.expose_secret(), &[label::DEVICE_PSK])
    }

    /// The Noise prologue: the label, then every public field of the offer.
    fn prologue(&self) -> Vec<u8> {
        let mut p = label::DEVICE_LINK_PROLOGUE.to_vec();
        p.extend_from_slice(&self.account.to_bytes());
        p.extend_from_slice(&self.expires_at.0.to_be_bytes());
        p
    }
}

fn err(what: &'static str) -> impl Fn(snow::Error) -> Error {
    move |_| Error::DeviceLink(what)
}

fn hash32(hs: &snow::HandshakeState) -> Result<[u8; 32]> {
    hs.get_handshake_hash().try_into().map_err(|_| Error::DeviceLink("unexpected handshake hash length"))
}

/// A Noise state for `offer`, with its ephemeral key drawn from `entropy`.
fn handshake_state(offer: &DeviceOffer, entropy: &mut impl Entropy, initiator: bool) -> Result<snow::HandshakeState> {
    let params: snow::params::NoiseParams = NOISE_PARAMS.parse().map_err(err("unsupported Noise parameters"))?;
    let psk = offer.psk();
    let prologue = offer.prologue();
    let mut ephemeral = Zeroizing::new([0u8; 32]);
    entropy.fill(&mut ephemeral[..])?;
    // snow's name for this hook says "testing": it only means snow takes the
    // ephemeral from the caller instead of from its own RNG. Here it always
    // comes from the caller's `Entropy` (the OS in production), so the test
    // vectors pin it the way they pin every other random value of the crate.
    let builder = snow::Builder::new(params)
        .psk(0, &psk)
        .and_then(|b| b.prologue(&prologue))
        .map(|b| b.fixed_ephemeral_key_for_testing_only(&ephemeral[..]));
    let built = if initiator {
        builder.and_then(snow::Builder::build_initiator)
    } else {
        builder.and_then(snow::Builder::build_responder)
    };
    built.map_err(err("cannot initialise"))
}

/// The new device, after sending message 1.
pub struct JoiningDevice {
    hs: snow::HandshakeState,
    account: AccountPublic,
    h1: [u8; 32],
}

impl core::fmt::Debug for JoiningDevice {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("JoiningDevice").field("account", &self.account).finish_non_exhaustive()
    }
}

impl JoiningDevice {
    /// Starts joining the account of `offer` (scanned from the first
    /// device): refuses an offer expired at `now`, draws this side's
    /// ephemeral key from `entropy` and returns message 1.
    pub fn start(offer: &DeviceOffer, now: UnixTime, entropy: &mut impl Entropy) -> Result<(Self, Vec<u8>)> {
        offer.check_expiry(now)?;
        let mut hs = handshake_state(offer, entropy, true)?;
        let mut msg1 = vec![0u8; MSG1_LEN];
        let n = hs.write_message(&[], &mut msg1).map_err(err("cannot write message 1"))?;
        msg1.truncate(n);
        let h1 = hash32(&hs)?;
        Ok((Self { hs, account: offer.account, h1 }, msg1))
    }

    /// Reads message 2 and checks that the first device signed this
    /// session with the offer's account key. The session it returns seals
    /// and opens nothing until [`UnconfirmedSession::confirm`].
    pub fn read_response(mut self, msg2: &[u8]) -> Result<UnconfirmedSession> {
        let sig = read_signature_message(&mut self.hs, msg2).map_err(Error::DeviceLink)?;
        self.account
            .signing
            .verify(&signed(label::DEVICE_LINK_EXISTING, &[&self.h1]), &sig)
            .map_err(|_| Error::DeviceLink("the first device does not hold the offer's account key"))?;
        UnconfirmedSession::finish(self.hs, Role::Joining, self.account)
    }
}

/// The first device, holding its offer: answers the new device's message 1.
///
/// It answers every valid message 1 with a new session; the caller keeps
/// at most one going, and drops the offer once a session is confirmed, when
/// a code did not match (someone else has the QR code) or on expiry.
pub struct LinkingDevice {
    signing: SigningSecret,
    offer: DeviceOffer,
}

impl core::fmt::Debug for LinkingDevice {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LinkingDevice").field("offer", &self.offer).finish_non_exhaustive()
    }
}

impl LinkingDevice {
    /// Holds `offer` of `account` (which must be the offer's account).
    pub fn new(account: &AccountKeys, offer: DeviceOffer) -> Result<Self> {
        if offer.account != account.public() {
            return Err(Error::DeviceLink("the offer names another account"));
        }
        Ok(Self { signing: account.signing.clone(), offer })
    }

    /// The offer this device shows.
    pub fn offer(&self) -> &DeviceOffer {
        &self.offer
    }

    /// Reads message 1 (refused if the offer expired at `now`), signs the
    /// session with the account key and returns message 2, with the session
    /// that seals nothing until [`UnconfirmedSession::confirm`]. This side's
    /// ephemeral key comes from `entropy`.
    pub fn respond(
        &self,
        msg1: &[u8],
        now: UnixTime,
        entropy: &mut impl Entropy,
    ) -> Result<(UnconfirmedSession, Vec<u8>)> {
        self.offer.check_expiry(now)?;
        if msg1.len() != MSG1_LEN {
            return Err(Error::DeviceLink("message 1 has the wrong length"));
        }
        let mut hs = handshake_state(&self.offer, entropy, false)?;
        let msg2 = answer_with_signature(&mut hs, msg1, &self.signing, label::DEVICE_LINK_EXISTING)
            .map_err(Error::DeviceLink)?;
        Ok((UnconfirmedSession::finish(hs, Role::Linking, self.offer.account)?, msg2))
    }
}

/// Which side of the link a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The new device (the Noise initiator).
    Joining,
    /// The first device, which holds the account already (the Noise responder).
    Linking,
}

/// The code both devices show once the handshake completed: six decimal
/// digits (about 19.9 bits), displayed as `"042 917"`.
///
/// `code = u64_be(HKDF(salt = "veil/v1/device-link-code", ikm = h, info = "", 8)) mod 10^6`
/// for the final handshake hash `h`: equal on both sides of one session,
/// independent across sessions. Reducing 64 bits modulo 10^6 favours some
/// codes by at most 10^6 / 2^64 (about 5·10^-14), which is negligible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShortCode(u32);

impl ShortCode {
    /// Number of decimal digits.
    pub const DIGITS: usize = 6;

    fn derive(handshake_hash: &[u8; 32]) -> Self {
        let bytes = hkdf::<8>(label::DEVICE_LINK_CODE, handshake_hash, &[]);
        // Below 10^6, so it fits a u32.
        Self((u64::from_be_bytes(*bytes) % CODE_MODULUS) as u32)
    }

    /// The code as a number below 10^6.
    pub fn value(&self) -> u32 {
        self.0
    }
}

impl core::fmt::Display for ShortCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:03} {:03}", self.0 / 1000, self.0 % 1000)
    }
}

impl core::str::FromStr for ShortCode {
    type Err = Error;

    /// Reads a code as a user types it: six digits, spaces and hyphens
    /// anywhere ignored (`"042 917"`, `"042917"`, `"042-917"`).
    fn from_str(text: &str) -> Result<Self> {
        let bad = Error::Malformed { what: "short code", reason: "expected six digits" };
        if text.len() > 32 {
            return Err(bad);
        }
        let mut value = 0u32;
        let mut digits = 0;
        for c in text.chars().filter(|c| !matches!(c, ' ' | '-')) {
            let d = c.to_digit(10).ok_or_else(|| bad.clone())?;
            digits += 1;
            if digits > Self::DIGITS {
                return Err(bad);
            }
            value = value * 10 + d;
        }
        if digits != Self::DIGITS {
            return Err(bad);
        }
        Ok(Self(value))
    }
}

/// A completed handshake whose [`ShortCode`] the user has not confirmed yet:
/// it can show the code, nothing else. Sealing or opening takes a
/// [`DeviceSession`], which only [`confirm`](Self::confirm) gives:
///
/// ```compile_fail,E0599
/// # use veil_crypto::device_link::UnconfirmedSession;
/// fn too_early(session: &mut UnconfirmedSession) {
///     let _ = session.seal(b"the account's secrets");
/// }
/// ```
#[derive(Debug)]
pub struct UnconfirmedSession {
    session: DeviceSession,
    code: ShortCode,
}

impl UnconfirmedSession {
    fn finish(hs: snow::HandshakeState, role: Role, account: AccountPublic) -> Result<Self> {
        let handshake_hash = hash32(&hs)?;
        let code = ShortCode::derive(&handshake_hash);
        let transport = hs.into_transport_mode().map_err(err("the handshake is not finished"))?;
        Ok(Self { session: DeviceSession { transport, role, account, handshake_hash, failed: false }, code })
    }

    /// The code to show; the user compares it with the other device's.
    pub fn short_code(&self) -> ShortCode {
        self.code
    }

    /// Which side of the link this is, the account being linked (for the
    /// new device, authenticated by message 2) and the session identifier.
    pub fn info(&self) -> SessionInfo<'_> {
        self.session.info()
    }

    /// Call only once the user said this device's code equals the one the
    /// other device shows; on a mismatch drop the session (and, on the first
    /// device, the offer: someone else has it).
    pub fn confirm(self) -> DeviceSession {
        self.session
    }
}

/// What both sides of a session know about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionInfo<'a> {
    /// Which side of the link this is.
    pub role: Role,
    /// The account being linked (for the new device, authenticated by message 2).
    pub account: &'a AccountPublic,
    /// The final Noise handshake hash (a unique session identifier, equal on both sides).
    pub handshake_hash: [u8; 32],
}

/// A confirmed session between the two devices: messages of at most
/// [`MAX_PLAINTEXT`] bytes each way, in order, each read exactly once.
///
/// A replayed, reordered, truncated or modified message fails to open, and
/// from then on the session refuses everything: a link interrupted that way
/// starts over with a new offer.
pub struct DeviceSession {
    transport: snow::TransportState,
    role: Role,
    account: AccountPublic,
    handshake_hash: [u8; 32],
    failed: bool,
}

impl core::fmt::Debug for DeviceSession {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeviceSession")
            .field("role", &self.role)
            .field("account", &self.account)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl DeviceSession {
    /// Which side of the link this is, the account being linked and the session identifier.
    pub fn info(&self) -> SessionInfo<'_> {
        SessionInfo { role: self.role, account: &self.account, handshake_hash: self.handshake_hash }
    }

    fn usable(&self) -> Result<()> {
        if self.failed {
            return Err(Error::DeviceLink("the session failed earlier; link again with a new offer"));
        }
        Ok(())
    }

    /// Seals the next message to the other device (`plaintext` of at most
    /// [`MAX_PLAINTEXT`] bytes; the result is [`TAG_LEN`] bytes longer).
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>> {
        self.usable()?;
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(Error::TooLarge { what: "device-link message", len: plaintext.len(), max: MAX_PLAINTEXT });
        }
        let mut out = vec![0u8; plaintext.len() + TAG_LEN];
        let done = self.transport.write_message(plaintext, &mut out);
        self.settle(done, &mut out, "cannot seal")?;
        Ok(out)
    }

    /// Opens the next message from the other device.
    pub fn open(&mut self, message: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        self.usable()?;
        if message.len() > MAX_MESSAGE_LEN {
            self.failed = true;
            return Err(Error::TooLarge { what: "device-link message", len: message.len(), max: MAX_MESSAGE_LEN });
        }
        if message.len() < TAG_LEN {
            self.failed = true;
            return Err(Error::DeviceLink("the message is truncated"));
        }
        let mut out = Zeroizing::new(vec![0u8; message.len() - TAG_LEN]);
        let done = self.transport.read_message(message, &mut out);
        self.settle(done, &mut out, "the message failed to open: replayed, reordered, truncated or modified")?;
        Ok(out)
    }

    /// Keeps the `n` bytes snow wrote to `out`, or closes the session for good.
    fn settle(
        &mut self,
        done: core::result::Result<usize, snow::Error>,
        out: &mut Vec<u8>,
        what: &'static str,
    ) -> Result<()> {
        match done {
            Ok(n) => {
                out.truncate(n);
                Ok(())
            }
            Err(_) => {
                self.failed = true;
                Err(Error::DeviceLink(what))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn codes_print_as_two_groups_of_three_digits_and_read_back() {
        for (value, shown) in [(42_917, "042 917"), (0, "000 000"), (999_999, "999 999"), (100_001, "100 001")] {
            let code = ShortCode(value);
            assert_eq!(code.to_string(), shown);
            assert_eq!(shown.parse::<ShortCode>(), Ok(code));
            assert_eq!(shown.replace(' ', "").parse::<ShortCode>(), Ok(code));
            assert_eq!(shown.replace(' ', "-").parse::<ShortCode>(), Ok(code));
        }
        for bad in ["", "12345", "1234567", "12a456", "１２３４５６", "042 9177", "0429 1"] {
            assert!(bad.parse::<ShortCode>().is_err(), "{bad:?} was read as a code");
        }
    }

    #[test]
    fn offer_derivations_are_separated() {
        let offer = DeviceOffer {
            account: AccountKeys::generate(&mut crate::TestEntropy::new(b"a")).unwrap().public(),
            secret: OfferSecret::from_bytes([7; 32]),
            expires_at: UnixTime(1000),
        };
        let seed = offer.rendezvous_seed();
        assert_ne!(seed.expose_secret(), &*offer.psk());
        assert_ne!(seed.expose_secret(), offer.secret.expose_secret());
        assert!(offer.prologue().starts_with(label::DEVICE_LINK_PROLOGUE));
        assert!(offer.check_expiry(UnixTime(999)).is_ok());
        assert_eq!(
            offer.check_expiry(UnixTime(1000)),
            Err(Error::Expired { what: "device-link offer", expired_at: 1000, now: 1000 })
        );
    }

    proptest! {
        #[test]
        fn typed_codes_never_panic_and_what_reads_prints_back(text in "[0-9 \\-a]{0,12}|.{0,40}") {
            if let Ok(code) = text.parse::<ShortCode>() {
                prop_assert!(code.value() < 1_000_000);
                prop_assert_eq!(code.to_string().parse::<ShortCode>(), Ok(code));
                let digits: String = text.chars().filter(char::is_ascii_digit).collect();
                prop_assert_eq!(code.to_string().replace(' ', ""), digits);
            }
        }

        #[test]
        fn derived_codes_have_six_digits(h in any::<[u8; 32]>()) {
            let code = ShortCode::derive(&h);
            prop_assert!(code.value() < 1_000_000);
            prop_assert_eq!(code.to_string().len(), 7);
        }
    }
}
