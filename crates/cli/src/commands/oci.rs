//! `corral oci …` (and `corral-runc …`): the runc-compatible command line.

use clap::Args;

use crate::exit::pending_verb;

/// The runc command line: create, start, state, kill, delete, run, exec, ps, list, pause,
/// resume, events, features, spec.
#[derive(Debug, Args)]
pub struct OciArgs {
    /// runc-style global flags and subcommand.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<String>,
}

pending_verb!(OciArgs, "oci");
