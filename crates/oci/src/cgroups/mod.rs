//! Control groups, v1 and v2, chosen at run time.
//!
//! A [`CgroupManager`] owns the cgroup(s) of one container: it creates them, writes the
//! spec's resources, moves the init in, freezes, reports statistics and removes them. The v1
//! manager uses one directory per hierarchy; the v2 manager one directory in the unified tree.
//! Hybrid hosts (v1 controllers plus a v2 mount, as this one) use v1, plus the unified tree
//! for what only it holds ([`HybridManager`]). All take their roots from a [`CgroupLayout`],
//! so tests run them against a temporary directory.

pub mod devices_bpf;
mod hybrid;
pub mod layout;
mod stats;
mod v1;
mod v2;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

pub use hybrid::HybridManager;
pub use layout::{CgroupLayout, CgroupMount, LayoutError};
pub use stats::Stats;
pub use v1::V1Manager;
pub use v2::V2Manager;

/// Errors of cgroup management.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A cgroup file or directory could not be read, written or removed.
    #[error("cgroup {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A resource of the spec cannot be applied on this host.
    #[error("linux.resources.{field}: {reason}")]
    Unsupported {
        /// The spec field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The host's layout could not be read.
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

/// What `state.json` keeps of a container's cgroups, enough to reopen the manager.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CgroupRecord {
    /// 1 or 2 (0: none).
    pub version: u8,
    /// v1: one directory per hierarchy; v2: the single directory.
    pub paths: Vec<PathBuf>,
    /// v1: the controllers of each directory, comma-separated.
    #[serde(default)]
    pub controllers: Vec<String>,
    /// Hybrid hosts: the container's directory in the unified tree, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unified: Option<PathBuf>,
}

/// The operations the runtime needs on a container's cgroups.
pub trait CgroupManager {
    /// Create the directories and write the resources; on error remove what was created.
    fn create(&self, resources: Option<&LinuxResources>) -> Result<(), CgroupError>;
    /// Move process `pid` in.
    fn add_pid(&self, pid: i32) -> Result<(), CgroupError>;
    /// Move the calling thread in (the single-threaded init or exec child). On v1 this writes
    /// `0` to `tasks`, which, unlike writing a pid to `cgroup.procs`, does not wait for an RCU
    /// grace period (tens of ms per hierarchy on a busy host).
    fn join_self(&self) -> Result<(), CgroupError>;
    /// Freeze (`true`) or thaw.
    fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError>;
    /// Whether the container is frozen.
    fn is_frozen(&self) -> bool;
    /// Every pid inside.
    fn pids(&self) -> Result<Vec<i32>, CgroupError>;
    /// Resource statistics.
    fn stats(&self) -> Result<Stats, CgroupError>;
    /// Remove the directories (waiting briefly for exiting tasks to leave).
    fn remove(&self) -> Result<(), CgroupError>;
    /// What to persist to reopen this manager.
    fn record(&self) -> CgroupRecord;
    /// A directory fd for `clone3(CLONE_INTO_CGROUP)`, when the hierarchy allows it.
    fn clone_into_fd(&self) -> Option<PathBuf> {
        None
    }
}

/// The manager for a new container: v2 on pure-v2 hosts, v1 otherwise. `cgroups_path` is the
/// spec's `linux.cgroupsPath` (absolute: from each hierarchy's root; relative: below this
/// process's own cgroup; empty: `/<id>`).
pub fn for_new(
    layout: &CgroupLayout,
    cgroups_path: Option<&Path>,
    id: &str,
    resources: Option<&LinuxResources>,
) -> Result<Box<dyn CgroupManager>, CgroupError> {
    let requested = match cgroups_path {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("/").join(id),
    };
    if let Some(s) = requested.to_str() {
        if s.contains(':') && !s.starts_with('/') {
            return Err(CgroupError::Unsupported {
                field: "cgroupsPath",
                reason: format!("{s:?} is a systemd slice path; systemd cgroups are not supported (use a cgroupfs path)"),
            });
        }
    }
    let own = crate::state::read_proc(Path::new("/proc/self/cgroup")).unwrap_or_default();
    match layout {
        CgroupLayout::V2 { mount } => {
            let own_path = own_cgroup(&own, "");
            Ok(Box::new(V2Manager::new(
                mount.path.join(relative(&requested, &own_path)),
                mount.path.clone(),
            )))
        }
        CgroupLayout::V1 { mounts } => Ok(Box::new(V1Manager::new(
            mounts,
            &requested,
            &own,
            &v1::wanted(resources),
        ))),
        CgroupLayout::Hybrid { v1: mounts, v2 } => {
            let v1 = V1Manager::new(mounts, &requested, &own, &v1::wanted(resources));
            if !hybrid::needs_unified(resources, &layout.v1_controllers()) {
                return Ok(Box::new(v1));
            }
            let unified_dir = v2.path.join(relative(&requested, &own_cgroup(&own, "")));
            Ok(Box::new(HybridManager::new(
                v1,
                unified_dir,
                &v2.path,
                &layout.v2_controllers(),
                resources,
            )?))
        }
    }
}

