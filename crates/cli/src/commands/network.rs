//! `corral network …`.

use clap::{Args, Subcommand};

use crate::exit::pending_verb;

/// Network verbs.
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a named network (a bridge with its own subnet).
    Create(NetworkCreateArgs),
    /// List networks.
    Ls(NetworkLsArgs),
    /// Show a network's subnet, bridge and members.
    Inspect(NetworkNameArgs),
    /// Remove a network nobody uses.
    Rm(NetworkNameArgs),
    /// Remove every network nobody uses and anything corral left behind.
    Prune(NetworkPruneArgs),
}

/// `corral network create`.
#[derive(Debug, Args)]
pub struct NetworkCreateArgs {
    /// Subnet in CIDR notation (default: a free /24 from corral's pool).
    #[arg(long)]
    pub subnet: Option<String>,
    /// The network's name.
    pub name: String,
}

/// `corral network ls`.
#[derive(Debug, Args)]
pub struct NetworkLsArgs {
    /// Output format: table or json.
    #[arg(long, default_value = "table")]
    pub format: String,
}

/// A command that names one network.
#[derive(Debug, Args)]
pub struct NetworkNameArgs {
    /// The network's name.
    pub name: String,
}

/// `corral network prune`.
#[derive(Debug, Args)]
pub struct NetworkPruneArgs {}

impl NetworkCommand {
    /// Run the verb.
    pub fn run(self, global: &crate::cli::GlobalArgs) -> anyhow::Result<std::process::ExitCode> {
        match self {
            NetworkCommand::Create(args) => args.run(global),
            NetworkCommand::Ls(args) => args.run(global),
            NetworkCommand::Inspect(_) => crate::exit::not_implemented("network inspect"),
            NetworkCommand::Rm(_) => crate::exit::not_implemented("network rm"),
            NetworkCommand::Prune(args) => args.run(global),
        }
    }
}

pending_verb!(NetworkCreateArgs, "network create");
pending_verb!(NetworkLsArgs, "network ls");
pending_verb!(NetworkPruneArgs, "network prune");
