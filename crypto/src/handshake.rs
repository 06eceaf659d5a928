//! The contact-request handshake, as a sans-IO state machine.
//!
//! `Noise_XK_25519_AESGCM_SHA256` with prologue `"veil/v1/contact-handshake"`.
//! The requester (initiator) knows the responder's X25519 account key from the
//! contact link; its own static key travels encrypted in message 3.
//!
//! ```text
//! 1  requester → responder   e, es          payload: empty
//! 2  responder → requester   e, ee          payload: Sig_B("veil/v1/handshake-responder" ‖ h1)
//! 3  requester → responder   s, se          payload: A_ed ‖ Sig_A("veil/v1/handshake-requester" ‖ h2 ‖ A_x) ‖ request
//! ```
//!
//! `h1`/`h2` are the Noise handshake hashes after messages 1/2, so each
//! account signature is bound to this session's fresh ephemeral keys and
//! cannot be replayed. The responder's signature proves the link's Ed25519
//! key belongs to the party holding its X25519 key (a forged link pairing a
//! victim's Ed25519 key with an attacker's X25519 key fails at message 2).
//! The request payload (display name, the requester's own rendezvous seed, …)
//! is encrypted with forward secrecy — Berty sends it in clear.

use zeroize::Zeroizing;

use crate::{
    AccountKeys, AccountPublic, AgreementPublic, Error, Result, Signature, SigningSecret, VerifyKey, kdf::label,
};

/// The Noise pattern and primitives of the contact handshake (PROTOCOL.md §5); both sides must use exactly these.
pub const NOISE_PARAMS: &str = "Noise_XK_25519_AESGCM_SHA256";
/// The largest request payload carried in message 3.
pub const MAX_REQUEST_PAYLOAD: usize = 4096;
/// The largest handshake message (Noise's own limit).
pub const MAX_MESSAGE_LEN: usize = 65_535;
/// Length of message 1.
pub const MSG1_LEN: usize = 32 + 16;
/// Length of message 2.
pub const MSG2_LEN: usize = 32 + 64 + 16;

fn err(what: &'static str) -> impl Fn(snow::Error) -> Error {
    move |_| Error::Handshake(what)
}

fn builder<'a>(params: &snow::params::NoiseParams) -> snow::Builder<'a> {
    snow::Builder::new(params.clone())
}

fn params() -> Result<snow::params::NoiseParams> {
    NOISE_PARAMS.parse().map_err(err("unsupported Noise parameters"))
}

fn hash32(hs: &snow::HandshakeState) -> Result<[u8; 32]> {
    hs.get_handshake_hash().try_into().map_err(|_| Error::Handshake("unexpected handshake hash length"))
}

/// `context ‖ parts…`: what a handshake signature covers.
pub(crate) fn signed(context: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = context.to_vec();
    for p in parts {
        m.extend_from_slice(p);
    }
    m
}

/// The requester after sending message 1.
pub struct Requester {
    hs: snow::HandshakeState,
    me: AccountKeys,
    responder: AccountPublic,
    h1: [u8; 32],
    request: Zeroizing<Vec<u8>>,
}

impl core::fmt::Debug for Requester {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Requester").field("responder", &self.responder).finish_non_exhaustive()
    }
}

/// What the requester knows once the handshake completed.
#[derive(Debug, Clone)]
pub struct RequestSent {
    /// The responder, authenticated.
    pub responder: AccountPublic,
    /// The final Noise handshake hash (a unique session identifier).
    pub handshake_hash: [u8; 32],
}

impl Requester {
    /// Starts a request to `responder` (from its contact link). `request` is
    /// the opaque payload delivered encrypted in message 3. Returns message 1.
    pub fn start(me: &AccountKeys, responder: &AccountPublic, request: &[u8]) -> Result<(Self, Vec<u8>)> {
        if request.len() > MAX_REQUEST_PAYLOAD {
            return Err(Error::TooLarge { what: "request payload", len: request.len(), max: MAX_REQUEST_PAYLOAD });
        }
        let params = params()?;
        let secret = me.agreement.to_bytes();
        let mut hs = builder(&params)
            .local_private_key(&secret[..])
            .and_then(|b| b.remote_public_key(&responder.agreement.0))
            .and_then(|b| b.prologue(label::HANDSHAKE_PROLOGUE))
            .and_then(|b| b.build_initiator())
            .map_err(err("cannot initialise"))?;
        let mut msg1 = vec![0u8; MSG1_LEN];
        let n = hs.write_message(&[], &mut msg1).map_err(err("cannot write message 1"))?;
        msg1.truncate(n);
        let h1 = hash32(&hs)?;
        Ok((Self { hs, me: me.clone(), responder: *responder, h1, request: Zeroizing::new(request.to_vec()) }, msg1))
    }

    /// Reads message 2, checks the responder's account proof, and returns message 3.
    pub fn read_response(mut self, msg2: &[u8]) -> Result<(RequestSent, Vec<u8>)> {
        let sig = read_signature_message(&mut self.hs, msg2).map_err(Error::Handshake)?;
        self.responder
            .signing
            .verify(&signed(label::HANDSHAKE_RESPONDER, &[&self.h1]), &sig)
            .map_err(|_| Error::Handshake("the responder does not hold the link's account key"))?;
        let h2 = hash32(&self.hs)?;
        let my_x = self.me.agreement.public();
        let proof = self.me.signing.sign(&signed(label::HANDSHAKE_REQUESTER, &[&h2, &my_x.0]));
        let mut payload3 = Zeroizing::new(Vec::with_capacity(96 + self.request.len()));
        payload3.extend_from_slice(&self.me.signing.verify_key().to_bytes());
        payload3.extend_from_slice(&proof.0);
        payload3.extend_from_slice(&self.request);
        let mut msg3 = vec![0u8; payload3.len() + 32 + 16 + 16];
        let n = self.hs.write_message(&payload3, &mut msg3).map_err(err("cannot write message 3"))?;
        msg3.truncate(n);
        let handshake_hash = hash32(&self.hs)?;
        Ok((RequestSent { responder: self.responder, handshake_hash }, msg3))
    }
}

