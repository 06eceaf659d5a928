//! Frames between the members of a group (`GroupFrame`, docs/PROTOCOL.md §12):
//! entries pushed to a member and the acknowledgements of the ones it stored.

use prost::Message;
use veil_crypto::envelope::{EntryHash, SealedEntry};

use crate::{
    Error, Result,
    entry::MAX_ENCODED_ENTRY,
    error::decode_err,
    fields::fixed,
    pb,
    reconcile::{Fingerprint, HashRange, MAX_RANGES, Summary},
};

/// Most entries in one frame.
pub const MAX_BATCH_ENTRIES: usize = 256;
/// Tokens of a `Nearby` frame come in multiples of this many (the real
/// ones padded with random tokens), so a neighbour learns the number of
/// groups only to this granularity.
pub const NEARBY_PAD: usize = 16;
/// Most tokens in one `Nearby` frame.
pub const MAX_NEARBY_TOKENS: usize = 256;
/// Most hashes in one acknowledgement.
pub const MAX_ACK_HASHES: usize = 256;
/// Largest encoded group frame: a full batch of the largest entries would
/// not fit any transport frame, so senders fill batches up to their frame
/// size; this bound only stops absurd input before it is parsed.
pub const MAX_GROUP_FRAME: usize = 4 * 1024 * 1024 + MAX_ENCODED_ENTRY;

/// What a group frame carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBody {
    /// Entries the receiver is owed.
    Entries(Vec<SealedEntry>),
    /// Entries the sender of this frame stored.
    Ack(Vec<EntryHash>),
    /// The sender's heads of the metadata and message logs.
    Heads {
        /// Metadata-log heads.
        metadata: Vec<EntryHash>,
        /// Message-log heads.
        messages: Vec<EntryHash>,
    },
    /// Entries the sender asks for.
    Want(Vec<EntryHash>),
    /// One step of set reconciliation (see [`crate::reconcile`]).
    Reconcile(Vec<HashRange>),
    /// Membership tokens offered to a peer found nearby
    /// (`veil_crypto::rendezvous::nearby_token`, one per group, padded to a
    /// multiple of [`NEARBY_PAD`]); the frame's `session_tag` field then
    /// carries the sender's salt, as no session exists yet.
    Nearby(Vec<[u8; 32]>),
}

/// A frame of one group on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupFrame {
    /// `veil_crypto::rendezvous::session_tag` of the group for this sender and receiver.
    pub session_tag: [u8; 32],
    /// What the frame carries; for [`GroupBody::Nearby`], `session_tag` holds the offer's salt instead of a tag.
    pub body: GroupBody,
}

impl GroupFrame {
    /// Encodes the frame.
    pub fn encode(&self) -> Vec<u8> {
        use pb::group_frame::Body;
        let body = match &self.body {
            GroupBody::Entries(entries) => Body::Entries(pb::EntryBatch {
                entries: entries
                    .iter()
                    .map(|e| pb::LogEntry {
                        links: e.position.clone(),
                        header: e.header.clone(),
                        body: e.body.clone(),
                        tag: e.tag.to_vec(),
                    })
                    .collect(),
            }),
            GroupBody::Ack(hashes) => Body::Ack(pb::EntryAck { hashes: raw(hashes) }),
            GroupBody::Heads { metadata, messages } => {
                Body::Heads(pb::LogHeads { metadata: raw(metadata), messages: raw(messages) })
            }
            GroupBody::Want(hashes) => Body::Want(pb::EntryAck { hashes: raw(hashes) }),
            GroupBody::Nearby(tokens) => {
                Body::Nearby(pb::Nearby { tokens: tokens.iter().map(|t| t.to_vec()).collect() })
            }
            GroupBody::Reconcile(ranges) => Body::Reconcile(pb::Reconcile {
                ranges: ranges
                    .iter()
                    .map(|r| pb::HashRange {
                        lo: r.lo,
                        hi: r.hi,
                        summary: Some(match &r.summary {
                            Summary::Fingerprint(fp) => pb::hash_range::Summary::Fingerprint(pb::Fingerprint {
                                count: fp.count,
                                xor: fp.xor.to_vec(),
                            }),
                            Summary::Hashes(h) => pb::hash_range::Summary::Hashes(pb::EntryAck { hashes: raw(h) }),
                        }),
                    })
                    .collect(),
            }),
        };
        pb::GroupFrame { session_tag: self.session_tag.to_vec(), body: Some(body) }.encode_to_vec()
    }

