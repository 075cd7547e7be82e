//! cgroup v1: one directory per hierarchy the container uses.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

use super::{
    own_cgroup, parse_pids, read_file, relative, rmdir, stats, write_file, CgroupError,
    CgroupManager, CgroupMount, CgroupRecord, Stats,
};

/// Controllers a container always joins on v1 (when mounted): accounting, limits and the
/// freezer. Each join is a `cgroup.procs` write that waits for an RCU grace period, so the
/// others are joined only when the spec sets something for them.
const ALWAYS: &[&str] = &["cpu", "cpuacct", "memory", "pids", "freezer"];

/// The v1 controllers `resources` needs beyond [`ALWAYS`].
pub fn wanted(resources: Option<&LinuxResources>) -> Vec<&'static str> {
    let mut w = ALWAYS.to_vec();
    let Some(r) = resources else { return w };
    if r.devices().as_ref().is_some_and(|d| !d.is_empty()) {
        w.push("devices");
    }
    if r.cpu()
        .as_ref()
        .is_some_and(|c| c.cpus().is_some() || c.mems().is_some())
    {
        w.push("cpuset");
    }
    if r.block_io().is_some() {
        w.push("blkio");
    }
    if r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()) {
        w.push("hugetlb");
    }
    w
}

/// A v1 container cgroup: one directory in each joined hierarchy.
#[derive(Debug)]
pub struct V1Manager {
    /// (controllers of the hierarchy, directory) per hierarchy.
    dirs: Vec<(Vec<String>, PathBuf)>,
}

impl V1Manager {
    /// The cgroup at `requested` in each hierarchy of `mounts` holding a joined controller;
    /// relative paths resolve under this process's own cgroup (from `proc_cgroup`).
    pub fn new(
        mounts: &[CgroupMount],
        requested: &Path,
        proc_cgroup: &str,
        wanted: &[&str],
    ) -> Self {
        let dirs = mounts
            .iter()
            .filter(|m| m.controllers.iter().any(|c| wanted.contains(&c.as_str())))
            .map(|m| {
                let own = own_cgroup(proc_cgroup, &m.controllers[0]);
                (
                    m.controllers.clone(),
                    m.path.join(relative(requested, &own)),
                )
            })
            .collect();
        V1Manager { dirs }
    }

    /// Reopen from a record.
    pub fn from_record(record: &CgroupRecord) -> Self {
        let dirs = record
            .paths
            .iter()
            .zip(record.controllers.iter())
            .map(|(p, c)| (c.split(',').map(str::to_owned).collect(), p.clone()))
            .collect();
        V1Manager { dirs }
    }

