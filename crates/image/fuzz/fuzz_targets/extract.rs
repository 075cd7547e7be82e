//! Fuzzes the tar/whiteout layer applier: nothing outside the target may change.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corral_image::fuzzing::layer_applier(data));
