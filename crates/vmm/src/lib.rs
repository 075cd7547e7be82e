//! corral's microVM monitor.
//!
//! This crate owns the backend-neutral VM/vCPU boundary ([`hypervisor`]), its KVM
//! implementation, guest memory, boot setup, the MMIO/PIO buses and the per-VM control socket.
//! It knows nothing of containers, HTTP or SQLite.

pub mod accel;
pub mod bus;
pub mod host;
pub mod hypervisor;
pub mod memory;

pub use accel::{Accel, AccelChoice, Backend};
pub use corral_devices::GuestMem;
pub use host::{KvmFlavor, KvmProbe};
pub use hypervisor::{Hypervisor, HypervisorError, Vcpu, VcpuExit, Vm};
