//! The receiving side's acknowledgements: sent once the store synced what
//! they acknowledge, several receipts in one sync and one frame per peer and
//! group (see `Courier::send_receipts`).

use tokio::sync::OwnedSemaphorePermit;
use veil_crypto::envelope::EntryHash;
use veil_proto::sync::{GroupBody, GroupFrame, MAX_ACK_HASHES};
use veil_transports::libp2p::PeerId;

/// How long received entries wait to be acknowledged together. An
/// acknowledgement waits for the store's sync (it promises the entries
/// survive a power loss) and is a frame the sender answers: one each, at a
/// conversation's pace, cost the receiver an fsync and both sides a frame
/// per message, CPU the message path then lacked (one message at a time:
/// 1 150-1 290 msg/s with, 1 350-1 420 coalesced). Only the sender's
/// `EntriesDelivered` waits this long (and its outbox rows: their resend is
/// seconds away).
pub(crate) const RECEIPT_DELAY: std::time::Duration = std::time::Duration::from_millis(10);

/// Received entries owed an acknowledgement once synced.
pub(crate) struct Receipt {
    pub(crate) peer: PeerId,
    /// This node's peer id the tag was made for: the ack goes from it only.
    pub(crate) local: PeerId,
    /// The session tag of their group with `peer`.
    pub(crate) tag: [u8; 32],
    pub(crate) hashes: Vec<EntryHash>,
    /// The commit that stored them, if deferred.
    pub(crate) unsynced: Option<veil_storage::Unsynced>,
    /// Their room under `MAX_ACKS_SYNCING`, held until they are sent.
    pub(crate) permit: OwnedSemaphorePermit,
}

/// What a batch of receipts sends one peer.
pub(crate) struct ToPeer {
    pub(crate) peer: PeerId,
    /// The local peer id the frames must leave from (their tags name it).
    pub(crate) local: PeerId,
    /// One acknowledgement per group (per [`MAX_ACK_HASHES`] hashes), in
    /// the order received.
    pub(crate) frames: Vec<Vec<u8>>,
    /// Held until they are sent.
    pub(crate) permits: Vec<OwnedSemaphorePermit>,
}

/// The acknowledgement frames of a batch of receipts, per peer (and per
/// local peer id, should the batch span a key rotation).
pub(crate) fn receipt_frames(batch: Vec<Receipt>) -> Vec<ToPeer> {
    let mut groups: Vec<(PeerId, PeerId, [u8; 32], Vec<EntryHash>)> = Vec::new();
    let mut peers: Vec<ToPeer> = Vec::new();
    for Receipt { peer, local, tag, hashes, permit, .. } in batch {
        match peers.iter_mut().find(|p| p.peer == peer && p.local == local) {
            Some(to) => to.permits.push(permit),
            None => peers.push(ToPeer { peer, local, frames: Vec::new(), permits: vec![permit] }),
        }
        match groups.iter_mut().find(|(p, l, t, _)| *p == peer && *l == local && *t == tag) {
            Some((_, _, _, all)) => all.extend(hashes),
            None => groups.push((peer, local, tag, hashes)),
        }
    }
    for (peer, local, tag, hashes) in groups {
        let frames = hashes
            .chunks(MAX_ACK_HASHES)
            .map(|chunk| GroupFrame { session_tag: tag, body: GroupBody::Ack(chunk.to_vec()) }.encode());
        if let Some(to) = peers.iter_mut().find(|p| p.peer == peer && p.local == local) {
            to.frames.extend(frames);
        }
    }
    peers
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::Semaphore;

    use super::*;

    fn acked(frame: &[u8]) -> ([u8; 32], Vec<EntryHash>) {
        let frame = GroupFrame::decode(frame).unwrap();
        match frame.body {
            GroupBody::Ack(hashes) => (frame.session_tag, hashes),
            _ => panic!("not an ack"),
        }
    }

    #[test]
    fn receipts_become_one_ack_per_peer_and_group_holding_their_room_until_sent() {
        let room = Arc::new(Semaphore::new(MAX_ACK_HASHES + 10));
        let (a, b, me) = (PeerId::random(), PeerId::random(), PeerId::random());
        let hashes =
            |from: u8, n: usize| (0..n).map(|i| EntryHash([from.wrapping_add(i as u8); 32])).collect::<Vec<_>>();
        let receipt = |peer, tag, hashes: Vec<EntryHash>| {
            let permit = room.clone().try_acquire_many_owned(hashes.len() as u32).unwrap();
            Receipt { peer, local: me, tag: [tag; 32], hashes, unsynced: None, permit }
        };
        let batch = vec![
            receipt(a, 1, hashes(0, 2)),
            receipt(b, 1, hashes(10, 1)),
            receipt(a, 2, hashes(20, 1)),
            receipt(a, 1, hashes(30, MAX_ACK_HASHES)),
        ];
        assert_eq!(room.available_permits(), 6);
        let sent = receipt_frames(batch);
        assert_eq!(sent.iter().map(|to| to.peer).collect::<Vec<_>>(), [a, b]);
        let to_a: Vec<_> = sent[0].frames.iter().map(|f| acked(f)).collect();
        // Group 1's hashes in the order received, split at the frame's bound.
        let group_1: Vec<EntryHash> = hashes(0, 2).into_iter().chain(hashes(30, MAX_ACK_HASHES)).collect();
        assert_eq!(to_a.len(), 3);
        assert_eq!(to_a[0], ([1; 32], group_1[..MAX_ACK_HASHES].to_vec()));
        assert_eq!(to_a[1], ([1; 32], group_1[MAX_ACK_HASHES..].to_vec()));
        assert_eq!(to_a[2], ([2; 32], hashes(20, 1)));
        assert_eq!(sent[1].frames.iter().map(|f| acked(f)).collect::<Vec<_>>(), [([1; 32], hashes(10, 1))]);
        assert_eq!(room.available_permits(), 6, "held until sent");
        drop(sent);
        assert_eq!(room.available_permits(), MAX_ACK_HASHES + 10);
    }
}
