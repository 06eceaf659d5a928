//! Log-entry envelopes: sealed, signed entries of a group's two logs.
//!
//! An entry has three encrypted sections and a tag:
//!
//! * **position** — `POSITION_VERSION ‖ kind ‖ u64_be(lamport) ‖ u8(n) ‖ parent_hash × n`,
//!   sealed under the group's position key (random nonce). Replication nodes hold
//!   the position key so they can walk the DAG; nobody else learns its shape.
//! * **header** — `HEADER_VERSION ‖ author_device_pk ‖ u64_be(counter) ‖ signature`,
//!   sealed under the group's header key (random nonce), associated data = position.
//!   Only members learn who wrote an entry; the signature is inside, so an
//!   outsider cannot test a guess of the author against it.
//! * **body** — the padded payload. Message entries are sealed with the
//!   author's ratchet key for `counter` (nonce from the ratchet, no prefix);
//!   metadata entries with the group's metadata key (random nonce prefix).
//!   Associated data = position.
//! * **tag** — HMAC-SHA256 under the entry-auth key over all three sections,
//!   so a replication node can refuse entries forged by outsiders.
//!
//! The author signs `"veil/v1/entry-sig" ‖ group_id ‖ lp(position) ‖ author ‖
//! u64_be(counter) ‖ lp(body)`; the entry hash is
//! `SHA-256("veil/v1/entry-hash" ‖ lp(position) ‖ lp(header) ‖ lp(body) ‖ tag)`.

use sha2::{Digest, Sha256};

use crate::{
    Error, GroupKeys, ReceiverChain, Result, SenderChain, Signature, SigningSecret, VerifyKey,
    aead::{self, NONCE_LEN, TAG_LEN},
    entry_signature::{self, Signed},
    group::{EntryAuthKey, GroupKey},
    kdf::{hmac, hmac_verify, label, put_lp},
    padding::{self, BUCKETS},
    secret::Entropy,
};

/// Version byte of the position section.
pub const POSITION_VERSION: u8 = 1;
/// Version byte of the header section.
pub const HEADER_VERSION: u8 = 1;
/// Most parents an entry may have.
pub const MAX_PARENTS: usize = 32;
/// Largest encrypted position section.
pub const MAX_POSITION_LEN: usize = NONCE_LEN + 11 + 32 * MAX_PARENTS + TAG_LEN;
/// Exact size of the encrypted header section.
pub const HEADER_LEN: usize = NONCE_LEN + HEADER_PLAIN_LEN + TAG_LEN;
/// Largest encrypted body section.
pub const MAX_BODY_LEN: usize = NONCE_LEN + BUCKETS[BUCKETS.len() - 1] + TAG_LEN;

const HEADER_PLAIN_LEN: usize = 1 + 32 + 8 + 64;
const POSITION_AAD: &[u8] = b"veil/v1/links";
const HEADER_AAD: &[u8] = b"veil/v1/header";
const BODY_AAD: &[u8] = b"veil/v1/body";

/// Which log an entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// Membership, chain-key sharing, settings; readable by every member.
    Metadata = 1,
    /// Application messages, sealed with the author's ratchet.
    Message = 2,
}

/// The SHA-256 hash naming an entry.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryHash(pub [u8; 32]);

impl core::fmt::Debug for EntryHash {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "EntryHash({:02x}{:02x}{:02x}{:02x}…)", self.0[0], self.0[1], self.0[2], self.0[3])
    }
}

/// An entry's place in the DAG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The log the entry belongs to; receivers require its parents to be in the same log.
    pub kind: EntryKind,
    /// Lamport clock: one more than the largest parent's.
    pub lamport: u64,
    /// The heads the author had seen (at most [`MAX_PARENTS`], no duplicates).
    pub parents: Vec<EntryHash>,
}

