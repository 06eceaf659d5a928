//! Padding to size buckets, so ciphertext lengths reveal only a bucket.
//!
//! `padded = u32_be(len) ‖ plaintext ‖ 0x00…` up to the smallest bucket that
//! fits `len + 4`. Buckets: 256 B, 1 KiB, 4 KiB, 16 KiB, 64 KiB.

use crate::{Error, Result};

/// Every size a padded plaintext can have, in bytes, smallest first; a ciphertext's length reveals only which one.
pub const BUCKETS: [usize; 5] = [256, 1024, 4096, 16384, 65536];
/// The largest plaintext that can be padded.
pub const MAX_PLAINTEXT: usize = BUCKETS[BUCKETS.len() - 1] - 4;

/// Pads `plaintext` to its bucket.
pub fn pad(plaintext: &[u8]) -> Result<Vec<u8>> {
    let need = plaintext.len() + 4;
    let bucket = BUCKETS.iter().copied().find(|b| *b >= need).ok_or(Error::TooLarge {
        what: "plaintext",
        len: plaintext.len(),
        max: MAX_PLAINTEXT,
    })?;
    let mut out = Vec::with_capacity(bucket);
    out.extend_from_slice(&(plaintext.len() as u32).to_be_bytes());
    out.extend_from_slice(plaintext);
    out.resize(bucket, 0);
    Ok(out)
}

/// Removes padding, checking that the size is a bucket, the length fits and
/// the padding is all zeros.
pub fn unpad(padded: &[u8]) -> Result<&[u8]> {
    const WHAT: &str = "padded plaintext";
    if !BUCKETS.contains(&padded.len()) {
        return Err(Error::Malformed { what: WHAT, reason: "size is not a padding bucket" });
    }
    let (len, rest) = padded.split_at(4);
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if len > rest.len() {
        return Err(Error::Malformed { what: WHAT, reason: "length prefix exceeds the bucket" });
    }
    let (data, zeros) = rest.split_at(len);
    if zeros.iter().any(|b| *b != 0) {
        return Err(Error::Malformed { what: WHAT, reason: "non-zero padding" });
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let padded = pad(&data).unwrap();
            prop_assert!(BUCKETS.contains(&padded.len()));
            prop_assert_eq!(unpad(&padded).unwrap(), &data[..]);
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = unpad(&data);
        }
    }

    #[test]
    fn bucket_edges() {
        assert_eq!(pad(&[0; 252]).unwrap().len(), 256);
        assert_eq!(pad(&[0; 253]).unwrap().len(), 1024);
        assert_eq!(pad(&[0; MAX_PLAINTEXT]).unwrap().len(), 65536);
        assert!(matches!(pad(&[0; MAX_PLAINTEXT + 1]), Err(Error::TooLarge { .. })));
        let mut bad = pad(b"hi").unwrap();
        bad[100] = 1;
        assert!(unpad(&bad).is_err());
        let mut long = pad(b"hi").unwrap();
        long[..4].copy_from_slice(&1000u32.to_be_bytes());
        assert!(unpad(&long).is_err());
    }
}
