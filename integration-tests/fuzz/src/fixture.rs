//! Fixed keys the targets decode under, and the sealing a hostile member
//! or replication node does by hand (PROTOCOL.md §7), so crafted entries
//! reach the decoders behind the tag and the AEADs.

use std::sync::OnceLock;

use aes_gcm::{
    Aes256Gcm, Key,
    aead::{Aead, KeyInit, Nonce, Payload},
};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use veil_crypto::{
    AccountKeys, AgreementSecret, ChainState, DeviceOffer, GroupKeys, GroupSecret, OfferSecret, SenderChain,
    SigningSecret, TestEntropy,
    device_link::{DeviceSession, JoiningDevice, LinkingDevice},
    envelope::{EntryHash, SealedEntry},
    label,
    time::UnixTime,
};

pub(crate) const POSITION_AAD: &[u8] = b"veil/v1/links";
pub(crate) const HEADER_AAD: &[u8] = b"veil/v1/header";
pub(crate) const BODY_AAD: &[u8] = b"veil/v1/body";
const NONCE: [u8; 12] = [7; 12];
/// The chain state every crafted message entry is written on: a chain key
/// and the counter 0.
pub(crate) const CHAIN: [u8; 40] = {
    let mut state = [3; 40];
    let mut i = 32;
    while i < 40 {
        state[i] = 0;
        i += 1;
    }
    state
};

/// What the targets share, made once.
pub(crate) struct Fixture {
    /// The group every entry is opened in.
    pub(crate) keys: GroupKeys,
    /// The author of crafted entries.
    pub(crate) author: SigningSecret,
    /// The member chain and epoch shares are sealed to.
    pub(crate) member: AgreementSecret,
    /// The responder of the contact handshake.
    pub(crate) responder: AccountKeys,
    /// Its requester.
    pub(crate) requester: AccountKeys,
    /// Local hash sets a reconciliation is answered from (sorted): none,
    /// a few, many, and many sharing one key (first 8 bytes).
    pub(crate) sets: [Vec<EntryHash>; 4],
    /// A device-link offer of the responder's account.
    pub(crate) device_offer: DeviceOffer,
}

pub(crate) fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut entropy = TestEntropy::new(b"veil fuzz fixture");
        let hash = |i: u32| EntryHash(Sha256::digest(i.to_be_bytes()).into());
        let mut few: Vec<EntryHash> = (0..20).map(hash).collect();
        let mut many: Vec<EntryHash> = (0..2000).map(hash).collect();
        let mut clustered: Vec<EntryHash> = (0..300)
            .map(|i| {
                let mut h = hash(i).0;
                h[..8].copy_from_slice(&[0x42; 8]);
                EntryHash(h)
            })
            .chain((300..600).map(hash))
            .collect();
        for set in [&mut few, &mut many, &mut clustered] {
            set.sort();
        }
        let responder = AccountKeys::generate(&mut entropy).expect("test entropy");
        let requester = AccountKeys::generate(&mut entropy).expect("test entropy");
        let device_offer = DeviceOffer {
            account: responder.public(),
            secret: OfferSecret::from_bytes([0x21; 32]),
            expires_at: DEVICE_NOW.plus(600),
        };
        Fixture {
            keys: GroupKeys::derive(&GroupSecret::from_bytes([1; 32])),
            author: SigningSecret::from_seed(&[2; 32]),
            member: AgreementSecret::from_bytes([4; 32]),
            responder,
            requester,
            sets: [Vec::new(), few, many, clustered],
            device_offer,
        }
    })
}

/// The key crafted backup files are sealed under (what a passphrase
/// would have derived).
pub(crate) const BACKUP_KEY: [u8; 32] = [5; 32];

/// Opens a backup's parts as the store does (`nonce ‖ AES-256-GCM`, the
/// purpose as associated data), under [`BACKUP_KEY`].
pub(crate) struct BackupKey;

