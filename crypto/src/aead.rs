//! AES-256-GCM with fixed 32-byte keys and 12-byte nonces.

use aes_gcm::{
    Aes256Gcm, Key,
    aead::{Aead, KeyInit, Nonce, Payload},
};
use zeroize::Zeroizing;

use crate::{Error, Result};

/// Bytes AES-GCM adds to a plaintext.
pub(crate) const TAG_LEN: usize = 16;
/// AES-GCM nonce length.
pub(crate) const NONCE_LEN: usize = 12;

pub(crate) fn seal(key: &[u8; 32], nonce: &[u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key));
    match cipher.encrypt(&Nonce::<Aes256Gcm>::from(*nonce), Payload { msg: plaintext, aad }) {
        Ok(ct) => ct,
        // Only inputs longer than 2^36 bytes fail; every caller bounds them far below.
        Err(_) => unreachable!("AES-GCM plaintext within bounds"),
    }
}

pub(crate) fn open(
    key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key));
    cipher
        .decrypt(&Nonce::<Aes256Gcm>::from(*nonce), Payload { msg: ciphertext, aad })
        .map(Zeroizing::new)
        .map_err(|_| Error::Decrypt)
}

/// Splits `nonce ‖ ciphertext` and opens it.
pub(crate) fn open_prefixed(key: &[u8; 32], aad: &[u8], data: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    if data.len() < NONCE_LEN + TAG_LEN {
        return Err(Error::Decrypt);
    }
    let (nonce, ct) = data.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| Error::Decrypt)?;
    open(key, &nonce, aad, ct)
}

/// Seals with a fresh random nonce and returns `nonce ‖ ciphertext`.
pub(crate) fn seal_prefixed(
    key: &[u8; 32],
    aad: &[u8],
    plaintext: &[u8],
    entropy: &mut impl crate::Entropy,
) -> Result<Vec<u8>> {
    let nonce = crate::secret::random_array::<NONCE_LEN>(entropy)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&seal(key, &nonce, aad, plaintext));
    Ok(out)
}