impl Position {
    fn encode(&self) -> Result<Vec<u8>> {
        if self.parents.len() > MAX_PARENTS {
            return Err(Error::TooMany { what: "parent list", count: self.parents.len(), max: MAX_PARENTS });
        }
        // `decode` refuses duplicates, so an entry sealed with them could never be opened.
        for (i, p) in self.parents.iter().enumerate() {
            if self.parents[..i].contains(p) {
                return Err(Error::Malformed { what: "entry links", reason: "duplicate parent" });
            }
        }
        let mut out = Vec::with_capacity(11 + 32 * self.parents.len());
        out.push(POSITION_VERSION);
        out.push(self.kind as u8);
        out.extend_from_slice(&self.lamport.to_be_bytes());
        out.push(self.parents.len() as u8);
        for p in &self.parents {
            out.extend_from_slice(&p.0);
        }
        Ok(out)
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        const WHAT: &str = "entry links";
        if bytes.len() < 11 || bytes[0] != POSITION_VERSION {
            return Err(Error::Malformed { what: WHAT, reason: "bad version or truncated" });
        }
        let kind = match bytes[1] {
            1 => EntryKind::Metadata,
            2 => EntryKind::Message,
            _ => return Err(Error::Malformed { what: WHAT, reason: "unknown entry kind" }),
        };
        let mut lamport = [0u8; 8];
        lamport.copy_from_slice(&bytes[2..10]);
        let n = bytes[10] as usize;
        if n > MAX_PARENTS || bytes.len() != 11 + 32 * n {
            return Err(Error::Malformed { what: WHAT, reason: "parent count does not match length" });
        }
        let parents: Vec<EntryHash> = bytes[11..]
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                EntryHash(h)
            })
            .collect();
        let mut sorted = parents.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != parents.len() {
            return Err(Error::Malformed { what: WHAT, reason: "duplicate parent" });
        }
        Ok(Self { kind, lamport: u64::from_be_bytes(lamport), parents })
    }
}

/// An entry as it travels and is stored: opaque to anyone without the keys.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedEntry {
    /// The position (kind, Lamport clock, parents) sealed under the position key, which replication nodes hold.
    pub position: Vec<u8>,
    /// The author's device key, counter and signature, sealed under the header key: [`HEADER_LEN`] bytes.
    pub header: Vec<u8>,
    /// The padded payload, sealed under the author's message key (messages) or the metadata key (metadata).
    pub body: Vec<u8>,
    /// HMAC-SHA256 under the entry-auth key.
    pub tag: [u8; 32],
}

impl core::fmt::Debug for SealedEntry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SealedEntry")
            .field("hash", &self.hash())
            .field("links_len", &self.position.len())
            .field("body_len", &self.body.len())
            .finish()
    }
}

fn sections_mac_input<'a>(position: &'a [u8], header: &'a [u8], body: &'a [u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(label::ENTRY_MAC.len() + 12 + position.len() + header.len() + body.len());
    m.extend_from_slice(label::ENTRY_MAC);
    put_lp(&mut m, position);
    put_lp(&mut m, header);
    put_lp(&mut m, body);
    m
}

fn signature_input(group_id: &[u8; 32], position: &[u8], author: &VerifyKey, counter: u64, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(label::ENTRY_SIG.len() + 84 + position.len() + body.len());
    m.extend_from_slice(label::ENTRY_SIG);
    m.extend_from_slice(group_id);
    put_lp(&mut m, position);
    m.extend_from_slice(&author.to_bytes());
    m.extend_from_slice(&counter.to_be_bytes());
    put_lp(&mut m, body);
    m
}

fn with_aad(prefix: &[u8], position: &[u8]) -> Vec<u8> {
    let mut aad = prefix.to_vec();
    aad.extend_from_slice(position);
    aad
}

impl SealedEntry {
    /// The entry's hash (its name in the DAG).
    pub fn hash(&self) -> EntryHash {
        let mut h = Sha256::new();
        h.update(label::ENTRY_HASH);
        for section in [&self.position, &self.header, &self.body] {
            h.update((section.len() as u32).to_be_bytes());
            h.update(section);
        }
        h.update(self.tag);
        EntryHash(h.finalize().into())
    }

    /// Checks section sizes (cheap; run first on anything from the network).
    pub fn check_sizes(&self) -> Result<()> {
        if self.position.len() > MAX_POSITION_LEN {
            return Err(Error::TooLarge { what: "entry links", len: self.position.len(), max: MAX_POSITION_LEN });
        }
        if self.header.len() != HEADER_LEN {
            return Err(Error::Malformed { what: "entry header", reason: "wrong length" });
        }
        if self.body.len() > MAX_BODY_LEN {
            return Err(Error::TooLarge { what: "entry body", len: self.body.len(), max: MAX_BODY_LEN });
        }
        Ok(())
    }

