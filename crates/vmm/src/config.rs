//! `vm.toml`: the one VM definition that drives every backend (`corral vm run --config`,
//! `corral vmm --config`, and the daemon's `vms/<name>/vm.toml`).
//!
//! ```toml
//! cpus = 2
//! memory = "256M"
//! kernel = "/var/lib/corral/kernels/vmlinux"
//! initrd = "initrd.cpio"
//! cmdline = "console=ttyS0"
//! accel = "auto"          # auto | kvm | emu
//! serial = "stdio"        # stdio | file:PATH | none
//! [[disk]]
//! path = "root.img"
//! read_only = false
//! [net]
//! tap = "corral0"
//! mac = "52:54:00:12:34:56"   # default: derived from the tap name
//! [vsock]
//! cid = 3
//! uds_path = "vsock.sock"     # default: vsock.sock beside this file
//! [balloon]
//! target_mib = 0
//! stats_interval_s = 5
//! deflate_on_oom = false
//! ```

use std::path::{Path, PathBuf};

use corral_devices::virtio::net;
use serde::{Deserialize, Serialize};

use crate::accel::Accel;
use crate::boot::BootProtocol;

/// Errors reading or validating a VM definition.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("VM config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for a VM.
    #[error("VM config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A field has a bad value.
    #[error("{field}: {message}")]
    Invalid {
        /// The field, as in vm.toml or the flag.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// A virtio-blk disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    /// Raw image file.
    pub path: PathBuf,
    /// Attach read-only.
    #[serde(default)]
    pub read_only: bool,
}

impl DiskConfig {
    /// Parse the `--disk PATH[,ro]` flag.
    pub fn parse_flag(s: &str) -> Result<Self, ConfigError> {
        let (path, ro) = match s.rsplit_once(',') {
            Some((p, "ro")) => (p, true),
            Some((p, "rw")) => (p, false),
            Some((_, opt)) => {
                return Err(ConfigError::Invalid {
                    field: "--disk",
                    message: format!("unknown option {opt:?} (expected ro or rw)"),
                })
            }
            None => (s, false),
        };
        if path.is_empty() {
            return Err(ConfigError::Invalid {
                field: "--disk",
                message: "empty path".into(),
            });
        }
        Ok(DiskConfig {
            path: path.into(),
            read_only: ro,
        })
    }
}

/// A virtio-net NIC on an existing tap device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    /// Tap interface name.
    pub tap: String,
    /// Guest MAC address (default: derived from the tap name).
    #[serde(default)]
    pub mac: Option<String>,
}

impl NetConfig {
    /// Parse the `--net` flag's NIC form: `tap=NAME[,mac=AA:BB:CC:DD:EE:FF]`.
    pub fn parse_flag(s: &str) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            field: "--net",
            message,
        };
        let (mut tap, mut mac) = (None, None);
        for part in s.split(',') {
            match part.split_once('=') {
                Some(("tap", v)) if !v.is_empty() => tap = Some(v.to_owned()),
                Some(("mac", v)) if !v.is_empty() => mac = Some(v.to_owned()),
                _ => {
                    return Err(invalid(format!(
                        "{s:?}: expected tap=NAME[,mac=AA:BB:CC:DD:EE:FF] or none"
                    )))
                }
            }
        }
        let tap = tap.ok_or_else(|| invalid(format!("{s:?}: tap=NAME is missing")))?;
        let cfg = NetConfig { tap, mac };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The guest's MAC: the configured one, or one derived from the tap name.
    pub fn mac_address(&self) -> Result<net::Mac, ConfigError> {
        match &self.mac {
            None => Ok(net::derive_mac(&self.tap)),
            Some(m) => net::parse_mac(m).ok_or_else(|| ConfigError::Invalid {
                field: "net.mac",
                message: format!("{m:?} is not a unicast MAC address like 52:54:00:12:34:56"),
            }),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !net::tap::valid_ifname(&self.tap) {
            return Err(ConfigError::Invalid {
                field: "net.tap",
                message: format!(
                    "{:?} is not an interface name (1 to 15 bytes, no '/', ':' or spaces)",
                    self.tap
                ),
            });
        }
        self.mac_address().map(|_| ())
    }
}

/// A virtio-vsock device; the host side is a Unix socket (Firecracker's hybrid vsock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VsockConfig {
    /// Guest context ID (>= 3).
    pub cid: u32,
    /// Host Unix socket path (default: `vsock.sock` beside the vm.toml, or
    /// `$TMPDIR/corral-vsock-<pid>.sock` for a VM defined by flags only).
    #[serde(default)]
    pub uds_path: Option<PathBuf>,
}

impl VsockConfig {
    /// Parse the `--vsock CID[,uds=PATH]` flag.
    pub fn parse_flag(s: &str) -> Result<Self, ConfigError> {
        let invalid = || ConfigError::Invalid {
            field: "--vsock",
            message: format!("{s:?}: expected CID[,uds=PATH] with a CID of 3 or more"),
        };
        let (cid, rest) = s.split_once(',').map_or((s, None), |(c, r)| (c, Some(r)));
        let cid = cid.parse::<u32>().map_err(|_| invalid())?;
        let uds_path = match rest {
            None => None,
            Some(r) => match r.strip_prefix("uds=") {
                Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
                _ => return Err(invalid()),
            },
        };
        Ok(VsockConfig { cid, uds_path })
    }

