//! Base45 (RFC 9285): the text form that fits a QR code's alphanumeric mode.

use crate::{Error, Result};

const ALPHABET: &[u8; 45] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";

/// Encodes `data` as base45.
pub fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(encoded_len(data.len()));
    encode_into(data, &mut out);
    out
}

/// Length of the base45 text of `len` bytes.
pub(crate) fn encoded_len(len: usize) -> usize {
    len / 2 * 3 + len % 2 * 2
}

/// Appends the base45 text of `data` to `out` (no reallocation when `out`
/// has room for [`encoded_len`] more bytes, so a secret leaves no copy behind).
pub(crate) fn encode_into(data: &[u8], out: &mut String) {
    for chunk in data.chunks(2) {
        let (mut n, digits) = match chunk {
            [a, b] => ((*a as u32) * 256 + *b as u32, 3),
            [a] => (*a as u32, 2),
            _ => unreachable!("chunks(2) yields one or two bytes"),
        };
        for _ in 0..digits {
            out.push(ALPHABET[(n % 45) as usize] as char);
            n /= 45;
        }
    }
}

fn digit(c: u8) -> Result<u32> {
    ALPHABET.iter().position(|a| *a == c).map(|p| p as u32).ok_or(Error::BadText("invalid base45 character"))
}

/// Decodes base45, refusing invalid characters, a dangling character and
/// out-of-range groups.
pub fn decode(text: &str) -> Result<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() / 3 * 2 + 1);
    for chunk in bytes.chunks(3) {
        match chunk {
            [c, d, e] => {
                let n = digit(*c)? + digit(*d)? * 45 + digit(*e)? * 45 * 45;
                if n > 0xFFFF {
                    return Err(Error::BadText("base45 group out of range"));
                }
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            [c, d] => {
                let n = digit(*c)? + digit(*d)? * 45;
                if n > 0xFF {
                    return Err(Error::BadText("base45 group out of range"));
                }
                out.push(n as u8);
            }
            _ => return Err(Error::BadText("base45 text has a dangling character")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn rfc9285_examples() {
        assert_eq!(encode(b"AB"), "BB8");
        assert_eq!(encode(b"Hello!!"), "%69 VD92EX0");
        assert_eq!(encode(b"base-45"), "UJCLQE7W581");
        assert_eq!(decode("QED8WEX0").unwrap(), b"ietf!");
        assert_eq!(decode("GGW").unwrap_err(), Error::BadText("base45 group out of range"));
        assert!(decode("A").is_err());
        assert!(decode("ab").is_err());
    }

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(encode(&data).len(), encoded_len(data.len()));
            prop_assert_eq!(decode(&encode(&data)).unwrap(), data);
        }

        #[test]
        fn garbage_never_panics(text in ".{0,100}") {
            let _ = decode(&text);
        }
    }
}
