//! Fuzzes the Containerfile parser, word splitter and variable expander.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corral_image::fuzzing::containerfile(data));
