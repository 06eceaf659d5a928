//! Log-entry signatures, checked one at a time or many at once under one
//! rule, so a member that checked a batch and one that checked each entry
//! alone always agree on which entries are authentic.
//!
//! The rule is Ed25519's cofactored verification equation (RFC 8032 §5.1.7
//! permits it; ZIP 215 adopted it for the same reason): with `A` the
//! author's key (never of small order: [`VerifyKey`] refuses those), `R` and
//! `s` the signature's halves (`s` canonical, `R` a curve point) and
//! `k = SHA-512(R ‖ A ‖ M) mod ℓ`, the signature is valid iff
//! `[8]([s]B − R − [k]A)` is the identity. The cofactorless form that
//! `verify_strict` checks cannot be batched safely: a random combination of
//! equations that each hold only up to a small torsion point holds about one
//! time in eight, so a batch and a single check would disagree on crafted
//! signatures, and members on the order of entries.
//!
//! A batch is one multi-scalar multiplication,
//! `[8]([Σ zᵢsᵢ]B − Σ [zᵢ]Rᵢ − Σ_A [Σ_{Aᵢ = A} zᵢkᵢ]A) = 0`, with 128-bit
//! weights `zᵢ` drawn from a hash of the whole batch (no randomness to
//! inject, and a forger cannot choose them). Signatures by one author share
//! their key's term, so a batch from one contact costs about n + 2 points
//! instead of 2n + 1.

use curve25519_dalek::{
    constants::ED25519_BASEPOINT_POINT,
    edwards::{CompressedEdwardsY, EdwardsPoint},
    scalar::Scalar,
    traits::{IsIdentity, VartimeMultiscalarMul},
};
use sha2::{Digest, Sha512};

use crate::{Error, Result, Signature, VerifyKey};

/// Domain label of the batch weights' seed.
const WEIGHTS: &[u8] = b"veil/v1/batch-weights";

/// One signature to check: by `author`, over `message`.
pub(crate) struct Signed<'a> {
    pub(crate) author: &'a VerifyKey,
    pub(crate) message: &'a [u8],
    pub(crate) signature: &'a Signature,
}

/// A signature's halves, parsed: `R` as a point, `s` canonical.
struct Parsed {
    r: EdwardsPoint,
    s: Scalar,
    k: Scalar,
}

impl Signed<'_> {
    fn parse(&self) -> Result<Parsed> {
        let mut r_bytes = [0u8; 32];
        r_bytes.copy_from_slice(&self.signature.0[..32]);
        let mut s_bytes = [0u8; 32];
        s_bytes.copy_from_slice(&self.signature.0[32..]);
        let r = CompressedEdwardsY(r_bytes).decompress().ok_or(Error::BadSignature)?;
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)).ok_or(Error::BadSignature)?;
        let mut h = Sha512::new();
        h.update(r_bytes);
        h.update(self.author.to_bytes());
        h.update(self.message);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        Ok(Parsed { r, s, k })
    }
}

/// Checks one signature.
pub(crate) fn verify(signed: &Signed<'_>) -> Result<()> {
    let Parsed { r, s, k } = signed.parse()?;
    let a = signed.author.point();
    let sb_minus_ka = EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &-a, &s);
    if (sb_minus_ka - r).mul_by_cofactor().is_identity() { Ok(()) } else { Err(Error::BadSignature) }
}

