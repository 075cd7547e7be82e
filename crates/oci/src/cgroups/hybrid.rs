//! Hybrid hosts: v1 hierarchies for most controllers plus a v2 mount holding the rest (on this
//! development host, hugetlb). A container uses its v1 cgroups as on a pure v1 host and, only
//! when its spec limits a controller that lives on the v2 side, a directory at the same path in
//! the unified tree too, as runc does in hybrid mode.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxResources, LinuxResourcesBuilder};

use super::{CgroupError, CgroupManager, CgroupRecord, Stats, V1Manager, V2Manager};

/// A container's cgroups on a hybrid host.
#[derive(Debug)]
pub struct HybridManager {
    v1: V1Manager,
    unified: V2Manager,
}

/// Whether `resources` needs the unified side: hugepage limits that no v1 hierarchy can take,
/// or `unified` keys.
pub fn needs_unified(resources: Option<&LinuxResources>, v1_controllers: &[&str]) -> bool {
    let Some(r) = resources else { return false };
    let hugetlb_on_v2 = !v1_controllers.contains(&"hugetlb")
        && r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty());
    hugetlb_on_v2 || r.unified().as_ref().is_some_and(|u| !u.is_empty())
}

/// Split `r` into what the v1 hierarchies take and what the unified tree takes (hugepage
/// limits and `unified` keys).
fn split(r: &LinuxResources) -> (LinuxResources, LinuxResources) {
    let mut v1 = r.clone();
    v1.set_hugepage_limits(None);
    v1.set_unified(None);
    let mut unified = LinuxResourcesBuilder::default()
        .build()
        .expect("an empty resources object always builds");
    unified.set_hugepage_limits(r.hugepage_limits().clone());
    unified.set_unified(r.unified().clone());
    (v1, unified)
}

/// The controller a `unified` key belongs to (`hugetlb.2MB.max` → `hugetlb`).
fn key_controller(key: &str) -> &str {
    key.split('.').next().unwrap_or(key)
}

impl HybridManager {
    /// `v1` for the v1 hierarchies, and `unified_dir` (below `unified_root`, which has the
    /// controllers `v2_controllers`) for the rest.
    pub fn new(
        v1: V1Manager,
        unified_dir: PathBuf,
        unified_root: &Path,
        v2_controllers: &[&str],
        resources: Option<&LinuxResources>,
    ) -> Result<Self, CgroupError> {
        for key in resources
            .and_then(|r| r.unified().as_ref())
            .into_iter()
            .flat_map(|u| u.keys())
        {
            if !v2_controllers.contains(&key_controller(key)) {
                return Err(CgroupError::Unsupported {
                    field: "unified",
                    reason: format!(
                        "{key:?}: this hybrid host's cgroup v2 tree has only [{}]",
                        v2_controllers.join(", ")
                    ),
                });
            }
        }
        Ok(Self::reopen(v1, unified_dir, unified_root.to_path_buf()))
    }

    /// Reopen from a record's parts.
    pub fn reopen(v1: V1Manager, unified_dir: PathBuf, unified_root: PathBuf) -> Self {
        HybridManager {
            v1,
            unified: V2Manager::new(unified_dir, unified_root),
        }
    }
}

impl CgroupManager for HybridManager {
    fn create(&self, resources: Option<&LinuxResources>) -> Result<(), CgroupError> {
        let (v1, unified) = match resources.map(split) {
            Some((a, b)) => (Some(a), Some(b)),
            None => (None, None),
        };
        self.v1.create(v1.as_ref())?;
        self.unified.create(unified.as_ref()).inspect_err(|_| {
            let _ = self.v1.remove();
        })
    }

    fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        self.v1.add_pid(pid)?;
        self.unified.add_pid(pid)
    }

    fn join_self(&self) -> Result<(), CgroupError> {
        self.v1.join_self()?;
        self.unified.join_self()
    }

    fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        self.v1.set_frozen(frozen)
    }

    fn is_frozen(&self) -> bool {
        self.v1.is_frozen()
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        self.v1.pids()
    }

    fn stats(&self) -> Result<Stats, CgroupError> {
        self.v1.stats()
    }

    fn remove(&self) -> Result<(), CgroupError> {
        let v1 = self.v1.remove();
        let unified = self.unified.remove();
        v1.and(unified)
    }

    fn record(&self) -> CgroupRecord {
        CgroupRecord {
            unified: Some(self.unified.dir().to_path_buf()),
            ..self.v1.record()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxHugepageLimitBuilder;

    fn with_hugepages() -> LinuxResources {
        LinuxResourcesBuilder::default()
            .hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
                .page_size("2MB")
                .limit(4 << 20)
                .build()
                .unwrap()])
            .build()
            .unwrap()
    }

    #[test]
    fn hugepages_go_to_the_unified_tree_only_when_v1_lacks_hugetlb() {
        let r = with_hugepages();
        assert!(needs_unified(Some(&r), &["memory", "pids"]));
        assert!(!needs_unified(Some(&r), &["memory", "hugetlb"]));
        assert!(!needs_unified(None, &["memory"]));
        let (v1, unified) = split(&r);
        assert!(v1.hugepage_limits().is_none());
        assert_eq!(unified.hugepage_limits().as_ref().map(Vec::len), Some(1));
    }

    #[test]
    fn unified_keys_of_v1_controllers_are_refused_by_name() {
        let mut r = LinuxResourcesBuilder::default().build().unwrap();
        r.set_unified(Some([("memory.max".to_owned(), "1".to_owned())].into()));
        let err = HybridManager::new(
            V1Manager::new(&[], Path::new("/x"), "", &[]),
            "/u/x".into(),
            Path::new("/u"),
            &["hugetlb"],
            Some(&r),
        )
        .unwrap_err();
        assert!(err.to_string().contains("unified"), "{err}");
        assert!(err.to_string().contains("memory.max"), "{err}");
    }
}
