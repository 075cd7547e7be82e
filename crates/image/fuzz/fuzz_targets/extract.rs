//! Fuzzes the tar/whiteout applier: any input must either extract inside the target or fail,
//! never write outside it (checked with a sentinel directory beside the target).
#![no_main]

use corral_image::extract::{extract, DevicePolicy, ExtractPolicy, WhiteoutMode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let base = tempfile::tempdir().expect("temp dir");
    let target = base.path().join("target");
    std::fs::create_dir(&target).expect("target dir");
    let mode = if data.first().is_some_and(|b| b & 1 == 1) { WhiteoutMode::Overlay } else { WhiteoutMode::Apply };
    let policy = ExtractPolicy {
        devices: DevicePolicy::Skip,
        max_bytes: 1 << 20,
        max_entries: 1000,
        whiteouts: mode,
        same_owner: false,
        ..ExtractPolicy::default()
    };
    let _ = extract(data, &target, &policy);
    let outside: Vec<_> = std::fs::read_dir(base.path()).expect("read base").collect();
    assert_eq!(outside.len(), 1, "extraction wrote beside the target");
});
