//! virtio-balloon: the host asks the guest to give back memory (inflate) or lets it take
//! memory back (deflate), and reads the guest's memory statistics.
//!
//! Pages the guest hands over are dropped from the host mapping with
//! `madvise(MADV_DONTNEED)`, so the VMM's resident memory shrinks (guest memory is anonymous
//! and private: a later guest touch gets a fresh zero page). Deflated pages need nothing: the
//! guest simply uses them again.
//!
//! Statistics follow the virtio protocol: the driver keeps one buffer in the stats queue; the
//! device holds it and returns it when it wants fresh figures (on request or every
//! `stats_interval`), and the driver answers by queueing the buffer again, refilled.
//! The VMM side drives the device through a [`BalloonHandle`].

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::timerfd::TimerFd;

use super::{read_config_bytes, VirtioDevice, VirtioError};
use crate::GuestMem;

/// `VIRTIO_BALLOON_F_STATS_VQ`.
const F_STATS_VQ: u64 = 1 << 1;
/// `VIRTIO_BALLOON_F_DEFLATE_ON_OOM`.
const F_DEFLATE_ON_OOM: u64 = 1 << 2;
const INFLATE: usize = 0;
const DEFLATE: usize = 1;
const STATS: usize = 2;
/// The balloon's page size (`VIRTIO_BALLOON_PFN_SHIFT`), whatever the guest's.
pub const PAGE: u64 = 4096;

/// Names of the virtio statistics tags, by tag.
const STAT_NAMES: [&str; 10] = [
    "swap_in",
    "swap_out",
    "major_faults",
    "minor_faults",
    "free_memory",
    "total_memory",
    "available_memory",
    "disk_caches",
    "hugetlb_allocations",
    "hugetlb_failures",
];

/// Errors creating the device.
#[derive(Debug, thiserror::Error)]
pub enum BalloonError {
    /// An eventfd or timerfd could not be created.
    #[error("balloon {what}: {source}")]
    Os {
        /// Which file descriptor.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What the VMM can see of the balloon.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalloonStatus {
    /// Pages the host asked the guest to give back.
    pub target_pages: u32,
    /// Pages the guest says it has given back.
    pub actual_pages: u32,
    /// Pages handed over by the guest so far (inflate requests), in total.
    pub inflated_pages: u64,
    /// Pages taken back by the guest so far (deflate requests), in total.
    pub deflated_pages: u64,
    /// The guest's latest statistics, by name (bytes for the memory figures).
    pub stats: BTreeMap<String, u64>,
    /// Seconds since the guest last sent statistics (None: never).
    pub stats_age_s: Option<u64>,
}

#[derive(Default)]
struct Shared {
    status: BalloonStatus,
    stats_at: Option<Instant>,
    stats_requested: bool,
}

/// The VMM's handle on a balloon device: set the target, read the status.
#[derive(Clone)]
pub struct BalloonHandle {
    shared: Arc<Mutex<Shared>>,
    wake: Arc<EventFd>,
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl BalloonHandle {
    /// Ask the guest to give back `pages` 4 KiB pages in total.
    pub fn set_target_pages(&self, pages: u32) {
        lock(&self.shared).status.target_pages = pages;
        let _ = self.wake.write(1);
    }

    /// The current status; also asks the guest for fresh statistics for the next call.
    pub fn status(&self) -> BalloonStatus {
        let mut s = lock(&self.shared);
        s.stats_requested = true;
        let _ = self.wake.write(1);
        let mut status = s.status.clone();
        status.stats_age_s = s.stats_at.map(|t| t.elapsed().as_secs());
        status
    }
}

/// The balloon device.
pub struct Balloon {
    shared: Arc<Mutex<Shared>>,
    wake: Arc<EventFd>,
    timer: Option<TimerFd>,
    stats_interval: Duration,
    stats_head: Option<u16>,
    config_target: u32,
    config_changed: bool,
    deflate_on_oom: bool,
}

impl Balloon {
    /// A balloon starting at `target_pages`, asking for statistics every `stats_interval`
    /// (zero: only on request); with `deflate_on_oom` the guest may take pages back when it
    /// runs out of memory.
    pub fn new(
        target_pages: u32,
        stats_interval: Duration,
        deflate_on_oom: bool,
    ) -> Result<Self, BalloonError> {
        let wake = EventFd::new(EFD_NONBLOCK).map_err(|source| BalloonError::Os {
            what: "eventfd",
            source,
        })?;
        let timer = if stats_interval.is_zero() {
            None
        } else {
            Some(TimerFd::new().map_err(|e| BalloonError::Os {
                what: "timerfd",
                source: std::io::Error::from_raw_os_error(e.errno()),
            })?)
        };
        let shared = Shared {
            status: BalloonStatus {
                target_pages,
                ..Default::default()
            },
            ..Default::default()
        };
        Ok(Balloon {
            shared: Arc::new(Mutex::new(shared)),
            wake: Arc::new(wake),
            timer,
            stats_interval,
            stats_head: None,
            config_target: target_pages,
            config_changed: false,
            deflate_on_oom,
        })
    }

