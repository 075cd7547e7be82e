//! The runc-style state directory: `<root>/<id>/state.json` plus the `exec.fifo` that holds a
//! created container's init until `start`.
//!
//! Format of `state.json` (version 1): a JSON object with `version` (1), `id`, `pid` (of the
//! init), `pidStart` (its start time in clock ticks from `/proc/<pid>/stat`, so a reused pid is
//! not mistaken for the init), `bundle`, `rootfs`, `created` (RFC 3339), `owner`, `annotations`,
//! `cgroup` (what `delete` removes), `poststart` and `poststop` (hooks `start` and `delete`
//! run). It is written to a
//! temporary file and renamed, so a reader never sees half of it.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Hook;
use serde::{Deserialize, Serialize};

use crate::cgroups::CgroupRecord;

/// The OCI runtime spec version this runtime reports (runc 1.1 reports the same).
pub const OCI_VERSION: &str = "1.0.2-dev";
/// Version of the `state.json` format.
pub const STATE_VERSION: u32 = 1;
/// Name of the fifo a created container's init blocks on.
pub const EXEC_FIFO: &str = "exec.fifo";
const STATE_FILE: &str = "state.json";

/// Errors of the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The id is empty or has characters runc refuses.
    #[error("invalid container id {0:?}: use letters, digits, '_', '+', '-' and '.'")]
    InvalidId(String),
    /// A container with this id exists already.
    #[error("container with id exists: {0}")]
    Exists(String),
    /// No container with this id.
    #[error("container does not exist: {0}")]
    NotFound(String),
    /// A file of the state directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `state.json` is not valid.
    #[error("{path}: malformed state: {source}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
}

/// Lifecycle status as runc reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being created.
    Creating,
    /// Created; the init waits for `start`.
    Created,
    /// The user process runs.
    Running,
    /// Frozen through the freezer.
    Paused,
    /// The init has exited.
    Stopped,
}

impl Status {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// What `state.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateFile {
    /// Format version.
    pub version: u32,
    /// Container id.
    pub id: String,
    /// Pid of the init on the host.
    pub pid: i32,
    /// Start time of the init (clock ticks since boot).
    pub pid_start: u64,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339.
    pub created: String,
    /// Owner (empty, as runc for non-rootless containers).
    #[serde(default)]
    pub owner: String,
    /// Annotations of config.json.
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// The cgroups to remove on delete.
    pub cgroup: CgroupRecord,
    /// Hooks to run after delete.
    #[serde(default)]
    pub poststop: Vec<Hook>,
    /// Hooks to run after start.
    #[serde(default)]
    pub poststart: Vec<Hook>,
    /// Whether the init shares the host's pid namespace (then `kill --all` semantics apply on
    /// delete).
    #[serde(default)]
    pub host_pid_ns: bool,
}

/// The state JSON `corral oci state` prints, field for field runc's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StateReport {
    /// Spec version.
    pub oci_version: String,
    /// Container id.
    pub id: String,
    /// Pid of the init (0 when stopped).
    pub pid: i32,
    /// Status.
    pub status: Status,
    /// Bundle path.
    pub bundle: PathBuf,
    /// Rootfs path.
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339.
    pub created: String,
    /// Owner.
    pub owner: String,
    /// Annotations, when any.
    #[serde(skip_serializing_if = "HashMap::is_empty", default)]
    pub annotations: HashMap<String, String>,
}

/// The state root (`--root`), holding one directory per container.
#[derive(Debug, Clone)]
pub struct StateRoot {
    /// The directory.
    pub path: PathBuf,
}