    fn dir(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(c, _)| c.iter().any(|x| x == controller))
            .map(|(_, p)| p.as_path())
    }

    fn apply(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(CgroupError::Unsupported {
                field: "unified",
                reason: "this host uses cgroup v1".into(),
            });
        }
        if let (Some(m), Some(dir)) = (r.memory(), self.dir("memory")) {
            if let Some(limit) = m.limit() {
                write_file(dir, "memory.limit_in_bytes", &limit.to_string())?;
            }
            if let Some(swap) = m.swap() {
                if dir.join("memory.memsw.limit_in_bytes").exists() {
                    write_file(dir, "memory.memsw.limit_in_bytes", &swap.to_string())?;
                } else if swap != -1 && Some(swap) != m.limit() {
                    return Err(CgroupError::Unsupported {
                        field: "memory.swap",
                        reason: "swap accounting is off on this host".into(),
                    });
                }
            }
            if let Some(res) = m.reservation() {
                write_file(dir, "memory.soft_limit_in_bytes", &res.to_string())?;
            }
            if let Some(sw) = m.swappiness() {
                write_file(dir, "memory.swappiness", &sw.to_string())?;
            }
            if m.disable_oom_killer() == Some(true) {
                write_file(dir, "memory.oom_control", "1")?;
            }
        }
        if let Some(cpu) = r.cpu() {
            if let Some(dir) = self.dir("cpu") {
                if let Some(s) = cpu.shares() {
                    write_file(dir, "cpu.shares", &s.to_string())?;
                }
                if let Some(p) = cpu.period() {
                    write_file(dir, "cpu.cfs_period_us", &p.to_string())?;
                }
                if let Some(q) = cpu.quota() {
                    write_file(dir, "cpu.cfs_quota_us", &q.to_string())?;
                }
                if let Some(p) = cpu.realtime_period() {
                    write_file(dir, "cpu.rt_period_us", &p.to_string())?;
                }
                if let Some(rt) = cpu.realtime_runtime() {
                    write_file(dir, "cpu.rt_runtime_us", &rt.to_string())?;
                }
            }
            if let Some(dir) = self.dir("cpuset") {
                if let Some(c) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
                    write_file(dir, "cpuset.cpus", c)?;
                }
                if let Some(m) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
                    write_file(dir, "cpuset.mems", m)?;
                }
            }
        }
        if let (Some(p), Some(dir)) = (r.pids(), self.dir("pids")) {
            let v = if p.limit() > 0 {
                p.limit().to_string()
            } else {
                "max".into()
            };
            write_file(dir, "pids.max", &v)?;
        }
        if let (Some(b), Some(dir)) = (r.block_io(), self.dir("blkio")) {
            if let Some(w) = b.weight() {
                let file = ["blkio.weight", "blkio.bfq.weight"]
                    .into_iter()
                    .find(|f| dir.join(f).exists())
                    .ok_or(CgroupError::Unsupported {
                        field: "blockIO.weight",
                        reason: "this host's blkio controller has no weight file (the disks' \
                                 I/O scheduler is neither bfq nor cfq)"
                            .into(),
                    })?;
                write_file(dir, file, &w.to_string())?;
            }
            let throttles = [
                (
                    "blkio.throttle.read_bps_device",
                    b.throttle_read_bps_device(),
                ),
                (
                    "blkio.throttle.write_bps_device",
                    b.throttle_write_bps_device(),
                ),
                (
                    "blkio.throttle.read_iops_device",
                    b.throttle_read_iops_device(),
                ),
                (
                    "blkio.throttle.write_iops_device",
                    b.throttle_write_iops_device(),
                ),
            ];
            for (file, list) in throttles {
                for d in list.iter().flatten() {
                    let line = format!("{}:{} {}", d.major(), d.minor(), d.rate());
                    write_file(dir, file, &line)?;
                }
            }
        }
        if let Some(limits) = r.hugepage_limits() {
            for h in limits {
                let dir = self.dir("hugetlb").ok_or(CgroupError::Unsupported {
                    field: "hugepageLimits",
                    reason: "no v1 hugetlb hierarchy is mounted".into(),
                })?;
                let file = format!("hugetlb.{}.limit_in_bytes", h.page_size());
                write_file(dir, &file, &h.limit().to_string())?;
            }
        }
        if let (Some(devs), Some(dir)) = (r.devices(), self.dir("devices")) {
            for d in devs {
                let file = if d.allow() {
                    "devices.allow"
                } else {
                    "devices.deny"
                };
                write_file(dir, file, &device_rule(d))?;
            }
        }
        Ok(())
    }
}

/// A v1 device cgroup rule (`c 1:3 rwm`, `a *:* rwm`).
pub fn device_rule(d: &LinuxDeviceCgroup) -> String {
    let typ = match d.typ() {
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => 'c',
        Some(LinuxDeviceType::B) => 'b',
        Some(LinuxDeviceType::P) => 'p',
        Some(LinuxDeviceType::A) | None => 'a',
    };
    let num = |n: Option<i64>| n.map_or("*".to_owned(), |n| n.to_string());
    let access = d.access().clone().unwrap_or_else(|| "rwm".into());
    if typ == 'a' && d.major().is_none() && d.minor().is_none() {
        return format!("a *:* {access}");
    }
    format!("{typ} {}:{} {access}", num(d.major()), num(d.minor()))
}

/// Copy `cpuset.cpus`/`cpuset.mems` down from the nearest ancestor that has them, as a new v1
/// cpuset cgroup starts empty and refuses tasks.
fn init_cpuset(dir: &Path) -> Result<(), CgroupError> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        if !read_file(dir, file)?.trim().is_empty() {
            continue;
        }
        let mut chain: Vec<&Path> = dir.ancestors().skip(1).collect();
        chain.retain(|a| a.join(file).exists());
        let mut value = String::new();
        for a in &chain {
            value = read_file(a, file)?.trim().to_owned();
            if !value.is_empty() {
                break;
            }
        }
        // Fill each empty level between that ancestor and `dir`, top-down.
        for a in chain.iter().rev() {
            if read_file(a, file)?.trim().is_empty() {
                write_file(a, file, &value)?;
            }
        }
        write_file(dir, file, &value)?;
    }
    Ok(())
}

