//! Checks on what a request names: hex ids and hashes, argument lengths.

use tonic::Status;
use veil_actors::crypto::envelope::EntryHash;

use crate::api::MAX_ARG;

pub(super) fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

pub(super) fn checked_arg<'a>(what: &str, text: &'a str) -> Result<&'a str, Status> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Status::invalid_argument(format!("no {what} given")));
    }
    if text.len() > MAX_ARG {
        return Err(Status::invalid_argument(format!("the {what} is longer than {MAX_ARG} bytes")));
    }
    Ok(text)
}

/// A 32-byte entry hash in hex.
pub(super) fn entry_hash(text: &str, what: &str) -> Result<EntryHash, Status> {
    hex::decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(EntryHash)
        .ok_or_else(|| Status::invalid_argument(format!("{what} is not a 32-byte hex entry hash")))
}
