//! The daemon's networking: one [`NetManager`] over the state database (corral-store's
//! [`NetStore`], which takes in an older root's `<root>/net/net.json` once), an embedded DNS
//! responder per network on its gateway (so instances reach each other by name), a network
//! namespace per container bound at `<run>/netns/<id>`, and the API's view of networks.
//!
//! Every host object is recorded before it is made (the net crate's rule) and keyed by the
//! instance id, so `teardown` of an instance, a failed create and [`Networking::startup`] after
//! a crash all find and remove it. Network operations run one at a time (`op`), so the
//! nftables table is always written from the latest state.

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};

use corral_api::{Network, NetworkAttachment, NetworkEndpoint, NetworkPruneResponse};
use corral_net::dns::{DnsServer, NameTable};
use corral_net::ipam::IpamError;
use corral_net::{
    netns, AttachRequest, Attachment, EndpointKind, EndpointRecord, NetError, NetManager,
    NetworkInfo, PortMapping, StateError, StateStore,
};
use corral_store::{Import, NetStore};
use ipnet::Ipv4Net;

use crate::config::DaemonConfig;
use crate::error::{ApiError, ApiResult};

/// A DNS responder and the names it serves.
#[derive(Debug)]
struct Responder {
    gateway: Ipv4Addr,
    table: NameTable,
    _server: DnsServer,
}

/// Everything network the daemon holds.
#[derive(Debug)]
pub struct Networking {
    mgr: NetManager<NetStore>,
    netns_dir: PathBuf,
    dns: tokio::sync::Mutex<HashMap<String, Responder>>,
    op: tokio::sync::Mutex<()>,
}

/// The API error for a network failure.
pub fn api_error(e: NetError) -> ApiError {
    match e {
        NetError::NoSuchNetwork(n) => ApiError::NotFound(format!(
            "no such network: {n} (see `corral network ls`, or create it with `corral network create {n}`)"
        )),
        NetError::BadNetworkName(_) => ApiError::invalid("name", e.to_string()),
        NetError::Ipam(IpamError::Overlap { .. } | IpamError::TooSmall { .. }) => {
            ApiError::invalid("subnet", e.to_string())
        }
        NetError::NetworkExists(_)
        | NetError::NetworkInUse { .. }
        | NetError::EndpointExists(_)
        | NetError::PortInUse { .. }
        | NetError::Ipam(_) => ApiError::Conflict(e.to_string()),
        other => ApiError::Internal(format!("network: {other}")),
    }
}

fn netns_error(e: netns::NetnsError) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// The API's view of an endpoint on a network with `prefix_len`.
fn wire_attachment(ep: &EndpointRecord, prefix_len: u8, gateway: Ipv4Addr) -> NetworkAttachment {
    NetworkAttachment {
        network: ep.network.clone(),
        ip: ep.ip.to_string(),
        prefix_len,
        gateway: gateway.to_string(),
        mac: corral_net::ipam::format_mac(ep.mac),
        host_link: ep.host_link.clone(),
        names: ep.names.clone(),
        ports: ep.ports.iter().map(|p| p.to_string()).collect(),
    }
}

/// The API's view of a network; `names` maps instance ids to names.
pub fn wire_network(info: &NetworkInfo, names: &HashMap<String, String>) -> Network {
    Network {
        name: info.network.name.clone(),
        subnet: info.network.subnet.to_string(),
        gateway: info.network.gateway.to_string(),
        bridge: info.network.bridge.clone(),
        endpoints: info
            .endpoints
            .iter()
            .map(|e| NetworkEndpoint {
                instance: e.instance.clone(),
                name: names.get(&e.instance).cloned(),
                kind: match e.kind {
                    EndpointKind::Veth => "veth".into(),
                    EndpointKind::Tap => "tap".into(),
                },
                ip: e.ip.to_string(),
                mac: corral_net::ipam::format_mac(e.mac),
                host_link: e.host_link.clone(),
                names: e.names.clone(),
                ports: e.ports.iter().map(|p| p.to_string()).collect(),
            })
            .collect(),
    }
}

