//! `corral vmm`: the per-VM monitor process.

use std::path::PathBuf;

use clap::Args;

use crate::exit::pending_verb;

/// Run one VM from its definition, serving its control socket.
#[derive(Debug, Args)]
pub struct VmmArgs {
    /// The VM's vm.toml.
    #[arg(long, value_name = "PATH")]
    pub config: PathBuf,
    /// Where to serve the control socket (JSON over a Unix socket).
    #[arg(long = "control-socket", value_name = "PATH")]
    pub control_socket: Option<PathBuf>,
}

pending_verb!(VmmArgs, "vmm");
