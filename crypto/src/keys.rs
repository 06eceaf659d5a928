//! Identity keys: signing (Ed25519) and key agreement (X25519).
//!
//! veil uses **dedicated X25519 keys** for key agreement instead of converting
//! Ed25519 keys to Montgomery form (Berty's choice). No key is ever used in two
//! primitives, which keeps the security arguments of each primitive separate,
//! at the cost of 32 more bytes in a contact link. The two halves of an account
//! are bound together by the handshake: the account's Ed25519 key signs the
//! transcript in which its X25519 key takes part.

use core::cell::RefCell;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use x25519_dalek::{PublicKey as XPublic, StaticSecret};
use zeroize::Zeroizing;

use crate::{
    Error, Result,
    secret::{Entropy, random_array},
};

/// How many parsed Ed25519 public keys each thread keeps (direct-mapped by
/// their first byte; only valid, non-weak keys are kept).
pub(crate) const PARSED_KEYS: usize = 64;

thread_local! {
    static PARSED: RefCell<[Option<VerifyingKey>; PARSED_KEYS]> = const { RefCell::new([None; PARSED_KEYS]) };
}

/// An Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl core::fmt::Debug for Signature {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Signature({:02x}{:02x}{:02x}{:02x}…)", self.0[0], self.0[1], self.0[2], self.0[3])
    }
}

/// A validated Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct VerifyKey(VerifyingKey);

impl VerifyKey {
    /// Parses and validates a 32-byte Ed25519 public key. Weak (small-order)
    /// keys are refused: they would let one signature verify for many messages.
    ///
    /// Parsing decompresses a curve point (a field square root, a sizeable
    /// part of checking a signature), and the same few authors sign every
    /// entry of a group: keys parsed lately are kept per thread
    /// (64 of them) and not decompressed again.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self> {
        let slot = usize::from(bytes[0]) % PARSED_KEYS;
        if let Some(key) = PARSED.with(|cache| cache.borrow()[slot].filter(|k| k.as_bytes() == bytes)) {
            return Ok(Self(key));
        }
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| Error::InvalidPublicKey("Ed25519"))?;
        if key.is_weak() {
            return Err(Error::InvalidPublicKey("Ed25519"));
        }
        PARSED.with(|cache| cache.borrow_mut()[slot] = Some(key));
        Ok(Self(key))
    }

    /// Parses from a slice that must be exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| Error::InvalidPublicKey("Ed25519"))?;
        Self::from_bytes(&arr)
    }

    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The key as a curve point (decompressed when it was parsed).
    pub(crate) fn point(&self) -> curve25519_dalek::edwards::EdwardsPoint {
        self.0.to_edwards()
    }

    /// Verifies `signature` over `message` (strict: rejects malleable encodings).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<()> {
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.0.verify_strict(message, &sig).map_err(|_| Error::BadSignature)
    }
}

impl core::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let b = self.0.as_bytes();
        write!(f, "VerifyKey({:02x}{:02x}{:02x}{:02x}…)", b[0], b[1], b[2], b[3])
    }
}

/// An Ed25519 signing key. Zeroized on drop; `Debug` prints nothing secret.
#[derive(Clone)]
pub struct SigningSecret(SigningKey);

impl SigningSecret {
    /// A fresh key from `entropy`.
    pub fn generate(entropy: &mut impl Entropy) -> Result<Self> {
        let seed = Zeroizing::new(random_array::<32>(entropy)?);
        Ok(Self::from_seed(&seed))
    }

    /// The key for a 32-byte RFC 8032 seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// The 32-byte seed, for sealing at rest.
    pub fn to_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public key that verifies this key's signatures; safe to share.
    pub fn verify_key(&self) -> VerifyKey {
        VerifyKey(self.0.verifying_key())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }
}

impl core::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "SigningSecret(<redacted>, public: {:?})", self.verify_key())
    }
}

/// An X25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AgreementPublic(pub [u8; 32]);

impl AgreementPublic {
    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }
}

impl core::fmt::Debug for AgreementPublic {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "AgreementPublic({:02x}{:02x}{:02x}{:02x}…)", self.0[0], self.0[1], self.0[2], self.0[3])
    }
}

/// An X25519 static secret. Zeroized on drop; `Debug` prints nothing secret.
#[derive(Clone)]
pub struct AgreementSecret(StaticSecret);

impl AgreementSecret {
    /// A fresh key from `entropy`.
    pub fn generate(entropy: &mut impl Entropy) -> Result<Self> {
        Ok(Self(StaticSecret::from(random_array::<32>(entropy)?)))
    }

    /// The key for 32 secret bytes (clamped by X25519 when used).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(StaticSecret::from(bytes))
    }

    /// The 32 secret bytes, for sealing at rest.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public key peers agree with (see [`AgreementSecret::agree`]); safe to share.
    pub fn public(&self) -> AgreementPublic {
        AgreementPublic(XPublic::from(&self.0).to_bytes())
    }

    /// X25519 with `their` public key. A non-contributory (all-zero) result,
    /// which a low-order public key produces, is refused.
    pub fn agree(&self, their: &AgreementPublic) -> Result<Zeroizing<[u8; 32]>> {
        let shared = self.0.diffie_hellman(&XPublic::from(their.0));
        if !shared.was_contributory() {
            return Err(Error::WeakKeyAgreement);
        }
        Ok(Zeroizing::new(shared.to_bytes()))
    }
}

impl core::fmt::Debug for AgreementSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "AgreementSecret(<redacted>, public: {:?})", self.public())
    }
}

