//! Assembles the tiny test guests in guests/ with binutils (`as`, `ld`) into OUT_DIR/guests.
//! Without binutils the build still succeeds; the guests are then missing and the tests that
//! boot them fail saying so.

use std::path::Path;
use std::process::Command;

fn main() {
    let out = std::env::var("OUT_DIR").expect("OUT_DIR");
    let dir = Path::new(&out).join("guests");
    std::fs::create_dir_all(&dir).expect("create OUT_DIR/guests");
    println!("cargo:rustc-env=CORRAL_TEST_GUESTS_DIR={}", dir.display());
    println!("cargo:rerun-if-changed=guests");
    for name in ["hello", "long", "fault", "idle", "notify"] {
        let src = Path::new("guests").join(format!("{name}.S"));
        let obj = dir.join(format!("{name}.o"));
        let elf = dir.join(format!("{name}.elf"));
        let assembled = Command::new("as")
            .args(["--64", "-o"])
            .arg(&obj)
            .arg(&src)
            .status();
        let linked = match assembled {
            Ok(s) if s.success() => Command::new("ld")
                .args(["-m", "elf_x86_64", "-T", "guests/guest.ld", "-o"])
                .arg(&elf)
                .arg(&obj)
                .status(),
            other => {
                println!(
                    "cargo:warning=assembling {}: {other:?} (install binutils)",
                    src.display()
                );
                continue;
            }
        };
        if !matches!(linked, Ok(s) if s.success()) {
            println!("cargo:warning=linking {}: {linked:?}", elf.display());
        }
    }
}