/// Reads a message 2 of [`MSG2_LEN`] bytes (`e, ee` and an encrypted
/// payload that is exactly one signature), as both the contact handshake
/// and the device-link handshake have it; returns the signature, or why the
/// message was refused.
pub(crate) fn read_signature_message(
    hs: &mut snow::HandshakeState,
    msg2: &[u8],
) -> core::result::Result<Signature, &'static str> {
    if msg2.len() != MSG2_LEN {
        return Err("message 2 has the wrong length");
    }
    let mut payload = [0u8; MSG2_LEN];
    let n = hs.read_message(msg2, &mut payload).map_err(|_| "message 2 failed to decrypt")?;
    if n != 64 {
        return Err("message 2 payload has the wrong length");
    }
    let mut sig = [0u8; 64];
    sig.copy_from_slice(&payload[..64]);
    Ok(Signature(sig))
}

/// Reads a message 1 whose length (exactly [`MSG1_LEN`] bytes, so its
/// payload is necessarily empty) the caller has checked, and writes message 2 (`e, ee`) carrying
/// `Sign(signer, context ‖ h1)`, as both the contact handshake and the
/// device-link handshake answer; or says why message 1 was refused.
pub(crate) fn answer_with_signature(
    hs: &mut snow::HandshakeState,
    msg1: &[u8],
    signer: &SigningSecret,
    context: &[u8],
) -> core::result::Result<Vec<u8>, &'static str> {
    let mut payload = [0u8; MSG1_LEN];
    hs.read_message(msg1, &mut payload).map_err(|_| "message 1 failed to decrypt")?;
    let h1: [u8; 32] = hs.get_handshake_hash().try_into().map_err(|_| "unexpected handshake hash length")?;
    let proof = signer.sign(&signed(context, &[&h1]));
    let mut msg2 = vec![0u8; MSG2_LEN];
    let n = hs.write_message(&proof.0, &mut msg2).map_err(|_| "cannot write message 2")?;
    msg2.truncate(n);
    Ok(msg2)
}

/// The responder after answering message 1.
pub struct Responder {
    hs: snow::HandshakeState,
    h2: [u8; 32],
}

impl core::fmt::Debug for Responder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Responder").finish_non_exhaustive()
    }
}

/// A contact request received and authenticated.
pub struct IncomingRequest {
    /// The requester's account, authenticated by the handshake.
    pub requester: AccountPublic,
    /// The request payload, decrypted.
    pub request: Zeroizing<Vec<u8>>,
    /// The final Noise handshake hash (a unique session identifier).
    pub handshake_hash: [u8; 32],
}

impl core::fmt::Debug for IncomingRequest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IncomingRequest")
            .field("requester", &self.requester)
            .field("request_len", &self.request.len())
            .finish_non_exhaustive()
    }
}

impl Responder {
    /// Reads message 1 with our account key and returns message 2.
    pub fn respond(me: &AccountKeys, msg1: &[u8]) -> Result<(Self, Vec<u8>)> {
        if msg1.len() != MSG1_LEN {
            return Err(Error::Handshake("message 1 has the wrong length"));
        }
        let params = params()?;
        let secret = me.agreement.to_bytes();
        let mut hs = builder(&params)
            .local_private_key(&secret[..])
            .and_then(|b| b.prologue(label::HANDSHAKE_PROLOGUE))
            .and_then(|b| b.build_responder())
            .map_err(err("cannot initialise"))?;
        let msg2 =
            answer_with_signature(&mut hs, msg1, &me.signing, label::HANDSHAKE_RESPONDER).map_err(Error::Handshake)?;
        let h2 = hash32(&hs)?;
        Ok((Self { hs, h2 }, msg2))
    }

    /// Reads message 3: authenticates the requester's account and decrypts its request.
    pub fn read_request(mut self, msg3: &[u8]) -> Result<IncomingRequest> {
        let max = 32 + 16 + 96 + MAX_REQUEST_PAYLOAD + 16;
        if msg3.len() > max {
            return Err(Error::TooLarge { what: "handshake message 3", len: msg3.len(), max });
        }
        let mut payload = Zeroizing::new(vec![0u8; msg3.len()]);
        let n = self.hs.read_message(msg3, &mut payload).map_err(err("message 3 failed to decrypt"))?;
        if n < 96 {
            return Err(Error::Handshake("message 3 payload is truncated"));
        }
        let remote: [u8; 32] = self
            .hs
            .get_remote_static()
            .and_then(|s| s.try_into().ok())
            .ok_or(Error::Handshake("no requester static key"))?;
        let agreement = AgreementPublic(remote);
        let signing = VerifyKey::from_slice(&payload[..32]).map_err(|_| Error::Handshake("bad requester key"))?;
        let mut sig = [0u8; 64];
        sig.copy_from_slice(&payload[32..96]);
        signing
            .verify(&signed(label::HANDSHAKE_REQUESTER, &[&self.h2, &agreement.0]), &Signature(sig))
            .map_err(|_| Error::Handshake("the requester's account proof is invalid"))?;
        let handshake_hash = hash32(&self.hs)?;
        Ok(IncomingRequest {
            requester: AccountPublic { signing, agreement },
            request: Zeroizing::new(payload[96..n].to_vec()),
            handshake_hash,
        })
    }
}