    /// The handle the VMM keeps.
    pub fn handle(&self) -> BalloonHandle {
        BalloonHandle {
            shared: self.shared.clone(),
            wake: self.wake.clone(),
        }
    }

    /// Read the PFNs of every chain on `q`; `each` gets runs of contiguous pages.
    fn take_pfns(
        queue: usize,
        q: &mut Queue,
        mem: &GuestMem,
        mut each: impl FnMut(u64, u64),
    ) -> Result<bool, VirtioError> {
        let mut used = false;
        while let Some(chain) = q.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let mut bytes = Vec::new();
            if let Ok(mut r) = chain.reader(mem) {
                let _ = r.read_to_end(&mut bytes);
            }
            let mut run: Option<(u64, u64)> = None;
            for c in bytes.chunks_exact(4) {
                let pfn = u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
                run = match run {
                    Some((start, n)) if start + n == pfn => Some((start, n + 1)),
                    Some((start, n)) => {
                        each(start, n);
                        Some((pfn, 1))
                    }
                    None => Some((pfn, 1)),
                };
            }
            if let Some((start, n)) = run {
                each(start, n);
            }
            q.add_used(mem, head, 0).map_err(|e| VirtioError::Queue {
                queue,
                message: e.to_string(),
            })?;
            used = true;
        }
        Ok(used)
    }

    /// Take the guest's statistics buffer, record its figures and keep it until the next
    /// request.
    fn take_stats(&mut self, q: &mut Queue, mem: &GuestMem) -> Result<bool, VirtioError> {
        let mut used = false;
        while let Some(chain) = q.pop_descriptor_chain(mem) {
            // A second buffer while we hold one: give the old one back.
            if let Some(old) = self.stats_head.take() {
                q.add_used(mem, old, 0).map_err(|e| VirtioError::Queue {
                    queue: STATS,
                    message: e.to_string(),
                })?;
                used = true;
            }
            let mut bytes = Vec::new();
            if let Ok(mut r) = chain.clone().reader(mem) {
                let _ = r.read_to_end(&mut bytes);
            }
            let mut s = lock(&self.shared);
            for e in bytes.chunks_exact(10) {
                let tag = u16::from_le_bytes([e[0], e[1]]) as usize;
                let val = u64::from_le_bytes(e[2..10].try_into().unwrap_or_default());
                if let Some(name) = STAT_NAMES.get(tag) {
                    s.status.stats.insert((*name).to_owned(), val);
                }
            }
            s.stats_at = Some(Instant::now());
            self.stats_head = Some(chain.head_index());
        }
        Ok(used)
    }

    /// Give the held statistics buffer back so the guest refills it.
    fn request_stats(&mut self, queues: &mut [Queue], mem: &GuestMem) -> Result<bool, VirtioError> {
        let (Some(head), Some(q)) = (self.stats_head, queues.get_mut(STATS)) else {
            return Ok(false);
        };
        self.stats_head = None;
        q.add_used(mem, head, 0).map_err(|e| VirtioError::Queue {
            queue: STATS,
            message: e.to_string(),
        })?;
        Ok(true)
    }
}

/// Drop `n` guest pages from `start_pfn` out of the host's memory.
fn discard_pages(mem: &GuestMem, start_pfn: u64, n: u64) {
    let (Some(addr), Some(len)) = (start_pfn.checked_mul(PAGE), n.checked_mul(PAGE)) else {
        return;
    };
    // One region at a time: a run may not cross a region boundary.
    let mut done = 0;
    while done < len {
        let ga = GuestAddress(addr + done);
        let Some(region) = mem.find_region(ga) else {
            return;
        };
        let Ok(host) = mem.get_host_address(ga) else {
            return;
        };
        let region_left = region.start_addr().raw_value() + region.len() - ga.raw_value();
        let chunk = (len - done).min(region_left);
        // SAFETY: [host, host+chunk) lies inside one mapping of guest memory, which is
        // anonymous and private; MADV_DONTNEED only drops its pages (later reads see zeros).
        let rc = unsafe { libc::madvise(host.cast(), chunk as usize, libc::MADV_DONTNEED) };
        if rc != 0 {
            tracing::debug!(
                "balloon: madvise at {:#x}: {}",
                ga.0,
                std::io::Error::last_os_error()
            );
        }
        done += chunk;
    }
}

impl VirtioDevice for Balloon {
    fn device_type(&self) -> u32 {
        5
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[256, 256, 256]
    }

