//! The OS calls that build a container's filesystem and identity, behind a trait so the
//! mount and device logic is unit-tested without root (youki's `Syscall` pattern).

use std::cell::RefCell;
use std::fs;
use std::os::unix::fs::{symlink, OpenOptionsExt};
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};

/// What failed and where.
pub type SysResult = Result<(), nix::Error>;

/// Calls the rootfs and init code make.
pub trait Syscall {
    /// `mount(2)`.
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> SysResult;
    /// `umount2(2)`.
    fn umount2(&self, target: &Path, flags: MntFlags) -> SysResult;
    /// `pivot_root(2)`.
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> SysResult;
    /// `chroot(2)`.
    fn chroot(&self, path: &Path) -> SysResult;
    /// `chdir(2)`.
    fn chdir(&self, path: &Path) -> SysResult;
    /// `mkdir -p` with `mode` for new directories.
    fn mkdir_all(&self, path: &Path, mode: u32) -> SysResult;
    /// Create an empty file if nothing is at `path`.
    fn touch(&self, path: &Path) -> SysResult;
    /// `symlink(2)`.
    fn symlink(&self, target: &Path, link: &Path) -> SysResult;
    /// `mknod(2)` followed by `chown(2)`.
    fn mknod(&self, path: &Path, kind: SFlag, mode: u32, dev: u64, uid: u32, gid: u32)
        -> SysResult;
    /// `sethostname(2)`.
    fn sethostname(&self, name: &str) -> SysResult;
    /// `setdomainname(2)`.
    fn setdomainname(&self, name: &str) -> SysResult;
}

/// The real calls.
#[derive(Debug, Default)]
pub struct LinuxSyscall;

fn io_errno(e: std::io::Error) -> nix::Error {
    nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

impl Syscall for LinuxSyscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> SysResult {
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> SysResult {
        nix::mount::umount2(target, flags)
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> SysResult {
        nix::unistd::pivot_root(new_root, put_old)
    }

    fn chroot(&self, path: &Path) -> SysResult {
        nix::unistd::chroot(path)
    }

    fn chdir(&self, path: &Path) -> SysResult {
        nix::unistd::chdir(path)
    }

    fn mkdir_all(&self, path: &Path, mode: u32) -> SysResult {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(path)
            .map_err(io_errno)
    }

    fn touch(&self, path: &Path) -> SysResult {
        if path.symlink_metadata().is_ok() {
            return Ok(());
        }
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map(drop)
            .map_err(io_errno)
    }

    fn symlink(&self, target: &Path, link: &Path) -> SysResult {
        match symlink(target, link) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            r => r.map_err(io_errno),
        }
    }

    fn mknod(
        &self,
        path: &Path,
        kind: SFlag,
        mode: u32,
        dev: u64,
        uid: u32,
        gid: u32,
    ) -> SysResult {
        let _ = fs::remove_file(path);
        nix::sys::stat::mknod(path, kind, Mode::from_bits_truncate(mode), dev)?;
        // mknod's mode is masked by the umask; set it exactly.
        nix::sys::stat::fchmodat(
            None,
            path,
            Mode::from_bits_truncate(mode),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )?;
        nix::unistd::chown(
            path,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
    }

    fn sethostname(&self, name: &str) -> SysResult {
        nix::unistd::sethostname(name)
    }

    fn setdomainname(&self, name: &str) -> SysResult {
        // SAFETY: the pointer and length describe `name`'s bytes, valid for the call.
        let r = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
        nix::errno::Errno::result(r).map(drop)
    }
}

/// A stand-in that records each call as a line and succeeds (for unit tests).
#[derive(Debug, Default)]
pub struct RecordingSyscall {
    /// One line per call, e.g. `mount proc /r/proc proc nosuid|nodev|noexec`.
    pub calls: RefCell<Vec<String>>,
}

impl RecordingSyscall {
    fn push(&self, line: String) -> SysResult {
        self.calls.borrow_mut().push(line);
        Ok(())
    }
}

impl Syscall for RecordingSyscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> SysResult {
        self.push(format!(
            "mount {} {} {} {:?} {}",
            source.map_or("-".into(), |s| s.display().to_string()),
            target.display(),
            fstype.unwrap_or("-"),
            flags,
            data.unwrap_or("-")
        ))
    }
    fn umount2(&self, target: &Path, _flags: MntFlags) -> SysResult {
        self.push(format!("umount {}", target.display()))
    }
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> SysResult {
        self.push(format!(
            "pivot_root {} {}",
            new_root.display(),
            put_old.display()
        ))
    }
    fn chroot(&self, path: &Path) -> SysResult {
        self.push(format!("chroot {}", path.display()))
    }
    fn chdir(&self, path: &Path) -> SysResult {
        self.push(format!("chdir {}", path.display()))
    }
    fn mkdir_all(&self, path: &Path, _mode: u32) -> SysResult {
        self.push(format!("mkdir {}", path.display()))
    }
    fn touch(&self, path: &Path) -> SysResult {
        self.push(format!("touch {}", path.display()))
    }
    fn symlink(&self, target: &Path, link: &Path) -> SysResult {
        self.push(format!("symlink {} {}", target.display(), link.display()))
    }
    fn mknod(&self, path: &Path, _k: SFlag, mode: u32, dev: u64, _u: u32, _g: u32) -> SysResult {
        self.push(format!("mknod {} {mode:o} {dev}", path.display()))
    }
    fn sethostname(&self, name: &str) -> SysResult {
        self.push(format!("sethostname {name}"))
    }
    fn setdomainname(&self, name: &str) -> SysResult {
        self.push(format!("setdomainname {name}"))
    }
}
