//! Log entries on the wire.

use prost::Message;
use veil_crypto::envelope::{HEADER_LEN, MAX_BODY_LEN, MAX_POSITION_LEN, SealedEntry};

use crate::{Error, Result, error::decode_err, fields::fixed, pb};

/// Largest encoded entry: every section at its maximum plus protobuf framing.
pub const MAX_ENCODED_ENTRY: usize = MAX_POSITION_LEN + HEADER_LEN + MAX_BODY_LEN + 32 + 4 * 6;

/// Encodes a sealed entry as a `LogEntry` protobuf.
pub fn encode_entry(entry: &SealedEntry) -> Vec<u8> {
    pb::LogEntry {
        links: entry.position.clone(),
        header: entry.header.clone(),
        body: entry.body.clone(),
        tag: entry.tag.to_vec(),
    }
    .encode_to_vec()
}

/// Decodes a `LogEntry`, refusing oversize input before parsing and sections
/// of impossible sizes after. (Authenticity is checked by veil-crypto.)
pub fn decode_entry(bytes: &[u8]) -> Result<SealedEntry> {
    if bytes.len() > MAX_ENCODED_ENTRY {
        return Err(Error::TooLarge { what: "log entry", len: bytes.len(), max: MAX_ENCODED_ENTRY });
    }
    let m = pb::LogEntry::decode(bytes).map_err(decode_err("log entry"))?;
    let entry = SealedEntry { position: m.links, header: m.header, body: m.body, tag: fixed("entry tag", &m.tag)? };
    entry.check_sizes()?;
    Ok(entry)
}
