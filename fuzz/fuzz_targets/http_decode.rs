#![no_main]
// The body is switchyard::fuzz::http_decode (src/fuzz.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard::fuzz::http_decode(data));
