//! Networking for corral's VMs and containers: bridges, veth pairs, taps, IPAM, NAT and
//! published ports, through netlink and nftables. It does not know which workload uses a port.

pub mod kernel;