impl Networking {
    /// The daemon's networking for `cfg` over the state database `db` (opens a netlink socket;
    /// needs a tokio runtime). An older root's `net.json` is imported first; one that cannot be
    /// read stops the start (starting without it could hand out its addresses again).
    pub fn new(cfg: &DaemonConfig, db: &Path) -> Result<Self, NetError> {
        let store = NetStore::open(db).map_err(StateError::from)?;
        match store.import_json(&cfg.net_dir())? {
            Import::NoFile => {}
            Import::Imported {
                networks,
                leases,
                renamed,
            } => tracing::info!(
                networks,
                leases,
                kept = %renamed.display(),
                "imported the network state into the state database"
            ),
            Import::AlreadyImported { renamed } => {
                tracing::info!(kept = %renamed.display(), "network state was already imported")
            }
        }
        Ok(Networking {
            mgr: NetManager::new(cfg.net.clone(), store)?,
            netns_dir: cfg.netns_dir(),
            dns: tokio::sync::Mutex::new(HashMap::new()),
            op: tokio::sync::Mutex::new(()),
        })
    }

    /// The network namespace file of instance `id`.
    pub fn netns_path(&self, id: &str) -> PathBuf {
        self.netns_dir.join(id)
    }

    /// After start-up recovery: with `known` the ids of every instance in the store, remove the
    /// endpoints, links and namespaces of the others, recreate missing bridges, rewrite the
    /// nftables table and start the DNS responders. A root that never used networking is left
    /// alone (so a fresh daemon touches nothing on the host).
    pub async fn startup(&self, known: &BTreeSet<String>) {
        let _op = self.op.lock().await;
        let recorded = self.mgr.store().recorded().unwrap_or_else(|e| {
            tracing::error!(error = %e, "reading the network state");
            true
        });
        if recorded {
            match self.mgr.reconcile(known).await {
                Ok(c) if c != corral_net::Cleanup::default() => {
                    tracing::warn!(?c, "removed network leftovers of a crash")
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "reconciling the network state"),
            }
        }
        for ns in self.orphan_namespaces(known) {
            tracing::warn!(netns = %ns.display(), "removing a leftover network namespace");
        }
        self.refresh_dns().await;
    }

    /// Remove namespace files of instances not in `known`; the removed paths.
    fn orphan_namespaces(&self, known: &BTreeSet<String>) -> Vec<PathBuf> {
        let mut removed = Vec::new();
        for name in netns::list(&self.netns_dir) {
            if known.contains(&name) {
                continue;
            }
            let path = self.netns_dir.join(&name);
            match netns::remove(&path) {
                Ok(_) => removed.push(path),
                Err(e) => tracing::warn!(error = %e, "removing a leftover network namespace"),
            }
        }
        removed
    }

