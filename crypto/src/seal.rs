//! Sealing a message to an X25519 public key (anonymous sender).
//!
//! `sealed = E ‖ AES-256-GCM(k, n, aad, plaintext)` where `E` is a fresh
//! ephemeral X25519 public key and
//! `k ‖ n = HKDF-SHA256(salt = "veil/v1/seal", ikm = X25519(e, R), info = E ‖ R)`
//! (44 bytes) with `R` the recipient's public key.

use zeroize::Zeroizing;

use crate::{
    AgreementPublic, AgreementSecret, Error, Result,
    aead::{self, NONCE_LEN, TAG_LEN},
    kdf::{hkdf, label},
    secret::Entropy,
};

/// Bytes sealing adds to a plaintext.
pub const SEAL_OVERHEAD: usize = 32 + TAG_LEN;

fn keys(shared: &[u8; 32], eph: &AgreementPublic, recipient: &AgreementPublic) -> ([u8; 32], [u8; NONCE_LEN]) {
    let okm: Zeroizing<[u8; 44]> = hkdf(label::SEAL, shared, &[&eph.0, &recipient.0]);
    let mut key = [0u8; 32];
    let mut nonce = [0u8; NONCE_LEN];
    key.copy_from_slice(&okm[..32]);
    nonce.copy_from_slice(&okm[32..]);
    (key, nonce)
}

/// Seals `plaintext` so only the holder of `recipient`'s secret can open it.
pub fn seal_to(
    recipient: &AgreementPublic,
    aad: &[u8],
    plaintext: &[u8],
    entropy: &mut impl Entropy,
) -> Result<Vec<u8>> {
    let eph = AgreementSecret::generate(entropy)?;
    let eph_pub = eph.public();
    let shared = eph.agree(recipient)?;
    let (mut key, nonce) = keys(&shared, &eph_pub, recipient);
    let mut out = eph_pub.0.to_vec();
    out.extend_from_slice(&aead::seal(&key, &nonce, aad, plaintext));
    zeroize::Zeroize::zeroize(&mut key);
    Ok(out)
}

/// Opens what [`seal_to`] sealed to `recipient`'s public key.
pub fn open_sealed(recipient: &AgreementSecret, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(Error::Decrypt);
    }
    let (eph, ct) = sealed.split_at(32);
    let eph = AgreementPublic(eph.try_into().map_err(|_| Error::Decrypt)?);
    let shared = recipient.agree(&eph).map_err(|_| Error::Decrypt)?;
    let (mut key, nonce) = keys(&shared, &eph, &recipient.public());
    let out = aead::open(&key, &nonce, aad, ct);
    zeroize::Zeroize::zeroize(&mut key);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::OsEntropy;

    #[test]
    fn round_trip_and_rejections() {
        let bob = AgreementSecret::generate(&mut OsEntropy).unwrap();
        let eve = AgreementSecret::generate(&mut OsEntropy).unwrap();
        let sealed = seal_to(&bob.public(), b"ctx", b"hello", &mut OsEntropy).unwrap();
        assert_eq!(&open_sealed(&bob, b"ctx", &sealed).unwrap()[..], b"hello");
        assert_eq!(open_sealed(&eve, b"ctx", &sealed), Err(Error::Decrypt));
        assert_eq!(open_sealed(&bob, b"other", &sealed), Err(Error::Decrypt));
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            assert!(open_sealed(&bob, b"ctx", &t).is_err(), "byte {i}");
        }
        assert!(open_sealed(&bob, b"ctx", &sealed[..20]).is_err());
    }
}