/// The public half of an account: what a contact link carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AccountPublic {
    /// The account's Ed25519 identity key.
    pub signing: VerifyKey,
    /// The account's X25519 key-agreement key (the Noise static key).
    pub agreement: AgreementPublic,
}

impl AccountPublic {
    /// `signing ‖ agreement`, 64 bytes: the canonical encoding in transcripts.
    pub fn to_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&self.signing.to_bytes());
        out[32..].copy_from_slice(&self.agreement.0);
        out
    }
}

/// An account: the long-term identity, the same on every device of the user.
#[derive(Debug, Clone)]
pub struct AccountKeys {
    /// Signs the handshake proofs; its public half identifies the account to contacts.
    pub signing: SigningSecret,
    /// The Noise static key of the contact handshake, and this side's input to the contact-group DH.
    pub agreement: AgreementSecret,
}

impl AccountKeys {
    /// A fresh account. Needs no network and no server.
    pub fn generate(entropy: &mut impl Entropy) -> Result<Self> {
        Ok(Self { signing: SigningSecret::generate(entropy)?, agreement: AgreementSecret::generate(entropy)? })
    }

    /// The public half, as a contact link carries it and transcripts encode it.
    pub fn public(&self) -> AccountPublic {
        AccountPublic { signing: self.signing.verify_key(), agreement: self.agreement.public() }
    }
}

/// The private alias key. It never leaves the account's devices and is never
/// published: it only seeds the per-group member keys
/// ([`AliasKey::member_keys`](crate::AliasKey::member_keys)).
#[derive(Debug, Clone)]
pub struct AliasKey(pub(crate) SigningSecret);

impl AliasKey {
    /// A new alias key, drawn once when the account is created; every member key of the account follows from it.
    pub fn generate(entropy: &mut impl Entropy) -> Result<Self> {
        Ok(Self(SigningSecret::generate(entropy)?))
    }

    /// From its 32-byte seed (when loading sealed state).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningSecret::from_seed(seed))
    }

    /// The 32-byte seed, for sealing at rest.
    pub fn to_seed(&self) -> Zeroizing<[u8; 32]> {
        self.0.to_seed()
    }
}

/// A device key: one per device (and, in groups, one per device per group).
pub type DeviceKey = SigningSecret;

/// The network key: the libp2p peer identity. It is never the account key and
/// is replaced by a fresh one every rendezvous period, so network observers
/// cannot follow a user across periods by peer id.
#[derive(Debug, Clone)]
pub struct NetworkKey(SigningSecret);

impl NetworkKey {
    /// A fresh network key (call once per period).
    pub fn generate(entropy: &mut impl Entropy) -> Result<Self> {
        Ok(Self(SigningSecret::generate(entropy)?))
    }

    /// The Ed25519 seed, to build the libp2p keypair from.
    pub fn to_seed(&self) -> Zeroizing<[u8; 32]> {
        self.0.to_seed()
    }

    /// The Ed25519 public key behind the peer id.
    pub fn verify_key(&self) -> VerifyKey {
        self.0.verify_key()
    }
}

/// Everything a freshly installed device creates, offline, on first run.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The account (shared by all of the user's devices).
    pub account: AccountKeys,
    /// The private alias key (shared by all of the user's devices).
    pub alias: AliasKey,
    /// This device's own key, listed among the account's devices; log entries are signed by per-group device keys
    /// instead.
    pub device: DeviceKey,
}

impl Identity {
    /// Creates a new identity from `entropy`. No network is involved.
    pub fn generate(entropy: &mut impl Entropy) -> Result<Self> {
        Ok(Self {
            account: AccountKeys::generate(entropy)?,
            alias: AliasKey::generate(entropy)?,
            device: SigningSecret::generate(entropy)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::OsEntropy;

    #[test]
    fn secrets_do_not_show_in_debug() {
        let id = Identity::generate(&mut OsEntropy).unwrap();
        let shown = format!("{id:?}");
        let seed = id.account.signing.to_seed();
        let hex_seed: String = seed.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!shown.contains(&hex_seed[..8]));
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn low_order_agreement_key_is_refused() {
        let me = AgreementSecret::generate(&mut OsEntropy).unwrap();
        assert_eq!(me.agree(&AgreementPublic([0u8; 32])), Err(Error::WeakKeyAgreement));
    }

    #[test]
    fn parsed_keys_kept_per_thread_never_stand_in_for_another() {
        // Two valid keys and the identity point (weak), all in one slot.
        let mut seed = [0u8; 32];
        let mut same_slot = Vec::new();
        while same_slot.len() < 2 {
            seed[31] = seed[31].wrapping_add(1);
            seed[30] += u8::from(seed[31] == 0);
            let key = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
            if usize::from(key[0]) % PARSED_KEYS == 1 {
                same_slot.push(key);
            }
        }
        let mut weak = [0u8; 32];
        weak[0] = 1;
        for _ in 0..2 {
            for bytes in &same_slot {
                assert_eq!(VerifyKey::from_bytes(bytes).unwrap().to_bytes(), *bytes);
                assert!(VerifyKey::from_bytes(&weak).is_err());
            }
        }
        // A key met again verifies as before.
        let signer = SigningSecret::from_seed(&seed);
        let sig = signer.sign(b"m");
        let again = VerifyKey::from_bytes(&signer.verify_key().to_bytes()).unwrap();
        assert_eq!(VerifyKey::from_bytes(&signer.verify_key().to_bytes()).unwrap(), again);
        assert!(again.verify(b"m", &sig).is_ok());
    }

    #[test]
    fn weak_ed25519_key_is_refused() {
        // The identity point encoding: a small-order key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(VerifyKey::from_bytes(&identity).is_err());
    }
}
