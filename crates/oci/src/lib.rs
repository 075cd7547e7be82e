//! corral's OCI runtime: a `config.json` bundle to a process in namespaces and cgroups
//! (v1 and v2), with rootfs and mounts, devices, capabilities, seccomp, rlimits, hooks and
//! console handling, and a runc-style state directory. It knows nothing of images or the daemon.

pub mod bundle;
pub mod capabilities;
pub mod cgroups;
pub mod console;
pub mod container;
pub mod exec;
pub mod hooks;
pub mod init;
pub mod namespaces;
pub mod process;
pub mod process_attrs;
pub mod rootfs;
pub mod seccomp;
pub mod signal;
pub mod spawn;
pub mod state;
pub mod sync;
pub mod syscall;
pub mod timens;

pub use bundle::{Bundle, BundleError};
pub use container::{Container, ContainerError, CreateOptions, Spawned};
pub use state::{StateReport, StateRoot, Status};
