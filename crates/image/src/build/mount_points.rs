//! Mount points the runtime makes for a RUN step (`/proc`, `/sys`, `/dev`, the bound
//! `/etc/resolv.conf` and `/etc/hosts`) belong to the container, not to the step's layer: the
//! ones the image did not have before the step are taken out of the upper directory again when
//! they are still empty, as buildah does.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Where a RUN container gets mounts, relative to its root.
pub const RUNTIME_MOUNT_POINTS: &[&str] = &[
    "proc",
    "sys",
    "dev",
    "etc/resolv.conf",
    "etc/hosts",
    "etc/hostname",
];

/// The mount points (and their missing parents) a root filesystem lacked before a step.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AbsentMountPoints(Vec<PathBuf>);

impl AbsentMountPoints {
    /// Looks at `rootfs` (the merged view) before the step. A symlink on the way ends the
    /// walk: whatever the runtime makes behind it is not ours to judge.
    pub fn before_step(rootfs: &Path) -> AbsentMountPoints {
        let mut absent: Vec<PathBuf> = Vec::new();
        for point in RUNTIME_MOUNT_POINTS {
            let mut rel = PathBuf::new();
            for comp in Path::new(point).components() {
                rel.push(comp);
                match fs::symlink_metadata(rootfs.join(&rel)) {
                    Ok(m) if m.file_type().is_symlink() => break,
                    Ok(_) => continue,
                    Err(_) => {
                        if !absent.contains(&rel) {
                            absent.push(rel.clone());
                        }
                    }
                }
            }
        }
        // Deepest first, so a parent is looked at after its children are gone.
        absent.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        AbsentMountPoints(absent)
    }

    /// Removes from `upper` each absent mount point the step left as an empty directory or an
    /// empty file; anything the step filled stays.
    pub fn remove_from_upper(&self, upper: &Path) -> io::Result<()> {
        for rel in &self.0 {
            let path = upper.join(rel);
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            let removed = if meta.is_dir() {
                fs::remove_dir(&path)
            } else if meta.is_file() && meta.len() == 0 {
                fs::remove_file(&path)
            } else {
                continue;
            };
            match removed {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_points_missing_before_the_step_are_listed_deepest_first() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("proc")).unwrap();
        let AbsentMountPoints(absent) = AbsentMountPoints::before_step(root.path());
        let names: Vec<_> = absent.iter().map(|p| p.to_str().unwrap()).collect();
        assert!(!names.contains(&"proc"));
        assert!(names.contains(&"sys") && names.contains(&"dev"));
        let etc = names.iter().position(|n| *n == "etc").unwrap();
        let hosts = names.iter().position(|n| *n == "etc/hosts").unwrap();
        assert!(hosts < etc, "children come before their parent: {names:?}");
    }

    #[test]
    fn a_symlink_on_the_way_ends_the_walk() {
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc", root.path().join("etc")).unwrap();
        let AbsentMountPoints(absent) = AbsentMountPoints::before_step(root.path());
        assert!(absent.iter().all(|p| !p.starts_with("etc")), "{absent:?}");
    }

    #[test]
    fn empty_leftovers_go_and_filled_ones_stay() {
        let root = tempfile::tempdir().unwrap();
        let absent = AbsentMountPoints::before_step(root.path());
        let upper = tempfile::tempdir().unwrap();
        let u = upper.path();
        for d in ["proc", "sys", "dev", "etc"] {
            fs::create_dir(u.join(d)).unwrap();
        }
        fs::write(u.join("etc/resolv.conf"), b"").unwrap();
        fs::write(u.join("etc/hosts"), b"127.0.0.1 db\n").unwrap();
        fs::write(u.join("dev/kept"), b"x").unwrap();
        absent.remove_from_upper(u).unwrap();
        assert!(!u.join("proc").exists() && !u.join("sys").exists());
        assert!(!u.join("etc/resolv.conf").exists());
        assert!(u.join("etc/hosts").exists() && u.join("dev/kept").exists());
    }
}
