//! Fuzzes the Containerfile parser and variable expansion: no panics on any input.
#![no_main]

use corral_image::build::parser::{expand, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse(text);
        let _ = expand(text, &|k| (k.len() % 2 == 0).then(|| k.to_string()));
    }
});
