#![no_main]
// The body is switchyard::fuzz::journal (src/fuzz.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard::fuzz::journal(data));