    /// Checks sizes and the tag: what a replication node (or anyone holding
    /// the entry-auth key) can verify.
    pub fn verify_tag(&self, key: &EntryAuthKey) -> Result<()> {
        self.check_sizes()?;
        let input = sections_mac_input(&self.position, &self.header, &self.body);
        if !hmac_verify(key.expose_secret(), &[&input], &self.tag) {
            return Err(Error::BadSignature);
        }
        Ok(())
    }

    /// Decrypts the position section (after [`SealedEntry::verify_tag`]).
    pub fn open_position(&self, position_key: &GroupKey) -> Result<Position> {
        let plain = aead::open_prefixed(position_key.expose_secret(), POSITION_AAD, &self.position)?;
        Position::decode(&plain)
    }
}

/// What sealing needs to know about the body.
#[derive(Debug)]
pub enum BodyKey<'a> {
    /// A metadata entry, sealed with the group's metadata key.
    Metadata,
    /// A message entry, sealed with the next key of the author's chain.
    Message(&'a mut SenderChain),
}

/// Seals `payload` into a new entry of `keys`' group, written by `author`.
pub fn seal_entry(
    keys: &GroupKeys,
    author: &SigningSecret,
    position: &Position,
    body_key: BodyKey<'_>,
    payload: &[u8],
    entropy: &mut impl Entropy,
) -> Result<SealedEntry> {
    begin_entry(keys, &author.verify_key(), position, body_key, payload, entropy)?.sign(author)?.finish(keys, entropy)
}

/// An entry sealed except for the author's signature: the two-step form of
/// [`seal_entry`] for when the signing key lives elsewhere (an identity
/// vault that never hands keys out). Whoever holds the author's device key
/// signs it ([`PendingEntry::sign`], which needs no verification: the key
/// is checked to be the author's), then [`SignedEntry::finish`]; or sign
/// [`PendingEntry::to_sign`] elsewhere and [`PendingEntry::finish`], which
/// verifies the signature.
#[derive(Debug)]
pub struct PendingEntry {
    position_ct: Vec<u8>,
    body: Vec<u8>,
    author: VerifyKey,
    counter: u64,
    to_sign: Vec<u8>,
}

/// Encrypts position and body of a new entry and computes what the author signs.
/// For message entries this advances the sender chain.
pub fn begin_entry(
    keys: &GroupKeys,
    author: &VerifyKey,
    position: &Position,
    body_key: BodyKey<'_>,
    payload: &[u8],
    entropy: &mut impl Entropy,
) -> Result<PendingEntry> {
    let expected_kind = match body_key {
        BodyKey::Metadata => EntryKind::Metadata,
        BodyKey::Message(_) => EntryKind::Message,
    };
    if position.kind != expected_kind {
        return Err(Error::Malformed { what: "entry links", reason: "kind does not match the body key" });
    }
    let padded = zeroize::Zeroizing::new(padding::pad(payload)?);
    let position_ct =
        aead::seal_prefixed(keys.position_key.expose_secret(), POSITION_AAD, &position.encode()?, entropy)?;
    let body_aad = with_aad(BODY_AAD, &position_ct);
    let (counter, body) = match body_key {
        BodyKey::Metadata => (0, aead::seal_prefixed(keys.metadata_key.expose_secret(), &body_aad, &padded, entropy)?),
        BodyKey::Message(chain) => {
            let (counter, mk) = chain.next_key()?;
            (counter, aead::seal(&mk.key, &mk.nonce, &body_aad, &padded))
        }
    };
    let to_sign = signature_input(&keys.id.0, &position_ct, author, counter, &body);
    Ok(PendingEntry { position_ct, body, author: *author, counter, to_sign })
}

impl PendingEntry {
    /// The bytes the author's device key must sign.
    pub fn to_sign(&self) -> &[u8] {
        &self.to_sign
    }

    /// The author's device key this entry is for.
    pub fn author(&self) -> &VerifyKey {
        &self.author
    }

    /// Signs with the author's device key; `Error::BadSignature` if
    /// `secret` is another key. No verification is needed afterwards.
    pub fn sign(self, secret: &SigningSecret) -> Result<SignedEntry> {
        if secret.verify_key() != self.author {
            return Err(Error::BadSignature);
        }
        let signature = secret.sign(&self.to_sign);
        Ok(SignedEntry { pending: self, signature })
    }

