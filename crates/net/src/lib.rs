//! Networking for corral's VMs and containers: bridges, veth pairs, taps, IPAM, NAT and
//! published ports, through netlink and nftables. It does not know which workload uses a port.
//!
//! The daemon holds one [`NetManager`]: networks are created with
//! [`NetManager::create_network`], containers plugged in with
//! [`NetManager::attach_container`], VMs with [`NetManager::attach_vm`], and both removed with
//! [`NetManager::detach`]; [`NetManager::reconcile`] after a restart removes leftovers.

pub mod attach;
pub mod dns;
pub mod ipam;
pub mod kernel;
pub mod links;
pub mod manager;
pub mod netns;
pub mod nft;
pub mod ports;
pub mod state;
pub mod sysctl;
pub mod tap;

pub use attach::{hosts_file, resolv_conf, AttachRequest, Attachment};
pub use links::Netns;
pub use manager::{Cleanup, NetConfig, NetError, NetManager, NetworkInfo, DEFAULT_NETWORK};
pub use ports::{PortMapping, PortSpecError, Protocol};
pub use state::{
    EndpointKind, EndpointRecord, FileStore, NetState, NetworkRecord, StateError, StateStore,
};
