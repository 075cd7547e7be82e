//! Balloon queue handling with in-memory guest memory.

use std::os::fd::AsRawFd;

use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::virtio::testing::{new_mem, write_desc, DriverQueue};

struct Guest {
    mem: GuestMem,
    qs: Vec<Queue>,
    dq: Vec<DriverQueue>,
}

impl Guest {
    fn new() -> Self {
        let mem = new_mem();
        let dq: Vec<DriverQueue> = (0..3)
            .map(|i| DriverQueue::new(0x10000 + i * 0x10000, 16))
            .collect();
        let qs = dq.iter().map(|d| d.queue(&mem)).collect();
        Guest { mem, qs, dq }
    }

    /// Queue one buffer of `bytes` on queue `q` (descriptor `i`, at 0x200000 + i * 4 KiB).
    fn post(&self, q: usize, i: u16, bytes: &[u8]) {
        let addr = 0x200000 + u64::from(i) * 0x1000;
        self.mem.write_slice(bytes, GuestAddress(addr)).unwrap();
        write_desc(
            &self.mem,
            self.dq[q].desc,
            i,
            addr,
            bytes.len() as u32,
            0,
            0,
        );
        self.dq[q].publish(&self.mem, &[i]);
    }
}

fn pfns(list: &[u32]) -> Vec<u8> {
    list.iter().flat_map(|p| p.to_le_bytes()).collect()
}

#[test]
fn inflate_drops_the_pages_and_deflate_counts_them_back() {
    let mut b = Balloon::new(0, Duration::ZERO, false).unwrap();
    let mut g = Guest::new();
    g.mem
        .write_slice(&[0xaa; 8192], GuestAddress(0x80000))
        .unwrap();
    g.mem
        .write_slice(&[0xbb; 16], GuestAddress(0x90000))
        .unwrap();
    g.post(INFLATE, 0, &pfns(&[0x80, 0x81, 0x90]));
    assert!(b.process_queue(INFLATE, &mut g.qs, &g.mem).unwrap());
    assert_eq!(g.dq[INFLATE].used_elem(&g.mem, 0), (0, 0));
    let mut page = [1u8; 8192];
    g.mem.read_slice(&mut page, GuestAddress(0x80000)).unwrap();
    assert!(
        page.iter().all(|&x| x == 0),
        "inflated pages read back as zeros"
    );
    let mut other = [0u8; 16];
    g.mem.read_slice(&mut other, GuestAddress(0x90000)).unwrap();
    assert_eq!(other, [0; 16]);
    let h = b.handle();
    assert_eq!(h.status().inflated_pages, 3);

    g.post(DEFLATE, 1, &pfns(&[0x80]));
    assert!(b.process_queue(DEFLATE, &mut g.qs, &g.mem).unwrap());
    assert_eq!(h.status().deflated_pages, 1);
    // A PFN beyond guest memory is ignored, not a crash.
    g.post(INFLATE, 2, &pfns(&[0xfff_ffff]));
    assert!(b.process_queue(INFLATE, &mut g.qs, &g.mem).unwrap());
}

#[test]
fn a_new_target_changes_the_config_and_the_guest_reports_actual() {
    let mut b = Balloon::new(16, Duration::ZERO, false).unwrap();
    let mut g = Guest::new();
    let mut cfg = [0u8; 4];
    b.read_config(0, &mut cfg);
    assert_eq!(u32::from_le_bytes(cfg), 16);
    let h = b.handle();
    h.set_target_pages(1024);
    assert!(
        !b.take_config_changed(),
        "applied by the device's event, not the caller"
    );
    let wake = b.wake.as_raw_fd();
    b.host_event(wake, &mut g.qs, &g.mem).unwrap();
    assert!(b.take_config_changed());
    assert!(!b.take_config_changed(), "reported once");
    b.read_config(0, &mut cfg);
    assert_eq!(u32::from_le_bytes(cfg), 1024);
    b.write_config(4, &1000u32.to_le_bytes());
    let s = h.status();
    assert_eq!((s.target_pages, s.actual_pages), (1024, 1000));
    b.read_config(4, &mut cfg);
    assert_eq!(u32::from_le_bytes(cfg), 1000);
}

#[test]
fn statistics_buffer_is_held_and_returned_on_request() {
    let mut b = Balloon::new(0, Duration::ZERO, false).unwrap();
    assert_ne!(b.features() & F_STATS_VQ, 0);
    assert_eq!(b.features() & F_DEFLATE_ON_OOM, 0);
    let oom = Balloon::new(0, Duration::ZERO, true).unwrap();
    assert_ne!(oom.features() & F_DEFLATE_ON_OOM, 0);
    let mut g = Guest::new();
    let mut stats = Vec::new();
    for (tag, val) in [(4u16, 1000u64), (5, 2000), (99, 7)] {
        stats.extend_from_slice(&tag.to_le_bytes());
        stats.extend_from_slice(&val.to_le_bytes());
    }
    g.post(STATS, 0, &stats);
    assert!(
        !b.process_queue(STATS, &mut g.qs, &g.mem).unwrap(),
        "the device keeps the buffer"
    );
    assert_eq!(g.dq[STATS].used_idx(&g.mem), 0);
    let h = b.handle();
    let s = h.status();
    assert_eq!(s.stats["free_memory"], 1000);
    assert_eq!(s.stats["total_memory"], 2000);
    assert_eq!(s.stats.len(), 2, "unknown tags are skipped");
    assert!(s.stats_age_s.is_some());
    // status() asked for fresh figures: the device hands the buffer back.
    let wake = b.wake.as_raw_fd();
    assert!(b.host_event(wake, &mut g.qs, &g.mem).unwrap());
    assert_eq!(g.dq[STATS].used_idx(&g.mem), 1);
    assert!(
        !b.host_event(wake, &mut g.qs, &g.mem).unwrap(),
        "nothing held now"
    );
}
