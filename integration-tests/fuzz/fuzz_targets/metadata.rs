//! A metadata-log event (announcements, joins, removals, epochs): decoding
//! never panics, and what decodes round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veil_proto::metadata::MetadataEvent;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = MetadataEvent::decode(data) {
        assert_eq!(MetadataEvent::decode(&event.encode()).expect("an encoded event decodes"), event);
    }
});
