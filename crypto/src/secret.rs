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

/// Randomness for the message path (nonces, paddings): a ChaCha20
/// generator per thread, keyed from the operating system's.
///
/// Every message used to cost a few `getrandom` system calls (a nonce for
/// the entry, one for storing its payload); this costs none. Each refill
/// draws 32 + 512 bytes of keystream under the current key with a zero
/// nonce, keeps the first 32 as the next key and serves the rest ("fast
/// key erasure"): a key is used once, and neither the state nor the
/// buffer (served bytes are wiped) reveals earlier output. After a MiB of
/// output the key is drawn afresh from the operating system.
///
/// Long-term keys still come from [`OsEntropy`]. A process that forks
/// without exec would repeat this state in the child; veil never does.
#[derive(Debug, Default, Clone, Copy)]
pub struct ThreadEntropy;

impl Entropy for ThreadEntropy {
    fn fill(&mut self, dest: &mut [u8]) -> Result<()> {
        GENERATOR.with(|generator| {
            let mut generator = generator.try_borrow_mut().map_err(|_| Error::Rng)?;
            if generator.is_none() {
                *generator = Some(KeystreamGenerator::seeded()?);
            }
            generator.as_mut().ok_or(Error::Rng)?.fill(dest)
        })
    }
}

/// Output served per refill.
const KEYSTREAM_BLOCK: usize = 512;

/// Output after which the key is drawn afresh from the operating system.
const RESEED_AFTER: usize = 1 << 20;

thread_local! {
    static GENERATOR: core::cell::RefCell<Option<KeystreamGenerator>> = const { core::cell::RefCell::new(None) };
}

/// The state behind [`ThreadEntropy`]; wiped on drop.
#[derive(zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
struct KeystreamGenerator {
    key: [u8; 32],
    buffer: [u8; KEYSTREAM_BLOCK],
    /// Bytes of `buffer` served (and wiped).
    served: usize,
    /// Bytes served since the key came from the operating system.
    since_seed: usize,
}

impl KeystreamGenerator {
    fn seeded() -> Result<Self> {
        let mut generator = Self { key: [0; 32], buffer: [0; KEYSTREAM_BLOCK], served: KEYSTREAM_BLOCK, since_seed: 0 };
        getrandom::fill(&mut generator.key).map_err(|_| Error::Rng)?;
        Ok(generator)
    }

    fn refill(&mut self) -> Result<()> {
        use chacha20::cipher::{KeyIvInit, StreamCipher};
        if self.since_seed >= RESEED_AFTER {
            getrandom::fill(&mut self.key).map_err(|_| Error::Rng)?;
            self.since_seed = 0;
        }
        let mut keystream = zeroize::Zeroizing::new([0u8; 32 + KEYSTREAM_BLOCK]);
        chacha20::ChaCha20::new(&self.key.into(), &[0u8; 12].into()).apply_keystream(&mut keystream[..]);
        let (key, block) = keystream.split_at(32);
        self.key.copy_from_slice(key);
        self.buffer.copy_from_slice(block);
        self.served = 0;
        Ok(())
    }

    fn fill(&mut self, dest: &mut [u8]) -> Result<()> {
        let mut filled = 0;
        while filled < dest.len() {
            if self.served == KEYSTREAM_BLOCK {
                self.refill()?;
            }
            let n = (dest.len() - filled).min(KEYSTREAM_BLOCK - self.served);
            let served = &mut self.buffer[self.served..self.served + n];
            dest[filled..filled + n].copy_from_slice(served);
            zeroize::Zeroize::zeroize(served);
            self.served += n;
            self.since_seed += n;
            filled += n;
        }
        Ok(())
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

    #[test]
    fn thread_entropy_never_repeats_and_spans_refills_and_reseeds() {
        // Chunks of every size up to past a refill, and enough output to
        // pass a reseed: no 16-byte window of output shows up twice.
        let mut seen = std::collections::HashSet::new();
        let mut total = 0;
        let mut size = 1;
        while total < RESEED_AFTER + 4 * KEYSTREAM_BLOCK {
            let mut out = vec![0u8; size];
            ThreadEntropy.fill(&mut out).unwrap();
            for window in out.chunks_exact(16) {
                assert!(seen.insert(window.to_vec()), "output repeated after {total} bytes");
            }
            total += size;
            size = size % (KEYSTREAM_BLOCK + 40) + 17;
        }
    }

    #[test]
    fn thread_entropy_differs_between_threads() {
        let draw = || {
            let mut out = [0u8; 32];
            ThreadEntropy.fill(&mut out).unwrap();
            out
        };
        let there = std::thread::spawn(draw).join().unwrap();
        assert_ne!(draw(), there);
    }

    #[test]
    fn keystream_generator_erases_what_it_served_and_its_old_key() {
        let mut generator = KeystreamGenerator::seeded().unwrap();
        let mut out = [0u8; 100];
        generator.fill(&mut out).unwrap();
        let key = generator.key;
        assert!(generator.buffer[..100].iter().all(|b| *b == 0), "served bytes stay in the buffer");
        assert!(generator.buffer[100..].iter().any(|b| *b != 0));
        let mut rest = [0u8; KEYSTREAM_BLOCK];
        generator.fill(&mut rest).unwrap();
        assert_ne!(generator.key, key, "a refill keeps the old key");
    }
}