    /// Make the DNS responders match the networks and their names.
    async fn refresh_dns(&self) {
        let state = match self.mgr.state() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "reading the network state for DNS");
                return;
            }
        };
        let mut dns = self.dns.lock().await;
        dns.retain(|name, r| {
            state
                .networks
                .get(name)
                .is_some_and(|n| n.gateway == r.gateway)
        });
        for net in state.networks.values() {
            if !dns.contains_key(&net.name) {
                let table = NameTable::default();
                let addr = SocketAddrV4::new(net.gateway, 53);
                match DnsServer::start(addr, table.clone()).await {
                    Ok(server) => {
                        dns.insert(
                            net.name.clone(),
                            Responder {
                                gateway: net.gateway,
                                table,
                                _server: server,
                            },
                        );
                    }
                    Err(e) => {
                        tracing::warn!(network = net.name, error = %e, "no DNS responder");
                        continue;
                    }
                }
            }
            let names = state
                .endpoints_on(&net.name)
                .flat_map(|e| e.names.iter().map(move |n| (n.clone(), e.ip)));
            dns[&net.name].table.replace(names);
        }
    }

    /// Where instance `id` is on the network, if anywhere.
    pub fn attachment(&self, id: &str) -> Option<NetworkAttachment> {
        let state = self.mgr.state().ok()?;
        let ep = state.endpoints.get(id)?;
        let net = state.networks.get(&ep.network)?;
        Some(wire_attachment(ep, net.subnet.prefix_len(), net.gateway))
    }

    /// Whether network `name` exists (`default` always does: it is made on demand).
    pub fn exists(&self, name: &str) -> ApiResult<bool> {
        let state = self.mgr.state().map_err(api_error)?;
        Ok(name == corral_net::DEFAULT_NETWORK || state.networks.contains_key(name))
    }

    /// Create network `name`.
    pub async fn create_network(&self, name: &str, subnet: Option<&str>) -> ApiResult<Network> {
        let subnet = subnet
            .map(|s| {
                s.parse::<Ipv4Net>().map_err(|_| {
                    ApiError::invalid(
                        "subnet",
                        format!("{s:?} is not an IPv4 CIDR like 10.213.5.0/24"),
                    )
                })
            })
            .transpose()?;
        let _op = self.op.lock().await;
        self.mgr
            .create_network(name, subnet)
            .await
            .map_err(api_error)?;
        self.refresh_dns().await;
        let info = self.mgr.inspect(name).map_err(api_error)?;
        Ok(wire_network(&info, &HashMap::new()))
    }

    /// Every network; `names` maps instance ids to names.
    pub fn list(&self, names: &HashMap<String, String>) -> ApiResult<Vec<Network>> {
        Ok(self
            .mgr
            .networks()
            .map_err(api_error)?
            .iter()
            .map(|i| wire_network(i, names))
            .collect())
    }

    /// One network.
    pub fn inspect(&self, name: &str, names: &HashMap<String, String>) -> ApiResult<Network> {
        let info = self.mgr.inspect(name).map_err(api_error)?;
        Ok(wire_network(&info, names))
    }

    /// Remove network `name` (refused while in use).
    pub async fn remove_network(&self, name: &str) -> ApiResult<()> {
        let _op = self.op.lock().await;
        self.mgr.remove_network(name).await.map_err(api_error)?;
        self.refresh_dns().await;
        Ok(())
    }

    /// Remove what instances not in `known` left, and every network nobody uses.
    pub async fn prune(&self, known: &BTreeSet<String>) -> ApiResult<NetworkPruneResponse> {
        let _op = self.op.lock().await;
        let c = self.mgr.prune(known).await.map_err(api_error)?;
        let namespaces = self
            .orphan_namespaces(known)
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        self.refresh_dns().await;
        Ok(NetworkPruneResponse {
            networks: c.networks,
            links: c.links,
            endpoints: c.endpoints,
            namespaces,
        })
    }

    /// Give instance `id` a network namespace at [`Self::netns_path`] plugged into `network`
    /// with `names` and `ports`. On failure nothing is left; `describe` turns another
    /// instance's id into words for errors (e.g. who holds a port).
    pub async fn attach_container(
        &self,
        id: &str,
        network: &str,
        names: Vec<String>,
        ports: Vec<PortMapping>,
        describe: impl Fn(&str) -> String,
    ) -> ApiResult<Attachment> {
        let _op = self.op.lock().await;
        let path = self.netns_path(id);
        let ns = netns::create(&path).map_err(netns_error)?;
        let req = AttachRequest {
            instance: id.to_string(),
            network: Some(network.to_string()),
            names,
            ports,
        };
        match self.mgr.attach_container(&req, &ns).await {
            Ok(a) => {
                self.refresh_dns().await;
                Ok(a)
            }
            Err(e) => {
                if let Err(e) = netns::remove(&path) {
                    tracing::warn!(error = %e, "removing the namespace of a failed attach");
                }
                Err(match e {
                    NetError::PortInUse { port, instance } => ApiError::Conflict(format!(
                        "port {port} is already published by {}",
                        describe(&instance)
                    )),
                    e => api_error(e),
                })
            }
        }
    }

    /// Give VM `id` a persistent tap on `network` (the VMM opens it by name).
    pub async fn attach_vm(
        &self,
        id: &str,
        network: &str,
        names: Vec<String>,
    ) -> ApiResult<Attachment> {
        let _op = self.op.lock().await;
        let req = AttachRequest {
            instance: id.to_string(),
            network: Some(network.to_string()),
            names,
            ports: vec![],
        };
        let a = self.mgr.attach_vm(&req).await.map_err(api_error)?;
        self.refresh_dns().await;
        Ok(a)
    }

    /// Whether container `id`'s namespace and host link are in place (both vanish with a host
    /// reboot, while the record stays).
    pub async fn is_plugged(&self, id: &str) -> bool {
        let Some(att) = self.attachment(id) else {
            return false;
        };
        netns::is_mounted(&self.netns_path(id)) && self.mgr.link_exists(&att.host_link).await
    }

    /// Remove instance `id` from its network: endpoint, links, rules, namespace. Idempotent.
    /// The `default` network goes with its last instance (it is made again on demand, as
    /// netavark does with podman's bridge), so a daemon with no instances leaves nothing on the
    /// host; named networks stay until `network rm`.
    pub async fn detach(&self, id: &str) -> ApiResult<()> {
        let _op = self.op.lock().await;
        let network = self.attachment(id).map(|a| a.network);
        let detached = self.mgr.detach(id).await.map_err(api_error)?;
        netns::remove(&self.netns_path(id)).map_err(netns_error)?;
        if network.as_deref() == Some(corral_net::DEFAULT_NETWORK) {
            match self.mgr.remove_network(corral_net::DEFAULT_NETWORK).await {
                Ok(()) | Err(NetError::NetworkInUse { .. } | NetError::NoSuchNetwork(_)) => {}
                Err(e) => tracing::warn!(error = %e, "removing the unused default network"),
            }
        }
        if detached {
            self.refresh_dns().await;
        }
        Ok(())
    }
}