impl crate::backup_format::Opener for BackupKey {
    fn open(&self, purpose: &[u8], sealed: &[u8]) -> Option<zeroize::Zeroizing<Vec<u8>>> {
        let (nonce, ciphertext) = sealed.split_at_checked(12)?;
        let nonce: [u8; 12] = nonce.try_into().ok()?;
        Aes256Gcm::new(&Key::<Aes256Gcm>::from(BACKUP_KEY))
            .decrypt(&Nonce::<Aes256Gcm>::from(nonce), Payload { msg: ciphertext, aad: purpose })
            .ok()
            .map(zeroize::Zeroizing::new)
    }
}

/// AES-256-GCM.
pub(crate) fn gcm(key: &[u8; 32], nonce: &[u8; 12], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key))
        .encrypt(&Nonce::<Aes256Gcm>::from(*nonce), Payload { msg: plaintext, aad })
        .expect("AES-GCM seals anything this small")
}

/// `nonce ‖ AES-256-GCM`, as entry sections are sealed.
pub(crate) fn gcm_prefixed(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut out = NONCE.to_vec();
    out.extend_from_slice(&gcm(key, &NONCE, aad, plaintext));
    out
}

fn put_lp(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// How a crafted entry's header is made.
pub(crate) enum Header<'a> {
    /// By the fixture's author, signed, with this counter.
    Signed(u64),
    /// These bytes, whatever they are.
    Raw(&'a [u8]),
}

/// The body key of a crafted entry.
pub(crate) enum Body {
    /// The group's metadata key.
    Metadata,
    /// The message key of [`CHAIN`] at this counter.
    Message(u64),
}

/// An entry whose sections are `position` and `body` (plaintexts, sealed
/// under the fixture's keys) and `header`, with a valid tag.
pub(crate) fn craft_entry(position: &[u8], header: Header<'_>, body_key: Body, body: &[u8]) -> SealedEntry {
    let f = fixture();
    let position_ct = gcm_prefixed(f.keys.position_key.expose_secret(), POSITION_AAD, position);
    let body_aad = [BODY_AAD, &position_ct].concat();
    let body_ct = match body_key {
        Body::Metadata => gcm_prefixed(f.keys.metadata_key.expose_secret(), &body_aad, body),
        Body::Message(counter) => {
            let mut chain = SenderChain::from_state(ChainState::from_bytes(&CHAIN).expect("40 bytes"));
            chain.skip_to(counter).expect("a counter ahead of the chain");
            let (_, key) = chain.next_key().expect("a next key");
            gcm(key.expose_key(), key.nonce(), &body_aad, body)
        }
    };
    let header_plain = match header {
        Header::Raw(bytes) => bytes.to_vec(),
        Header::Signed(counter) => {
            let author = f.author.verify_key().to_bytes();
            let mut signed = label::ENTRY_SIG.to_vec();
            signed.extend_from_slice(&f.keys.id.0);
            put_lp(&mut signed, &position_ct);
            signed.extend_from_slice(&author);
            signed.extend_from_slice(&counter.to_be_bytes());
            put_lp(&mut signed, &body_ct);
            let mut h = vec![1];
            h.extend_from_slice(&author);
            h.extend_from_slice(&counter.to_be_bytes());
            h.extend_from_slice(&f.author.sign(&signed).0);
            h
        }
    };
    let header_ct =
        gcm_prefixed(f.keys.header_key.expose_secret(), &[HEADER_AAD, &position_ct].concat(), &header_plain);
    let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(f.keys.entry_auth_key.expose_secret())
        .expect("HMAC takes any key");
    let mut input = label::ENTRY_MAC.to_vec();
    for section in [&position_ct, &header_ct, &body_ct] {
        put_lp(&mut input, section);
    }
    mac.update(&input);
    SealedEntry { position: position_ct, header: header_ct, body: body_ct, tag: mac.finalize().into_bytes().into() }
}

/// The position plaintext of `kind` (1 metadata, 2 message), `lamport` and
/// `parents` (PROTOCOL.md §7).
pub(crate) fn links_plain(kind: u8, lamport: u64, parents: &[EntryHash]) -> Vec<u8> {
    let mut out = vec![1, kind];
    out.extend_from_slice(&lamport.to_be_bytes());
    out.push(u8::try_from(parents.len()).unwrap_or(u8::MAX));
    for p in parents {
        out.extend_from_slice(&p.0);
    }
    out
}

/// A little-endian cursor over fuzz input: reads never fail, past the end
/// they give zeros.
pub(crate) struct Input<'a>(pub(crate) &'a [u8]);

