//! The corral daemon: REST server over a Unix socket, instance manager, event stream,
//! Prometheus metrics, and the per-container shim it starts.
//!
//! Start-up order: take the root dir's lock, open the store, recover every unfinished
//! operation from the journal and reattach to every live supervisor, then serve.

pub mod apps;
pub mod config;
pub mod containers;
mod crash;
mod error;
mod events;
pub mod http;
mod ids;
mod inventory;
mod locks;
pub mod network;
mod proc;
pub mod pty;
mod recover;
pub mod shim;
mod start;
mod state;
pub mod vm_console;
mod vms;

pub use config::DaemonConfig;
pub use error::{ApiError, DaemonError};
pub use start::run;
pub use state::AppState;
