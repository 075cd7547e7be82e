//! Reading a container's cgroup (v1 per-controller or v2 unified), where the runtime put it:
//! `cgroupsPath` is `/corral/<id>`.

use std::path::PathBuf;

const CG: &str = "/sys/fs/cgroup";

fn is_v2() -> bool {
    std::path::Path::new(CG).join("cgroup.controllers").exists()
}

/// The directory of controller `ctrl` for container `id` (v1), or the unified one (v2).
pub fn dir(ctrl: &str, id: &str) -> PathBuf {
    if is_v2() {
        PathBuf::from(CG).join("corral").join(id)
    } else {
        PathBuf::from(CG).join(ctrl).join("corral").join(id)
    }
}

fn read_u64(path: PathBuf) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Every cgroup directory the container may have (for leak checks and cleanup).
pub fn all_dirs(id: &str) -> Vec<PathBuf> {
    if is_v2() {
        return vec![dir("", id)];
    }
    let Ok(entries) = std::fs::read_dir(CG) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path().join("corral").join(id))
        .filter(|p| p.exists())
        .collect()
}

/// Pids in the container's cgroup.
pub fn pids(id: &str) -> Vec<i32> {
    let file = "cgroup.procs";
    std::fs::read_to_string(dir("pids", id).join(file))
        .or_else(|_| std::fs::read_to_string(dir("memory", id).join(file)))
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Memory in use, bytes (without page cache on v1 where it can tell).
pub fn memory_usage(id: &str) -> Option<u64> {
    if is_v2() {
        return read_u64(dir("", id).join("memory.current"));
    }
    let d = dir("memory", id);
    let usage = read_u64(d.join("memory.usage_in_bytes"))?;
    let cache = std::fs::read_to_string(d.join("memory.stat"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("total_inactive_file ")?
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
        })
        .unwrap_or(0);
    Some(usage.saturating_sub(cache))
}

/// The memory limit, bytes, if one is set.
pub fn memory_limit(id: &str) -> Option<u64> {
    let v = if is_v2() {
        std::fs::read_to_string(dir("", id).join("memory.max")).ok()?
    } else {
        std::fs::read_to_string(dir("memory", id).join("memory.limit_in_bytes")).ok()?
    };
    let n: u64 = v.trim().parse().ok()?;
    (n < (1 << 60)).then_some(n)
}

/// CPU time used, nanoseconds.
pub fn cpu_ns(id: &str) -> Option<u64> {
    if is_v2() {
        let stat = std::fs::read_to_string(dir("", id).join("cpu.stat")).ok()?;
        let us: u64 = stat
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))?
            .trim()
            .parse()
            .ok()?;
        return Some(us * 1000);
    }
    read_u64(dir("cpuacct", id).join("cpuacct.usage"))
}

/// The host's total memory, bytes.
pub fn host_memory() -> Option<u64> {
    let m = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}
