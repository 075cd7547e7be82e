//! The time namespace: a fresh one with the spec's clock offsets, or one joined by path.
//!
//! Offsets may only be written before any process lives in the namespace, so the init
//! unshares it (which affects only its future children), writes the offsets into
//! `/proc/self/timens_offsets`, and then moves itself in through `time_for_children`.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use nix::sched::CloneFlags;
use oci_spec::runtime::LinuxTimeOffset;

use crate::init::InitError;

fn clone_newtime() -> CloneFlags {
    CloneFlags::from_bits_retain(libc::CLONE_NEWTIME)
}

fn sys(step: &'static str) -> impl FnOnce(nix::Error) -> InitError {
    move |source| InitError::Sys {
        step: step.into(),
        source,
    }
}

/// The clocks a time namespace can offset (named as in `timens_offsets` and the spec).
const OFFSET_CLOCKS: [&str; 2] = ["monotonic", "boottime"];

/// The lines written to `timens_offsets`, one per clock.
pub fn offsets_text(offsets: &HashMap<String, LinuxTimeOffset>) -> Result<String, InitError> {
    let mut clocks: Vec<_> = offsets.iter().collect();
    clocks.sort_by(|a, b| a.0.cmp(b.0));
    let mut text = String::new();
    for (clock, off) in clocks {
        if !OFFSET_CLOCKS.contains(&clock.as_str()) {
            return Err(InitError::Other(format!(
                "linux.timeOffsets.{clock}: only monotonic and boottime clocks have offsets"
            )));
        }
        text.push_str(&format!(
            "{clock} {} {}\n",
            off.secs().unwrap_or(0),
            off.nanosecs().unwrap_or(0)
        ));
    }
    Ok(text)
}

/// Put the calling (single-threaded) process into a new time namespace with `offsets`.
pub fn enter_new(offsets: Option<&HashMap<String, LinuxTimeOffset>>) -> Result<(), InitError> {
    nix::sched::unshare(clone_newtime()).map_err(sys("unshare time namespace"))?;
    if let Some(offsets) = offsets.filter(|o| !o.is_empty()) {
        let text = offsets_text(offsets)?;
        fs::write("/proc/self/timens_offsets", text)
            .map_err(|e| InitError::Other(format!("write timens_offsets: {e}")))?;
    }
    join(Path::new("/proc/self/ns/time_for_children"))
}

/// Join the time namespace at `path`.
pub fn join(path: &Path) -> Result<(), InitError> {
    let f = fs::File::open(path)
        .map_err(|e| InitError::Other(format!("open namespace {}: {e}", path.display())))?;
    nix::sched::setns(f, clone_newtime()).map_err(sys("join time namespace"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset(secs: i64, nanos: u32) -> LinuxTimeOffset {
        serde_json::from_value(serde_json::json!({"secs": secs, "nanosecs": nanos})).unwrap()
    }

    #[test]
    fn offsets_are_written_per_clock_in_order() {
        let offsets = HashMap::from([
            ("monotonic".to_string(), offset(-5, 0)),
            ("boottime".to_string(), offset(86400, 7)),
        ]);
        assert_eq!(
            offsets_text(&offsets).unwrap(),
            "boottime 86400 7\nmonotonic -5 0\n"
        );
    }

    #[test]
    fn unknown_clock_is_named() {
        let offsets = HashMap::from([("realtime".to_string(), offset(1, 0))]);
        let err = offsets_text(&offsets).unwrap_err().to_string();
        assert!(err.contains("linux.timeOffsets.realtime"), "{err}");
    }
}
