//! What a node advertises over Bluetooth LE (docs/PROTOCOL.md §13).
//!
//! An advertisement is broadcast to anyone in range, so what it carries must
//! identify nothing: Berty advertises a suffix of the peer id, a stable
//! identifier any scanner can log and follow. A veil node advertises a token
//! `salt ‖ HMAC-SHA256(key, "veil/v1/ble-advert" ‖ salt)[..6]`: a fresh 4-byte
//! salt each time its advertisement (and its random device address) changes,
//! under a key drawn at random for each rendezvous period and kept in memory
//! only. Without the key, tokens are random bytes that link to no other token;
//! a peer holding the period's key recognises its advertisements until the
//! period ends (handing the key to connected peers, so they need not connect
//! again to learn who is there, is not built yet: issue 18). Nothing links
//! two periods: the next key is drawn afresh.

use crate::{
    Error, Result,
    kdf::{hmac, label},
    secret::{Entropy, secret32},
};

/// Bytes of salt in a token.
pub const SALT_LEN: usize = 4;
/// Bytes of tag in a token: a recogniser's false positives are one in 2^48.
pub const TAG_LEN: usize = 6;
/// Bytes of a token: what fits the 31 bytes of a legacy advertisement beside
/// its flags and the service's 128-bit UUID.
pub const TOKEN_LEN: usize = SALT_LEN + TAG_LEN;

secret32!(
    /// The key of one node's advertising tokens for one rendezvous period:
    /// random, in memory only.
    AdvertKey
);

/// A token as advertised: its salt, then its tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AdvertToken([u8; TOKEN_LEN]);

impl AdvertToken {
    /// The token of `key` with `salt`.
    pub fn new(key: &AdvertKey, salt: [u8; SALT_LEN]) -> Self {
        let mut token = [0u8; TOKEN_LEN];
        token[..SALT_LEN].copy_from_slice(&salt);
        token[SALT_LEN..].copy_from_slice(&tag(key, &salt));
        Self(token)
    }

    /// A token of `key` with a fresh salt.
    pub fn fresh(key: &AdvertKey, entropy: &mut impl Entropy) -> Result<Self> {
        let mut salt = [0u8; SALT_LEN];
        entropy.fill(&mut salt)?;
        Ok(Self::new(key, salt))
    }

    /// Reads a token from an advertisement's service data: exactly
    /// [`TOKEN_LEN`] bytes, anything else is refused.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        match <[u8; TOKEN_LEN]>::try_from(bytes) {
            Ok(token) => Ok(Self(token)),
            Err(_) if bytes.len() > TOKEN_LEN => {
                Err(Error::TooLarge { what: "advertised token", len: bytes.len(), max: TOKEN_LEN })
            }
            Err(_) => Err(Error::Malformed { what: "advertised token", reason: "too short" }),
        }
    }

    /// The 10 bytes of service data to put on the air: salt, then tag.
    pub fn to_bytes(&self) -> [u8; TOKEN_LEN] {
        self.0
    }

    /// Whether `key` made this token (in constant time).
    pub fn is_from(&self, key: &AdvertKey) -> bool {
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&self.0[..SALT_LEN]);
        subtle::ConstantTimeEq::ct_eq(&self.0[SALT_LEN..], &tag(key, &salt)[..]).into()
    }
}

fn tag(key: &AdvertKey, salt: &[u8; SALT_LEN]) -> [u8; TAG_LEN] {
    let mac = hmac(key.expose_secret(), &[label::BLE_ADVERT, salt]);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&mac[..TAG_LEN]);
    tag
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::TestEntropy;

    #[test]
    fn a_key_recognises_its_tokens_and_no_other_keys() {
        let mut e = TestEntropy::new(b"advert");
        let (key, other) = (AdvertKey::generate(&mut e).unwrap(), AdvertKey::generate(&mut e).unwrap());
        let token = AdvertToken::fresh(&key, &mut e).unwrap();
        assert!(token.is_from(&key));
        assert!(!token.is_from(&other));
        let again = AdvertToken::fresh(&key, &mut e).unwrap();
        assert_ne!(token, again, "a fresh salt: nothing in common a stranger could match");
        assert_ne!(token.to_bytes()[SALT_LEN..], again.to_bytes()[SALT_LEN..]);
        assert!(again.is_from(&key));
        assert_eq!(AdvertToken::parse(&token.to_bytes()).unwrap(), token);
    }

    #[test]
    fn tokens_of_the_wrong_length_are_refused() {
        assert!(matches!(AdvertToken::parse(&[0; TOKEN_LEN - 1]), Err(Error::Malformed { .. })));
        assert!(matches!(AdvertToken::parse(&[]), Err(Error::Malformed { .. })));
        assert!(matches!(AdvertToken::parse(&[0; TOKEN_LEN + 1]), Err(Error::TooLarge { .. })));
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_are_refused_and_a_changed_token_is_not_recognised(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            key in any::<[u8; 32]>(),
            salt in any::<[u8; SALT_LEN]>(),
            flip in 0..TOKEN_LEN * 8,
        ) {
            match AdvertToken::parse(&bytes) {
                Ok(t) => prop_assert_eq!(&t.to_bytes()[..], &bytes[..]),
                Err(_) => prop_assert_ne!(bytes.len(), TOKEN_LEN),
            }
            let key = AdvertKey::from_bytes(key);
            let token = AdvertToken::new(&key, salt).to_bytes();
            let mut changed = token;
            changed[flip / 8] ^= 1 << (flip % 8);
            prop_assert!(AdvertToken::parse(&token).unwrap().is_from(&key));
            prop_assert!(!AdvertToken::parse(&changed).unwrap().is_from(&key));
        }
    }
}
