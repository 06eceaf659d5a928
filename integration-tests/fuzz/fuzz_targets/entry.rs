//! A log entry as it travels (sealed): decoding never panics, and what
//! decodes encodes back to bytes that decode to the same entry.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veil_proto::entry::{decode_entry, encode_entry};

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = decode_entry(data) {
        let again = decode_entry(&encode_entry(&entry)).expect("an encoded entry decodes");
        assert!(again == entry, "an entry changed on the way round");
    }
});
