#![no_main]
// The body is switchyard::fuzz::config (src/fuzz.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard::fuzz::config(data));
