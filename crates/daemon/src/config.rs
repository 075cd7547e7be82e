//! The daemon's configuration: where it keeps things and which programs it drives.

use std::path::{Path, PathBuf};

/// The root dir of the host's main corral, whose networking objects keep the plain names
/// (links `crl…`, bridge `corral0`, nftables table `corral`).
pub const DEFAULT_ROOT: &str = "/var/lib/corral";

/// The networking prefix of a daemon on another root dir (tests, a second installation):
/// `c` and 7 hex digits of the root path's FNV-1a hash, so two roots never touch each other's
/// links, bridge or nftables table.
pub fn root_net_prefix(root: &Path) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in root.as_os_str().as_encoded_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("c{:07x}", h & 0x0fff_ffff)
}

/// How to run the daemon.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Root dir: `state.db`, `containers/`, `vms/`, the API token, `daemon.log`.
    pub root: PathBuf,
    /// Run dir: `corral.sock`, the OCI runtime's state, VM control sockets.
    pub run: PathBuf,
    /// Also listen on this loopback TCP address (bearer token required).
    pub listen: Option<String>,
    /// The OCI runtime binary (runc's command line).
    pub oci_runtime: PathBuf,
    /// Arguments put before runc's own (e.g. `oci` when the runtime is `corral oci`).
    pub oci_runtime_args: Vec<String>,
    /// The corral executable, whose `shim` and `vmm` faces the daemon starts.
    pub corral_exe: PathBuf,
    /// Largest size of a container log file before it is rotated.
    pub log_max_bytes: u64,
    /// A file descriptor to write "ready\n" to once the socket accepts connections.
    pub ready_fd: Option<i32>,
    /// Names and address pool of the host networking objects this daemon owns (link prefix,
    /// default bridge, nftables table): one set per daemon on a host.
    pub net: corral_net::NetConfig,
    /// The build (git commit) of the executable, shown in `/v1/info`.
    pub build: String,
}

impl DaemonConfig {
    /// A configuration with defaults for everything but the two directories and the exe.
    pub fn new(root: PathBuf, run: PathBuf, corral_exe: PathBuf) -> Self {
        let mut cfg = DaemonConfig {
            root,
            run,
            listen: None,
            oci_runtime: corral_exe.clone(),
            oci_runtime_args: vec!["oci".into()],
            corral_exe,
            log_max_bytes: 10 << 20,
            ready_fd: None,
            net: corral_net::NetConfig::default(),
            build: "unknown".into(),
        };
        if cfg.root != Path::new(DEFAULT_ROOT) {
            let prefix = root_net_prefix(&cfg.root);
            cfg.set_net_prefix(&prefix);
            cfg.net.subnet_start = u32::from_str_radix(&prefix[1..], 16).unwrap_or(0);
        }
        cfg
    }

    /// Use `prefix` for every host networking object (links `<prefix>…`, default bridge
    /// `<prefix>0`, nftables table `<prefix>`), so several daemons (tests) share a host.
    pub fn set_net_prefix(&mut self, prefix: &str) {
        self.net.link_prefix = prefix.to_string();
        self.net.default_bridge = format!("{prefix}0");
        self.net.nft_table = prefix.to_string();
    }

    /// Where an older corral kept the network state (`net.json`, imported into `state.db` once).
    pub fn net_dir(&self) -> PathBuf {
        self.root.join("net")
    }

    /// Where containers' network namespaces are bound (`<id>` files).
    pub fn netns_dir(&self) -> PathBuf {
        self.run.join("netns")
    }

    /// The API's Unix socket.
    pub fn socket(&self) -> PathBuf {
        self.run.join("corral.sock")
    }

    /// The OCI runtime's state root.
    pub fn oci_root(&self) -> PathBuf {
        self.run.join("oci")
    }

    /// The folder of one container.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    /// The attach socket of a container's terminal, served by its shim (run dir, so the
    /// path stays short of the 108-byte socket limit; 128 bits of the id are unique enough).
    pub fn shim_socket(&self, id: &str) -> PathBuf {
        self.run
            .join("shims")
            .join(format!("{}.sock", &id[..32.min(id.len())]))
    }

    /// The folder of one VM.
    pub fn vm_dir(&self, name: &str) -> PathBuf {
        self.root.join("vms").join(name)
    }

    /// The control socket of a running VM.
    pub fn vm_socket(&self, name: &str) -> PathBuf {
        self.run.join("vms").join(format!("{name}.sock"))
    }

    /// The bearer token file for TCP clients.
    pub fn token_file(&self) -> PathBuf {
        self.root.join("api-token")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_roots_get_their_own_network_names() {
        let main = DaemonConfig::new(DEFAULT_ROOT.into(), "/run/corral".into(), "c".into());
        assert_eq!(main.net.default_bridge, "corral0");
        assert_eq!(main.net.nft_table, "corral");
        let a = DaemonConfig::new("/tmp/a/root".into(), "/tmp/a/run".into(), "c".into());
        let b = DaemonConfig::new("/tmp/b/root".into(), "/tmp/b/run".into(), "c".into());
        assert_ne!(a.net.link_prefix, b.net.link_prefix);
        assert_eq!(a.net.link_prefix.len(), 8);
        assert_eq!(a.net.default_bridge, format!("{}0", a.net.link_prefix));
        assert_eq!(a.net.link_prefix, root_net_prefix(Path::new("/tmp/a/root")));
    }
}
