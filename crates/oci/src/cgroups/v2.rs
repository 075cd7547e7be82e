//! cgroup v2: one directory in the unified hierarchy.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::{
    parse_pids, read_file, rmdir, stats, write_file, CgroupError, CgroupManager, CgroupRecord,
    Stats,
};

/// A v2 container cgroup.
#[derive(Debug)]
pub struct V2Manager {
    dir: PathBuf,
    root: PathBuf,
}

/// runc's conversion of v1 cpu shares (2..262144) to a v2 weight (1..10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

/// runc's conversion of a v1 blkio weight (10..1000) to a v2 io weight (1..10000).
pub fn blkio_to_io_weight(w: u16) -> u64 {
    1 + (u64::from(w.clamp(10, 1000)) - 10) * 9999 / 990
}

impl V2Manager {
    /// The cgroup at `dir` in the hierarchy mounted at `root`.
    pub fn new(dir: PathBuf, root: PathBuf) -> Self {
        V2Manager { dir, root }
    }

    /// The container's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Enable the controllers the container needs in every ancestor's subtree_control.
    fn enable_controllers(&self) -> Result<(), CgroupError> {
        let available = read_file(&self.root, "cgroup.controllers").unwrap_or_default();
        let wanted: Vec<String> = available
            .split_whitespace()
            .filter(|c| ["cpu", "cpuset", "io", "memory", "pids", "hugetlb"].contains(c))
            .map(|c| format!("+{c}"))
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let line = wanted.join(" ");
        let rel = self.dir.strip_prefix(&self.root).unwrap_or(Path::new(""));
        let mut cur = self.root.clone();
        for part in rel.parent().into_iter().flat_map(Path::components) {
            write_file(&cur, "cgroup.subtree_control", &line)?;
            cur.push(part);
        }
        if rel.parent().is_some() {
            write_file(&cur, "cgroup.subtree_control", &line)?;
        }
        Ok(())
    }

    fn apply(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        let d = &self.dir;
        if let Some(m) = r.memory() {
            if let Some(limit) = m.limit() {
                let v = if limit < 0 {
                    "max".into()
                } else {
                    limit.to_string()
                };
                write_file(d, "memory.max", &v)?;
            }
            if let Some(swap) = m.swap() {
                // OCI swap is memory+swap; v2 wants swap alone.
                let v = match (swap, m.limit()) {
                    (s, _) if s < 0 => "max".to_owned(),
                    (s, Some(l)) if l >= 0 => (s - l).max(0).to_string(),
                    (s, _) => s.to_string(),
                };
                if d.join("memory.swap.max").exists() {
                    write_file(d, "memory.swap.max", &v)?;
                }
            }
            if let Some(res) = m.reservation() {
                write_file(d, "memory.low", &res.to_string())?;
            }
        }
        if let Some(cpu) = r.cpu() {
            if let Some(s) = cpu.shares() {
                write_file(d, "cpu.weight", &shares_to_weight(s).to_string())?;
            }
            if cpu.quota().is_some() || cpu.period().is_some() {
                let quota = match cpu.quota() {
                    Some(q) if q > 0 => q.to_string(),
                    _ => "max".into(),
                };
                let period = cpu.period().unwrap_or(100_000);
                write_file(d, "cpu.max", &format!("{quota} {period}"))?;
            }
            if let Some(c) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
                write_file(d, "cpuset.cpus", c)?;
            }
            if let Some(m) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
                write_file(d, "cpuset.mems", m)?;
            }
        }
        if let Some(p) = r.pids() {
            let v = if p.limit() > 0 {
                p.limit().to_string()
            } else {
                "max".into()
            };
            write_file(d, "pids.max", &v)?;
        }
        if let Some(w) = r.block_io().as_ref().and_then(|b| b.weight()) {
            write_file(
                d,
                "io.weight",
                &format!("default {}", blkio_to_io_weight(w)),
            )?;
        }
        for h in r.hugepage_limits().iter().flatten() {
            write_file(
                d,
                &format!("hugetlb.{}.max", h.page_size()),
                &h.limit().to_string(),
            )?;
        }
        for (k, v) in r.unified().iter().flatten() {
            if k.contains('/') {
                return Err(CgroupError::Unsupported {
                    field: "unified",
                    reason: format!("key {k:?} is not a cgroup file name"),
                });
            }
            write_file(d, k, v)?;
        }
        if let Some(rules) = r.devices().as_deref().filter(|d| !d.is_empty()) {
            super::devices_bpf::attach(d, rules)?;
        }
        Ok(())
    }
}

impl CgroupManager for V2Manager {
    fn create(&self, resources: Option<&LinuxResources>) -> Result<(), CgroupError> {
        let result = (|| {
            self.enable_controllers()?;
            fs::create_dir_all(&self.dir).map_err(|source| CgroupError::Io {
                path: self.dir.clone(),
                source,
            })?;
            resources.map_or(Ok(()), |r| self.apply(r))
        })();
        if result.is_err() {
            let _ = self.remove();
        }
        result
    }

    fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        write_file(&self.dir, "cgroup.procs", &pid.to_string())
    }

    fn join_self(&self) -> Result<(), CgroupError> {
        write_file(&self.dir, "cgroup.procs", "0")
    }

    fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        write_file(&self.dir, "cgroup.freeze", if frozen { "1" } else { "0" })?;
        let want = if frozen { "frozen 1" } else { "frozen 0" };
        for _ in 0..1000 {
            let events = read_file(&self.dir, "cgroup.events")?;
            if events.lines().any(|l| l == want) {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Ok(())
    }

    fn is_frozen(&self) -> bool {
        read_file(&self.dir, "cgroup.freeze").is_ok_and(|s| s.trim() == "1")
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        Ok(parse_pids(&read_file(&self.dir, "cgroup.procs")?))
    }

    fn stats(&self) -> Result<Stats, CgroupError> {
        Ok(stats::v2(&self.dir))
    }

    fn remove(&self) -> Result<(), CgroupError> {
        rmdir(&self.dir)
    }

    fn record(&self) -> CgroupRecord {
        CgroupRecord {
            version: 2,
            paths: vec![self.dir.clone()],
            controllers: Vec::new(),
            unified: None,
        }
    }

    fn clone_into_fd(&self) -> Option<PathBuf> {
        Some(self.dir.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_match_runc() {
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
    }

    #[test]
    fn limits_and_subtree_control() {
        use oci_spec::runtime::{LinuxCpuBuilder, LinuxResourcesBuilder};
        let t = tempfile::tempdir().unwrap();
        let root = t.path().to_path_buf();
        fs::write(root.join("cgroup.controllers"), "cpu memory pids").unwrap();
        fs::write(root.join("cgroup.subtree_control"), "").unwrap();
        fs::create_dir_all(root.join("a")).unwrap();
        fs::write(root.join("a/cgroup.subtree_control"), "").unwrap();
        let dir = root.join("a/c1");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("cpu.max"), "").unwrap();
        let m = V2Manager::new(dir.clone(), root.clone());
        let r = LinuxResourcesBuilder::default()
            .cpu(LinuxCpuBuilder::default().quota(50_000i64).build().unwrap())
            .build()
            .unwrap();
        m.create(Some(&r)).unwrap();
        assert_eq!(
            fs::read_to_string(dir.join("cpu.max")).unwrap(),
            "50000 100000"
        );
        assert_eq!(
            fs::read_to_string(root.join("a/cgroup.subtree_control")).unwrap(),
            "+cpu +memory +pids"
        );
    }
}