    /// The host socket path, with the default for VMs defined by flags only.
    pub fn socket_path(&self) -> PathBuf {
        self.uds_path.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("corral-vsock-{}.sock", std::process::id()))
        })
    }
}

/// A virtio-balloon device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalloonConfig {
    /// Initial target in MiB.
    #[serde(default)]
    pub target_mib: u32,
    /// Seconds between guest statistics updates (0 = off).
    #[serde(default)]
    pub stats_interval_s: u32,
    /// Let the guest take pages back from the balloon when it runs out of memory instead of
    /// killing processes (the guest then keeps its MemTotal and counts ballooned pages as used).
    #[serde(default)]
    pub deflate_on_oom: bool,
}

/// Where the serial console goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SerialConfig {
    /// This process's stdin/stdout.
    #[default]
    Stdio,
    /// Append to a file.
    File(PathBuf),
    /// Nowhere (the port still exists).
    None,
}

impl std::str::FromStr for SerialConfig {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "stdio" => Ok(SerialConfig::Stdio),
            "none" => Ok(SerialConfig::None),
            _ => match s.strip_prefix("file:") {
                Some(p) if !p.is_empty() => Ok(SerialConfig::File(p.into())),
                _ => Err(ConfigError::Invalid {
                    field: "serial",
                    message: format!("{s:?}: expected stdio, file:PATH or none"),
                }),
            },
        }
    }
}

impl std::fmt::Display for SerialConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SerialConfig::Stdio => f.write_str("stdio"),
            SerialConfig::File(p) => write!(f, "file:{}", p.display()),
            SerialConfig::None => f.write_str("none"),
        }
    }
}

impl Serialize for SerialConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SerialConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn default_cpus() -> u8 {
    1
}

fn default_memory() -> String {
    "256M".into()
}

/// A VM definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// Number of vCPUs (1..=64).
    #[serde(default = "default_cpus")]
    pub cpus: u8,
    /// Guest memory, e.g. "256M", "1G", or a number of bytes.
    #[serde(default = "default_memory")]
    pub memory: String,
    /// Kernel image (ELF vmlinux or bzImage).
    pub kernel: PathBuf,
    /// Initial ramdisk.
    #[serde(default)]
    pub initrd: Option<PathBuf>,
    /// Kernel command line (corral appends its virtio-mmio devices).
    #[serde(default)]
    pub cmdline: Option<String>,
    /// CPU backend.
    #[serde(default)]
    pub accel: Accel,
    /// Entry protocol.
    #[serde(default)]
    pub boot_protocol: BootProtocol,
    /// Serial console.
    #[serde(default)]
    pub serial: SerialConfig,
    /// Disks, in order (vda, vdb, …).
    #[serde(default, rename = "disk")]
    pub disks: Vec<DiskConfig>,
    /// Network interface.
    #[serde(default)]
    pub net: Option<NetConfig>,
    /// vsock device.
    #[serde(default)]
    pub vsock: Option<VsockConfig>,
    /// Balloon device.
    #[serde(default)]
    pub balloon: Option<BalloonConfig>,
    /// Add a virtio-rng device (default on).
    #[serde(default = "default_true")]
    pub rng: bool,
}

fn default_true() -> bool {
    true
}

/// The command line used when none is given.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=k panic=-1";

impl VmConfig {
    /// A minimal definition around a kernel.
    pub fn new(kernel: PathBuf) -> Self {
        VmConfig {
            cpus: 1,
            memory: default_memory(),
            kernel,
            initrd: None,
            cmdline: None,
            accel: Accel::Auto,
            boot_protocol: BootProtocol::Auto,
            serial: SerialConfig::Stdio,
            disks: Vec::new(),
            net: None,
            vsock: None,
            balloon: None,
            rng: true,
        }
    }

