//! The individual host checks. Each reads only below a root path, so tests run them against
//! fake /proc, /sys and /dev trees.

use std::fs;
use std::path::Path;

use corral_net::kernel::NetFeatures;
use corral_oci::cgroups::CgroupLayout;
use corral_oci::namespaces::NamespaceKind;
use corral_vmm::{Accel, KvmProbe};
use serde::Serialize;

use super::guest_kernel;
use crate::paths::Paths;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Present and usable.
    Ok,
    /// Missing or degraded, but corral works without it.
    Warn,
    /// A must-have is missing: doctor exits 1.
    Missing,
}

/// One line of the doctor's table.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// The outcome.
    pub status: Status,
    /// What was found, or what is missing and why it matters.
    pub detail: String,
}

impl Check {
    fn new(name: impl Into<String>, status: Status, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            status,
            detail: detail.into(),
        }
    }

    fn must(name: impl Into<String>, present: bool, ok: &str, missing: &str) -> Self {
        let (status, detail) = if present {
            (Status::Ok, ok)
        } else {
            (Status::Missing, missing)
        };
        Check::new(name, status, detail)
    }
}

/// Namespace kinds corral cannot run containers without.
const REQUIRED_NAMESPACES: &[NamespaceKind] = &[
    NamespaceKind::Pid,
    NamespaceKind::Mount,
    NamespaceKind::Uts,
    NamespaceKind::Ipc,
    NamespaceKind::Network,
];

/// Free space below which doctor fails, and below which it warns.
const MIN_FREE_BYTES: u64 = 1 << 30;
const LOW_FREE_BYTES: u64 = 5 << 30;

/// Run every check against the tree at `sysroot`.
pub fn gather(sysroot: &Path, paths: &Paths, guest_kernel_env: Option<&Path>) -> Vec<Check> {
    let mut checks = kvm_checks(sysroot);
    checks.extend(namespace_checks(sysroot));
    checks.push(cgroup_check(sysroot));
    checks.push(Check::must(
        "overlayfs",
        filesystem_supported(sysroot, "overlay"),
        "supported (image layers)",
        "the kernel has no overlay filesystem: container root filesystems need it",
    ));
    checks.extend(net_checks(sysroot));
    checks.push(guest_kernel_check(guest_kernel_env, &paths.kernels()));
    checks.push(free_space_check(&paths.root));
    checks.push(Check::new(
        "directories",
        Status::Ok,
        format!("root {}, run {}", paths.root.display(), paths.run.display()),
    ));
    checks
}

fn kvm_checks(sysroot: &Path) -> Vec<Check> {
    let probe = KvmProbe::probe(sysroot);
    let kvm = if probe.device_present {
        let api = probe
            .api_version
            .map_or_else(|| "unknown".to_owned(), |v| v.to_string());
        let status = if probe.flavor.runs_stock_kernel_at_speed() {
            Status::Ok
        } else {
            Status::Warn
        };
        Check::new(
            "kvm",
            status,
            format!("/dev/kvm, API version {api}: {}", probe.flavor.describe()),
        )
    } else {
        Check::new(
            "kvm",
            Status::Warn,
            "no /dev/kvm: VMs run on the software CPU only",
        )
    };
    let backend = match Accel::Auto.choose(&probe) {
        Ok(choice) => Check::new(
            "vm backend (--accel auto)",
            Status::Ok,
            format!("{}: {}", choice.backend, choice.reason),
        ),
        Err(err) => Check::new(
            "vm backend (--accel auto)",
            Status::Missing,
            err.to_string(),
        ),
    };
    vec![kvm, backend]
}

fn namespace_checks(sysroot: &Path) -> Vec<Check> {
    NamespaceKind::ALL
        .iter()
        .map(|&kind| {
            let name = format!("namespace {}", kind.spec_name());
            match (kind.available(sysroot), REQUIRED_NAMESPACES.contains(&kind)) {
                (true, _) => Check::new(name, Status::Ok, "available"),
                (false, true) => Check::new(name, Status::Missing, "not offered by this kernel"),
                (false, false) => Check::new(
                    name,
                    Status::Warn,
                    "not offered by this kernel; specs asking for it will be refused",
                ),
            }
        })
        .collect()
}

