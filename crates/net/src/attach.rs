//! Plugging instances into networks: a veth pair into a container's network namespace, or a
//! persistent tap a VMM opens by name; and unplugging them.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;

use crate::ipam::{self, format_mac};
use crate::links::{Netlink, Netns};
use crate::manager::{NetError, NetManager};
use crate::ports::PortMapping;
use crate::state::{EndpointKind, EndpointRecord, NetworkRecord, StateStore};
use crate::tap;

/// Name of the container's interface.
pub const CONTAINER_IFNAME: &str = "eth0";

/// What an instance asks of the network.
#[derive(Debug, Clone, Default)]
pub struct AttachRequest {
    /// The instance's id.
    pub instance: String,
    /// The network (`None`: the default network).
    pub network: Option<String>,
    /// Names it answers to on the network (its name, service aliases).
    pub names: Vec<String>,
    /// Ports to publish.
    pub ports: Vec<PortMapping>,
}

/// An instance's place on its network.
#[derive(Debug, Clone, Serialize)]
pub struct Attachment {
    /// The network's name.
    pub network: String,
    /// The instance's address and prefix length.
    pub address: Ipv4Net,
    /// The gateway (and DNS server).
    pub gateway: Ipv4Addr,
    /// Its MAC address.
    pub mac: String,
    /// The host-side link: the veth's host end or the tap to open.
    pub host_link: String,
}

impl Attachment {
    fn new(net: &NetworkRecord, ep: &EndpointRecord) -> Self {
        Attachment {
            network: net.name.clone(),
            address: Ipv4Net::new(ep.ip, net.subnet.prefix_len()).expect("valid prefix"),
            gateway: net.gateway,
            mac: format_mac(ep.mac),
            host_link: ep.host_link.clone(),
        }
    }

    /// The kernel's `ip=` argument configuring a VM's `eth0` statically.
    pub fn kernel_ip_arg(&self) -> String {
        format!(
            "ip={}::{}:{}::eth0:off",
            self.address.addr(),
            self.gateway,
            self.address.netmask()
        )
    }
}

impl<S: StateStore> NetManager<S> {
    /// Record an endpoint for `req` on its network with a fresh address and host link name.
    async fn reserve(
        &self,
        req: &AttachRequest,
        kind: EndpointKind,
    ) -> Result<(NetworkRecord, EndpointRecord), NetError> {
        let net = self.network_or_default(req.network.as_deref()).await?;
        let ep = self.store.update(|state| {
            if state.endpoints.contains_key(&req.instance) {
                return Err(NetError::EndpointExists(req.instance.clone()));
            }
            for p in &req.ports {
                let clash = state.endpoints.values().find(|e| {
                    e.ports.iter().any(|q| {
                        q.host_port == p.host_port
                            && q.protocol == p.protocol
                            && (q.host_ip.is_none()
                                || p.host_ip.is_none()
                                || q.host_ip == p.host_ip)
                    })
                });
                if let Some(e) = clash {
                    return Err(NetError::PortInUse {
                        port: *p,
                        instance: e.instance.clone(),
                    });
                }
            }
            let net = state
                .networks
                .get(&net.name)
                .ok_or_else(|| NetError::NoSuchNetwork(net.name.clone()))?
                .clone();
            let ip = ipam::allocate_ip(state, &net)?;
            let serial = state.take_serial();
            let ep = EndpointRecord {
                instance: req.instance.clone(),
                network: net.name.clone(),
                ip,
                mac: ipam::mac_for(ip),
                kind,
                host_link: self
                    .link_name(if kind == EndpointKind::Tap { 't' } else { 'v' }, serial),
                names: req.names.iter().map(|n| n.to_ascii_lowercase()).collect(),
                ports: req.ports.clone(),
            };
            state.endpoints.insert(req.instance.clone(), ep.clone());
            Ok(ep)
        })?;
        Ok((net, ep))
    }

    /// Undo a half-made endpoint, keeping the first error.
    async fn roll_back(&self, ep: &EndpointRecord, err: NetError) -> NetError {
        tracing::warn!(instance = ep.instance, error = %err, "attach failed; rolling back");
        if let Err(e) = self.detach(&ep.instance).await {
            tracing::error!(instance = ep.instance, error = %e, "roll back failed; reconcile will retry");
        }
        err
    }

    /// Plug a container whose network namespace is `ns` into its network: a veth pair, the
    /// inner end named `eth0` with the address, `lo` up and a default route via the gateway.
    pub async fn attach_container(
        &self,
        req: &AttachRequest,
        ns: &Netns,
    ) -> Result<Attachment, NetError> {
        let (net, ep) = self.reserve(req, EndpointKind::Veth).await?;
        match self.plug_veth(&net, &ep, ns).await {
            Ok(()) => Ok(Attachment::new(&net, &ep)),
            Err(e) => Err(self.roll_back(&ep, e).await),
        }
    }

    async fn plug_veth(
        &self,
        net: &NetworkRecord,
        ep: &EndpointRecord,
        ns: &Netns,
    ) -> Result<(), NetError> {
        let bridge = self.bring_up(net).await?;
        let peer = format!("{}p", ep.host_link);
        self.nl.create_veth(&ep.host_link, &peer).await?;
        let host = self.nl.index(&ep.host_link).await?;
        self.nl.set_controller(host, bridge, &ep.host_link).await?;
        self.nl.set_up(host, &ep.host_link).await?;
        let peer_index = self.nl.index(&peer).await?;
        self.nl.move_to(peer_index, ns, &peer).await?;

        let inner = Netlink::open_in(ns)?;
        let idx = inner.index(&peer).await?;
        inner.rename(idx, CONTAINER_IFNAME).await?;
        inner.set_mac(idx, ep.mac, CONTAINER_IFNAME).await?;
        let addr = Ipv4Net::new(ep.ip, net.subnet.prefix_len()).expect("valid prefix");
        inner.add_address(idx, addr, CONTAINER_IFNAME).await?;
        inner.set_up(idx, CONTAINER_IFNAME).await?;
        let lo = inner.index("lo").await?;
        inner.set_up(lo, "lo").await?;
        inner.add_default_route(net.gateway).await?;
        self.sync_rules()?;
        tracing::info!(instance = ep.instance, ip = %ep.ip, link = ep.host_link, "container attached");
        Ok(())
    }

