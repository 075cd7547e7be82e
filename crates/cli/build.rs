//! Records the git commit the binary was built from, for `corral version`.

use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=CORRAL_GIT_COMMIT={commit}");
    // A position-dependent executable: ld.so then has no relative relocations to apply at
    // every start (38k in release, ~170 copy-on-write page faults, a third of the start-up
    // time of each short-lived `corral oci`/`corral-runc` call containerd makes). The price
    // is a fixed load address for the binary image (libraries, heap, stack and mmap areas
    // stay randomized). CORRAL_PIE=1 at build time keeps a PIE.
    println!("cargo:rerun-if-env-changed=CORRAL_PIE");
    if std::env::var("CORRAL_PIE").as_deref() != Ok("1") {
        println!("cargo:rustc-link-arg-bin=corral=-no-pie");
    }
    println!("cargo:rerun-if-changed=../../.git/HEAD");
    println!("cargo:rerun-if-changed=../../.git/refs");
}