    /// Completes the entry with the author's signature made elsewhere
    /// (verified here, so a wrong key cannot produce an entry that members
    /// would refuse).
    pub fn finish(self, keys: &GroupKeys, signature: Signature, entropy: &mut impl Entropy) -> Result<SealedEntry> {
        entry_signature::verify(&Signed { author: &self.author, message: &self.to_sign, signature: &signature })?;
        SignedEntry { pending: self, signature }.finish(keys, entropy)
    }
}

/// A [`PendingEntry`] signed by its author's own key.
#[derive(Debug)]
pub struct SignedEntry {
    pending: PendingEntry,
    signature: Signature,
}

impl SignedEntry {
    /// Seals the header (author, counter, signature) and tags the entry.
    pub fn finish(self, keys: &GroupKeys, entropy: &mut impl Entropy) -> Result<SealedEntry> {
        let Self { pending: this, signature } = self;
        let mut header_plain = zeroize::Zeroizing::new(Vec::with_capacity(HEADER_PLAIN_LEN));
        header_plain.push(HEADER_VERSION);
        header_plain.extend_from_slice(&this.author.to_bytes());
        header_plain.extend_from_slice(&this.counter.to_be_bytes());
        header_plain.extend_from_slice(&signature.0);
        let header = aead::seal_prefixed(
            keys.header_key.expose_secret(),
            &with_aad(HEADER_AAD, &this.position_ct),
            &header_plain,
            entropy,
        )?;
        let tag =
            hmac(keys.entry_auth_key.expose_secret(), &[&sections_mac_input(&this.position_ct, &header, &this.body)]);
        Ok(SealedEntry { position: this.position_ct, header, body: this.body, tag })
    }
}

/// An entry whose tag, position, header and author signature all checked out.
/// The body is still sealed: read it with [`OpenedEntry::read_metadata`] or
/// [`OpenedEntry::read_message`].
#[derive(Debug, Clone)]
pub struct OpenedEntry {
    /// The hash that names the entry: what its children list as a parent and acknowledgements carry.
    pub hash: EntryHash,
    /// Its place in the DAG.
    pub position: Position,
    /// The author's device key (the caller checks it belongs to a member).
    pub author: VerifyKey,
    /// The author's ratchet counter (0 for metadata entries).
    pub counter: u64,
    body: Vec<u8>,
    position_ct: Vec<u8>,
}

/// Verifies everything about `entry` that a member can check without the
/// author's chain: sizes, tag, position, header, and the author's signature.
pub fn open_entry(keys: &GroupKeys, entry: &SealedEntry) -> Result<OpenedEntry> {
    entry.verify_tag(&keys.entry_auth_key)?;
    let position = entry.open_position(&keys.position_key)?;
    open_header(keys, entry, position)
}

/// The second half of [`open_entry`], for an entry whose tag was verified
/// and whose `position` were opened already: opens the header with `keys`
/// (`Error::Decrypt` if they are not the entry's header key) and checks the
/// author's signature. Lets a member that holds several epochs' keys try
/// each without checking the tag again.
pub fn open_header(keys: &GroupKeys, entry: &SealedEntry, position: Position) -> Result<OpenedEntry> {
    let (opened, check) = open_header_parsing(keys, entry, position, VerifyKey::from_bytes)?;
    check.verify()?;
    Ok(opened)
}

/// Author keys already parsed, by their encoding. Parsing an Ed25519 key
/// decompresses a curve point (a square root, a quarter of what verifying a
/// signature costs), and a receiver meets the same few authors in entry
/// after entry. Bounded: forgets everything past [`AuthorKeys::MAX`] keys.
#[derive(Debug, Clone, Default)]
pub struct AuthorKeys {
    keys: std::collections::HashMap<[u8; 32], VerifyKey>,
}

impl AuthorKeys {
    /// Most keys kept.
    pub const MAX: usize = 1024;

    /// The key `bytes` encode, parsed once.
    pub fn parse(&mut self, bytes: &[u8; 32]) -> Result<VerifyKey> {
        if let Some(key) = self.keys.get(bytes) {
            return Ok(*key);
        }
        let key = VerifyKey::from_bytes(bytes)?;
        if self.keys.len() >= Self::MAX {
            self.keys.clear();
        }
        self.keys.insert(*bytes, key);
        Ok(key)
    }
}

