//! The device model shared by every CPU backend: the virtio-mmio transport, virtio blk, net,
//! rng, vsock, balloon and console, the 8250 serial port and the i8042 controller. Devices talk
//! to guest memory and an interrupt trait only, so they are unit-testable without KVM.
//!
//! The contract with the VMM:
//! - guest memory is a [`GuestMem`] (vm-memory's `GuestMemoryMmap`), shared by every backend;
//! - a device sits on the port-I/O or MMIO bus as a [`BusDevice`]: the VMM's bus turns a
//!   vCPU exit into `read`/`write` with the offset inside the device's range;
//! - a device raises its interrupt through an [`Interrupt`] the VMM hands it (KVM: an irqfd on
//!   the in-kernel IOAPIC; the software CPU: its own IOAPIC).

pub mod bus;
pub mod i8042;
pub mod interrupt;
pub mod legacy;
pub mod virtio;

pub use bus::BusDevice;
pub use interrupt::{Interrupt, InterruptError, IrqLevel};

/// Guest physical memory as every device and backend sees it.
pub type GuestMem = vm_memory::GuestMemoryMmap<()>;
