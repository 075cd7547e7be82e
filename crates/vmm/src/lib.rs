//! corral's microVM monitor.
//!
//! This crate owns the backend-neutral VM/vCPU boundary ([`hypervisor`]), its KVM
//! implementation, guest memory, boot setup, the MMIO/PIO buses and the per-VM control socket.
//! It knows nothing of containers, HTTP or SQLite.

pub mod accel;
pub mod agent;
pub mod boot;
pub mod bus;
pub mod config;
pub mod console;
pub mod control;
pub mod host;
pub mod hypervisor;
pub mod machine;
pub mod memory;
pub mod metrics;
pub mod signals;
pub mod test_guests;
pub mod vcpu_loop;
pub mod virtio_setup;

pub use accel::{Accel, AccelChoice, Backend};
pub use config::VmConfig;
pub use corral_devices::GuestMem;
pub use host::{KvmFlavor, KvmProbe};
pub use hypervisor::{Hypervisor, HypervisorError, Vcpu, VcpuExit, Vm};
pub use machine::{Machine, MachineError, MachineHandle};
pub use vcpu_loop::MachineExit;
