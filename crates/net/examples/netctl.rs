//! A thin driver of the library for benchmarks and manual checks (bench/net.sh uses it):
//!
//! ```text
//! netctl STATE_DIR PREFIX create NETWORK [SUBNET]
//! netctl STATE_DIR PREFIX attach INSTANCE NETWORK NETNS_PATH
//! netctl STATE_DIR PREFIX prune
//! ```
//!
//! PREFIX names the links and the nftables table, so a run never touches corral's own.

use std::collections::BTreeSet;

use corral_net::{AttachRequest, FileStore, NetConfig, NetManager, Netns};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "usage: netctl STATE_DIR PREFIX (create NET [SUBNET] | attach INSTANCE NET NETNS | prune)";
    let [dir, prefix, rest @ ..] = args.as_slice() else {
        return Err(usage.into());
    };
    let cfg = NetConfig {
        link_prefix: prefix.clone(),
        default_bridge: format!("{prefix}d"),
        nft_table: prefix.clone(),
        ..NetConfig::default()
    };
    let m = NetManager::new(cfg, FileStore::new(dir))?;
    match rest {
        [cmd, net] if cmd == "create" => {
            let n = m.create_network(net, None).await?;
            println!("{} {} {}", n.name, n.subnet, n.bridge);
        }
        [cmd, net, subnet] if cmd == "create" => {
            let n = m.create_network(net, Some(subnet.parse()?)).await?;
            println!("{} {} {}", n.name, n.subnet, n.bridge);
        }
        [cmd, instance, net, ns] if cmd == "attach" => {
            let req = AttachRequest {
                instance: instance.clone(),
                network: Some(net.clone()),
                names: vec![instance.clone()],
                ports: vec![],
            };
            let a = m.attach_container(&req, &Netns::Path(ns.into())).await?;
            println!("{}", a.address.addr());
        }
        [cmd] if cmd == "prune" => {
            let c = m.prune(&BTreeSet::new()).await?;
            println!(
                "removed {} links, {} networks",
                c.links.len(),
                c.networks.len()
            );
        }
        _ => return Err(usage.into()),
    }
    Ok(())
}
