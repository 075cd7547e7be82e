//! Which networking features the running kernel has: read from `/proc/config.gz` when the
//! kernel exposes its configuration, otherwise from `/sys/module` and `/dev`.

use std::fs;
use std::io::Read;
use std::path::Path;

use serde::Serialize;

/// Networking features corral relies on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetFeatures {
    /// `/dev/net/tun` exists (taps for VMs).
    pub tun: bool,
    /// Linux bridges.
    pub bridge: bool,
    /// veth pairs.
    pub veth: bool,
    /// nf_tables with NAT (published ports).
    pub nftables: bool,
}

impl NetFeatures {
    /// Probe the tree rooted at `root`.
    pub fn probe(root: &Path) -> Self {
        let config = KernelConfig::read(root);
        let has = |option: &str, module: &str| {
            config.as_ref().map(|c| c.enabled(option)).unwrap_or(false)
                || root.join("sys/module").join(module).exists()
        };
        NetFeatures {
            tun: root.join("dev/net/tun").exists(),
            bridge: has("CONFIG_BRIDGE", "bridge"),
            veth: has("CONFIG_VETH", "veth"),
            nftables: has("CONFIG_NF_TABLES", "nf_tables") && has("CONFIG_NFT_NAT", "nft_nat"),
        }
    }
}

/// The kernel's build configuration (`CONFIG_…=y|m`).
#[derive(Debug, Clone, Default)]
pub struct KernelConfig {
    text: String,
}

impl KernelConfig {
    /// Read `<root>/proc/config.gz`; `None` when the kernel does not expose it.
    pub fn read(root: &Path) -> Option<Self> {
        let compressed = fs::read(root.join("proc/config.gz")).ok()?;
        let mut text = String::new();
        flate2::read::GzDecoder::new(&compressed[..])
            .read_to_string(&mut text)
            .ok()?;
        Some(KernelConfig { text })
    }

    /// Whether `option` is built in or a module.
    pub fn enabled(&self, option: &str) -> bool {
        self.text.lines().any(|line| {
            line.strip_prefix(option)
                .and_then(|rest| rest.strip_prefix('='))
                .is_some_and(|v| v == "y" || v == "m")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_config_gz_and_dev_tun() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("proc")).unwrap();
        fs::create_dir_all(dir.path().join("dev/net")).unwrap();
        fs::write(dir.path().join("dev/net/tun"), "").unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(
            b"CONFIG_BRIDGE=y\nCONFIG_VETH=m\n# CONFIG_NF_TABLES is not set\nCONFIG_NFT_NAT=y\n",
        )
        .unwrap();
        fs::write(dir.path().join("proc/config.gz"), gz.finish().unwrap()).unwrap();
        let f = NetFeatures::probe(dir.path());
        assert_eq!(
            f,
            NetFeatures {
                tun: true,
                bridge: true,
                veth: true,
                nftables: false
            }
        );
    }

    #[test]
    fn falls_back_to_sys_module() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("sys/module/bridge")).unwrap();
        let f = NetFeatures::probe(dir.path());
        assert!(f.bridge && !f.veth && !f.tun);
    }
}
