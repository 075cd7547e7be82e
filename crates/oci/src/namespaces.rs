//! Linux namespace kinds and which of them this kernel offers.

use std::path::Path;

use serde::Serialize;

/// A namespace kind of the OCI runtime specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NamespaceKind {
    /// Process IDs.
    Pid,
    /// Mount table.
    Mount,
    /// Hostname and domain name.
    Uts,
    /// System V IPC and POSIX message queues.
    Ipc,
    /// Network stack.
    Network,
    /// User and group IDs.
    User,
    /// Cgroup root.
    Cgroup,
    /// Boot and monotonic clocks.
    Time,
}

impl NamespaceKind {
    /// Every kind, in the order the spec lists them.
    pub const ALL: [NamespaceKind; 8] = [
        NamespaceKind::Pid,
        NamespaceKind::Network,
        NamespaceKind::Mount,
        NamespaceKind::Ipc,
        NamespaceKind::Uts,
        NamespaceKind::User,
        NamespaceKind::Cgroup,
        NamespaceKind::Time,
    ];

    /// The name of its entry under `/proc/<pid>/ns`.
    pub fn proc_name(self) -> &'static str {
        match self {
            NamespaceKind::Pid => "pid",
            NamespaceKind::Mount => "mnt",
            NamespaceKind::Uts => "uts",
            NamespaceKind::Ipc => "ipc",
            NamespaceKind::Network => "net",
            NamespaceKind::User => "user",
            NamespaceKind::Cgroup => "cgroup",
            NamespaceKind::Time => "time",
        }
    }

    /// The name used in `config.json`.
    pub fn spec_name(self) -> &'static str {
        match self {
            NamespaceKind::Mount => "mount",
            NamespaceKind::Network => "network",
            other => other.proc_name(),
        }
    }

    /// Whether the kernel rooted at `root` offers this kind (its `/proc/self/ns` entry exists).
    pub fn available(self, root: &Path) -> bool {
        root.join("proc/self/ns").join(self.proc_name()).exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_follows_proc_entries() {
        let dir = tempfile::tempdir().unwrap();
        let ns = dir.path().join("proc/self/ns");
        std::fs::create_dir_all(&ns).unwrap();
        std::fs::write(ns.join("mnt"), "").unwrap();
        assert!(NamespaceKind::Mount.available(dir.path()));
        assert!(!NamespaceKind::Time.available(dir.path()));
        assert_eq!(NamespaceKind::Mount.spec_name(), "mount");
    }
}
