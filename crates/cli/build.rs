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
    // A position-independent executable by default: the same binary is the VMM that faces
    // untrusted guests and the daemon, and a fixed load address for its code would hand an
    // attacker its gadgets. CORRAL_PIE=0 at build time links a position-dependent binary for a
    // host that only uses it as a runtime: ld.so then applies none of the 38k relative
    // relocations (~170 copy-on-write page faults, about 1 ms of each short-lived
    // `corral oci`/`corral-runc` call).
    println!("cargo:rerun-if-env-changed=CORRAL_PIE");
    if std::env::var("CORRAL_PIE").as_deref() == Ok("0") {
        println!("cargo:rustc-link-arg-bin=corral=-no-pie");
    }
    println!("cargo:rerun-if-changed=../../.git/HEAD");
    println!("cargo:rerun-if-changed=../../.git/refs");
}
