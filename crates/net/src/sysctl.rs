//! Per-interface IPv4 settings under `/proc/sys/net/ipv4/conf/<link>/`, set on corral's bridges
//! only: the host's global settings are left alone.

use std::path::PathBuf;

/// A setting could not be written.
#[derive(Debug, thiserror::Error)]
#[error("sysctl {path}: {source}")]
pub struct SysctlError {
    /// The file under /proc/sys.
    pub path: PathBuf,
    /// The cause.
    pub source: std::io::Error,
}

/// Write `value` to `net.ipv4.conf.<link>.<key>`.
pub fn set_ipv4_conf(link: &str, key: &str, value: &str) -> Result<(), SysctlError> {
    let path = PathBuf::from(format!("/proc/sys/net/ipv4/conf/{link}/{key}"));
    std::fs::write(&path, value).map_err(|source| SysctlError { path, source })
}

/// Settings a corral bridge needs: `route_localnet` (DNAT from the host's 127.0.0.1 into the
/// bridge) and `forwarding` (instances reach beyond their bridge; isolation between networks is
/// done by nftables).
pub fn configure_bridge(bridge: &str) -> Result<(), SysctlError> {
    set_ipv4_conf(bridge, "route_localnet", "1")?;
    set_ipv4_conf(bridge, "forwarding", "1")
}
