//! corral's microVM monitor.
//!
//! This crate owns the backend-neutral VM/vCPU boundary, its KVM implementation, guest memory,
//! boot setup, the MMIO/PIO buses and the per-VM control socket. It knows nothing of
//! containers, HTTP or SQLite.

pub mod accel;
pub mod host;

pub use accel::{Accel, AccelChoice, Backend};
pub use host::{KvmFlavor, KvmProbe};
