//! Loading and checking an OCI bundle (`config.json` plus a rootfs), with errors that name
//! the offending field.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// Errors loading a bundle.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The bundle directory or config.json could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// config.json is not valid JSON of the runtime spec; `field` is the JSON path.
    #[error("{path}: field `{field}`: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// JSON path of the field, e.g. `process.user.uid`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A field has a value this runtime refuses.
    #[error("config.json: field `{field}`: {reason}")]
    Invalid {
        /// JSON path of the field.
        field: String,
        /// Why.
        reason: String,
    },
}

/// A loaded bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Absolute bundle directory.
    pub dir: PathBuf,
    /// The parsed config.json.
    pub spec: Spec,
    /// Absolute rootfs directory.
    pub rootfs: PathBuf,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> BundleError {
    BundleError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Parse config.json text, naming the field on error.
pub fn parse_config(path: &Path, bytes: &[u8]) -> Result<Spec, BundleError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| BundleError::Parse {
        path: path.to_path_buf(),
        field: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

impl Bundle {
    /// Load `<dir>/config.json` and check it.
    pub fn load(dir: &Path) -> Result<Bundle, BundleError> {
        let dir = fs::canonicalize(dir).map_err(|source| BundleError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join("config.json");
        let bytes = fs::read(&path).map_err(|source| BundleError::Read {
            path: path.clone(),
            source,
        })?;
        let spec = parse_config(&path, &bytes)?;
        let rootfs = validate(&spec, &dir)?;
        Ok(Bundle { dir, spec, rootfs })
    }
}

/// Check the spec for what a Linux container needs; returns the absolute rootfs.
pub fn validate(spec: &Spec, bundle: &Path) -> Result<PathBuf, BundleError> {
    if !spec.version().starts_with("1.") {
        return Err(invalid(
            "ociVersion",
            format!("{:?} is not a 1.x runtime spec version", spec.version()),
        ));
    }
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| invalid("root", "missing"))?;
    let rootfs = bundle.join(root.path());
    if !rootfs.is_dir() {
        return Err(invalid(
            "root.path",
            format!("{} is not a directory", rootfs.display()),
        ));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| invalid("process", "missing"))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(invalid("process.args", "must name a program"));
    }
    if !process.cwd().is_absolute() {
        return Err(invalid("process.cwd", "must be an absolute path"));
    }
    for (i, e) in process.env().iter().flatten().enumerate() {
        if !e.contains('=') {
            return Err(invalid(
                format!("process.env[{i}]"),
                format!("{e:?} is not KEY=VALUE"),
            ));
        }
    }
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| invalid("linux", "missing (this is a Linux runtime)"))?;
    let mut seen = HashSet::new();
    let namespaces = linux.namespaces().clone().unwrap_or_default();
    for (i, ns) in namespaces.iter().enumerate() {
        if !seen.insert(ns.typ()) {
            return Err(invalid(
                format!("linux.namespaces[{i}].type"),
                format!("{:?} appears twice", ns.typ()),
            ));
        }
    }
    let has = |t: LinuxNamespaceType| namespaces.iter().any(|n| n.typ() == t);
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return Err(invalid(
            "hostname",
            "setting a hostname needs a private uts namespace",
        ));
    }
    if has(LinuxNamespaceType::User) {
        let with_path = namespaces
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_some());
        if !with_path
            && (linux.uid_mappings().as_ref().is_none_or(|m| m.is_empty())
                || linux.gid_mappings().as_ref().is_none_or(|m| m.is_empty()))
        {
            return Err(invalid(
                "linux.uidMappings",
                "a new user namespace needs uid and gid mappings",
            ));
        }
    } else if linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty()) {
        return Err(invalid(
            "linux.uidMappings",
            "mappings need a user namespace in linux.namespaces",
        ));
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if !m.destination().is_absolute() {
            return Err(invalid(
                format!("mounts[{i}].destination"),
                format!("{} is not absolute", m.destination().display()),
            ));
        }
    }
    if let Some(p) = linux.rootfs_propagation() {
        if crate::rootfs::propagation_flag(p).is_none() {
            return Err(invalid(
                "linux.rootfsPropagation",
                format!("{p:?} is not shared, slave, private or unbindable"),
            ));
        }
    }
    refuse_unsupported(spec)?;
    Ok(rootfs)
}

/// Fields of the spec this runtime does not implement: refused by name, never ignored.
fn refuse_unsupported(spec: &Spec) -> Result<(), BundleError> {
    let process = spec.process().as_ref();
    let linux = spec.linux().as_ref();
    let set = |s: Option<&String>| s.is_some_and(|s| !s.is_empty());
    let refusals = [
        (
            set(process.and_then(|p| p.apparmor_profile().as_ref())),
            "process.apparmorProfile",
            "AppArmor profiles are not supported",
        ),
        (
            set(process.and_then(|p| p.selinux_label().as_ref())),
            "process.selinuxLabel",
            "SELinux labels are not supported",
        ),
        (
            set(linux.and_then(|l| l.mount_label().as_ref())),
            "linux.mountLabel",
            "SELinux mount labels are not supported",
        ),
        (
            linux.is_some_and(|l| l.intel_rdt().is_some()),
            "linux.intelRdt",
            "Intel RDT (resctrl) is not supported",
        ),
        (
            linux.is_some_and(|l| l.memory_policy().is_some()),
            "linux.memoryPolicy",
            "NUMA memory policies are not supported",
        ),
        (
            linux.is_some_and(|l| l.net_devices().as_ref().is_some_and(|d| !d.is_empty())),
            "linux.netDevices",
            "moving host network devices into the container is not supported",
        ),
        (
            process.is_some_and(|p| p.exec_cpu_affinity().is_some()),
            "process.execCPUAffinity",
            "exec CPU affinity is not supported",
        ),
    ];
    match refusals.into_iter().find(|(present, _, _)| *present) {
        Some((_, field, reason)) => Err(invalid(field, reason)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle_with(config: &str) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("rootfs")).unwrap();
        fs::write(t.path().join("config.json"), config).unwrap();
        t
    }

    fn default_json() -> serde_json::Value {
        serde_json::to_value(Spec::default()).unwrap()
    }

    #[test]
    fn default_spec_loads() {
        let t = bundle_with(&default_json().to_string());
        let b = Bundle::load(t.path()).unwrap();
        assert!(b.rootfs.ends_with("rootfs"));
    }

    #[test]
    fn type_errors_name_the_field() {
        let mut v = default_json();
        v["process"]["user"]["uid"] = "root".into();
        let t = bundle_with(&v.to_string());
        let err = Bundle::load(t.path()).unwrap_err().to_string();
        assert!(err.contains("process.user.uid"), "{err}");
    }

    #[test]
    fn semantic_errors_name_the_field() {
        type Edit = fn(&mut serde_json::Value);
        let cases: [(&str, Edit); 4] = [
            ("process.args", |v| {
                v["process"]["args"] = serde_json::json!([])
            }),
            ("process.cwd", |v| v["process"]["cwd"] = "rel".into()),
            ("root.path", |v| v["root"]["path"] = "missing".into()),
            ("ociVersion", |v| v["ociVersion"] = "0.9".into()),
        ];
        for (field, edit) in cases {
            let mut v = default_json();
            edit(&mut v);
            let t = bundle_with(&v.to_string());
            let err = Bundle::load(t.path()).unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn missing_config_names_the_file() {
        let t = tempfile::tempdir().unwrap();
        let err = Bundle::load(t.path()).unwrap_err().to_string();
        assert!(err.contains("config.json"), "{err}");
    }
}
