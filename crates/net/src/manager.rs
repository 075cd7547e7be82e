//! The network layer as the daemon uses it: named networks, and (in `attach`) instances
//! plugged into them. Every host object is recorded in the [`StateStore`] before it is created,
//! so [`NetManager::reconcile`] can remove whatever a crash or a failed create left behind.

use std::collections::BTreeSet;

use ipnet::Ipv4Net;
use serde::Serialize;

use crate::ipam::{self, IpamError};
use crate::links::{LinkError, Netlink};
use crate::nft::{self, NftError};
use crate::ports::PortMapping;
use crate::state::{EndpointRecord, NetState, NetworkRecord, StateError, StateStore};
use crate::sysctl::{self, SysctlError};
use crate::tap::TapError;

/// Name of the network instances join when none is named.
pub const DEFAULT_NETWORK: &str = "default";

/// Fixed choices of one corral installation (tests use their own prefix, bridge and table).
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Prefix of every link corral creates besides the default bridge (max 8 bytes).
    pub link_prefix: String,
    /// The default network's bridge.
    pub default_bridge: String,
    /// Where network subnets are carved from when none is given.
    pub pool: Ipv4Net,
    /// Prefix length of carved subnets.
    pub subnet_prefix: u8,
    /// Index of the first subnet of the pool tried (then onwards, wrapping round).
    pub subnet_start: u32,
    /// corral's nftables table (family ip).
    pub nft_table: String,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            link_prefix: "crl".into(),
            default_bridge: "corral0".into(),
            pool: ipam::DEFAULT_POOL.parse().expect("valid pool"),
            subnet_prefix: ipam::DEFAULT_PREFIX,
            subnet_start: 0,
            nft_table: nft::DEFAULT_TABLE.into(),
        }
    }
}

/// A network operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Reading or writing the state.
    #[error(transparent)]
    State(#[from] StateError),
    /// Address management.
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// A netlink request.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// nftables.
    #[error(transparent)]
    Nft(#[from] NftError),
    /// A tap device.
    #[error(transparent)]
    Tap(#[from] TapError),
    /// A per-interface setting.
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    /// No such network.
    #[error("network {0:?} does not exist")]
    NoSuchNetwork(String),
    /// The network name is taken.
    #[error("network {0:?} already exists")]
    NetworkExists(String),
    /// A network name that cannot be used.
    #[error(
        "network name {0:?} is invalid: use 1-32 of a-z, 0-9, '-', '_', '.' and not none/host"
    )]
    BadNetworkName(String),
    /// The network still has instances.
    #[error("network {network:?} is in use by {}", instances.join(", "))]
    NetworkInUse {
        /// The network.
        network: String,
        /// Instances on it.
        instances: Vec<String>,
    },
    /// The instance is already on a network.
    #[error("instance {0:?} already has a network endpoint")]
    EndpointExists(String),
    /// The host port is already published.
    #[error("port {port} is already published by {instance:?}")]
    PortInUse {
        /// The mapping asked for.
        port: PortMapping,
        /// Who has it.
        instance: String,
    },
}

/// A network as `network ls`/`inspect` show it.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkInfo {
    /// The network's record.
    #[serde(flatten)]
    pub network: NetworkRecord,
    /// Its instances.
    pub endpoints: Vec<EndpointRecord>,
}

/// What [`NetManager::reconcile`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Cleanup {
    /// Endpoints of instances the daemon no longer knows.
    pub endpoints: Vec<String>,
    /// Links deleted (veths, taps, bridges).
    pub links: Vec<String>,
    /// Networks removed (prune only).
    pub networks: Vec<String>,
}

