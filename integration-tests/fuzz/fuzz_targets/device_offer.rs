//! libFuzzer's input to [`veil_fuzz::device_offer`] (its docs say what it checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| veil_fuzz::device_offer(data));