/// Checks every signature at once: `Ok` iff each would pass [`verify`]
/// (but for a chance of 2⁻¹²⁸ or so). Says nothing about which one failed.
pub(crate) fn verify_all(batch: &[Signed<'_>]) -> Result<()> {
    match batch {
        [] => return Ok(()),
        [one] => return verify(one),
        _ => {}
    }
    let parsed = batch.iter().map(Signed::parse).collect::<Result<Vec<_>>>()?;
    let weights = weights(batch, &parsed);
    let mut basepoint = Scalar::ZERO;
    let mut scalars = Vec::with_capacity(batch.len() * 2 + 1);
    let mut points = Vec::with_capacity(batch.len() * 2 + 1);
    // Authors in first-seen order, each with its summed coefficient.
    let mut authors: Vec<(&VerifyKey, Scalar)> = Vec::new();
    for ((signed, p), z) in batch.iter().zip(&parsed).zip(&weights) {
        basepoint += z * p.s;
        scalars.push(-z);
        points.push(p.r);
        let zk = z * p.k;
        match authors.iter_mut().find(|(a, _)| *a == signed.author) {
            Some((_, sum)) => *sum -= zk,
            None => authors.push((signed.author, -zk)),
        }
    }
    for (author, sum) in authors {
        scalars.push(sum);
        points.push(author.point());
    }
    scalars.push(basepoint);
    points.push(ED25519_BASEPOINT_POINT);
    let sum = EdwardsPoint::vartime_multiscalar_mul(scalars, points);
    if sum.mul_by_cofactor().is_identity() { Ok(()) } else { Err(Error::BadSignature) }
}

/// The batch's 128-bit weights, from a hash of every signature, key and
/// challenge in it.
fn weights(batch: &[Signed<'_>], parsed: &[Parsed]) -> Vec<Scalar> {
    let mut seed = Sha512::new();
    seed.update(WEIGHTS);
    for (signed, p) in batch.iter().zip(parsed) {
        seed.update(signed.signature.0);
        seed.update(signed.author.to_bytes());
        seed.update(p.k.as_bytes());
    }
    let seed = seed.finalize();
    (0..batch.len() as u64)
        .map(|i| {
            let mut h = Sha512::new();
            h.update(seed);
            h.update(i.to_be_bytes());
            let mut z = [0u8; 16];
            z.copy_from_slice(&h.finalize()[..16]);
            Scalar::from(u128::from_le_bytes(z))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use curve25519_dalek::constants::EIGHT_TORSION;
    use proptest::prelude::*;

    use super::*;
    use crate::{OsEntropy, SigningSecret};

    fn keys(n: usize) -> Vec<SigningSecret> {
        (0..n).map(|_| SigningSecret::generate(&mut OsEntropy).unwrap()).collect()
    }

    /// Signs `message` by hand with secret scalar `a`, a small torsion
    /// point `t` added to the nonce point: valid under the cofactored rule,
    /// refused by the cofactorless one (unless `t` is the identity).
    fn sign_with_torsion(a: &Scalar, message: &[u8], t: usize) -> Signature {
        let public = EdwardsPoint::mul_base(a).compress();
        let r = Scalar::from_bytes_mod_order_wide(&Sha512::digest(message).into());
        let big_r = (EdwardsPoint::mul_base(&r) + EIGHT_TORSION[t]).compress();
        let mut h = Sha512::new();
        h.update(big_r.as_bytes());
        h.update(public.as_bytes());
        h.update(message);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(big_r.as_bytes());
        sig[32..].copy_from_slice((r + k * a).as_bytes());
        Signature(sig)
    }

    #[test]
    fn honest_signatures_pass_alone_and_together_and_one_forgery_fails_the_batch() {
        let signers = keys(3);
        let messages: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; usize::from(i) * 7]).collect();
        let sigs: Vec<(VerifyKey, Signature)> =
            messages.iter().enumerate().map(|(i, m)| (signers[i % 3].verify_key(), signers[i % 3].sign(m))).collect();
        let batch = |sigs: &[(VerifyKey, Signature)]| -> Vec<(VerifyKey, Vec<u8>, Signature)> {
            sigs.iter().zip(&messages).map(|((a, s), m)| (*a, m.clone(), *s)).collect()
        };
        let view = |b: &[(VerifyKey, Vec<u8>, Signature)]| -> Result<()> {
            let signed: Vec<Signed<'_>> =
                b.iter().map(|(a, m, s)| Signed { author: a, message: m, signature: s }).collect();
            for one in &signed {
                verify(one)?;
            }
            verify_all(&signed)
        };
        assert!(view(&batch(&sigs)).is_ok());
        // Another author's key, another message, a flipped s bit: each fails.
        for forge in 0..3 {
            let mut b = batch(&sigs);
            match forge {
                0 => b[17].0 = signers[(17 + 1) % 3].verify_key(),
                1 => b[17].1.push(0),
                _ => b[17].2.0[40] ^= 1,
            }
            let signed: Vec<Signed<'_>> =
                b.iter().map(|(a, m, s)| Signed { author: a, message: m, signature: s }).collect();
            assert!(verify(&signed[17]).is_err(), "forgery {forge} passed alone");
            assert!(verify_all(&signed).is_err(), "forgery {forge} passed in a batch");
        }
    }

    #[test]
    fn torsion_in_r_is_accepted_the_same_way_alone_and_in_every_batch() {
        let a = Scalar::from(0x1234_5678_9abc_def0_u64);
        let author = VerifyKey::from_bytes(&EdwardsPoint::mul_base(&a).compress().0).unwrap();
        let messages: Vec<[u8; 1]> = (0..8u8).map(|i| [i]).collect();
        // Every torsion point, each alone, beside an honest signature, and
        // all together: a cofactorless batch would accept some and refuse
        // others.
        let sigs: Vec<Signature> = (0..8).map(|t| sign_with_torsion(&a, &messages[t], t)).collect();
        let signed: Vec<Signed<'_>> =
            (0..8).map(|t| Signed { author: &author, message: &messages[t], signature: &sigs[t] }).collect();
        let honest = sign_with_torsion(&a, b"x", 0);
        assert!(author.verify(b"x", &honest).is_ok(), "the hand-made signer signs like Ed25519");
        for (t, one) in signed.iter().enumerate() {
            assert_eq!(author.verify(one.message, one.signature).is_ok(), t == 0, "strict refuses torsion {t}");
            assert!(verify(one).is_ok(), "torsion {t} alone");
            let pair = [Signed { author: &author, message: b"x", signature: &honest }, Signed { ..*one }];
            assert!(verify_all(&pair).is_ok(), "torsion {t} in a pair");
        }
        assert!(verify_all(&signed).is_ok());
    }

    #[test]
    fn a_non_canonical_s_fails_alone_and_in_a_batch() {
        let signer = &keys(1)[0];
        let author = signer.verify_key();
        let mut sig = signer.sign(b"m");
        // s + ℓ: the same scalar, encoded above the group order ℓ.
        let order: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        for (byte, l) in sig.0[32..].iter_mut().zip(order) {
            let v = u16::from(*byte) + u16::from(l) + carry;
            *byte = v as u8;
            carry = v >> 8;
        }
        let one = Signed { author: &author, message: b"m", signature: &sig };
        assert_eq!(verify(&one), Err(Error::BadSignature));
        let honest = signer.sign(b"n");
        let pair = [Signed { author: &author, message: b"n", signature: &honest }, one];
        assert_eq!(verify_all(&pair), Err(Error::BadSignature));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Any corrupted byte of any signature in a batch: the batch fails
        /// exactly when that signature fails alone.
        #[test]
        fn a_batch_agrees_with_checking_each(
            n in 2usize..12, which in 0usize..12, byte in 0usize..64, bit in 0u8..8, corrupt: bool,
        ) {
            let signers = keys(2);
            let which = which % n;
            let messages: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8; 33]).collect();
            let authors: Vec<VerifyKey> = (0..n).map(|i| signers[i % 2].verify_key()).collect();
            let mut sigs: Vec<Signature> = (0..n).map(|i| signers[i % 2].sign(&messages[i])).collect();
            if corrupt {
                sigs[which].0[byte] ^= 1 << bit;
            }
            let signed: Vec<Signed<'_>> = (0..n)
                .map(|i| Signed { author: &authors[i], message: &messages[i], signature: &sigs[i] })
                .collect();
            let each = signed.iter().all(|s| verify(s).is_ok());
            prop_assert_eq!(verify_all(&signed).is_ok(), each);
        }
    }
}
