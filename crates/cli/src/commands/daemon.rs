//! `corral daemon`.

use clap::Args;

use crate::exit::pending_verb;

/// Run the daemon in the foreground.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Also listen on TCP (loopback only), e.g. 127.0.0.1:7070; requires the bearer token.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
}

pending_verb!(DaemonArgs, "daemon");
