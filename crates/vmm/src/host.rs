//! What this host's `/dev/kvm` is: absent, hardware KVM (VT-x/AMD-V), or a KVM-PVM host whose
//! in-kernel emulator interprets guest kernel code and so cannot run a stock kernel at speed.

use std::fs;
use std::path::Path;

use serde::Serialize;

/// The kind of KVM this host offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KvmFlavor {
    /// No `/dev/kvm` device node.
    Absent,
    /// Hardware-assisted KVM on Intel VT-x.
    HardwareVmx,
    /// Hardware-assisted KVM on AMD-V.
    HardwareSvm,
    /// The `kvm_pvm` module: paravirtual KVM without hardware virtualization. Guest user code
    /// runs natively, guest kernel code is interpreted (~1.7 M instructions/s).
    Pvm,
    /// `/dev/kvm` exists but neither vmx/svm nor `kvm_pvm` explains it.
    Unknown,
}

impl KvmFlavor {
    /// Whether a stock Linux kernel runs at native speed under this KVM.
    pub fn runs_stock_kernel_at_speed(self) -> bool {
        matches!(self, KvmFlavor::HardwareVmx | KvmFlavor::HardwareSvm)
    }

    /// A short human description.
    pub fn describe(self) -> &'static str {
        match self {
            KvmFlavor::Absent => "no /dev/kvm",
            KvmFlavor::HardwareVmx => "hardware KVM (Intel VT-x)",
            KvmFlavor::HardwareSvm => "hardware KVM (AMD-V)",
            KvmFlavor::Pvm => {
                "KVM-PVM (kvm_pvm module, no vmx/svm): guest kernel code is interpreted"
            }
            KvmFlavor::Unknown => "KVM of unknown flavour (no vmx/svm, no kvm_pvm)",
        }
    }
}

/// The result of probing a host tree for KVM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KvmProbe {
    /// Whether `dev/kvm` exists under the probed root.
    pub device_present: bool,
    /// `KVM_GET_API_VERSION`, when the device could be opened (12 on every modern kernel).
    pub api_version: Option<i32>,
    /// The flavour deduced from CPU flags and loaded modules.
    pub flavor: KvmFlavor,
}

impl KvmProbe {
    /// Probe the tree rooted at `root` (normally `/`; tests pass a fake tree).
    ///
    /// `api_version` is asked of the real device only when `root` is `/`.
    pub fn probe(root: &Path) -> Self {
        let device_present = root.join("dev/kvm").exists();
        let flavor = flavor_from_tree(root, device_present);
        let api_version = if device_present && root == Path::new("/") {
            open_api_version()
        } else {
            None
        };
        KvmProbe {
            device_present,
            api_version,
            flavor,
        }
    }
}

fn flavor_from_tree(root: &Path, device_present: bool) -> KvmFlavor {
    if !device_present {
        return KvmFlavor::Absent;
    }
    let flags = cpu_flags(&fs::read_to_string(root.join("proc/cpuinfo")).unwrap_or_default());
    if root.join("sys/module/kvm_pvm").exists() {
        return KvmFlavor::Pvm;
    }
    if flags.iter().any(|f| f == "vmx") {
        KvmFlavor::HardwareVmx
    } else if flags.iter().any(|f| f == "svm") {
        KvmFlavor::HardwareSvm
    } else {
        KvmFlavor::Unknown
    }
}

/// The flags of the first processor listed in a `/proc/cpuinfo` text.
pub fn cpu_flags(cpuinfo: &str) -> Vec<String> {
    cpuinfo
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == "flags").then(|| value.split_whitespace().map(str::to_owned).collect())
        })
        .unwrap_or_default()
}

fn open_api_version() -> Option<i32> {
    use std::os::fd::AsRawFd;
    const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .ok()?;
    // SAFETY: KVM_GET_API_VERSION takes no argument and only returns an integer; the fd is a
    // valid open /dev/kvm for the duration of the call.
    let version = unsafe { libc::ioctl(file.as_raw_fd(), KVM_GET_API_VERSION, 0) };
    (version >= 0).then_some(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(cpu_flags: &str, pvm: bool, kvm: bool) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("proc")).unwrap();
        fs::create_dir_all(dir.path().join("dev")).unwrap();
        fs::write(
            dir.path().join("proc/cpuinfo"),
            format!(
                "processor\t: 0\nflags\t\t: fpu {cpu_flags} sse2\n\nprocessor\t: 1\nflags\t: x\n"
            ),
        )
        .unwrap();
        if kvm {
            fs::write(dir.path().join("dev/kvm"), "").unwrap();
        }
        if pvm {
            fs::create_dir_all(dir.path().join("sys/module/kvm_pvm/parameters")).unwrap();
        }
        dir
    }

    #[test]
    fn pvm_module_wins_over_missing_vmx() {
        let t = tree("lm nx", true, true);
        let probe = KvmProbe::probe(t.path());
        assert_eq!(probe.flavor, KvmFlavor::Pvm);
        assert!(!probe.flavor.runs_stock_kernel_at_speed());
        assert_eq!(probe.api_version, None, "fake trees are never ioctl'd");
    }

    #[test]
    fn vmx_and_svm_are_hardware() {
        assert_eq!(
            KvmProbe::probe(tree("vmx lm", false, true).path()).flavor,
            KvmFlavor::HardwareVmx
        );
        assert_eq!(
            KvmProbe::probe(tree("svm lm", false, true).path()).flavor,
            KvmFlavor::HardwareSvm
        );
    }

    #[test]
    fn no_device_is_absent_and_unknown_otherwise() {
        assert_eq!(
            KvmProbe::probe(tree("vmx", false, false).path()).flavor,
            KvmFlavor::Absent
        );
        assert_eq!(
            KvmProbe::probe(tree("lm", false, true).path()).flavor,
            KvmFlavor::Unknown
        );
    }
}
