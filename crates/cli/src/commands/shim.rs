//! `corral shim`: the per-container supervisor.

use std::path::PathBuf;

use clap::Args;

use crate::exit::pending_verb;

/// Supervise one container: own its stdio, log file and exit status.
#[derive(Debug, Args)]
pub struct ShimArgs {
    /// The container's ID.
    #[arg(long)]
    pub id: String,
    /// The container's OCI bundle.
    #[arg(long, value_name = "DIR")]
    pub bundle: PathBuf,
}

pending_verb!(ShimArgs, "shim");
