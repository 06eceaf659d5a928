//! Secret byte strings and the entropy source.
//!
//! Every secret type here zeroizes itself on drop, compares in constant time
//! and prints `<redacted>` in `Debug`, so a stray `{:?}` never leaks it.

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Declares a 32-byte secret newtype with zeroize-on-drop, a redacted `Debug`
/// and constant-time equality.
macro_rules! secret32 {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Wraps raw secret bytes (for example when loading sealed state).
            pub fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// Draws a fresh random value.
            pub fn generate(entropy: &mut impl $crate::secret::Entropy) -> $crate::Result<Self> {
                let mut bytes = [0u8; 32];
                entropy.fill(&mut bytes)?;
                Ok(Self(bytes))
            }

            /// The secret bytes. Handle with care: never log or persist them unsealed.
            pub fn expose_secret(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                subtle::ConstantTimeEq::ct_eq(&self.0[..], &other.0[..]).into()
            }
        }

        impl Eq for $name {}
    };
}
pub(crate) use secret32;

/// A source of cryptographic randomness.
///
/// Everything in this crate that needs randomness takes an `Entropy`, so that
/// the protocol's test vectors can be reproduced byte for byte. Production code
/// passes [`OsEntropy`].
pub trait Entropy {
    /// Fills `dest` with random bytes.
    fn fill(&mut self, dest: &mut [u8]) -> Result<()>;
}

/// The operating system's random number generator.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&mut self, dest: &mut [u8]) -> Result<()> {
        getrandom::fill(dest).map_err(|_| Error::Rng)
    }
}

/// A reproducible byte stream: SHA-256(label ‖ u64_be(counter)) blocks.
///
/// **For tests and test vectors only.** It is public so that other crates'
/// tests and the `docs/PROTOCOL.md` vectors can be recomputed; production
/// code must use [`OsEntropy`].
#[derive(Debug, Clone)]
pub struct TestEntropy {
    label: Vec<u8>,
    counter: u64,
}

impl TestEntropy {
    /// A stream determined entirely by `label`.
    pub fn new(label: &[u8]) -> Self {
        Self { label: label.to_vec(), counter: 0 }
    }
}

impl Entropy for TestEntropy {
    fn fill(&mut self, dest: &mut [u8]) -> Result<()> {
        for chunk in dest.chunks_mut(32) {
            let block = Sha256::new().chain_update(&self.label).chain_update(self.counter.to_be_bytes()).finalize();
            self.counter += 1;
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
        Ok(())
    }
}

pub(crate) fn random_array<const N: usize>(entropy: &mut impl Entropy) -> Result<[u8; N]> {
    let mut out = [0u8; N];
    entropy.fill(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = crate::GroupSecret::from_bytes([0xAB; 32]);
        let shown = format!("{s:?}");
        assert_eq!(shown, "GroupSecret(<redacted>)");
        assert!(!shown.contains("ab") && !shown.contains("171"));
    }

    #[test]
    fn test_entropy_is_reproducible_and_os_entropy_is_not_constant() {
        let (mut a, mut b) = (TestEntropy::new(b"x"), TestEntropy::new(b"x"));
        let (mut x, mut y) = ([0u8; 70], [0u8; 70]);
        a.fill(&mut x).unwrap();
        b.fill(&mut y).unwrap();
        assert_eq!(x, y);
        let (mut p, mut q) = ([0u8; 32], [0u8; 32]);
        OsEntropy.fill(&mut p).unwrap();
        OsEntropy.fill(&mut q).unwrap();
        assert_ne!(p, q);
    }
}