    /// Read a vm.toml; relative paths in it are relative to the file's folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg: VmConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.message().to_owned(),
        })?;
        if let Some(dir) = path.parent() {
            let fix = |p: &mut PathBuf| {
                if p.is_relative() {
                    *p = dir.join(&*p);
                }
            };
            fix(&mut cfg.kernel);
            if let Some(i) = cfg.initrd.as_mut() {
                fix(i);
            }
            cfg.disks.iter_mut().for_each(|d| fix(&mut d.path));
            if let Some(v) = cfg.vsock.as_mut() {
                let p = v.uds_path.get_or_insert_with(|| "vsock.sock".into());
                fix(p);
            }
        }
        Ok(cfg)
    }

    /// Guest memory in bytes.
    pub fn memory_bytes(&self) -> Result<u64, ConfigError> {
        parse_size(&self.memory).ok_or_else(|| ConfigError::Invalid {
            field: "memory",
            message: format!("{:?} is not a size like 256M or 1G", self.memory),
        })
    }

    /// Check values that need no host access.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cpus == 0 || self.cpus > 64 {
            return Err(ConfigError::Invalid {
                field: "cpus",
                message: format!("{} vCPUs: between 1 and 64", self.cpus),
            });
        }
        let mem = self.memory_bytes()?;
        if mem < crate::memory::MIN_MEMORY {
            return Err(ConfigError::Invalid {
                field: "memory",
                message: format!(
                    "{} is too little memory: at least {} MiB",
                    self.memory,
                    crate::memory::MIN_MEMORY >> 20
                ),
            });
        }
        if let Some(n) = &self.net {
            n.validate()?;
        }
        if let Some(b) = &self.balloon {
            if u64::from(b.target_mib) << 20 > mem {
                return Err(ConfigError::Invalid {
                    field: "balloon.target_mib",
                    message: format!(
                        "{} MiB is more than the guest's {} MiB",
                        b.target_mib,
                        mem >> 20
                    ),
                });
            }
        }
        if let Some(v) = &self.vsock {
            if v.cid < 3 {
                return Err(ConfigError::Invalid {
                    field: "vsock",
                    message: format!("guest CID {} is reserved: use 3 or more", v.cid),
                });
            }
        }
        Ok(())
    }
}

/// Parse "256M", "1G", "512K", "4096" (bytes) or "1GiB".
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s
        .strip_suffix("iB")
        .or_else(|| s.strip_suffix('B'))
        .unwrap_or(s);
    let (num, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1u64 << 10),
        'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
        'G' | 'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256M"), Some(256 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("lots"), None);
    }

    #[test]
    fn disk_flag() {
        assert_eq!(
            DiskConfig::parse_flag("a.img,ro").unwrap(),
            DiskConfig {
                path: "a.img".into(),
                read_only: true
            }
        );
        assert!(!DiskConfig::parse_flag("b.img").unwrap().read_only);
        assert!(DiskConfig::parse_flag("b.img,xx").is_err());
    }

    #[test]
    fn vsock_flag() {
        let v = VsockConfig::parse_flag("3").unwrap();
        assert_eq!((v.cid, v.uds_path), (3, None));
        let v = VsockConfig::parse_flag("7,uds=/run/x.sock").unwrap();
        assert_eq!(v.uds_path, Some("/run/x.sock".into()));
        for bad in ["", "x", "3,", "3,path=/x", "3,uds="] {
            assert!(VsockConfig::parse_flag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn net_flag_and_mac() {
        let n = NetConfig::parse_flag("tap=vmtap0").unwrap();
        assert_eq!(n.tap, "vmtap0");
        assert_eq!(n.mac_address().unwrap(), net::derive_mac("vmtap0"));
        let n = NetConfig::parse_flag("tap=t1,mac=52:54:00:00:00:01").unwrap();
        assert_eq!(n.mac_address().unwrap(), [0x52, 0x54, 0, 0, 0, 1]);
        for bad in [
            "tap=",
            "mac=52:54:00:00:00:01",
            "tap=t,mac=zz",
            "tap=a/b",
            "tap=t,x=1",
        ] {
            assert!(NetConfig::parse_flag(bad).is_err(), "{bad}");
        }
        let mut c = VmConfig::new("k".into());
        c.net = Some(NetConfig {
            tap: "t0".into(),
            mac: Some("01:00:00:00:00:00".into()),
        });
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("net.mac:"));
    }

    #[test]
    fn toml_round_trip_with_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vm.toml");
        std::fs::write(
            &path,
            "cpus = 2\nmemory = \"128M\"\nkernel = \"vmlinux\"\nserial = \"file:/tmp/x.log\"\naccel = \"kvm\"\n[[disk]]\npath = \"root.img\"\nread_only = true\n[vsock]\ncid = 3\n",
        )
        .unwrap();
        let cfg = VmConfig::load(&path).unwrap();
        assert_eq!(cfg.cpus, 2);
        assert_eq!(cfg.kernel, dir.path().join("vmlinux"));
        assert_eq!(cfg.disks[0].path, dir.path().join("root.img"));
        assert_eq!(cfg.serial, SerialConfig::File("/tmp/x.log".into()));
        assert_eq!(cfg.accel, Accel::Kvm);
        let vsock = cfg.vsock.as_ref().unwrap();
        assert_eq!(vsock.socket_path(), dir.path().join("vsock.sock"));
        cfg.validate().unwrap();
        let text = toml::to_string(&cfg).unwrap();
        let again: VmConfig = toml::from_str(&text).unwrap();
        assert_eq!(again, cfg);
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = VmConfig::new("k".into());
        c.memory = "4M".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("memory:"), "{e}");
        c.memory = "64M".into();
        c.cpus = 0;
        assert!(c.validate().unwrap_err().to_string().starts_with("cpus:"));
        assert!(toml::from_str::<VmConfig>("kernel = \"k\"\nbogus = 1\n").is_err());
    }
}
