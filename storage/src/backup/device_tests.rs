//! However the stream is cut into pieces, on either side, the same key and
//! the same copy arrive, and the key never reaches the copy's file.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

use super::*;

/// A device copy of `body` (as if made by `VACUUM INTO`), streamed after `key`.
fn device_copy(dir: &Path, key: [u8; KEY_LEN], body: &[u8]) -> DeviceCopy {
    let path = dir.join("copy");
    std::fs::write(&path, body).unwrap();
    let file = File::open(&path).unwrap();
    DeviceCopy {
        file,
        key: Zeroizing::new(key),
        total_len: (KEY_LEN + body.len()) as u64,
        sent: 0,
        copy: Removed(path),
    }
}

fn sizes() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(prop_oneof![1usize..48, 48usize..8000], 1..12)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_split_of_the_stream_gives_the_same_key_and_copy(
        key in any::<[u8; KEY_LEN]>(),
        body in proptest::collection::vec(any::<u8>(), 100..6000),
        sends in sizes(),
        pushes in sizes(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut copy = device_copy(dir.path(), key, &body);
        let mut stream = Vec::new();
        for max in sends.iter().cycle() {
            let piece = copy.next_piece(*max).unwrap();
            if piece.is_empty() {
                break;
            }
            prop_assert!(piece.len() == *max || (stream.len() + piece.len()) as u64 == copy.total_len());
            stream.extend_from_slice(&piece);
        }
        prop_assert_eq!(&stream[..KEY_LEN], &key[..]);
        prop_assert_eq!(&stream[KEY_LEN..], &body[..]);
        drop(copy);

        let mut received =
            ReceivedCopy::begin(&dir.path().join("veil.db"), &dir.path().join("storage.key"), stream.len() as u64)
                .unwrap();
        let mut rest = &stream[..];
        for len in pushes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            received.push(&[]).unwrap();
            let (piece, after) = rest.split_at((*len).min(rest.len()));
            received.push(piece).unwrap();
            rest = after;
        }
        received.out.as_mut().unwrap().flush().unwrap();
        prop_assert_eq!(&received.key[..], &key[..]);
        prop_assert_eq!(std::fs::read(&received.staging).unwrap(), body);
        drop(received);
        prop_assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing left");
    }
}