impl CgroupManager for V1Manager {
    fn create(&self, resources: Option<&LinuxResources>) -> Result<(), CgroupError> {
        let result = (|| {
            for (ctrls, dir) in &self.dirs {
                fs::create_dir_all(dir).map_err(|source| CgroupError::Io {
                    path: dir.clone(),
                    source,
                })?;
                if ctrls.iter().any(|c| c == "cpuset") {
                    init_cpuset(dir)?;
                }
            }
            resources.map_or(Ok(()), |r| self.apply(r))
        })();
        if result.is_err() {
            let _ = self.remove();
        }
        result
    }

    fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        let pid = pid.to_string();
        for (_, dir) in &self.dirs {
            write_file(dir, "cgroup.procs", &pid)?;
        }
        Ok(())
    }

    fn join_self(&self) -> Result<(), CgroupError> {
        for (_, dir) in &self.dirs {
            write_file(dir, "tasks", "0")?;
        }
        Ok(())
    }

    fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        let dir = self.dir("freezer").ok_or(CgroupError::Unsupported {
            field: "freezer",
            reason: "no v1 freezer hierarchy is mounted".into(),
        })?;
        let want = if frozen { "FROZEN" } else { "THAWED" };
        write_file(dir, "freezer.state", want)?;
        // The kernel moves through FREEZING; wait until it settles (bounded).
        for _ in 0..1000 {
            if read_file(dir, "freezer.state")?.trim() == want {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Ok(())
    }

    fn is_frozen(&self) -> bool {
        self.dir("freezer")
            .and_then(|d| read_file(d, "freezer.state").ok())
            .is_some_and(|s| s.trim() == "FROZEN")
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let dir = self
            .dir("pids")
            .or_else(|| self.dirs.first().map(|(_, p)| p.as_path()))
            .ok_or(CgroupError::Unsupported {
                field: "pids",
                reason: "no cgroup".into(),
            })?;
        Ok(parse_pids(&read_file(dir, "cgroup.procs")?))
    }

    fn stats(&self) -> Result<Stats, CgroupError> {
        Ok(stats::v1(
            self.dir("cpuacct"),
            self.dir("memory"),
            self.dir("pids"),
        ))
    }

    fn remove(&self) -> Result<(), CgroupError> {
        let mut first_err = None;
        for (_, dir) in &self.dirs {
            if let Err(e) = rmdir(dir) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn record(&self) -> CgroupRecord {
        CgroupRecord {
            version: 1,
            paths: self.dirs.iter().map(|(_, p)| p.clone()).collect(),
            controllers: self.dirs.iter().map(|(c, _)| c.join(",")).collect(),
            unified: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder};

    #[test]
    fn writes_limits_into_each_hierarchy() {
        let t = tempfile::tempdir().unwrap();
        let mounts: Vec<CgroupMount> = ["memory", "pids", "name=systemd"]
            .iter()
            .map(|c| CgroupMount {
                path: t.path().join(c),
                version: 1,
                controllers: vec![c.to_string()],
            })
            .collect();
        let m = V1Manager::new(&mounts, Path::new("/corral-test/c1"), "", ALWAYS);
        // A fake cgroupfs: the files exist before the kernel would create them.
        for (_, d) in &m.dirs {
            fs::create_dir_all(d).unwrap();
            for f in ["memory.limit_in_bytes", "pids.max", "cgroup.procs"] {
                fs::write(d.join(f), "").unwrap();
            }
        }
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(1 << 20)
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(5).build().unwrap())
            .build()
            .unwrap();
        m.create(Some(&r)).unwrap();
        let mem = t.path().join("memory/corral-test/c1");
        assert_eq!(
            fs::read_to_string(mem.join("memory.limit_in_bytes")).unwrap(),
            "1048576"
        );
        let pids = t.path().join("pids/corral-test/c1");
        assert_eq!(fs::read_to_string(pids.join("pids.max")).unwrap(), "5");
        assert_eq!(m.record().paths.len(), 2, "name=systemd is not joined");
    }

    #[test]
    fn device_rules() {
        use oci_spec::runtime::LinuxDeviceCgroupBuilder;
        let all = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .unwrap();
        assert_eq!(device_rule(&all), "a *:* rwm");
        let null = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(1)
            .minor(3)
            .access("rw")
            .build()
            .unwrap();
        assert_eq!(device_rule(&null), "c 1:3 rw");
    }
}
