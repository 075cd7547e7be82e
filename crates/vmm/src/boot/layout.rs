//! Where boot structures live in guest-physical memory (the low 1 MiB, as Firecracker does).

/// The boot GDT.
pub const GDT_ADDR: u64 = 0x500;
/// An empty IDT (interrupts stay off until the kernel installs its own).
pub const IDT_ADDR: u64 = 0x520;
/// PVH `hvm_start_info`.
pub const PVH_INFO_ADDR: u64 = 0x6000;
/// PVH memory map entries, right after the start info.
pub const PVH_MEMMAP_ADDR: u64 = 0x6040;
/// Linux `boot_params` (the "zero page").
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// Initial stack pointer for the 64-bit entry.
pub const BOOT_STACK: u64 = 0x8ff0;
/// Level-4 page table; the level-3 and level-2 tables follow at +4 and +8 KiB.
pub const PML4_ADDR: u64 = 0x9000;
/// Kernel command line.
pub const CMDLINE_ADDR: u64 = 0x20000;
/// Longest command line accepted (Linux's x86 COMMAND_LINE_SIZE).
pub const CMDLINE_MAX: usize = 2048;
/// The MP table (the last KiB of base memory, where Linux scans for it).
pub const MPTABLE_ADDR: u64 = 0x9fc00;
/// End of usable base memory; `[MPTABLE_ADDR, HIGH_MEMORY)` is reserved.
pub const BASE_MEMORY_END: u64 = MPTABLE_ADDR;
/// Kernels load at or above 1 MiB.
pub const HIGH_MEMORY: u64 = 0x10_0000;
/// IOAPIC MMIO base.
pub const IOAPIC_ADDR: u64 = 0xfec0_0000;
/// LAPIC MMIO base.
pub const LAPIC_ADDR: u64 = 0xfee0_0000;
/// First virtio-mmio device window; each device takes [`VIRTIO_MMIO_SIZE`].
pub const VIRTIO_MMIO_BASE: u64 = 0xd000_0000;
/// Size of one virtio-mmio window.
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// IOAPIC pin of COM1.
pub const SERIAL_IRQ: u32 = 4;
/// IOAPIC pin of the first virtio-mmio device; the next ones follow.
pub const VIRTIO_IRQ_BASE: u32 = 5;
/// Number of IOAPIC pins.
pub const IOAPIC_PINS: u32 = 24;
