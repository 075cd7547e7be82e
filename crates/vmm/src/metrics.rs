//! Counters a running VM keeps for the control socket: vCPU time, exits by reason, device
//! counters.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Exit reasons counted per VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// Port read.
    IoIn,
    /// Port write.
    IoOut,
    /// MMIO read.
    MmioRead,
    /// MMIO write.
    MmioWrite,
    /// HLT.
    Hlt,
    /// Kicked out of `run`.
    Interrupted,
    /// Anything else.
    Other,
}

const KINDS: usize = 7;

/// Live counters, shared by vCPU threads and the control socket.
#[derive(Debug)]
pub struct Metrics {
    exits: [AtomicU64; KINDS],
    vcpu_time_ns: Vec<AtomicU64>,
}

/// A point-in-time copy of [`Metrics`] plus process figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct MetricsSnapshot {
    /// CPU time of each vCPU thread, nanoseconds.
    pub vcpu_time_ns: Vec<u64>,
    /// Exits by reason.
    pub exits: std::collections::BTreeMap<String, u64>,
    /// Bytes the guest wrote to the serial port.
    pub serial_tx_bytes: u64,
    /// Resident set size of the VMM process, bytes.
    pub rss_bytes: u64,
    /// Counters of each virtio device by its short name (vda, net0, rng0, …).
    #[serde(default)]
    pub devices: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>,
}

impl Metrics {
    /// Counters for `vcpus` vCPUs.
    pub fn new(vcpus: usize) -> Self {
        Metrics {
            exits: Default::default(),
            vcpu_time_ns: (0..vcpus).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Count one exit.
    pub fn count_exit(&self, kind: ExitKind) {
        self.exits[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Record the calling thread's CPU time as vCPU `id`'s.
    pub fn record_thread_time(&self, id: usize) {
        if let Some(slot) = self.vcpu_time_ns.get(id) {
            slot.store(thread_cpu_ns(), Ordering::Relaxed);
        }
    }

    /// Copy the counters.
    pub fn snapshot(&self, serial_tx_bytes: u64) -> MetricsSnapshot {
        let names = [
            "io_in",
            "io_out",
            "mmio_read",
            "mmio_write",
            "hlt",
            "interrupted",
            "other",
        ];
        MetricsSnapshot {
            vcpu_time_ns: self
                .vcpu_time_ns
                .iter()
                .map(|a| a.load(Ordering::Relaxed))
                .collect(),
            exits: names
                .iter()
                .zip(&self.exits)
                .map(|(n, c)| (n.to_string(), c.load(Ordering::Relaxed)))
                .collect(),
            serial_tx_bytes,
            rss_bytes: rss_bytes(),
            devices: Default::default(),
        }
    }
}

/// CPU time of the calling thread.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// This process's resident set size, from /proc/self/statm.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_snapshots() {
        let m = Metrics::new(2);
        m.count_exit(ExitKind::IoOut);
        m.count_exit(ExitKind::IoOut);
        m.count_exit(ExitKind::MmioRead);
        m.record_thread_time(1);
        let s = m.snapshot(5);
        assert_eq!(s.exits["io_out"], 2);
        assert_eq!(s.exits["mmio_read"], 1);
        assert_eq!(s.vcpu_time_ns.len(), 2);
        assert!(s.vcpu_time_ns[1] > 0);
        assert!(s.rss_bytes > 0);
        assert_eq!(s.serial_tx_bytes, 5);
    }
}