/// Check that nobody on the host already listens on `p`'s host port (corral's own published
/// ports are DNAT rules, not sockets, and are checked by the net layer).
pub fn check_host_port(p: &PortMapping) -> ApiResult<()> {
    let ip = p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let addr = SocketAddrV4::new(ip, p.host_port);
    let res = match p.protocol {
        corral_net::Protocol::Tcp => std::net::TcpListener::bind(addr).map(drop),
        corral_net::Protocol::Udp => std::net::UdpSocket::bind(addr).map(drop),
    };
    match res {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(ApiError::Conflict(format!(
            "port {p}: {}:{} is already in use on the host",
            p.protocol.as_str(),
            p.host_port
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => Err(ApiError::invalid(
            "publish",
            format!("{p}: {ip} is not an address of this host"),
        )),
        Err(_) => Ok(()),
    }
}

/// A host port nobody listens on now (the kernel's choice for port 0), for `-P`.
pub fn free_host_port(udp: bool) -> ApiResult<u16> {
    let addr = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
    let port = if udp {
        std::net::UdpSocket::bind(addr).and_then(|s| s.local_addr())
    } else {
        std::net::TcpListener::bind(addr).and_then(|s| s.local_addr())
    };
    port.map(|a| a.port())
        .map_err(|e| ApiError::internal("choosing a free host port", e))
}

/// Write `text` to `dir/name` (the container's hosts/resolv.conf/hostname files).
pub fn write_file(dir: &Path, name: &str, text: &str) -> ApiResult<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text)
        .map_err(|e| ApiError::internal(format!("writing {}", path.display()), e))?;
    Ok(path)
}

/// What a VM needs from its tap attachment `a`.
fn tap_attachment(a: &Attachment) -> corral_api::TapAttachment {
    corral_api::TapAttachment {
        tap: a.host_link.clone(),
        ip: a.address.addr().to_string(),
        gateway: a.gateway.to_string(),
        netmask: a.address.netmask().to_string(),
        mac: a.mac.clone(),
        kernel_ip_arg: a.kernel_ip_arg(),
    }
}

/// For the VM path: a persistent tap for VM `id` on `network` (the one it already has when it
/// is on that network and the tap exists), with the guest's address, gateway and netmask. The
/// VMM opens the tap by name (`tap=NAME`); the guest takes `kernel_ip_arg` on its command line.
/// [`Networking::detach`] removes it with the VM.
pub async fn vm_tap(
    state: &crate::state::AppState,
    id: &str,
    network: &str,
    names: Vec<String>,
) -> ApiResult<corral_api::TapAttachment> {
    if !state.net.exists(network)? {
        return Err(api_error(NetError::NoSuchNetwork(network.to_string())));
    }
    if let Some(cur) = state.net.mgr.attachment_of(id).map_err(api_error)? {
        if cur.network == network && state.net.mgr.link_exists(&cur.host_link).await {
            return Ok(tap_attachment(&cur));
        }
        state.net.detach(id).await?;
    }
    let a = state.net.attach_vm(id, network, names).await?;
    Ok(tap_attachment(&a))
}
