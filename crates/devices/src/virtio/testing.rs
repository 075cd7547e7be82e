//! Test helpers: a driver's view of a split virtqueue laid out in in-memory guest memory.

use vm_memory::{Bytes, GuestAddress};

use crate::GuestMem;

/// 4 MiB of guest memory.
pub fn new_mem() -> GuestMem {
    GuestMem::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap()
}

/// Write descriptor `i` of the table at `table`.
pub fn write_desc(mem: &GuestMem, table: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
    let d = table + 16 * u64::from(i);
    mem.write_obj(addr, GuestAddress(d)).unwrap();
    mem.write_obj(len, GuestAddress(d + 8)).unwrap();
    mem.write_obj(flags, GuestAddress(d + 12)).unwrap();
    mem.write_obj(next, GuestAddress(d + 14)).unwrap();
}

/// Descriptor flag: another descriptor follows.
pub const NEXT: u16 = 1;
/// Descriptor flag: device writes this buffer.
pub const WRITE: u16 = 2;

/// Addresses of one queue's three areas.
pub struct DriverQueue {
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    pub size: u16,
}

impl DriverQueue {
    /// A queue of `size` entries at `base`.
    pub fn new(base: u64, size: u16) -> Self {
        DriverQueue {
            desc: base,
            avail: base + 0x1000,
            used: base + 0x2000,
            size,
        }
    }

    /// Make `heads` available and bump the avail index.
    pub fn publish(&self, mem: &GuestMem, heads: &[u16]) {
        let idx: u16 = mem.read_obj(GuestAddress(self.avail + 2)).unwrap();
        for (k, h) in heads.iter().enumerate() {
            let slot = (idx as usize + k) % self.size as usize;
            mem.write_obj(*h, GuestAddress(self.avail + 4 + 2 * slot as u64))
                .unwrap();
        }
        mem.write_obj(
            idx.wrapping_add(heads.len() as u16),
            GuestAddress(self.avail + 2),
        )
        .unwrap();
    }

    /// The used index.
    pub fn used_idx(&self, mem: &GuestMem) -> u16 {
        mem.read_obj(GuestAddress(self.used + 2)).unwrap()
    }

    /// Used element `i`: (head, length written).
    pub fn used_elem(&self, mem: &GuestMem, i: u16) -> (u32, u32) {
        let e = self.used + 4 + 8 * u64::from(i);
        (
            mem.read_obj(GuestAddress(e)).unwrap(),
            mem.read_obj(GuestAddress(e + 4)).unwrap(),
        )
    }

    /// A virtio-queue `Queue` set up as a driver would have configured it.
    pub fn queue(&self, mem: &GuestMem) -> virtio_queue::Queue {
        use virtio_queue::QueueT;
        // A fresh queue: the rings start empty.
        mem.write_obj(0u16, GuestAddress(self.avail + 2)).unwrap();
        mem.write_obj(0u16, GuestAddress(self.used + 2)).unwrap();
        let mut q = virtio_queue::Queue::new(256).unwrap();
        q.set_size(self.size);
        q.set_desc_table_address(Some(self.desc as u32), Some((self.desc >> 32) as u32));
        q.set_avail_ring_address(Some(self.avail as u32), Some((self.avail >> 32) as u32));
        q.set_used_ring_address(Some(self.used as u32), Some((self.used >> 32) as u32));
        q.set_ready(true);
        assert!(q.is_valid(mem));
        q
    }
}
