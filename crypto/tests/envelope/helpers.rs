//! What the envelope tests share: fixtures, sealing helpers, and the
//! sections of an entry to tamper with.

// Test helpers outside `#[test]` functions unwrap too (clippy.toml only covers test functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use veil_crypto::{
    ChainKey, ChainState, EntryAuthKey, Error, GroupKeys, GroupSecret, OsEntropy, ReceiverChain, SenderChain,
    SigningSecret, TestEntropy,
    envelope::{BodyKey, EntryHash, EntryKind, Position, SealedEntry, open_entry, seal_entry},
    label,
    padding::BUCKETS,
    ratchet::DEFAULT_WINDOW,
};

use super::sha256;

/// Recomputes `entry.tag` under `key`, as the documented format says:
/// `HMAC(entry_auth_key, "veil/v1/entry-mac" ‖ lp(position) ‖ lp(header) ‖ lp(body))`.
pub(crate) fn retag(key: &EntryAuthKey, entry: &mut SealedEntry) {
    let mut input = label::ENTRY_MAC.to_vec();
    for section in [&entry.position, &entry.header, &entry.body] {
        input.extend_from_slice(&(section.len() as u32).to_be_bytes());
        input.extend_from_slice(section);
    }
    entry.tag = sha256::hmac(key.expose_secret(), &input);
}

pub(crate) fn group(name: &str) -> GroupKeys {
    GroupKeys::derive(&GroupSecret::generate(&mut TestEntropy::new(name.as_bytes())).unwrap())
}

pub(crate) fn device(name: &str) -> SigningSecret {
    SigningSecret::generate(&mut TestEntropy::new(name.as_bytes())).unwrap()
}

pub(crate) fn chain(name: &str, next: u64) -> SenderChain {
    let key = ChainKey::generate(&mut TestEntropy::new(name.as_bytes())).unwrap();
    SenderChain::from_state(ChainState { chain_key: key, next })
}

pub(crate) fn hash(n: u8) -> EntryHash {
    EntryHash([n; 32])
}

pub(crate) fn position(kind: EntryKind, lamport: u64, parents: Vec<EntryHash>) -> Position {
    Position { kind, lamport, parents }
}

/// The padding bucket of a payload of `len` bytes.
pub(crate) fn bucket(len: usize) -> usize {
    BUCKETS.iter().copied().find(|b| *b >= len + 4).unwrap()
}

/// AES-GCM nonce prefix (metadata only) + tag.
pub(crate) const METADATA_BODY_OVERHEAD: usize = 12 + 16;
/// AES-GCM tag only: the nonce comes from the ratchet.
pub(crate) const MESSAGE_BODY_OVERHEAD: usize = 16;

pub(crate) fn position_len(parents: usize) -> usize {
    12 + 11 + 32 * parents + 16
}

pub(crate) fn seal_metadata(keys: &GroupKeys, author: &SigningSecret, l: &Position, payload: &[u8]) -> SealedEntry {
    seal_entry(keys, author, l, BodyKey::Metadata, payload, &mut OsEntropy).unwrap()
}

pub(crate) fn seal_message(
    keys: &GroupKeys,
    author: &SigningSecret,
    c: &mut SenderChain,
    l: &Position,
    payload: &[u8],
) -> SealedEntry {
    seal_entry(keys, author, l, BodyKey::Message(c), payload, &mut OsEntropy).unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Position,
    Header,
    Body,
    Tag,
}

pub(crate) const SECTIONS: [Section; 4] = [Section::Position, Section::Header, Section::Body, Section::Tag];

pub(crate) fn section_mut(entry: &mut SealedEntry, s: Section) -> &mut [u8] {
    match s {
        Section::Position => &mut entry.position,
        Section::Header => &mut entry.header,
        Section::Body => &mut entry.body,
        Section::Tag => &mut entry.tag,
    }
}

pub(crate) fn section_len(entry: &SealedEntry, s: Section) -> usize {
    match s {
        Section::Position => entry.position.len(),
        Section::Header => entry.header.len(),
        Section::Body => entry.body.len(),
        Section::Tag => entry.tag.len(),
    }
}

pub(crate) fn flipped(entry: &SealedEntry, s: Section, i: usize, mask: u8) -> SealedEntry {
    let mut bad = entry.clone();
    section_mut(&mut bad, s)[i] ^= mask;
    bad
}

/// Opens `entry` completely (envelope and body) as a member with a fresh
/// receiving chain positioned at `receiver` for message entries.
pub(crate) fn open_fully(keys: &GroupKeys, entry: &SealedEntry, receiver: &ChainState) -> Result<Vec<u8>, Error> {
    let opened = open_entry(keys, entry)?;
    let body = match opened.position.kind {
        EntryKind::Metadata => opened.read_metadata(keys)?,
        EntryKind::Message => opened.read_message(&mut ReceiverChain::new(receiver.clone(), DEFAULT_WINDOW)?)?,
    };
    Ok(body.to_vec())
}