impl<'a> Input<'a> {
    pub(crate) fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.0.split_at(n.min(self.0.len()));
        self.0 = tail;
        head
    }

    pub(crate) fn u8(&mut self) -> u8 {
        self.bytes(1).first().copied().unwrap_or(0)
    }

    pub(crate) fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | (u16::from(self.u8()) << 8)
    }

    pub(crate) fn u64(&mut self) -> u64 {
        (0..8).fold(0, |acc, i| acc | (u64::from(self.u8()) << (8 * i)))
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        self.bytes(self.0.len())
    }
}

/// The time every device-link input is read at (the offer is valid).
pub(crate) const DEVICE_NOW: UnixTime = UnixTime(1_800_000_000);
/// The entropy the new device draws its ephemeral key from: its message 1
/// is the same in every run.
pub(crate) const DEVICE_NEW: &[u8] = b"veil fuzz device new";
/// The entropy of the first device's ephemeral key.
pub(crate) const DEVICE_FIRST: &[u8] = b"veil fuzz device first";

/// The new device of the fixture's offer, after its message 1.
pub(crate) fn joining_device() -> (JoiningDevice, Vec<u8>) {
    JoiningDevice::start(&fixture().device_offer, DEVICE_NOW, &mut TestEntropy::new(DEVICE_NEW)).expect("a valid offer")
}

/// The first device, holding the fixture's offer.
pub(crate) fn linking_device() -> LinkingDevice {
    let f = fixture();
    LinkingDevice::new(&f.responder, f.device_offer.clone()).expect("the offer is the account's")
}

/// Both sides of a confirmed device-link session: (new device, first device).
pub(crate) fn device_sessions() -> (DeviceSession, DeviceSession) {
    let (joining, msg1) = joining_device();
    let (first, msg2) =
        linking_device().respond(&msg1, DEVICE_NOW, &mut TestEntropy::new(DEVICE_FIRST)).expect("a valid message 1");
    let new = joining.read_response(&msg2).expect("a valid message 2");
    (new.confirm(), first.confirm())
}

/// HKDF-SHA256 to 32 bytes (RFC 5869; one block of output).
fn hkdf32(salt: &[u8], ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let mac = |key: &[u8], parts: &[&[u8]]| {
        let mut m = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key).expect("HMAC takes any key");
        parts.iter().for_each(|p| m.update(p));
        let out: [u8; 32] = m.finalize().into_bytes().into();
        out
    };
    let prk = mac(salt, &[ikm]);
    mac(&prk, &[info, &[1]])
}

/// A Noise state of the device-link handshake for the fixture's offer, as
/// PROTOCOL.md §14 builds it: what anyone holding the offer's secret can
/// run, with or without the account key.
pub(crate) fn device_noise(initiator: bool) -> snow::HandshakeState {
    let offer = &fixture().device_offer;
    let psk = hkdf32(b"veil/v1/device-offer", offer.secret.expose_secret(), b"device-link-psk");
    let mut prologue = b"veil/v1/device-link".to_vec();
    prologue.extend_from_slice(&offer.account.to_bytes());
    prologue.extend_from_slice(&offer.expires_at.0.to_be_bytes());
    let params = veil_crypto::device_link::NOISE_PARAMS.parse().expect("veil's Noise parameters");
    let builder = snow::Builder::new(params).psk(0, &psk).and_then(|b| b.prologue(&prologue));
    if initiator {
        builder.and_then(snow::Builder::build_initiator)
    } else {
        builder.and_then(snow::Builder::build_responder)
    }
    .expect("a Noise state")
}