    fn features(&self) -> u64 {
        if self.deflate_on_oom {
            F_STATS_VQ | F_DEFLATE_ON_OOM
        } else {
            F_STATS_VQ
        }
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let mut config = [0u8; 8];
        config[..4].copy_from_slice(&self.config_target.to_le_bytes());
        let actual = lock(&self.shared).status.actual_pages;
        config[4..].copy_from_slice(&actual.to_le_bytes());
        read_config_bytes(&config, offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        // Only `actual` (offset 4) is the driver's to write.
        if offset == 4 && data.len() == 4 {
            let v = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
            lock(&self.shared).status.actual_pages = v;
        }
    }

    fn activate(&mut self, acked_features: u64) {
        if acked_features & F_STATS_VQ != 0 {
            if let Some(t) = self.timer.as_mut() {
                if let Err(e) = t.reset(self.stats_interval, Some(self.stats_interval)) {
                    tracing::warn!("balloon statistics timer: {e}");
                }
            }
        }
    }

    fn process_queue(
        &mut self,
        queue: usize,
        queues: &mut [Queue],
        mem: &GuestMem,
    ) -> Result<bool, VirtioError> {
        let Some(q) = queues.get_mut(queue) else {
            return Ok(false);
        };
        match queue {
            INFLATE => {
                let mut pages = 0;
                let used = Self::take_pfns(INFLATE, q, mem, |start, n| {
                    discard_pages(mem, start, n);
                    pages += n;
                })?;
                lock(&self.shared).status.inflated_pages += pages;
                Ok(used)
            }
            DEFLATE => {
                let mut pages = 0;
                let used = Self::take_pfns(DEFLATE, q, mem, |_, n| pages += n)?;
                lock(&self.shared).status.deflated_pages += pages;
                Ok(used)
            }
            STATS => self.take_stats(q, mem),
            _ => Ok(false),
        }
    }

    fn reset(&mut self) {
        self.stats_head = None;
    }

    fn host_fds(&self) -> Vec<(RawFd, EventSet)> {
        let mut fds = vec![(self.wake.as_raw_fd(), EventSet::IN)];
        if let Some(t) = &self.timer {
            fds.push((t.as_raw_fd(), EventSet::IN));
        }
        fds
    }

    fn host_event(
        &mut self,
        fd: RawFd,
        queues: &mut [Queue],
        mem: &GuestMem,
    ) -> Result<bool, VirtioError> {
        let mut want_stats = false;
        if let Some(t) = self.timer.as_mut().filter(|t| t.as_raw_fd() == fd) {
            let _ = t.wait();
            want_stats = true;
        }
        if fd == self.wake.as_raw_fd() {
            let _ = self.wake.read();
            let mut s = lock(&self.shared);
            want_stats |= std::mem::take(&mut s.stats_requested);
            if s.status.target_pages != self.config_target {
                self.config_target = s.status.target_pages;
                self.config_changed = true;
            }
        }
        if want_stats {
            return self.request_stats(queues, mem);
        }
        Ok(false)
    }

    fn take_config_changed(&mut self) -> bool {
        std::mem::take(&mut self.config_changed)
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let s = lock(&self.shared);
        vec![
            ("target_pages", u64::from(s.status.target_pages)),
            ("actual_pages", u64::from(s.status.actual_pages)),
            ("inflated_pages", s.status.inflated_pages),
            ("deflated_pages", s.status.deflated_pages),
        ]
    }
}

#[cfg(test)]
mod tests;
