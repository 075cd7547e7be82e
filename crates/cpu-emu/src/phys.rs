//! Guest-physical memory as the CPU sees it: RAM pages with a host address (the shared
//! vm-memory type), everything else is MMIO and leaves the interpreter as an exit. Also the
//! per-page write generations that invalidate decoded code when the guest patches itself.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// Size of a page.
pub const PAGE_SIZE: u64 = 4096;

/// Guest-physical memory: a host pointer for RAM, `None` for MMIO.
pub trait PhysMemory: Send + Sync {
    /// The host address of the 4 KiB page holding `gpa` (page-aligned), or `None` when the
    /// page is not RAM.
    fn page_ptr(&self, gpa: u64) -> Option<*mut u8>;
}

impl PhysMemory for GuestMemoryMmap {
    fn page_ptr(&self, gpa: u64) -> Option<*mut u8> {
        let page = gpa & !(PAGE_SIZE - 1);
        // A region always covers whole pages (vm-memory regions are page-multiples), so the
        // page start being RAM means the whole page is.
        self.get_host_address(GuestAddress(page)).ok()
    }
}

/// Per guest-physical page: a generation whose low bit says "decoded code lives here".
/// Writing such a page bumps the generation, which invalidates every block decoded from it.
/// Shared by all vCPUs of a VM (SMP: one CPU patching code another one runs).
#[derive(Debug)]
pub struct CodePages {
    gens: Vec<AtomicU32>,
}

impl CodePages {
    /// Generations for guest-physical addresses below `limit`.
    pub fn new(limit: u64) -> Arc<Self> {
        let pages = limit.div_ceil(PAGE_SIZE) as usize;
        Arc::new(CodePages {
            gens: (0..pages).map(|_| AtomicU32::new(0)).collect(),
        })
    }

    /// Marks the page of `gpa` as holding code; returns its generation (odd).
    pub fn mark_code(&self, gpa: u64) -> u32 {
        match self.gens.get((gpa / PAGE_SIZE) as usize) {
            Some(g) => g.fetch_or(1, Ordering::AcqRel) | 1,
            None => 1,
        }
    }

    /// The current generation of the page of `gpa` (0 beyond the tracked range).
    #[inline]
    pub fn generation(&self, gpa: u64) -> u32 {
        self.gens
            .get((gpa / PAGE_SIZE) as usize)
            .map_or(1, |g| g.load(Ordering::Acquire))
    }

    /// Records a write to the page of `gpa`: invalidates code decoded from it.
    /// Returns true when code was invalidated.
    #[inline]
    pub fn note_write(&self, gpa: u64) -> bool {
        if let Some(g) = self.gens.get((gpa / PAGE_SIZE) as usize) {
            let cur = g.load(Ordering::Relaxed);
            if cur & 1 != 0 {
                // Clear the code bit and move to a new generation in one step.
                let _ = g.compare_exchange(
                    cur,
                    cur.wrapping_add(1),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                );
                return true;
            }
        }
        false
    }

    /// Invalidates code on every page of `[gpa, gpa+len)`: for device DMA into guest memory.
    pub fn note_dma(&self, gpa: u64, len: u64) {
        let mut p = gpa & !(PAGE_SIZE - 1);
        while p < gpa.saturating_add(len) {
            self.note_write(p);
            p += PAGE_SIZE;
        }
    }
}