fn cgroup_check(sysroot: &Path) -> Check {
    match CgroupLayout::detect(sysroot) {
        Ok(layout) => {
            let v1 = layout.v1_controllers();
            let v2 = layout.v2_controllers();
            let mut parts = vec![layout.name().to_owned()];
            if !v1.is_empty() {
                parts.push(format!("v1: {}", v1.join(",")));
            }
            if matches!(
                layout,
                CgroupLayout::V2 { .. } | CgroupLayout::Hybrid { .. }
            ) {
                let shown = if v2.is_empty() {
                    "(none)".to_owned()
                } else {
                    v2.join(",")
                };
                parts.push(format!("v2: {shown}"));
            }
            let has = |c: &str| v1.contains(&c) || v2.contains(&c);
            let lacking: Vec<&str> = ["memory", "pids", "cpu"]
                .into_iter()
                .filter(|c| !has(c))
                .collect();
            let status = if lacking.is_empty() {
                Status::Ok
            } else {
                Status::Warn
            };
            let mut detail = parts.join("; ");
            if !lacking.is_empty() {
                detail.push_str(&format!("; limits unavailable for {}", lacking.join(",")));
            }
            Check::new("cgroups", status, detail)
        }
        Err(err) => Check::new("cgroups", Status::Missing, err.to_string()),
    }
}

fn filesystem_supported(sysroot: &Path, fs_name: &str) -> bool {
    fs::read_to_string(sysroot.join("proc/filesystems"))
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().last() == Some(fs_name))
}

fn net_checks(sysroot: &Path) -> Vec<Check> {
    let f = NetFeatures::probe(sysroot);
    let nft_tool = which("nft");
    let nft = match (f.nftables, nft_tool) {
        (true, true) => Check::new("nftables", Status::Ok, "nf_tables with NAT, nft tool present (published ports)"),
        (true, false) => Check::new("nftables", Status::Warn, "kernel has nf_tables but the nft tool is missing: published ports use the userspace proxy"),
        (false, _) => Check::new("nftables", Status::Warn, "no nf_tables NAT: published ports use the userspace proxy"),
    };
    vec![
        Check::must(
            "/dev/net/tun",
            f.tun,
            "present (VM NICs)",
            "missing: VMs cannot have network interfaces",
        ),
        Check::must(
            "bridge",
            f.bridge,
            "supported",
            "the kernel has no bridge support: networks need it",
        ),
        Check::must(
            "veth",
            f.veth,
            "supported",
            "the kernel has no veth support: container networking needs it",
        ),
        nft,
    ]
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false)
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|d| Path::new(d).join(tool).is_file())
}

fn guest_kernel_check(explicit: Option<&Path>, kernels_dir: &Path) -> Check {
    let search = guest_kernel::find(explicit, kernels_dir);
    match search.found {
        Some((path, format)) => Check::new(
            "guest kernel",
            Status::Ok,
            format!("{} ({format:?})", path.display()),
        ),
        None => {
            let looked: Vec<String> = search
                .looked
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            Check::new(
                "guest kernel",
                Status::Warn,
                format!(
                    "none found (looked at CORRAL_GUEST_KERNEL, then {}); run scripts/setup.sh to build one",
                    looked.join(", ")
                ),
            )
        }
    }
}

fn free_space_check(root_dir: &Path) -> Check {
    let existing = root_dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    match nix::sys::statvfs::statvfs(existing) {
        Ok(stat) => {
            let free = stat.blocks_available() * stat.fragment_size();
            let detail = format!("{} free under {}", human_bytes(free), root_dir.display());
            let status = match free {
                f if f < MIN_FREE_BYTES => Status::Missing,
                f if f < LOW_FREE_BYTES => Status::Warn,
                _ => Status::Ok,
            };
            Check::new("free space", status, detail)
        }
        Err(err) => Check::new(
            "free space",
            Status::Warn,
            format!("statvfs {}: {err}", existing.display()),
        ),
    }
}

