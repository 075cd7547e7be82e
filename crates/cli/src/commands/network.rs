//! `corral network …`.
//!
//! Until the daemon serves networks, these verbs drive the `corral-net` library directly with
//! its file-backed state in `<root>/net/net.json` (the same record the daemon will own).

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use corral_net::{FileStore, NetConfig, NetManager, NetworkInfo};

use crate::cli::GlobalArgs;

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

fn with_manager<T>(
    global: &GlobalArgs,
    f: impl AsyncFnOnce(&NetManager<FileStore>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let store = FileStore::new(global.paths().root.join("net"));
        let manager = NetManager::new(NetConfig::default(), store)?;
        f(&manager).await
    })
}

fn print_table(nets: &[NetworkInfo]) {
    println!(
        "{:<16} {:<18} {:<15} {:<12} INSTANCES",
        "NAME", "SUBNET", "GATEWAY", "BRIDGE"
    );
    for n in nets {
        println!(
            "{:<16} {:<18} {:<15} {:<12} {}",
            n.network.name,
            n.network.subnet.to_string(),
            n.network.gateway.to_string(),
            n.network.bridge,
            n.endpoints.len()
        );
    }
}

impl NetworkCommand {
    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        match self {
            NetworkCommand::Create(args) => {
                let subnet = args
                    .subnet
                    .as_deref()
                    .map(|s| {
                        s.parse().with_context(|| {
                            format!("--subnet {s:?} is not an IPv4 CIDR like 10.213.5.0/24")
                        })
                    })
                    .transpose()?;
                let net = with_manager(global, async |m| {
                    Ok(m.create_network(&args.name, subnet).await?)
                })?;
                println!("{} {} {}", net.name, net.subnet, net.bridge);
            }
            NetworkCommand::Ls(args) => {
                let nets = with_manager(global, async |m| Ok(m.networks()?))?;
                if args.format == "json" {
                    println!("{}", serde_json::to_string_pretty(&nets)?);
                } else {
                    print_table(&nets);
                }
            }
            NetworkCommand::Inspect(args) => {
                let net = with_manager(global, async |m| Ok(m.inspect(&args.name)?))?;
                println!("{}", serde_json::to_string_pretty(&net)?);
            }
            NetworkCommand::Rm(args) => {
                with_manager(global, async |m| Ok(m.remove_network(&args.name).await?))?;
                println!("{}", args.name);
            }
            NetworkCommand::Prune(NetworkPruneArgs {}) => {
                let cleanup = with_manager(global, async |m| {
                    // Without the daemon every recorded instance counts as alive: only unused
                    // networks and links nobody recorded are removed.
                    let known: BTreeSet<String> = m.state()?.endpoints.into_keys().collect();
                    Ok(m.prune(&known).await?)
                })?;
                for n in &cleanup.networks {
                    println!("removed network {n}");
                }
                for l in &cleanup.links {
                    println!("removed link {l}");
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
