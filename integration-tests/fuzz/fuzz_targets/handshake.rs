//! The contact handshake's frames and the request inside them: decoding
//! never panics, and what decodes round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veil_proto::handshake::{ContactRequest, HandshakeFrame};

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = HandshakeFrame::decode(data) {
        assert_eq!(HandshakeFrame::decode(&frame.encode()).expect("an encoded frame decodes"), frame);
    }
    if let Ok(request) = ContactRequest::decode(data) {
        assert_eq!(ContactRequest::decode(&request.encode()).expect("an encoded request decodes"), request);
    }
});
