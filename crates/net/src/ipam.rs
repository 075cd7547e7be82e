//! Address management: which subnet a network gets and which address an instance gets.
//!
//! Pure functions over [`NetState`]; the manager calls them inside one
//! [`crate::state::StateStore::update`], so two allocations never race and an address stays
//! taken across restarts for as long as its endpoint is recorded.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::state::{NetState, NetworkRecord};

/// The pool corral carves network subnets from by default: rarely used by home routers, VPNs,
/// Docker (172.17/16…), Podman (10.88/16) or libvirt (192.168.122/24).
pub const DEFAULT_POOL: &str = "10.213.0.0/16";
/// Prefix length of a subnet carved from the pool.
pub const DEFAULT_PREFIX: u8 = 24;

/// Why an address or subnet could not be handed out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    /// The requested subnet overlaps a route of the host or another network.
    #[error("subnet {subnet} overlaps {other} ({owner})")]
    Overlap {
        /// The requested subnet.
        subnet: Ipv4Net,
        /// What it overlaps.
        other: Ipv4Net,
        /// Who owns `other`: "a host route" or "network NAME".
        owner: String,
    },
    /// The subnet is too small to hold a gateway and one instance.
    #[error("subnet {subnet} is too small (needs at least a /30)")]
    TooSmall {
        /// The requested subnet.
        subnet: Ipv4Net,
    },
    /// Every subnet of the pool is taken.
    #[error("no free /{prefix} left in pool {pool}")]
    PoolExhausted {
        /// The pool.
        pool: Ipv4Net,
        /// The prefix length asked for.
        prefix: u8,
    },
    /// Every address of the network is taken.
    #[error("network {network} ({subnet}) has no free address")]
    NetworkFull {
        /// The network.
        network: String,
        /// Its subnet.
        subnet: Ipv4Net,
    },
}

/// Subnets already in use and who uses them.
pub fn taken_subnets(state: &NetState, host_routes: &[Ipv4Net]) -> Vec<(Ipv4Net, String)> {
    let mut taken: Vec<(Ipv4Net, String)> = state
        .networks
        .values()
        .map(|n| (n.subnet, format!("network {}", n.name)))
        .collect();
    let ours: Vec<Ipv4Net> = taken.iter().map(|t| t.0).collect();
    taken.extend(
        host_routes
            .iter()
            // The default route overlaps everything and the bridges' own routes are ours.
            .filter(|r| r.prefix_len() > 0 && !ours.contains(r))
            .map(|r| (*r, "a host route".to_string())),
    );
    taken
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Refuse `subnet` when it is too small or overlaps anything `taken`.
pub fn check_subnet(subnet: Ipv4Net, taken: &[(Ipv4Net, String)]) -> Result<Ipv4Net, IpamError> {
    let subnet = subnet.trunc();
    if subnet.prefix_len() > 30 {
        return Err(IpamError::TooSmall { subnet });
    }
    match taken.iter().find(|(t, _)| overlaps(&subnet, t)) {
        Some((other, owner)) => Err(IpamError::Overlap {
            subnet,
            other: *other,
            owner: owner.clone(),
        }),
        None => Ok(subnet),
    }
}

/// The first `/prefix` of `pool` that overlaps nothing `taken`.
pub fn choose_subnet(
    pool: Ipv4Net,
    prefix: u8,
    taken: &[(Ipv4Net, String)],
) -> Result<Ipv4Net, IpamError> {
    choose_subnet_from(pool, prefix, taken, 0)
}

/// The first `/prefix` of `pool`, trying them in order from the `start`-th (wrapping round),
/// that overlaps nothing `taken`. Daemons on different roots start at different places, so two
/// that create a network at the same moment do not pick the same subnet.
pub fn choose_subnet_from(
    pool: Ipv4Net,
    prefix: u8,
    taken: &[(Ipv4Net, String)],
    start: u32,
) -> Result<Ipv4Net, IpamError> {
    let exhausted = IpamError::PoolExhausted { pool, prefix };
    let all: Vec<Ipv4Net> = pool
        .subnets(prefix)
        .map_err(|_| exhausted.clone())?
        .collect();
    if all.is_empty() {
        return Err(exhausted);
    }
    let first = start as usize % all.len();
    all[first..]
        .iter()
        .chain(&all[..first])
        .find(|c| check_subnet(**c, taken).is_ok())
        .copied()
        .ok_or(exhausted)
}

/// The gateway of a subnet: its first host address.
pub fn gateway_of(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + 1)
}

