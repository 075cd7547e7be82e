//! Persistent network namespaces for containers, made the way `ip netns add` makes them: a
//! thread unshares its network namespace and bind-mounts it on a file, so the namespace outlives
//! every process in it, the OCI runtime joins it by path, and it survives container restarts
//! (the container keeps its address). Removing it is unmounting and unlinking the file; the veth
//! end inside goes with it.

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::links::Netns;

/// A namespace file could not be made or removed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// Creating the directory or the mount-point file failed.
    #[error("network namespace {path}: {source}")]
    Io {
        /// The namespace file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// unshare(2), mount(2) or umount(2) failed.
    #[error("network namespace {path}: {op}: {errno}")]
    Sys {
        /// The namespace file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The kernel's answer.
        errno: nix::errno::Errno,
    },
}

/// Whether `path` is a mount point (so a namespace is bound there).
pub fn is_mounted(path: &Path) -> bool {
    let want = path.display().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            m.lines()
                .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
        })
        .unwrap_or(false)
}

/// Create a new network namespace bound at `path` (reused when one is already bound there).
pub fn create(path: &Path) -> Result<Netns, NetnsError> {
    if is_mounted(path) {
        return Ok(Netns::Path(path.to_path_buf()));
    }
    let io = |source| NetnsError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io)?;
    }
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io)?;
    let target = path.to_path_buf();
    // unshare(CLONE_NEWNET) changes only the calling thread, so a throwaway thread does it and
    // pins the new namespace with a bind mount before it exits.
    let res = std::thread::spawn(move || {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|errno| ("unshare", errno))?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|errno| ("bind mount", errno))
    })
    .join()
    .expect("the netns thread does not panic");
    if let Err((op, errno)) = res {
        let _ = fs::remove_file(path);
        return Err(NetnsError::Sys {
            path: path.to_path_buf(),
            op,
            errno,
        });
    }
    Ok(Netns::Path(path.to_path_buf()))
}

/// Unmount and delete the namespace file at `path`; `false` when there was nothing.
pub fn remove(path: &Path) -> Result<bool, NetnsError> {
    let mut found = false;
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) => found = true,
        Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(errno) => {
            return Err(NetnsError::Sys {
                path: path.to_path_buf(),
                op: "umount",
                errno,
            })
        }
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(found),
        Err(source) => Err(NetnsError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The namespace files in `dir` (names only); empty when `dir` does not exist.
pub fn list(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}
