//! Contact links, group invitations and replication credentials as typed or
//! scanned (`veil://…` or a QR's base45): parsing never panics, whatever
//! the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veil_proto::{base45, link};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = link::parse(&text);
    let _ = link::parse_contact(&text);
    let _ = link::parse_invitation(&text);
    let _ = link::parse_replication(&text);
    if let Ok(bytes) = base45::decode(&text) {
        assert_eq!(base45::decode(&base45::encode(&bytes)).expect("encoded base45 decodes"), bytes);
    }
});