/// Reopen the manager of an existing container from its record.
pub fn from_record(record: &CgroupRecord) -> Box<dyn CgroupManager> {
    match record.version {
        2 => {
            let path = record.paths.first().cloned().unwrap_or_default();
            Box::new(V2Manager::new(path.clone(), path))
        }
        _ => match &record.unified {
            Some(dir) => Box::new(HybridManager::reopen(
                V1Manager::from_record(record),
                dir.clone(),
                dir.clone(),
            )),
            None => Box::new(V1Manager::from_record(record)),
        },
    }
}

/// The path a spec cgroup path resolves to under a hierarchy, given this process's cgroup there.
fn relative(requested: &Path, own: &str) -> PathBuf {
    if requested.is_absolute() {
        requested
            .strip_prefix("/")
            .unwrap_or(requested)
            .to_path_buf()
    } else {
        Path::new(own.trim_start_matches('/')).join(requested)
    }
}

/// This process's cgroup in the hierarchy whose controller list contains `controller` (`""`
/// for the v2 line `0::`), from the text of `/proc/self/cgroup`.
fn own_cgroup(proc_cgroup: &str, controller: &str) -> String {
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next(), parts.next(), parts.next());
        let (Some(ctrls), Some(path)) = (ctrls, path) else {
            continue;
        };
        if (controller.is_empty() && ctrls.is_empty())
            || (!controller.is_empty() && ctrls.split(',').any(|c| c == controller))
        {
            return path.to_owned();
        }
    }
    "/".to_owned()
}

/// Write `value` to `dir/file` with a single `write`.
pub(crate) fn write_file(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| CgroupError::Io {
            path: path.clone(),
            source,
        })?;
    f.write_all(value.as_bytes())
        .map_err(|source| CgroupError::Io { path, source })
}

/// Read `dir/file` as a string.
pub(crate) fn read_file(dir: &Path, file: &str) -> Result<String, CgroupError> {
    let path = dir.join(file);
    fs::read_to_string(&path).map_err(|source| CgroupError::Io { path, source })
}

/// Remove a cgroup directory, retrying while the kernel still lists exiting tasks.
pub(crate) fn rmdir(path: &Path) -> Result<(), CgroupError> {
    let mut waited = std::time::Duration::ZERO;
    let mut delay = std::time::Duration::from_micros(100);
    loop {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY)
                    && waited < std::time::Duration::from_secs(1) =>
            {
                // Exiting tasks leave their cgroup asynchronously; there is no event for it
                // on v1, so poll, briefly at first (bounded to ~1 s in all).
                std::thread::sleep(delay);
                waited += delay;
                delay = (delay * 2).min(std::time::Duration::from_millis(10));
            }
            Err(source) => {
                return Err(CgroupError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// Parse a pid list file (`cgroup.procs`).
pub(crate) fn parse_pids(text: &str) -> Vec<i32> {
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cgroup_lines() {
        let text = "4:memory:/a/b\n1:cpu,cpuacct:/c\n0::/u\n";
        assert_eq!(own_cgroup(text, "memory"), "/a/b");
        assert_eq!(own_cgroup(text, "cpuacct"), "/c");
        assert_eq!(own_cgroup(text, ""), "/u");
        assert_eq!(own_cgroup(text, "pids"), "/");
    }

    #[test]
    fn relative_and_absolute_paths() {
        assert_eq!(relative(Path::new("/x/y"), "/a"), PathBuf::from("x/y"));
        assert_eq!(relative(Path::new("x"), "/a"), PathBuf::from("a/x"));
    }

    #[test]
    fn systemd_paths_are_refused_by_name() {
        let layout = CgroupLayout::V2 {
            mount: CgroupMount {
                path: "/nonexistent".into(),
                version: 2,
                controllers: vec![],
            },
        };
        let err = for_new(&layout, Some(Path::new("system.slice:corral:x")), "x", None)
            .err()
            .unwrap();
        assert!(err.to_string().contains("cgroupsPath"), "{err}");
    }
}
