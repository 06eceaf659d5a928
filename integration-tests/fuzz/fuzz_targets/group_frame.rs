//! A group frame (push, pull, reconciliation, acknowledgements): decoding
//! never panics, and what decodes round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veil_proto::sync::GroupFrame;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = GroupFrame::decode(data) {
        assert_eq!(GroupFrame::decode(&frame.encode()).expect("an encoded frame decodes"), frame);
    }
});
