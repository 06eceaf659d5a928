//! A BLE advertisement's service data: parsing a token never panics, and a
//! token parses from exactly its own bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veil_crypto::advert::AdvertToken;

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = AdvertToken::parse(data) {
        assert_eq!(&token.to_bytes()[..], data);
    }
});