    /// Give a VM a persistent tap on its network; the VMM opens [`Attachment::host_link`] with
    /// [`tap::open_tap`] and the guest uses [`Attachment::mac`] and
    /// [`Attachment::kernel_ip_arg`].
    pub async fn attach_vm(&self, req: &AttachRequest) -> Result<Attachment, NetError> {
        let (net, ep) = self.reserve(req, EndpointKind::Tap).await?;
        match self.plug_tap(&net, &ep).await {
            Ok(()) => Ok(Attachment::new(&net, &ep)),
            Err(e) => Err(self.roll_back(&ep, e).await),
        }
    }

    async fn plug_tap(&self, net: &NetworkRecord, ep: &EndpointRecord) -> Result<(), NetError> {
        let bridge = self.bring_up(net).await?;
        tap::create_persistent_tap(&ep.host_link)?;
        let idx = self.nl.index(&ep.host_link).await?;
        self.nl.set_controller(idx, bridge, &ep.host_link).await?;
        self.nl.set_up(idx, &ep.host_link).await?;
        self.sync_rules()?;
        tracing::info!(instance = ep.instance, ip = %ep.ip, tap = ep.host_link, "vm attached");
        Ok(())
    }

    /// Unplug `instance`: delete its host link (a veth's other end goes with it), forget its
    /// address and remove its published ports. `false` when it had no endpoint.
    pub async fn detach(&self, instance: &str) -> Result<bool, NetError> {
        let Some(ep) = self.state()?.endpoints.get(instance).cloned() else {
            return Ok(false);
        };
        self.nl.delete(&ep.host_link).await?;
        self.store.update(|s| {
            s.endpoints.remove(instance);
            Ok::<_, NetError>(())
        })?;
        self.sync_rules()?;
        tracing::info!(instance, "detached");
        Ok(true)
    }

    /// Where `instance` is plugged in, if anywhere.
    pub fn attachment_of(&self, instance: &str) -> Result<Option<Attachment>, NetError> {
        let state = self.state()?;
        Ok(state.endpoints.get(instance).and_then(|ep| {
            state
                .networks
                .get(&ep.network)
                .map(|net| Attachment::new(net, ep))
        }))
    }

    /// Name → address of every instance on `network` (what its DNS responder serves).
    pub fn names(&self, network: &str) -> Result<Vec<(String, Ipv4Addr)>, NetError> {
        let state = self.state()?;
        Ok(state
            .endpoints_on(network)
            .flat_map(|e| e.names.iter().map(move |n| (n.clone(), e.ip)))
            .collect())
    }
}

/// `/etc/hosts` for a container: localhost, itself, and (for resolvers that skip DNS) its peers.
pub fn hosts_file(hostname: &str, ip: Ipv4Addr, peers: &[(String, Ipv4Addr)]) -> String {
    let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str(&format!("{ip}\t{hostname}\n"));
    for (name, addr) in peers {
        if name != hostname {
            out.push_str(&format!("{addr}\t{name}\n"));
        }
    }
    out
}

/// `/etc/resolv.conf` for a container: corral's responder on the gateway first, then the
/// host's own non-loopback servers (the responder answers REFUSED for names it does not hold,
/// so the resolver moves on to them).
pub fn resolv_conf(gateway: Ipv4Addr, host_resolv_conf: &str) -> String {
    let mut out = format!("nameserver {gateway}\n");
    for line in host_resolv_conf.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("nameserver"), Some(addr)) => {
                let loopback = addr
                    .parse::<std::net::IpAddr>()
                    .map(|a| a.is_loopback())
                    .unwrap_or(true);
                if !loopback {
                    out.push_str(&format!("nameserver {addr}\n"));
                }
            }
            (Some("search"), Some(_)) | (Some("options"), Some(_)) => {
                out.push_str(line.trim());
                out.push('\n');
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_resolv() {
        let ip: Ipv4Addr = "10.213.0.2".parse().unwrap();
        let peers = vec![
            ("db".to_string(), "10.213.0.3".parse().unwrap()),
            ("web".to_string(), ip),
        ];
        let h = hosts_file("web", ip, &peers);
        assert!(h.contains("10.213.0.2\tweb\n"));
        assert!(h.contains("10.213.0.3\tdb\n"));
        assert_eq!(h.matches("web").count(), 1);
        let r = resolv_conf(
            "10.213.0.1".parse().unwrap(),
            "nameserver 127.0.0.53\nnameserver 9.9.9.9\nsearch lan\n# c\n",
        );
        assert_eq!(r, "nameserver 10.213.0.1\nnameserver 9.9.9.9\nsearch lan\n");
    }

    #[test]
    fn kernel_ip_argument() {
        let a = Attachment {
            network: "default".into(),
            address: "10.213.0.5/24".parse().unwrap(),
            gateway: "10.213.0.1".parse().unwrap(),
            mac: "02:c0:0a:d5:00:05".into(),
            host_link: "crlt3".into(),
        };
        assert_eq!(
            a.kernel_ip_arg(),
            "ip=10.213.0.5::10.213.0.1:255.255.255.0::eth0:off"
        );
    }
}
