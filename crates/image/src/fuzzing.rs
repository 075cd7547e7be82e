//! Entry points of the fuzz targets (`crates/image/fuzz`, cargo-fuzz) and of their replay in
//! `cargo test` (a checked-in corpus plus generated inputs): each feeds one input to a parser
//! or to the layer applier and panics when an invariant breaks. Errors are fine; panics,
//! hangs and writes outside the target are the bugs these look for.

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::build::parser::{self, Instruction};
use crate::extract::{extract, DevicePolicy, ExtractPolicy, WhiteoutMode};

/// Content of the file beside the target that no extraction may touch.
const SENTINEL: &[u8] = b"outside the target\n";

/// The extraction policy an input's first byte selects (devices, setid bits, whiteout mode,
/// compression), with small caps so every input finishes quickly.
fn policy(flags: u8) -> ExtractPolicy {
    ExtractPolicy {
        devices: match flags & 3 {
            0 => DevicePolicy::Reject,
            1 => DevicePolicy::Skip,
            _ => DevicePolicy::Create,
        },
        keep_setid: flags & 4 != 0,
        max_bytes: 4 << 20,
        max_entries: 4096,
        whiteouts: if flags & 8 != 0 {
            WhiteoutMode::Overlay
        } else {
            WhiteoutMode::Apply
        },
        same_owner: false,
    }
}

/// The tar/whiteout applier: byte 0 chooses the policy (and bit 4 sniffed decompression), the
/// rest is a layer applied onto a small existing tree (a file, a directory and a symlink
/// pointing outside, as an earlier layer could leave). Panics if anything outside the target
/// changed. The sandbox is a private (0700) temporary directory, on /dev/shm when there is
/// one (memory is fast, and its usual nodev/noexec make device nodes and setuid files inert).
pub fn layer_applier(data: &[u8]) {
    let (flags, body) = data.split_first().map_or((0, data), |(f, b)| (*f, b));
    let shm = Path::new("/dev/shm");
    let mut builder = tempfile::Builder::new();
    builder.prefix("corral-fuzz-layer-");
    let base = if shm.is_dir() {
        builder.tempdir_in(shm)
    } else {
        builder.tempdir()
    }
    .expect("temporary directory");
    let target = base.path().join("target");
    let outside = base.path().join("outside");
    fs::create_dir_all(target.join("etc/dir")).expect("target tree");
    fs::write(target.join("etc/keep"), b"keep").expect("target file");
    std::os::unix::fs::symlink("../../outside", target.join("etc/escape")).expect("symlink");
    std::os::unix::fs::symlink("/", target.join("root-link")).expect("symlink");
    fs::create_dir(&outside).expect("outside dir");
    fs::write(outside.join("sentinel"), SENTINEL).expect("sentinel");
    let before = fs::metadata(outside.join("sentinel")).expect("sentinel");

    let reader: Box<dyn Read> = if flags & 16 != 0 {
        match crate::layer::decompress_sniffed(body) {
            Ok(r) => r,
            Err(_) => return,
        }
    } else {
        Box::new(body)
    };
    let _ = extract(reader, &target, &policy(flags));

    check_outside(base.path(), &outside, &before);
}

fn check_outside(base: &Path, outside: &Path, before: &fs::Metadata) {
    let mut top: Vec<_> = fs::read_dir(base)
        .expect("sandbox")
        .map(|e| e.expect("entry").file_name())
        .collect();
    top.sort();
    assert_eq!(
        top,
        ["outside", "target"],
        "entries appeared beside the target"
    );
    let names: Vec<_> = fs::read_dir(outside)
        .expect("outside dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["sentinel"], "files appeared outside the target");
    let sentinel = outside.join("sentinel");
    let now = fs::symlink_metadata(&sentinel).expect("sentinel");
    assert!(now.is_file(), "the sentinel was replaced");
    assert_eq!(now.ino(), before.ino(), "the sentinel was replaced");
    assert_eq!(
        now.nlink(),
        1,
        "a hardlink to a file outside the target was made"
    );
    assert_eq!(now.mode(), before.mode(), "the sentinel's mode changed");
    assert_eq!(
        fs::read(&sentinel).expect("sentinel"),
        SENTINEL,
        "the sentinel was written"
    );
}

/// The Containerfile parser, word splitter and variable expander on arbitrary text. Panics
/// if a parse succeeds with a shape the builder relies on broken (no stage, a stage not
/// starting with FROM, a step line outside the text).
pub fn containerfile(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count();
    match parser::parse(text) {
        Ok(file) => {
            assert!(!file.stages.is_empty(), "a parse without stages");
            for stage in &file.stages {
                assert!(
                    matches!(
                        stage.first().map(|s| &s.instruction),
                        Some(Instruction::From { .. })
                    ),
                    "a stage that does not start with FROM"
                );
                for step in stage {
                    assert!(
                        (1..=lines).contains(&step.line),
                        "step line {} outside 1..={lines}",
                        step.line
                    );
                }
            }
        }
        Err(e) => assert!(e.line <= lines + 1, "error line {} after the end", e.line),
    }
    let vars = |k: &str| (k.len() % 3 != 0).then(|| k.repeat(2));
    for line in text.lines().take(64) {
        let _ = parser::split_words(line);
        if let Ok(out) = parser::expand(line, &vars) {
            // Every variable expands to at most twice its name, so output stays bounded.
            assert!(
                out.len() <= line.len() * 3 + 64,
                "expansion blew up: {line:?}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn entry_points_accept_empty_and_trivial_input() {
        super::layer_applier(b"");
        super::layer_applier(&[0xff; 3]);
        super::containerfile(b"");
        super::containerfile(b"FROM scratch\nRUN true\n");
    }
}
