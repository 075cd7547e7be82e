//! The backend-neutral VM/vCPU boundary: the contract between the VMM and a CPU backend.
//!
//! Two backends implement it: KVM (`kvm`, in this crate) and corral's software x86-64 CPU
//! (the `corral-cpu-emu` crate, which depends on this one). Nothing here names a KVM type.
//!
//! # Shape
//! - [`Hypervisor`]: one per process; says what it supports (CPUID) and creates a [`Vm`].
//! - [`Vm`]: owns the guest-physical address space (a [`GuestMem`] shared with the devices and
//!   the VMM), the interrupt controller, interrupt lines for devices ([`Vm::irq_line`]) and
//!   the dirty-page log. `Send + Sync`: devices and vCPU threads share it through an `Arc`.
//! - [`Vcpu`]: one per guest CPU, moved to its own thread; register state in, [`VcpuExit`] out.
//!
//! # Rules both backends follow
//! - **Memory**: guest RAM is the [`GuestMem`] given to [`Hypervisor::create_vm`]; the backend
//!   reads and writes it directly (KVM maps it into the guest; the software CPU accesses it with
//!   vm-memory). Any guest-physical access outside it becomes [`VcpuExit::MmioRead`] /
//!   [`VcpuExit::MmioWrite`].
//! - **Port I/O and MMIO** come back as exits. The VMM's buses ([`crate::bus`]) dispatch them
//!   to the devices, identically for both backends. For reads the VMM fills the exit's buffer
//!   and the next [`Vcpu::run`] completes the instruction.
//! - **Interrupts**: devices raise lines through [`corral_devices::Interrupt`] objects obtained
//!   from [`Vm::irq_line`] (GSI numbers are IOAPIC pins: 4 for COM1, 5.. for virtio-mmio). The
//!   backend routes them through its interrupt controller (KVM: irqfd into the in-kernel
//!   IOAPIC/LAPIC; the software CPU: its own IOAPIC and LAPICs). A backend without its own
//!   interrupt controller may take vectors through [`Vcpu::inject_interrupt`].
//! - **State** is exchanged in the plain types of [`types`]; LAPIC state is the APIC register
//!   page image, so boot-time LAPIC setup is shared.
//! - **Kicks**: [`Vcpu::kicker`] returns a handle any thread may use to make a running
//!   [`Vcpu::run`] return [`VcpuExit::Interrupted`] soon (pause, stop). A kick that arrives
//!   while the vCPU is not running makes the next `run` return at once.
//! - **Dirty log**: once enabled with [`Vm::set_dirty_logging`], [`Vm::take_dirty_log`]
//!   returns and clears, per RAM region, one bit per 4 KiB page written by the guest *or* by
//!   the backend on the guest's behalf. Writes by devices are not included (the VMM tracks
//!   those).

pub mod exit;
pub mod kvm;
pub mod types;

use std::sync::Arc;

use vmm_sys_util::eventfd::EventFd;

use corral_devices::{GuestMem, Interrupt};

pub use exit::{ExitReport, VcpuExit};
pub use types::{
    CpuidEntry, DescriptorTable, FpuState, LapicState, Msr, Regs, Segment, SpecialRegs,
};

/// Errors from a backend.
#[derive(Debug, thiserror::Error)]
pub enum HypervisorError {
    /// A call into the backend (an ioctl, a thread, an mmap) failed.
    #[error("{op}: {source}")]
    Os {
        /// What was being done, e.g. "KVM_SET_SREGS".
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The backend does not offer this operation.
    #[error("{op} is not supported by the {backend} backend")]
    Unsupported {
        /// The operation.
        op: &'static str,
        /// The backend's name.
        backend: &'static str,
    },
    /// Any other backend failure, in words.
    #[error("{op}: {message}")]
    Other {
        /// The operation.
        op: &'static str,
        /// What went wrong.
        message: String,
    },
}

impl HypervisorError {
    /// Wrap an OS error from `op`.
    pub fn os(op: &'static str, source: impl Into<std::io::Error>) -> Self {
        HypervisorError::Os {
            op,
            source: source.into(),
        }
    }
}

/// Shorthand for backend results.
pub type Result<T> = std::result::Result<T, HypervisorError>;

/// A CPU backend.
pub trait Hypervisor: Send + Sync {
    /// Short name: "kvm" or "emu".
    fn name(&self) -> &'static str;
    /// The CPUID leaves this backend can present to a guest (the VMM trims and adjusts them,
    /// see `crate::boot::cpuid`).
    fn supported_cpuid(&self) -> Result<Vec<CpuidEntry>>;
    /// Create a VM whose RAM is `memory` (every region becomes guest-physical memory at its
    /// guest address). The backend sets up its interrupt controller (IOAPIC + LAPICs).
    fn create_vm(&self, memory: &GuestMem) -> Result<Arc<dyn Vm>>;
}

/// A virtual machine: address space, interrupt controller, dirty log.
pub trait Vm: Send + Sync {
    /// Create vCPU `id` (0-based; also its initial APIC ID). Create them in order 0..n.
    fn create_vcpu(&self, id: u8) -> Result<Box<dyn Vcpu>>;
    /// An interrupt line wired to IOAPIC pin `gsi`, for a device to raise.
    fn irq_line(&self, gsi: u32) -> Result<Arc<dyn Interrupt>>;
    /// Start or stop tracking pages the guest writes.
    fn set_dirty_logging(&self, enabled: bool) -> Result<()>;
    /// The pages written since logging started or the last call, per RAM region; clears them.
    fn take_dirty_log(&self) -> Result<Vec<DirtyBitmap>>;
    /// Have a guest's 4-byte write of `value` to MMIO `addr` signal `evt` instead of exiting to
    /// the VMM (KVM's ioeventfd: a virtio queue notify then costs no exit). Backends without
    /// it answer `Unsupported` and the write exits as usual.
    fn register_mmio_notify(&self, _addr: u64, _value: u32, _evt: &EventFd) -> Result<()> {
        Err(HypervisorError::Unsupported {
            op: "ioeventfd",
            backend: "this backend",
        })
    }
}

/// Pages written in one RAM region: bit `i` of `bits[i / 64]` is page `guest_base + i * 4096`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirtyBitmap {
    /// Guest-physical start of the region.
    pub guest_base: u64,
    /// Region size in bytes.
    pub size: u64,
    /// One bit per 4 KiB page.
    pub bits: Vec<u64>,
}

