//! Choosing the VM backend: `--accel auto|kvm|emu`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::host::{KvmFlavor, KvmProbe};

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// KVM when it runs stock kernels at speed, otherwise the software CPU.
    #[default]
    Auto,
    /// KVM, whatever its flavour.
    Kvm,
    /// corral's software x86-64 CPU.
    Emu,
}

impl FromStr for Accel {
    type Err = AccelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Accel::Auto),
            "kvm" => Ok(Accel::Kvm),
            "emu" | "tcg" => Ok(Accel::Emu),
            other => Err(AccelError::Unknown(other.to_owned())),
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Auto => "auto",
            Accel::Kvm => "kvm",
            Accel::Emu => "emu",
        })
    }
}

/// The backend that will actually run the vCPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The kernel's KVM.
    Kvm,
    /// corral's software CPU.
    Emu,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Kvm => "kvm",
            Backend::Emu => "emu",
        })
    }
}

/// A backend and why it was chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccelChoice {
    /// The chosen backend.
    pub backend: Backend,
    /// One sentence a user can read.
    pub reason: String,
}

/// Errors choosing a backend.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccelError {
    /// The `--accel` value is not one of auto, kvm, emu.
    #[error("unknown accelerator {0:?}: expected auto, kvm or emu")]
    Unknown(String),
    /// `--accel kvm` on a host without `/dev/kvm`.
    #[error("--accel kvm: this host has no /dev/kvm (use --accel emu or auto)")]
    KvmMissing,
}

impl Accel {
    /// Resolve the request against what the host offers.
    pub fn choose(self, probe: &KvmProbe) -> Result<AccelChoice, AccelError> {
        match self {
            Accel::Emu => Ok(AccelChoice {
                backend: Backend::Emu,
                reason: "software CPU requested (--accel emu)".into(),
            }),
            Accel::Kvm if probe.flavor == KvmFlavor::Absent => Err(AccelError::KvmMissing),
            Accel::Kvm => Ok(AccelChoice {
                backend: Backend::Kvm,
                reason: format!("KVM requested (--accel kvm): {}", probe.flavor.describe()),
            }),
            Accel::Auto if probe.flavor.runs_stock_kernel_at_speed() => Ok(AccelChoice {
                backend: Backend::Kvm,
                reason: probe.flavor.describe().to_owned(),
            }),
            Accel::Auto => Ok(AccelChoice {
                backend: Backend::Emu,
                reason: format!(
                    "software CPU: {}; a stock kernel cannot run at speed under it",
                    probe.flavor.describe()
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(flavor: KvmFlavor) -> KvmProbe {
        KvmProbe {
            device_present: flavor != KvmFlavor::Absent,
            api_version: None,
            flavor,
        }
    }

    #[test]
    fn auto_uses_kvm_only_on_hardware() {
        assert_eq!(
            Accel::Auto
                .choose(&probe(KvmFlavor::HardwareVmx))
                .unwrap()
                .backend,
            Backend::Kvm
        );
        let pvm = Accel::Auto.choose(&probe(KvmFlavor::Pvm)).unwrap();
        assert_eq!(pvm.backend, Backend::Emu);
        assert!(pvm.reason.contains("KVM-PVM"), "{}", pvm.reason);
        assert_eq!(
            Accel::Auto
                .choose(&probe(KvmFlavor::Absent))
                .unwrap()
                .backend,
            Backend::Emu
        );
    }

    #[test]
    fn explicit_kvm_needs_the_device() {
        assert_eq!(
            Accel::Kvm.choose(&probe(KvmFlavor::Absent)),
            Err(AccelError::KvmMissing)
        );
        assert_eq!(
            Accel::Kvm.choose(&probe(KvmFlavor::Pvm)).unwrap().backend,
            Backend::Kvm
        );
    }

    #[test]
    fn parses_names() {
        assert_eq!("emu".parse::<Accel>(), Ok(Accel::Emu));
        assert!("xen".parse::<Accel>().is_err());
    }
}
