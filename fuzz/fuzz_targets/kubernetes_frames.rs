#![no_main]
// The body is switchyard::fuzz::kubernetes_frames (src/fuzz.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard::fuzz::kubernetes_frames(data));