impl DirtyBitmap {
    /// Guest-physical addresses of the dirty pages.
    pub fn pages(&self) -> impl Iterator<Item = u64> + '_ {
        self.bits.iter().enumerate().flat_map(move |(w, &word)| {
            (0..64)
                .filter(move |b| word & (1u64 << b) != 0)
                .map(move |b| self.guest_base + ((w as u64) * 64 + b) * 4096)
        })
    }
}

/// Makes a running vCPU return from [`Vcpu::run`] with [`VcpuExit::Interrupted`].
pub trait VcpuKick: Send + Sync {
    /// Ask the vCPU to leave `run` as soon as possible (or at once on its next `run`).
    fn kick(&self);
}

/// One virtual CPU. Owned by its thread; other threads reach it only through a [`VcpuKick`].
pub trait Vcpu: Send {
    /// The vCPU's index.
    fn id(&self) -> u8;
    /// General registers.
    fn regs(&self) -> Result<Regs>;
    /// Set general registers.
    fn set_regs(&mut self, regs: &Regs) -> Result<()>;
    /// Segment, control and table registers.
    fn sregs(&self) -> Result<SpecialRegs>;
    /// Set segment, control and table registers.
    fn set_sregs(&mut self, sregs: &SpecialRegs) -> Result<()>;
    /// x87/SSE state.
    fn fpu(&self) -> Result<FpuState>;
    /// Set x87/SSE state.
    fn set_fpu(&mut self, fpu: &FpuState) -> Result<()>;
    /// Read the given MSRs (an MSR the backend lacks is left out of the answer).
    fn msrs(&self, indices: &[u32]) -> Result<Vec<Msr>>;
    /// Write MSRs; fails naming the first one the backend refused.
    fn set_msrs(&mut self, msrs: &[Msr]) -> Result<()>;
    /// Local APIC register page.
    fn lapic(&self) -> Result<LapicState>;
    /// Set the local APIC register page.
    fn set_lapic(&mut self, lapic: &LapicState) -> Result<()>;
    /// The CPUID answers this vCPU gives.
    fn set_cpuid(&mut self, entries: &[CpuidEntry]) -> Result<()>;
    /// Run until the next exit the VMM must see.
    fn run(&mut self) -> Result<VcpuExit<'_>>;
    /// Inject an external interrupt `vector` (backends without an interrupt controller of their
    /// own, or after [`VcpuExit::IrqWindowOpen`]).
    fn inject_interrupt(&mut self, vector: u8) -> Result<()>;
    /// Ask for [`VcpuExit::IrqWindowOpen`] when the guest can take an interrupt.
    fn request_interrupt_window(&mut self, enabled: bool) -> Result<()>;
    /// A handle that makes `run` return [`VcpuExit::Interrupted`].
    fn kicker(&self) -> Arc<dyn VcpuKick>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirty_bitmap_lists_page_addresses() {
        let d = DirtyBitmap {
            guest_base: 0x10_0000,
            size: 128 * 4096,
            bits: vec![0b101, 1 << 63],
        };
        let pages: Vec<u64> = d.pages().collect();
        assert_eq!(pages, vec![0x10_0000, 0x10_2000, 0x10_0000 + 127 * 4096]);
    }
}
