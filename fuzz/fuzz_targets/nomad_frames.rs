#![no_main]
// The body is switchyard::fuzz::nomad_frames (src/fuzz.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard::fuzz::nomad_frames(data));
