//! Guest memory: the x86 physical address map and lazily allocated anonymous RAM.
//!
//! RAM is one or two vm-memory regions of `MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE`
//! mappings (pages cost host memory only once touched): below the 32-bit MMIO gap, and the
//! rest from 4 GiB up. Both backends and all devices share the same [`GuestMem`].

use corral_devices::GuestMem;
use vm_memory::GuestAddress;

/// Start of the 32-bit MMIO gap (virtio-mmio devices, IOAPIC, LAPIC).
pub const MMIO_GAP_START: u64 = 0xc000_0000;
/// End of the 32-bit MMIO gap: RAM resumes at 4 GiB.
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// The smallest guest the VMM accepts (boot structures, page tables, a kernel).
pub const MIN_MEMORY: u64 = 16 << 20;

/// Errors creating guest memory.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// Below [`MIN_MEMORY`].
    #[error("guest memory of {size} bytes is too small: at least {} MiB is needed", MIN_MEMORY >> 20)]
    TooSmall {
        /// The requested size.
        size: u64,
    },
    /// Not a multiple of 4 KiB.
    #[error("guest memory of {size} bytes is not a multiple of 4 KiB")]
    Unaligned {
        /// The requested size.
        size: u64,
    },
    /// mmap or region bookkeeping failed.
    #[error("mapping {size} bytes of guest memory: {message}")]
    Map {
        /// The requested size.
        size: u64,
        /// vm-memory's error.
        message: String,
    },
}

/// The guest-physical RAM ranges for `size` bytes of memory.
pub fn ram_ranges(size: u64) -> Vec<(GuestAddress, usize)> {
    if size <= MMIO_GAP_START {
        vec![(GuestAddress(0), size as usize)]
    } else {
        vec![
            (GuestAddress(0), MMIO_GAP_START as usize),
            (GuestAddress(MMIO_GAP_END), (size - MMIO_GAP_START) as usize),
        ]
    }
}

/// Map `size` bytes of guest RAM, lazily allocated.
pub fn create_guest_memory(size: u64) -> Result<GuestMem, MemoryError> {
    if size < MIN_MEMORY {
        return Err(MemoryError::TooSmall { size });
    }
    if size % 4096 != 0 {
        return Err(MemoryError::Unaligned { size });
    }
    GuestMem::from_ranges(&ram_ranges(size)).map_err(|e| MemoryError::Map {
        size,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestMemoryBackend};

    #[test]
    fn small_guest_is_one_region_large_one_skips_the_gap() {
        assert_eq!(ram_ranges(256 << 20).len(), 1);
        let r = ram_ranges(4 << 30);
        assert_eq!(r[1].0, GuestAddress(MMIO_GAP_END));
        assert_eq!(r[0].1 as u64 + r[1].1 as u64, 4 << 30);
    }

    #[test]
    fn memory_is_usable_and_sized() {
        let mem = create_guest_memory(32 << 20).unwrap();
        assert_eq!(mem.last_addr(), GuestAddress((32 << 20) - 1));
        mem.write_obj(0xdead_beefu32, GuestAddress(0x1000)).unwrap();
        assert_eq!(
            mem.read_obj::<u32>(GuestAddress(0x1000)).unwrap(),
            0xdead_beef
        );
    }

    #[test]
    fn rejects_tiny_and_unaligned() {
        assert!(matches!(
            create_guest_memory(1 << 20),
            Err(MemoryError::TooSmall { .. })
        ));
        assert!(matches!(
            create_guest_memory((32 << 20) + 1),
            Err(MemoryError::Unaligned { .. })
        ));
    }
}
