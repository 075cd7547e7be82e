//! `corral network …`: named networks through the daemon's API (`/v1/networks`).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use corral_api::{Network, NetworkCreate};

use crate::cli::GlobalArgs;
use crate::commands::api_client::{self, Api};

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
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
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

fn print_table(nets: &[Network]) {
    let rows: Vec<Vec<String>> = nets
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.subnet.clone(),
                n.gateway.clone(),
                n.bridge.clone(),
                n.endpoints.len().to_string(),
            ]
        })
        .collect();
    api_client::print_table(&["NAME", "SUBNET", "GATEWAY", "BRIDGE", "INSTANCES"], &rows);
}

impl NetworkCommand {
    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let api = Api::connect(global)?;
        match self {
            NetworkCommand::Create(args) => {
                let req = NetworkCreate {
                    name: args.name,
                    subnet: args.subnet,
                };
                let net = api.block_on(api.client.create_network(&req))?;
                println!("{} {} {}", net.name, net.subnet, net.bridge);
            }
            NetworkCommand::Ls(args) => {
                let nets = api.block_on(api.client.networks())?;
                if args.format == "json" {
                    println!("{}", serde_json::to_string_pretty(&nets)?);
                } else {
                    print_table(&nets);
                }
            }
            NetworkCommand::Inspect(args) => {
                let net = api.block_on(api.client.network(&args.name))?;
                println!("{}", serde_json::to_string_pretty(&net)?);
            }
            NetworkCommand::Rm(args) => {
                api.block_on(api.client.remove_network(&args.name))?;
                println!("{}", args.name);
            }
            NetworkCommand::Prune(NetworkPruneArgs {}) => {
                let c = api.block_on(api.client.prune_networks())?;
                for n in &c.networks {
                    println!("removed network {n}");
                }
                for l in &c.links {
                    println!("removed link {l}");
                }
                for e in &c.endpoints {
                    println!("removed endpoint of {e}");
                }
                for n in &c.namespaces {
                    println!("removed network namespace {n}");
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