/// The lowest free address of `network` (not the gateway, not taken by an endpoint).
pub fn allocate_ip(state: &NetState, network: &NetworkRecord) -> Result<Ipv4Addr, IpamError> {
    let used: Vec<Ipv4Addr> = state.endpoints_on(&network.name).map(|e| e.ip).collect();
    network
        .subnet
        .hosts()
        .find(|ip| *ip != network.gateway && !used.contains(ip))
        .ok_or_else(|| IpamError::NetworkFull {
            network: network.name.clone(),
            subnet: network.subnet,
        })
}

/// A locally administered MAC derived from the address, so it is unique on the network.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0xc0, o[0], o[1], o[2], o[3]]
}

/// Format a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{EndpointKind, EndpointRecord};

    fn net(name: &str, subnet: &str) -> NetworkRecord {
        let subnet: Ipv4Net = subnet.parse().unwrap();
        NetworkRecord {
            name: name.into(),
            subnet,
            gateway: gateway_of(subnet),
            bridge: format!("br-{name}"),
        }
    }

    #[test]
    fn skips_subnets_of_host_routes_and_other_networks() {
        let mut state = NetState::default();
        state.networks.insert("a".into(), net("a", "10.213.0.0/24"));
        let routes: Vec<Ipv4Net> = vec![
            "0.0.0.0/0".parse().unwrap(),
            "10.213.1.128/25".parse().unwrap(),
            "10.213.0.0/24".parse().unwrap(),
        ];
        let taken = taken_subnets(&state, &routes);
        let pool = DEFAULT_POOL.parse().unwrap();
        assert_eq!(
            choose_subnet(pool, 24, &taken).unwrap(),
            "10.213.2.0/24".parse::<Ipv4Net>().unwrap()
        );
        assert_eq!(
            choose_subnet_from(pool, 24, &taken, 255).unwrap(),
            "10.213.255.0/24".parse::<Ipv4Net>().unwrap()
        );
        assert_eq!(
            choose_subnet_from(pool, 24, &taken, 256 + 1).unwrap(),
            "10.213.2.0/24".parse::<Ipv4Net>().unwrap(),
            "wraps round and skips taken ones"
        );
        let err = check_subnet("10.213.1.0/24".parse().unwrap(), &taken).unwrap_err();
        assert!(err.to_string().contains("a host route"), "{err}");
        let err = check_subnet("10.213.0.64/26".parse().unwrap(), &taken).unwrap_err();
        assert!(err.to_string().contains("network a"), "{err}");
        assert!(matches!(
            check_subnet("10.9.9.0/31".parse().unwrap(), &[]),
            Err(IpamError::TooSmall { .. })
        ));
        let tiny: Ipv4Net = "10.213.0.0/24".parse().unwrap();
        assert!(matches!(
            choose_subnet(tiny, 24, &taken),
            Err(IpamError::PoolExhausted { .. })
        ));
    }

    #[test]
    fn allocates_lowest_free_and_reports_full() {
        let mut state = NetState::default();
        let n = net("a", "10.213.0.0/30");
        state.networks.insert("a".into(), n.clone());
        let ip = allocate_ip(&state, &n).unwrap();
        assert_eq!(ip, "10.213.0.2".parse::<Ipv4Addr>().unwrap());
        state.endpoints.insert(
            "x".into(),
            EndpointRecord {
                instance: "x".into(),
                network: "a".into(),
                ip,
                mac: mac_for(ip),
                kind: EndpointKind::Veth,
                host_link: "v".into(),
                names: vec![],
                ports: vec![],
            },
        );
        assert!(matches!(
            allocate_ip(&state, &n),
            Err(IpamError::NetworkFull { .. })
        ));
        assert_eq!(format_mac(mac_for(ip)), "02:c0:0a:d5:00:02");
    }
}
