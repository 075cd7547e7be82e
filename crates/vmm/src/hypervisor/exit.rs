//! Why `Vcpu::run` returned.

/// A vCPU exit. Buffers borrow from the vCPU: for `IoIn` and `MmioRead` the VMM fills `data`
/// before the next `run`, which completes the guest instruction with it (KVM's contract, and
/// the software CPU's).
#[derive(Debug)]
pub enum VcpuExit<'a> {
    /// `IN`/`INS` from `port`; fill `data`.
    IoIn {
        /// I/O port.
        port: u16,
        /// 1, 2 or 4 bytes to fill.
        data: &'a mut [u8],
    },
    /// `OUT`/`OUTS` of `data` to `port`.
    IoOut {
        /// I/O port.
        port: u16,
        /// The bytes written.
        data: &'a [u8],
    },
    /// A read of guest-physical `addr` that no RAM backs; fill `data`.
    MmioRead {
        /// Guest-physical address.
        addr: u64,
        /// 1, 2, 4 or 8 bytes to fill.
        data: &'a mut [u8],
    },
    /// A write to guest-physical `addr` that no RAM backs.
    MmioWrite {
        /// Guest-physical address.
        addr: u64,
        /// The bytes written.
        data: &'a [u8],
    },
    /// `HLT` with nothing to wake the vCPU that the backend handles itself (backends with an
    /// interrupt controller of their own only report it when interrupts are off).
    Hlt,
    /// The vCPU shut down: a triple fault, or a shutdown the backend could not handle.
    Shutdown,
    /// The guest asked for a system reset (e.g. a reset through the backend's own chipset).
    Reset,
    /// The guest asked for power-off through the backend.
    PowerOff,
    /// The guest can take an interrupt now (after `request_interrupt_window`).
    IrqWindowOpen,
    /// `run` returned early because the vCPU was kicked (pause, stop, a signal).
    Interrupted,
    /// The backend could not go on: an emulation failure, a failed VM entry, an unsupported
    /// instruction. The VMM stops the VM and reports it with the guest's RIP.
    InternalError(ExitReport),
}

/// What a backend knows about a failure it cannot handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitReport {
    /// Short reason, e.g. "emulation failure" or "unsupported instruction".
    pub reason: String,
    /// Backend details (KVM suberror and data words; decoded instruction bytes…).
    pub detail: String,
}

impl std::fmt::Display for ExitReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.detail.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{} ({})", self.reason, self.detail)
        }
    }
}