    /// The encoded size of an entry inside a batch (for filling frames).
    pub fn entry_cost(entry: &SealedEntry) -> usize {
        let inner = pb::LogEntry {
            links: entry.position.clone(),
            header: entry.header.clone(),
            body: entry.body.clone(),
            tag: entry.tag.to_vec(),
        }
        .encoded_len();
        inner + prost::length_delimiter_len(inner) + 1
    }

    /// Decodes and validates a frame: size first, then every entry's section
    /// sizes and every hash's length, and the batch limits.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        use pb::group_frame::Body;
        if bytes.len() > MAX_GROUP_FRAME {
            return Err(Error::TooLarge { what: "group frame", len: bytes.len(), max: MAX_GROUP_FRAME });
        }
        let m = pb::GroupFrame::decode(bytes).map_err(decode_err("group frame"))?;
        let session_tag = fixed("session tag", &m.session_tag)?;
        let body = match m.body {
            Some(Body::Entries(batch)) => {
                if batch.entries.is_empty() || batch.entries.len() > MAX_BATCH_ENTRIES {
                    return Err(Error::Invalid { what: "entry batch", reason: "must hold 1 to 256 entries" });
                }
                let entries = batch
                    .entries
                    .into_iter()
                    .map(|e| {
                        let entry = SealedEntry {
                            position: e.links,
                            header: e.header,
                            body: e.body,
                            tag: fixed("entry tag", &e.tag)?,
                        };
                        entry.check_sizes()?;
                        Ok(entry)
                    })
                    .collect::<Result<_>>()?;
                GroupBody::Entries(entries)
            }
            Some(Body::Ack(ack)) => GroupBody::Ack(hashes("entry ack", &ack.hashes, 1)?),
            Some(Body::Want(want)) => GroupBody::Want(hashes("entry request", &want.hashes, 1)?),
            Some(Body::Heads(heads)) => GroupBody::Heads {
                metadata: hashes("heads", &heads.metadata, 0)?,
                messages: hashes("heads", &heads.messages, 0)?,
            },
            Some(Body::Reconcile(r)) => GroupBody::Reconcile(ranges(r)?),
            Some(Body::Nearby(n)) => GroupBody::Nearby(nearby_tokens(&n.tokens)?),
            None => return Err(Error::Invalid { what: "group frame", reason: "carries nothing" }),
        };
        Ok(Self { session_tag, body })
    }
}

/// 1 to [`MAX_RANGES`] ranges, each with `lo <= hi` and a valid summary.
fn ranges(r: pb::Reconcile) -> Result<Vec<HashRange>> {
    use pb::hash_range::Summary as S;
    if r.ranges.is_empty() || r.ranges.len() > MAX_RANGES {
        return Err(Error::Invalid { what: "reconcile", reason: "must hold 1 to 256 ranges" });
    }
    r.ranges
        .into_iter()
        .map(|range| {
            if range.lo > range.hi {
                return Err(Error::Invalid { what: "hash range", reason: "lower bound above upper bound" });
            }
            let summary = match range.summary {
                Some(S::Fingerprint(fp)) => {
                    Summary::Fingerprint(Fingerprint { count: fp.count, xor: fixed("fingerprint", &fp.xor)? })
                }
                Some(S::Hashes(list)) => Summary::Hashes(hashes("range hashes", &list.hashes, 0)?),
                None => return Err(Error::Invalid { what: "hash range", reason: "carries no summary" }),
            };
            Ok(HashRange { lo: range.lo, hi: range.hi, summary })
        })
        .collect()
}

/// [`NEARBY_PAD`] to [`MAX_NEARBY_TOKENS`] 32-byte tokens, a multiple of
/// [`NEARBY_PAD`].
fn nearby_tokens(list: &[Vec<u8>]) -> Result<Vec<[u8; 32]>> {
    if list.is_empty() || list.len() > MAX_NEARBY_TOKENS || !list.len().is_multiple_of(NEARBY_PAD) {
        return Err(Error::Invalid { what: "nearby tokens", reason: "must be 16 to 256, a multiple of 16" });
    }
    list.iter().map(|t| fixed("nearby token", t)).collect()
}

fn raw(hashes: &[EntryHash]) -> Vec<Vec<u8>> {
    hashes.iter().map(|h| h.0.to_vec()).collect()
}

/// A list of `min` to [`MAX_ACK_HASHES`] 32-byte hashes.
fn hashes(what: &'static str, list: &[Vec<u8>], min: usize) -> Result<Vec<EntryHash>> {
    if list.len() < min || list.len() > MAX_ACK_HASHES {
        return Err(Error::Invalid { what, reason: "wrong number of hashes" });
    }
    list.iter().map(|h| Ok(EntryHash(fixed("entry hash", h)?))).collect()
}
