//! Which cgroup hierarchies a host mounts: pure v1, pure v2 (unified), or hybrid
//! (v1 controllers plus a v2 mount, as on this development host where the v2 mount holds only
//! hugetlb).

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CgroupMount {
    /// Where it is mounted.
    pub path: PathBuf,
    /// 1 or 2.
    pub version: u8,
    /// Controllers bound to it (v1: from mount options; v2: `cgroup.controllers`).
    pub controllers: Vec<String>,
}

/// The host's cgroup layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum CgroupLayout {
    /// Only v1 hierarchies.
    V1 { mounts: Vec<CgroupMount> },
    /// Only the unified v2 hierarchy.
    V2 { mount: CgroupMount },
    /// v1 hierarchies and a v2 mount side by side.
    Hybrid {
        v1: Vec<CgroupMount>,
        v2: CgroupMount,
    },
}

/// Errors reading the layout.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// The mount table could not be read.
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// No cgroup filesystem is mounted at all.
    #[error("no cgroup filesystem is mounted (looked in {0})")]
    NoCgroups(PathBuf),
}

const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "blkio",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

impl CgroupLayout {
    /// Read the layout from `<root>/proc/self/mountinfo`; v2 controllers come from
    /// `<root><mountpoint>/cgroup.controllers`.
    pub fn detect(root: &Path) -> Result<Self, LayoutError> {
        let path = root.join("proc/self/mountinfo");
        let text = crate::state::read_proc(&path).map_err(|source| LayoutError::Read {
            path: path.clone(),
            source,
        })?;
        let mut v1 = Vec::new();
        let mut v2 = None;
        for line in text.lines() {
            let Some((mountpoint, fstype, super_opts)) = parse_mountinfo_line(line) else {
                continue;
            };
            match fstype {
                "cgroup" => v1.push(CgroupMount {
                    controllers: super_opts
                        .split(',')
                        .filter(|o| V1_CONTROLLERS.contains(o))
                        .map(str::to_owned)
                        .collect(),
                    path: PathBuf::from(mountpoint),
                    version: 1,
                }),
                "cgroup2" if v2.is_none() => {
                    let file = root
                        .join(mountpoint.trim_start_matches('/'))
                        .join("cgroup.controllers");
                    v2 = Some(CgroupMount {
                        controllers: fs::read_to_string(file)
                            .unwrap_or_default()
                            .split_whitespace()
                            .map(str::to_owned)
                            .collect(),
                        path: PathBuf::from(mountpoint),
                        version: 2,
                    });
                }
                _ => {}
            }
        }
        match (v1.is_empty(), v2) {
            (true, None) => Err(LayoutError::NoCgroups(path)),
            (true, Some(mount)) => Ok(CgroupLayout::V2 { mount }),
            (false, None) => Ok(CgroupLayout::V1 { mounts: v1 }),
            (false, Some(v2)) => Ok(CgroupLayout::Hybrid { v1, v2 }),
        }
    }

    /// "v1", "v2" or "hybrid".
    pub fn name(&self) -> &'static str {
        match self {
            CgroupLayout::V1 { .. } => "v1",
            CgroupLayout::V2 { .. } => "v2",
            CgroupLayout::Hybrid { .. } => "hybrid",
        }
    }

    /// Every v1 controller mounted, in mount order.
    pub fn v1_controllers(&self) -> Vec<&str> {
        let mounts: &[CgroupMount] = match self {
            CgroupLayout::V1 { mounts } => mounts,
            CgroupLayout::Hybrid { v1, .. } => v1,
            CgroupLayout::V2 { .. } => &[],
        };
        mounts
            .iter()
            .flat_map(|m| m.controllers.iter().map(String::as_str))
            .collect()
    }

    /// The controllers enabled in the v2 hierarchy, if one is mounted.
    pub fn v2_controllers(&self) -> Vec<&str> {
        match self {
            CgroupLayout::V2 { mount } | CgroupLayout::Hybrid { v2: mount, .. } => {
                mount.controllers.iter().map(String::as_str).collect()
            }
            CgroupLayout::V1 { .. } => Vec::new(),
        }
    }
}

/// Mount point, filesystem type and super options of one mountinfo line.
fn parse_mountinfo_line(line: &str) -> Option<(&str, &str, &str)> {
    let (left, right) = line.split_once(" - ")?;
    let mountpoint = left.split(' ').nth(4)?;
    let mut right = right.split(' ');
    let fstype = right.next()?;
    let _source = right.next()?;
    let super_opts = right.next().unwrap_or("");
    Some((mountpoint, fstype, super_opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 23 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/cpu rw,relatime shared:11 - cgroup cgroup rw,cpu
33 30 0:29 / /sys/fs/cgroup/memory rw,relatime shared:12 - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/systemd rw,relatime shared:13 - cgroup cgroup rw,xattr,name=systemd
";

    fn fake(mountinfo: &str, unified: Option<(&str, &str)>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("proc/self")).unwrap();
        fs::write(dir.path().join("proc/self/mountinfo"), mountinfo).unwrap();
        if let Some((at, controllers)) = unified {
            let d = dir.path().join(at);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("cgroup.controllers"), controllers).unwrap();
        }
        dir
    }

    #[test]
    fn hybrid_host_like_this_one() {
        let t = fake(HYBRID, Some(("sys/fs/cgroup/unified", "hugetlb\n")));
        let layout = CgroupLayout::detect(t.path()).unwrap();
        assert_eq!(layout.name(), "hybrid");
        assert_eq!(layout.v1_controllers(), ["cpu", "memory"]);
        assert_eq!(layout.v2_controllers(), ["hugetlb"]);
    }

    #[test]
    fn pure_v2() {
        let t = fake(
            "25 1 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
            Some(("sys/fs/cgroup", "cpuset cpu io memory pids")),
        );
        let layout = CgroupLayout::detect(t.path()).unwrap();
        assert_eq!(layout.name(), "v2");
        assert_eq!(
            layout.v2_controllers(),
            ["cpuset", "cpu", "io", "memory", "pids"]
        );
    }

    #[test]
    fn pure_v1_and_none() {
        let v1: String = HYBRID
            .lines()
            .filter(|l| !l.contains("cgroup2"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            CgroupLayout::detect(fake(&v1, None).path()).unwrap().name(),
            "v1"
        );
        let none = fake("22 1 0:5 / /proc rw - proc proc rw\n", None);
        assert!(matches!(
            CgroupLayout::detect(none.path()),
            Err(LayoutError::NoCgroups(_))
        ));
    }
}