/// Bytes in binary units, one decimal.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A fake host tree like this development machine: KVM-PVM, hybrid cgroups.
    fn pvm_host() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for d in [
            "proc/self/ns",
            "dev/net",
            "sys/module/kvm_pvm",
            "sys/module/bridge",
            "sys/module/veth",
            "sys/fs/cgroup/unified",
        ] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        for ns in ["pid", "mnt", "uts", "ipc", "net", "user", "cgroup", "time"] {
            fs::write(r.join("proc/self/ns").join(ns), "").unwrap();
        }
        fs::write(r.join("dev/kvm"), "").unwrap();
        fs::write(r.join("dev/net/tun"), "").unwrap();
        fs::write(r.join("proc/cpuinfo"), "flags\t: fpu lm sse2 hypervisor\n").unwrap();
        fs::write(
            r.join("proc/filesystems"),
            "nodev\tcgroup\nnodev\toverlay\n\text4\n",
        )
        .unwrap();
        fs::write(
            r.join("proc/self/mountinfo"),
            "31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
             32 30 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
             33 30 0:29 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n\
             34 30 0:30 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n",
        )
        .unwrap();
        fs::write(
            r.join("sys/fs/cgroup/unified/cgroup.controllers"),
            "hugetlb\n",
        )
        .unwrap();
        dir
    }

    fn paths(root: &Path) -> Paths {
        Paths {
            root: root.join("var/lib/corral"),
            run: root.join("run/corral"),
        }
    }

    fn find<'a>(checks: &'a [Check], name: &str) -> &'a Check {
        checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no check {name}"))
    }

    #[test]
    fn pvm_host_picks_the_software_cpu_and_reports_hybrid_cgroups() {
        let host = pvm_host();
        let checks = gather(host.path(), &paths(host.path()), None);
        let kvm = find(&checks, "kvm");
        assert_eq!(kvm.status, Status::Warn);
        assert!(kvm.detail.contains("KVM-PVM"), "{}", kvm.detail);
        assert!(find(&checks, "vm backend (--accel auto)")
            .detail
            .starts_with("emu:"));
        let cg = find(&checks, "cgroups");
        assert_eq!(cg.status, Status::Ok, "{}", cg.detail);
        assert_eq!(
            cg.detail,
            "hybrid; v1: memory,pids,cpu,cpuacct; v2: hugetlb"
        );
        assert_eq!(find(&checks, "overlayfs").status, Status::Ok);
        assert_eq!(find(&checks, "bridge").status, Status::Ok);
        assert_eq!(find(&checks, "guest kernel").status, Status::Warn);
        assert!(checks
            .iter()
            .filter(|c| c.name.starts_with("namespace"))
            .all(|c| c.status == Status::Ok));
    }

    #[test]
    fn missing_must_haves_are_reported_each() {
        let host = pvm_host();
        let r = host.path();
        fs::remove_file(r.join("proc/self/ns/pid")).unwrap();
        fs::remove_file(r.join("proc/self/ns/time")).unwrap();
        fs::write(r.join("proc/filesystems"), "nodev\tcgroup\n").unwrap();
        fs::remove_file(r.join("dev/net/tun")).unwrap();
        let checks = gather(r, &paths(r), None);
        let missing: Vec<&str> = checks
            .iter()
            .filter(|c| c.status == Status::Missing)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(missing, ["namespace pid", "overlayfs", "/dev/net/tun"]);
        assert_eq!(find(&checks, "namespace time").status, Status::Warn);
    }

    #[test]
    fn hardware_kvm_and_a_guest_kernel_from_the_environment() {
        let host = pvm_host();
        let r = host.path();
        fs::remove_dir_all(r.join("sys/module/kvm_pvm")).unwrap();
        fs::write(r.join("proc/cpuinfo"), "flags\t: fpu vmx lm\n").unwrap();
        let kernel: PathBuf = r.join("vmlinux");
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[18] = 62;
        fs::write(&kernel, elf).unwrap();
        let checks = gather(r, &paths(r), Some(&kernel));
        assert_eq!(find(&checks, "kvm").status, Status::Ok);
        assert!(find(&checks, "vm backend (--accel auto)")
            .detail
            .starts_with("kvm:"));
        assert_eq!(find(&checks, "guest kernel").status, Status::Ok);
    }

    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(human_bytes(512), "512.0 B");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
