//! Where corral keeps its files: the root dir (state, images, VMs) and the run dir (sockets,
//! pid files).

use std::path::PathBuf;

/// Default root dir, overridden by `CORRAL_ROOT` or `--root`.
pub const DEFAULT_ROOT: &str = "/var/lib/corral";
/// Default run dir, overridden by `CORRAL_RUN` or `--run`.
pub const DEFAULT_RUN: &str = "/run/corral";

/// The directories one invocation works with.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Persistent state.
    pub root: PathBuf,
    /// Runtime files.
    pub run: PathBuf,
}

impl Paths {
    /// The folder the setup step fills with guest kernels.
    pub fn kernels(&self) -> PathBuf {
        self.root.join("kernels")
    }
}
