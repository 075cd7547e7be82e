//! Resource statistics in the shape of runc's `events --stats` data.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::Serialize;

/// CPU usage.
#[derive(Debug, Default, Clone, Serialize)]
pub struct CpuUsage {
    /// Total nanoseconds.
    pub total: u64,
    /// Per-CPU nanoseconds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    /// Kernel-mode nanoseconds.
    pub kernel: u64,
    /// User-mode nanoseconds.
    pub user: u64,
}

/// CPU statistics.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Cpu {
    /// Usage.
    pub usage: CpuUsage,
}

/// One memory counter.
#[derive(Debug, Default, Clone, Serialize)]
pub struct MemoryEntry {
    /// Limit in bytes.
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
    /// Current usage in bytes.
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    /// Peak usage in bytes.
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    /// Times the limit was hit.
    #[serde(skip_serializing_if = "is_zero")]
    pub failcnt: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Memory statistics.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Memory {
    /// Memory usage.
    pub usage: MemoryEntry,
    /// Memory+swap usage.
    pub swap: MemoryEntry,
    /// `memory.stat` as is.
    pub raw: BTreeMap<String, u64>,
}

/// Pids statistics.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Pids {
    /// Tasks now.
    pub current: u64,
    /// The limit (0: none).
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

/// Statistics of one container.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    /// CPU.
    pub cpu: Cpu,
    /// Memory.
    pub memory: Memory,
    /// Pids.
    pub pids: Pids,
}

fn num(dir: &Path, file: &str) -> u64 {
    fs::read_to_string(dir.join(file))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn flat_keyed(dir: &Path, file: &str) -> BTreeMap<String, u64> {
    fs::read_to_string(dir.join(file))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

fn pids_limit(dir: &Path) -> u64 {
    num(dir, "pids.max")
}

/// Statistics from v1 hierarchies.
pub fn v1(cpuacct: Option<&Path>, memory: Option<&Path>, pids: Option<&Path>) -> Stats {
    let mut s = Stats::default();
    if let Some(d) = cpuacct {
        s.cpu.usage.total = num(d, "cpuacct.usage");
        s.cpu.usage.percpu = fs::read_to_string(d.join("cpuacct.usage_percpu"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        // cpuacct.stat is in USER_HZ ticks; runc reports nanoseconds.
        let ticks = flat_keyed(d, "cpuacct.stat");
        let ns_per_tick = 1_000_000_000 / 100;
        s.cpu.usage.user = ticks.get("user").copied().unwrap_or(0) * ns_per_tick;
        s.cpu.usage.kernel = ticks.get("system").copied().unwrap_or(0) * ns_per_tick;
    }
    if let Some(d) = memory {
        s.memory.usage = MemoryEntry {
            limit: num(d, "memory.limit_in_bytes"),
            usage: num(d, "memory.usage_in_bytes"),
            max: num(d, "memory.max_usage_in_bytes"),
            failcnt: num(d, "memory.failcnt"),
        };
        s.memory.swap = MemoryEntry {
            limit: num(d, "memory.memsw.limit_in_bytes"),
            usage: num(d, "memory.memsw.usage_in_bytes"),
            max: num(d, "memory.memsw.max_usage_in_bytes"),
            failcnt: num(d, "memory.memsw.failcnt"),
        };
        s.memory.raw = flat_keyed(d, "memory.stat");
    }
    if let Some(d) = pids {
        s.pids.current = num(d, "pids.current");
        s.pids.limit = pids_limit(d);
    }
    s
}

/// Statistics from a v2 cgroup.
pub fn v2(d: &Path) -> Stats {
    let mut s = Stats::default();
    let cpu = flat_keyed(d, "cpu.stat");
    s.cpu.usage.total = cpu.get("usage_usec").copied().unwrap_or(0) * 1000;
    s.cpu.usage.user = cpu.get("user_usec").copied().unwrap_or(0) * 1000;
    s.cpu.usage.kernel = cpu.get("system_usec").copied().unwrap_or(0) * 1000;
    s.memory.usage = MemoryEntry {
        limit: num(d, "memory.max"),
        usage: num(d, "memory.current"),
        max: num(d, "memory.peak"),
        failcnt: flat_keyed(d, "memory.events")
            .get("max")
            .copied()
            .unwrap_or(0),
    };
    s.memory.swap = MemoryEntry {
        limit: num(d, "memory.swap.max"),
        usage: num(d, "memory.swap.current"),
        ..Default::default()
    };
    s.memory.raw = flat_keyed(d, "memory.stat");
    s.pids.current = num(d, "pids.current");
    s.pids.limit = pids_limit(d);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_counters_from_files() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        fs::write(d.join("cpuacct.usage"), "1234\n").unwrap();
        fs::write(d.join("cpuacct.usage_percpu"), "1000 234 \n").unwrap();
        fs::write(d.join("cpuacct.stat"), "user 2\nsystem 1\n").unwrap();
        fs::write(d.join("memory.usage_in_bytes"), "4096\n").unwrap();
        fs::write(d.join("memory.stat"), "rss 10\ncache 20\n").unwrap();
        fs::write(d.join("pids.current"), "3\n").unwrap();
        fs::write(d.join("pids.max"), "max\n").unwrap();
        let s = v1(Some(d), Some(d), Some(d));
        assert_eq!(s.cpu.usage.total, 1234);
        assert_eq!(s.cpu.usage.percpu, [1000, 234]);
        assert_eq!(s.cpu.usage.user, 20_000_000);
        assert_eq!(s.memory.usage.usage, 4096);
        assert_eq!(s.memory.raw["cache"], 20);
        assert_eq!((s.pids.current, s.pids.limit), (3, 0));
    }
}