impl StateRoot {
    /// A state root at `path` (created on first write).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StateRoot { path: path.into() }
    }

    /// The directory of container `id`.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.path.join(id)
    }

    /// Create the directory of a new container; fails if it exists.
    pub fn create_dir(&self, id: &str) -> Result<PathBuf, StateError> {
        validate_id(id)?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError::Io { path, source }
        };
        fs::create_dir_all(&self.path).map_err(io(&self.path))?;
        let dir = self.dir(id);
        match fs::create_dir(&dir) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(StateError::Exists(id.to_owned()))
            }
            Err(source) => Err(StateError::Io { path: dir, source }),
        }
    }

    /// Read the state of container `id`.
    pub fn load(&self, id: &str) -> Result<StateFile, StateError> {
        validate_id(id)?;
        let path = self.dir(id).join(STATE_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::NotFound(id.to_owned()))
            }
            Err(source) => return Err(StateError::Io { path, source }),
        };
        serde_json::from_slice(&bytes).map_err(|source| StateError::Malformed { path, source })
    }

    /// Write the state of a container atomically.
    pub fn save(&self, state: &StateFile) -> Result<(), StateError> {
        let dir = self.dir(&state.id);
        let bytes = serde_json::to_vec(state).map_err(|source| StateError::Malformed {
            path: dir.join(STATE_FILE),
            source,
        })?;
        write_atomic(&dir.join(STATE_FILE), &bytes)
    }

    /// Ids of every container under the root, sorted.
    pub fn ids(&self) -> Result<Vec<String>, StateError> {
        let entries = match fs::read_dir(&self.path) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(StateError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let mut ids: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().join(STATE_FILE).exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Remove a container's directory.
    pub fn remove(&self, id: &str) -> Result<(), StateError> {
        let dir = self.dir(id);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StateError::Io {
                path: dir,
                source: e,
            }),
            _ => Ok(()),
        }
    }
}

/// Write `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let tmp = path.with_extension("tmp");
    let io = |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    drop(f);
    fs::rename(&tmp, path).map_err(io)
}

/// runc's rule for ids: non-empty, `[A-Za-z0-9_+.-]`, not `.` or `..`.
pub fn validate_id(id: &str) -> Result<(), StateError> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(StateError::InvalidId(id.to_owned()))
    }
}

/// The start time (field 22 of `/proc/<pid>/stat`) and whether the process is a zombie; `None`
/// when the process does not exist.
pub fn process_start(pid: i32) -> Option<(u64, bool)> {
    let stat = read_proc(Path::new(&format!("/proc/{pid}/stat"))).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((start, state == "Z" || state == "X"))
}

/// Read a procfs (or other size-less) file with one buffer big enough for it: `read_to_string`
/// probes such files 32 bytes at a time, a system call per doubling.
pub fn read_proc(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::with_capacity(8192);
    fs::File::open(path)?.read_to_string(&mut text)?;
    Ok(text)
}

/// The current time as RFC 3339 with nanoseconds in UTC, like Go's `time.Time` JSON.
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_nanos())
}

/// Format seconds since the epoch as RFC 3339 UTC (Howard Hinnant's civil-from-days).
pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_runc_rules() {
        assert!(validate_id("abc-1.2_x+y").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "ü"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(rfc3339(1_700_000_000, 0), "2023-11-14T22:13:20.000000000Z");
    }

    #[test]
    fn state_round_trip_and_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let root = StateRoot::new(dir.path().join("root"));
        root.create_dir("c1").unwrap();
        assert!(matches!(root.create_dir("c1"), Err(StateError::Exists(_))));
        assert!(matches!(root.load("c1"), Err(StateError::NotFound(_))));
        let st = StateFile {
            version: STATE_VERSION,
            id: "c1".into(),
            pid: 42,
            pid_start: 7,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: now_rfc3339(),
            owner: String::new(),
            annotations: HashMap::new(),
            cgroup: CgroupRecord::default(),
            poststop: Vec::new(),
            poststart: Vec::new(),
            host_pid_ns: false,
        };
        root.save(&st).unwrap();
        assert_eq!(root.load("c1").unwrap().pid, 42);
        assert_eq!(root.ids().unwrap(), ["c1"]);
        root.remove("c1").unwrap();
        assert!(root.ids().unwrap().is_empty());
    }

    #[test]
    fn own_process_has_a_start_time() {
        let (start, zombie) = process_start(std::process::id() as i32).unwrap();
        assert!(start > 0);
        assert!(!zombie);
        assert!(process_start(-5).is_none());
    }
}