/// [`open_header`] without the signature check, parsing the author's key
/// through `authors`: the entry comes back with the [`SignatureCheck`] still
/// to make. Checking many entries' signatures at once
/// ([`failed_signatures`]) costs about a third of checking each alone.
pub fn open_header_unchecked(
    keys: &GroupKeys,
    entry: &SealedEntry,
    position: Position,
    authors: &mut AuthorKeys,
) -> Result<(OpenedEntry, SignatureCheck)> {
    open_header_parsing(keys, entry, position, |bytes| authors.parse(bytes))
}

/// [`open_header`], parsing the author's key with `parse`; the signature is
/// left to check.
fn open_header_parsing(
    keys: &GroupKeys,
    entry: &SealedEntry,
    position: Position,
    parse: impl FnOnce(&[u8; 32]) -> Result<VerifyKey>,
) -> Result<(OpenedEntry, SignatureCheck)> {
    let header =
        aead::open_prefixed(keys.header_key.expose_secret(), &with_aad(HEADER_AAD, &entry.position), &entry.header)?;
    if header.len() != HEADER_PLAIN_LEN || header[0] != HEADER_VERSION {
        return Err(Error::Malformed { what: "entry header", reason: "bad version or length" });
    }
    let mut author = [0u8; 32];
    author.copy_from_slice(&header[1..33]);
    let author = parse(&author)?;
    let mut counter = [0u8; 8];
    counter.copy_from_slice(&header[33..41]);
    let counter = u64::from_be_bytes(counter);
    let mut sig = [0u8; 64];
    sig.copy_from_slice(&header[41..105]);
    if position.kind == EntryKind::Metadata && counter != 0 {
        return Err(Error::Malformed { what: "entry header", reason: "metadata entries carry counter 0" });
    }
    let check = SignatureCheck {
        author,
        message: signature_input(&keys.id.0, &entry.position, &author, counter, &entry.body),
        signature: Signature(sig),
    };
    let opened = OpenedEntry {
        hash: entry.hash(),
        position,
        author,
        counter,
        body: entry.body.clone(),
        position_ct: entry.position.clone(),
    };
    Ok((opened, check))
}

/// An entry's author signature, still to be checked (PROTOCOL.md §7: the
/// cofactored rule, the same alone as in a batch).
#[derive(Debug)]
pub struct SignatureCheck {
    author: VerifyKey,
    message: Vec<u8>,
    signature: Signature,
}

impl SignatureCheck {
    /// Checks this signature alone.
    pub fn verify(&self) -> Result<()> {
        entry_signature::verify(&self.signed())
    }

    fn signed(&self) -> Signed<'_> {
        Signed { author: &self.author, message: &self.message, signature: &self.signature }
    }
}

/// Checks many signatures at once and returns the positions of those that
/// fail (none when all pass). One bad signature makes every one of the
/// batch be checked alone, which costs about what checking them alone in
/// the first place would have.
pub fn failed_signatures(checks: &[SignatureCheck]) -> Vec<usize> {
    let signed: Vec<Signed<'_>> = checks.iter().map(SignatureCheck::signed).collect();
    if entry_signature::verify_all(&signed).is_ok() {
        return Vec::new();
    }
    signed.iter().enumerate().filter(|(_, s)| entry_signature::verify(s).is_err()).map(|(i, _)| i).collect()
}

impl OpenedEntry {
    /// The payload of a metadata entry.
    pub fn read_metadata(&self, keys: &GroupKeys) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        if self.position.kind != EntryKind::Metadata {
            return Err(Error::Malformed { what: "entry", reason: "not a metadata entry" });
        }
        let padded =
            aead::open_prefixed(keys.metadata_key.expose_secret(), &with_aad(BODY_AAD, &self.position_ct), &self.body)?;
        Ok(zeroize::Zeroizing::new(padding::unpad(&padded)?.to_vec()))
    }

    /// The payload of a message entry, decrypted with the author's receiving
    /// chain (which deletes the key it used).
    pub fn read_message(&self, chain: &mut ReceiverChain) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        if self.position.kind != EntryKind::Message {
            return Err(Error::Malformed { what: "entry", reason: "not a message entry" });
        }
        let aad = with_aad(BODY_AAD, &self.position_ct);
        chain.open(self.counter, |mk| {
            let padded = aead::open(&mk.key, &mk.nonce, &aad, &self.body)?;
            Ok(zeroize::Zeroizing::new(padding::unpad(&padded)?.to_vec()))
        })
    }
}

#[cfg(test)]
mod tests;
