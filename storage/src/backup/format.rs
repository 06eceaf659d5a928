//! A backup file's framing (the layout is in the parent module's docs):
//! the header, length-prefixed parts and the chunk sequence, over any
//! reader and any way of opening a sealed part. Only `std` and `zeroize`
//! here: the fuzz targets (`integration-tests/fuzz`) compile this file as
//! it is, without SQLite or Argon2.

use std::io::{Read, Write};

use zeroize::Zeroizing;

pub(crate) const MAGIC: &[u8; 8] = b"VEILBAK1";
pub(crate) const SALT_LEN: usize = 16;
/// The most plaintext one chunk holds.
pub(crate) const CHUNK: usize = 1 << 20;
const CHUNK_PURPOSE: &[u8] = b"veil/v1/backup";
pub(crate) const VERIFIER_PURPOSE: &[u8] = b"veil/v1/backup-verifier";
pub(crate) const VERIFIER_PLAINTEXT: &[u8] = b"veil backup key check v1";
/// A sealed chunk: nonce, at most a chunk of ciphertext, tag.
const MAX_SEALED_CHUNK: usize = 12 + CHUNK + 16;
/// The longest verifier a file may carry.
const MAX_VERIFIER: usize = 64;
/// The storage key at the start of the plaintext.
const STORAGE_KEY_LEN: usize = 32;

/// Why a backup file does not open.
#[derive(Debug)]
pub(crate) enum FormatError {
    /// Not a backup, cut short, reordered, extended or tampered with.
    Damaged(&'static str),
    /// The key does not open the verifier: the wrong passphrase.
    Passphrase,
    /// The opened copy could not be written.
    Write(std::io::Error),
}

/// Opens a sealed part under the backup's key.
pub(crate) trait Opener {
    /// The plaintext of `sealed`, bound to `purpose`; `None` if it does not
    /// open.
    fn open(&self, purpose: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>>;
}

/// What precedes everything sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) salt: [u8; SALT_LEN],
    /// Argon2id's memory (KiB), passes and lanes, as the file asks: checked
    /// by the caller before any key is derived.
    pub(crate) kdf: [u32; 3],
}

impl Header {
    /// The header's bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAGIC.len() + SALT_LEN + 12);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.salt);
        for v in self.kdf {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out
    }
}

/// Reads a backup front to back, refusing anything cut short or oversize.
pub(crate) struct FileReader<R> {
    inner: R,
    /// Bytes not read yet.
    left: u64,
}

impl<R: Read> FileReader<R> {
    /// A reader of the `len` bytes `inner` holds.
    pub(crate) fn new(inner: R, len: u64) -> Self {
        Self { inner, left: len }
    }

    fn take(&mut self, n: usize) -> Result<Vec<u8>, FormatError> {
        if self.left < n as u64 {
            return Err(FormatError::Damaged("truncated"));
        }
        let mut buf = vec![0u8; n];
        self.inner.read_exact(&mut buf).map_err(|_| FormatError::Damaged("truncated"))?;
        self.left -= n as u64;
        Ok(buf)
    }

    fn u32(&mut self) -> Result<u32, FormatError> {
        let bytes: [u8; 4] = self.take(4)?.try_into().map_err(|_| FormatError::Damaged("truncated"))?;
        Ok(u32::from_be_bytes(bytes))
    }

    /// A length-prefixed part of at most `max` bytes (checked before it is
    /// allocated).
    fn lp(&mut self, max: usize) -> Result<Vec<u8>, FormatError> {
        let len = usize::try_from(self.u32()?).map_err(|_| FormatError::Damaged("a part is too long"))?;
        if len > max {
            return Err(FormatError::Damaged("a part is too long"));
        }
        self.take(len)
    }

    /// Reads the header (magic, Argon2id salt and parameters); a file without veil's magic is refused.
    pub(crate) fn header(&mut self) -> Result<Header, FormatError> {
        if self.take(MAGIC.len())? != MAGIC {
            return Err(FormatError::Damaged("not a veil backup"));
        }
        let salt = self.take(SALT_LEN)?.try_into().map_err(|_| FormatError::Damaged("truncated"))?;
        let kdf = [self.u32()?, self.u32()?, self.u32()?];
        Ok(Header { salt, kdf })
    }

    /// After the header: checks the verifier under `key`, then opens every
    /// chunk, in order, writing the database copy to `out`; returns the
    /// storage key the first chunk starts with.
    pub(crate) fn body(
        &mut self,
        key: &impl Opener,
        out: &mut impl Write,
    ) -> Result<Zeroizing<[u8; STORAGE_KEY_LEN]>, FormatError> {
        let verifier = self.lp(MAX_VERIFIER)?;
        match key.open(VERIFIER_PURPOSE, &verifier) {
            Some(v) if v.as_slice() == VERIFIER_PLAINTEXT => {}
            _ => return Err(FormatError::Passphrase),
        }
        let mut storage_key: Option<Zeroizing<[u8; STORAGE_KEY_LEN]>> = None;
        let mut index = 0;
        loop {
            let sealed = self.lp(MAX_SEALED_CHUNK)?;
            let last = self.left == 0;
            let chunk =
                key.open(&chunk_purpose(index, last), &sealed).ok_or(FormatError::Damaged("a part does not open"))?;
            let mut rest = &chunk[..];
            if storage_key.is_none() {
                if rest.len() < STORAGE_KEY_LEN {
                    return Err(FormatError::Damaged("truncated"));
                }
                let (k, tail) = rest.split_at(STORAGE_KEY_LEN);
                let mut bytes = Zeroizing::new([0u8; STORAGE_KEY_LEN]);
                bytes.copy_from_slice(k);
                storage_key = Some(bytes);
                rest = tail;
            }
            out.write_all(rest).map_err(FormatError::Write)?;
            index += 1;
            if last {
                break;
            }
        }
        storage_key.ok_or(FormatError::Damaged("truncated"))
    }
}

/// The associated data chunk `index` is sealed under: its position and
/// whether it is the last one.
pub(crate) fn chunk_purpose(index: usize, last: bool) -> Vec<u8> {
    let mut p = CHUNK_PURPOSE.to_vec();
    p.extend_from_slice(&(index as u64).to_be_bytes());
    p.push(u8::from(last));
    p
}

/// Appends `bytes` with its 4-byte big-endian length.
pub(crate) fn put_lp(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}