/// Creates, records and removes corral's networks and endpoints.
#[derive(Debug)]
pub struct NetManager<S: StateStore> {
    pub(crate) cfg: NetConfig,
    pub(crate) store: S,
    pub(crate) nl: Netlink,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name != "none"
        && name != "host"
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

impl<S: StateStore> NetManager<S> {
    /// A manager over `store` in the caller's network namespace (needs a tokio runtime).
    pub fn new(cfg: NetConfig, store: S) -> Result<Self, NetError> {
        Ok(NetManager {
            cfg,
            store,
            nl: Netlink::open()?,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &NetConfig {
        &self.cfg
    }

    /// Where the state is kept.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The recorded state.
    pub fn state(&self) -> Result<NetState, NetError> {
        Ok(self.store.load()?)
    }

    pub(crate) fn link_name(&self, kind: char, serial: u64) -> String {
        format!("{}{kind}{serial}", self.cfg.link_prefix)
    }

    /// Create network `name` with `subnet` (or a free one from the pool) and its bridge.
    pub async fn create_network(
        &self,
        name: &str,
        subnet: Option<Ipv4Net>,
    ) -> Result<NetworkRecord, NetError> {
        if !valid_name(name) {
            return Err(NetError::BadNetworkName(name.to_string()));
        }
        let routes = self.nl.ipv4_routes().await?;
        let record = self.store.update(|state| {
            if state.networks.contains_key(name) {
                return Err(NetError::NetworkExists(name.to_string()));
            }
            let taken = ipam::taken_subnets(state, &routes);
            let subnet = match subnet {
                Some(s) => ipam::check_subnet(s, &taken)?,
                None => ipam::choose_subnet_from(
                    self.cfg.pool,
                    self.cfg.subnet_prefix,
                    &taken,
                    self.cfg.subnet_start,
                )?,
            };
            let bridge = if name == DEFAULT_NETWORK {
                self.cfg.default_bridge.clone()
            } else {
                let serial = state.take_serial();
                self.link_name('b', serial)
            };
            let record = NetworkRecord {
                name: name.to_string(),
                subnet,
                gateway: ipam::gateway_of(subnet),
                bridge,
            };
            state.networks.insert(name.to_string(), record.clone());
            Ok(record)
        })?;
        if let Err(e) = self.bring_up(&record).await {
            tracing::warn!(network = name, error = %e, "network create failed; rolling back");
            self.forget_network(&record).await?;
            return Err(e);
        }
        tracing::info!(network = name, subnet = %record.subnet, bridge = record.bridge, "network created");
        Ok(record)
    }

    /// Create the bridge of `net` if missing, with its address, settings and rules.
    pub(crate) async fn bring_up(&self, net: &NetworkRecord) -> Result<u32, NetError> {
        let addr = Ipv4Net::new(net.gateway, net.subnet.prefix_len()).expect("valid prefix");
        let index = self.nl.ensure_bridge(&net.bridge, addr).await?;
        sysctl::configure_bridge(&net.bridge)?;
        self.sync_rules()?;
        Ok(index)
    }

    /// The network called `name`, created (for `default`) when absent.
    pub async fn network_or_default(&self, name: Option<&str>) -> Result<NetworkRecord, NetError> {
        let name = name.unwrap_or(DEFAULT_NETWORK);
        if let Some(n) = self.state()?.networks.get(name) {
            return Ok(n.clone());
        }
        if name != DEFAULT_NETWORK {
            return Err(NetError::NoSuchNetwork(name.to_string()));
        }
        match self.create_network(DEFAULT_NETWORK, None).await {
            // Another caller created it meanwhile.
            Err(NetError::NetworkExists(_)) => self
                .state()?
                .networks
                .get(name)
                .cloned()
                .ok_or_else(|| NetError::NoSuchNetwork(name.to_string())),
            other => other,
        }
    }

    async fn forget_network(&self, net: &NetworkRecord) -> Result<(), NetError> {
        self.nl.delete(&net.bridge).await?;
        self.store.update(|state| {
            state.networks.remove(&net.name);
            Ok::<_, NetError>(())
        })?;
        self.sync_rules()
    }

    /// Remove network `name`; refused while instances are on it.
    pub async fn remove_network(&self, name: &str) -> Result<(), NetError> {
        let state = self.state()?;
        let net = state
            .networks
            .get(name)
            .ok_or_else(|| NetError::NoSuchNetwork(name.to_string()))?;
        let users: Vec<String> = state
            .endpoints_on(name)
            .map(|e| e.instance.clone())
            .collect();
        if !users.is_empty() {
            return Err(NetError::NetworkInUse {
                network: name.to_string(),
                instances: users,
            });
        }
        self.forget_network(net).await?;
        tracing::info!(network = name, "network removed");
        Ok(())
    }

    /// Every network with its instances.
    pub fn networks(&self) -> Result<Vec<NetworkInfo>, NetError> {
        let state = self.state()?;
        Ok(state
            .networks
            .values()
            .map(|n| NetworkInfo {
                network: n.clone(),
                endpoints: state.endpoints_on(&n.name).cloned().collect(),
            })
            .collect())
    }

    /// One network with its instances.
    pub fn inspect(&self, name: &str) -> Result<NetworkInfo, NetError> {
        self.networks()?
            .into_iter()
            .find(|n| n.network.name == name)
            .ok_or_else(|| NetError::NoSuchNetwork(name.to_string()))
    }

    /// Whether link `name` exists on the host.
    pub async fn link_exists(&self, name: &str) -> bool {
        matches!(self.nl.link(name).await, Ok(Some(_)))
    }

    /// Make corral's nftables table match the state.
    pub fn sync_rules(&self) -> Result<(), NetError> {
        Ok(nft::apply(&self.cfg.nft_table, &self.state()?)?)
    }

    /// After a crash or restart: drop endpoints of instances not in `known`, delete every link
    /// with corral's prefix that the state does not account for, recreate missing bridges of
    /// recorded networks, and rewrite the nftables table.
    pub async fn reconcile(&self, known: &BTreeSet<String>) -> Result<Cleanup, NetError> {
        let mut cleanup = Cleanup::default();
        let stale: Vec<EndpointRecord> = self
            .state()?
            .endpoints
            .values()
            .filter(|e| !known.contains(&e.instance))
            .cloned()
            .collect();
        for ep in stale {
            if self.nl.delete(&ep.host_link).await? {
                cleanup.links.push(ep.host_link.clone());
            }
            self.store.update(|s| {
                s.endpoints.remove(&ep.instance);
                Ok::<_, NetError>(())
            })?;
            cleanup.endpoints.push(ep.instance);
        }
        let state = self.state()?;
        let mut wanted: BTreeSet<&str> = state
            .endpoints
            .values()
            .map(|e| e.host_link.as_str())
            .collect();
        wanted.extend(state.networks.values().map(|n| n.bridge.as_str()));
        for link in self.nl.links().await? {
            let ours = link.name.starts_with(&self.cfg.link_prefix)
                || link.name == self.cfg.default_bridge;
            if ours && !wanted.contains(link.name.as_str()) && self.nl.delete(&link.name).await? {
                cleanup.links.push(link.name);
            }
        }
        for net in state.networks.values() {
            self.bring_up(net).await?;
        }
        self.sync_rules()?;
        if cleanup != Cleanup::default() {
            tracing::info!(?cleanup, "removed leftovers");
        }
        Ok(cleanup)
    }

    /// [`Self::reconcile`], then remove every network no instance uses. With no known
    /// instances nothing of corral's stays on the host (its nftables table included).
    pub async fn prune(&self, known: &BTreeSet<String>) -> Result<Cleanup, NetError> {
        let mut cleanup = self.reconcile(known).await?;
        let state = self.state()?;
        for net in state.networks.values() {
            if state.endpoints_on(&net.name).next().is_none() {
                self.forget_network(net).await?;
                cleanup.links.push(net.bridge.clone());
                cleanup.networks.push(net.name.clone());
            }
        }
        Ok(cleanup)
    }
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn network_names() {
        assert!(valid_name("db-net_1.x"));
        for bad in ["", "none", "host", "Upper", "a b", &"x".repeat(33)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
