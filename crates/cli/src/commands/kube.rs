//! `corral apply`, `delete` and `get`: Kubernetes manifests as desired state.

use std::path::PathBuf;

use clap::Args;

use crate::exit::pending_verb;

/// `corral apply -f`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A manifest file or a folder of them (multi-document YAML). Repeatable.
    #[arg(short, long = "filename", value_name = "FILE|DIR", required = true)]
    pub files: Vec<PathBuf>,
}

/// `corral delete -f`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// A manifest file or a folder of them. Repeatable.
    #[arg(short, long = "filename", value_name = "FILE|DIR", required = true)]
    pub files: Vec<PathBuf>,
}

/// `corral get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// deployments, pods or services.
    pub kind: String,
    /// Output format: table or json.
    #[arg(short, long, default_value = "table")]
    pub output: String,
}

pending_verb!(ApplyArgs, "apply");
pending_verb!(DeleteArgs, "delete");
pending_verb!(GetArgs, "get");
