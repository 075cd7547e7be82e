//! Hostile-input-safe layer extraction.
//!
//! Every entry's path is split into components; `..` is rejected and a leading `/` is dropped.
//! The entry's parent directory is opened with `openat2(RESOLVE_IN_ROOT)` from the target
//! directory, so a symlink planted by an earlier entry (or an earlier layer) resolves as if the
//! target were `/` and can never lead outside it. The final component is then created relative
//! to that directory fd with calls that never follow it (`O_NOFOLLOW`, `symlinkat`, `mknodat`,
//! `linkat` without `AT_SYMLINK_FOLLOW`). Entry count and total bytes are capped (against
//! decompression bombs), device nodes follow a policy, and setuid/setgid bits can be stripped.
//! Whiteouts (`.wh.NAME`, `.wh..wh..opq`) are applied to the target (flattening) or converted to
//! overlayfs whiteouts (a layer directory used as an overlay lower dir).

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstatat, futimens, mkdirat, mknodat, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

/// Prefix of a whiteout entry.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// What to do with character and block device entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevicePolicy {
    /// Fail the extraction.
    Reject,
    /// Leave them out (counted in the stats).
    Skip,
    /// Create them with mknod.
    Create,
}

/// What whiteout entries do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// Delete the named path from the target (flattening layers into one tree).
    Apply,
    /// Turn them into overlayfs whiteouts (0/0 char devices, `trusted.overlay.opaque`).
    Overlay,
}

/// Limits and choices for one extraction.
#[derive(Debug, Clone)]
pub struct ExtractPolicy {
    /// Device node handling.
    pub devices: DevicePolicy,
    /// Keep setuid/setgid bits (false strips them).
    pub keep_setid: bool,
    /// Cap on file data plus archive bytes read.
    pub max_bytes: u64,
    /// Cap on the number of entries.
    pub max_entries: u64,
    /// Whiteout handling.
    pub whiteouts: WhiteoutMode,
    /// Apply the entries' uid/gid (needs root).
    pub same_owner: bool,
}

impl Default for ExtractPolicy {
    fn default() -> Self {
        ExtractPolicy {
            devices: DevicePolicy::Skip,
            keep_setid: true,
            max_bytes: 32 << 30,
            max_entries: 2_000_000,
            whiteouts: WhiteoutMode::Apply,
            same_owner: nix::unistd::geteuid().is_root(),
        }
    }
}

/// What an extraction did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExtractStats {
    /// Entries processed.
    pub entries: u64,
    /// File data bytes written.
    pub bytes: u64,
    /// Device entries left out.
    pub skipped_devices: u64,
    /// Whiteouts applied or converted.
    pub whiteouts: u64,
}

/// Why an extraction stopped. The target may hold part of the archive; callers extract into a
/// fresh directory and remove it on error.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The archive itself could not be read (truncated, corrupt, bad compression).
    #[error("reading the archive: {0}")]
    Read(#[source] io::Error),
    /// A file system operation for one entry failed.
    #[error("entry {path:?}: {source}")]
    Io {
        /// The entry path.
        path: String,
        /// The error.
        source: io::Error,
    },
    /// An entry path (or hardlink target) that would climb out of the target.
    #[error("entry {0:?} escapes the target directory (.. component)")]
    PathEscape(String),
    /// An entry whose parent exists but is not a directory.
    #[error("entry {0:?}: a parent component is not a directory")]
    NotADirectory(String),
    /// Too many entries.
    #[error("archive has more than {0} entries")]
    TooManyEntries(u64),
    /// Too much data.
    #[error("archive expands to more than {0} bytes")]
    TooLarge(u64),
    /// A device node with `DevicePolicy::Reject`.
    #[error("entry {0:?} is a device node, which this extraction does not allow")]
    DeviceNotAllowed(String),
    /// A hardlink to something that is not in the target.
    #[error("hardlink {path:?} points to {target:?}, which does not exist in the target")]
    HardlinkTarget {
        /// The link.
        path: String,
        /// Where it points.
        target: String,
    },
    /// An entry kind that has no meaning in a root filesystem.
    #[error("entry {path:?} has unsupported type {kind:?}")]
    Unsupported {
        /// The entry path.
        path: String,
        /// The tar type byte.
        kind: u8,
    },
}

/// Splits an entry path into safe components: no `..`, no empty or `.` parts, no leading `/`.
pub fn sanitize(raw: &[u8]) -> Result<Vec<OsString>, ExtractError> {
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => continue,
            b".." => return Err(ExtractError::PathEscape(lossy(raw))),
            _ => out.push(OsStr::from_bytes(c).to_os_string()),
        }
    }
    Ok(out)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open call and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn join(comps: &[OsString]) -> PathBuf {
    comps.iter().collect::<PathBuf>()
}

/// Opens a directory inside `root` as if `root` were `/` (symlinks cannot escape it).
pub fn open_dir_in_root(root: &OwnedFd, comps: &[OsString]) -> Result<OwnedFd, Errno> {
    if comps.is_empty() {
        return root
            .try_clone()
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)));
    }
    let how = OpenHow::new()
        .flags(OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root.as_raw_fd(), &join(comps), how).map(owned)
}

/// Like `open_dir_in_root`, creating missing directories (mode 0755) on the way.
pub fn ensure_dir_in_root(root: &OwnedFd, comps: &[OsString]) -> Result<OwnedFd, Errno> {
    match open_dir_in_root(root, comps) {
        Err(Errno::ENOENT) => {}
        other => return other,
    }
    let mut parent = root.try_clone().map_err(|_| Errno::EBADF)?;
    for i in 0..comps.len() {
        match open_dir_in_root(root, &comps[..=i]) {
            Ok(fd) => parent = fd,
            Err(Errno::ENOENT) => {
                match mkdirat(
                    Some(parent.as_raw_fd()),
                    comps[i].as_os_str(),
                    Mode::from_bits_truncate(0o755),
                ) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(e),
                }
                parent = open_dir_in_root(root, &comps[..=i])?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(parent)
}

/// Removes `name` in `dir` (recursively for directories) without following symlinks.
pub fn remove_at(dir: RawFd, name: &OsStr) -> Result<(), Errno> {
    let st = match fstatat(Some(dir), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        clear_dir(dir, name, &|_| false)?;
        unlinkat(Some(dir), name, UnlinkatFlags::RemoveDir)
    } else {
        unlinkat(Some(dir), name, UnlinkatFlags::NoRemoveDir)
    }
}

/// Removes the children of directory `name` in `dir` for which `keep` is false.
fn clear_dir(dir: RawFd, name: &OsStr, keep: &dyn Fn(&OsStr) -> bool) -> Result<(), Errno> {
    let mut d = nix::dir::Dir::openat(
        Some(dir),
        name,
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for e in d.iter() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    for n in names {
        if !keep(&n) {
            remove_at(d.as_raw_fd(), &n)?;
        }
    }
    Ok(())
}

/// A reader that fails once more than `limit` bytes have passed.
struct CappedReader<R> {
    inner: R,
    read: u64,
    limit: u64,
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::other(CapExceeded));
        }
        Ok(n)
    }
}

#[derive(Debug)]
struct CapExceeded;

impl std::fmt::Display for CapExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("size cap exceeded")
    }
}

impl std::error::Error for CapExceeded {}

/// Extracts an uncompressed tar stream into `target` (an existing directory).
pub fn extract(
    reader: impl Read,
    target: &Path,
    policy: &ExtractPolicy,
) -> Result<ExtractStats, ExtractError> {
    let root = File::open(target).map_err(|e| ExtractError::Io {
        path: target.display().to_string(),
        source: e,
    })?;
    let root: OwnedFd = root.into();
    let capped = CappedReader {
        inner: reader,
        read: 0,
        limit: policy
            .max_bytes
            .saturating_add(policy.max_entries.saturating_mul(1024)),
    };
    let mut archive = tar::Archive::new(capped);
    let mut stats = ExtractStats::default();
    let mut written: HashSet<Vec<OsString>> = HashSet::new();
    let read_err = |e: io::Error, policy: &ExtractPolicy| {
        if e.get_ref().is_some_and(|i| i.is::<CapExceeded>()) {
            ExtractError::TooLarge(policy.max_bytes)
        } else {
            ExtractError::Read(e)
        }
    };
    let entries = archive.entries().map_err(ExtractError::Read)?;
    for entry in entries {
        let mut entry = entry.map_err(|e| read_err(e, policy))?;
        stats.entries += 1;
        if stats.entries > policy.max_entries {
            return Err(ExtractError::TooManyEntries(policy.max_entries));
        }
        let raw_path = entry.path_bytes().into_owned();
        let comps = sanitize(&raw_path)?;
        let Some((name, parents)) = comps.split_last() else {
            continue;
        };
        let path = lossy(&raw_path);
        let size = entry.header().entry_size().unwrap_or(0);
        if stats.bytes.saturating_add(size) > policy.max_bytes {
            return Err(ExtractError::TooLarge(policy.max_bytes));
        }
        let io = |e: Errno| ExtractError::Io {
            path: path.clone(),
            source: e.into(),
        };
        let dir = ensure_dir_in_root(&root, parents).map_err(|e| match e {
            Errno::ENOTDIR => ExtractError::NotADirectory(path.clone()),
            e => io(e),
        })?;
        let name_bytes = name.as_bytes();
        if name_bytes == OPAQUE_MARKER.as_bytes() {
            stats.whiteouts += 1;
            apply_opaque(&root, &dir, parents, &written, policy).map_err(io)?;
            continue;
        }
        if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            stats.whiteouts += 1;
            let hidden = OsStr::from_bytes(hidden);
            if hidden.is_empty() || hidden == ".." || hidden == "." {
                return Err(ExtractError::PathEscape(path));
            }
            match policy.whiteouts {
                WhiteoutMode::Apply => remove_at(dir.as_raw_fd(), hidden).map_err(io)?,
                WhiteoutMode::Overlay => {
                    remove_at(dir.as_raw_fd(), hidden).map_err(io)?;
                    mknodat(
                        Some(dir.as_raw_fd()),
                        hidden,
                        SFlag::S_IFCHR,
                        Mode::empty(),
                        0,
                    )
                    .map_err(io)?;
                }
            }
            continue;
        }
        let header = entry.header().clone();
        let mut mode = header.mode().unwrap_or(0o644) & 0o7777;
        if !policy.keep_setid {
            mode &= !0o6000;
        }
        let uid = header.uid().unwrap_or(0) as u32;
        let gid = header.gid().unwrap_or(0) as u32;
        let mtime = header.mtime().unwrap_or(0) as i64;
        let kind = header.entry_type();
        let d = dir.as_raw_fd();
        use tar::EntryType as T;
        match kind {
            T::Directory => {
                let exists_as_dir = fstatat(
                    Some(d),
                    name.as_os_str(),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
                .unwrap_or(false);
                if !exists_as_dir {
                    remove_at(d, name).map_err(io)?;
                    mkdirat(Some(d), name.as_os_str(), Mode::from_bits_truncate(0o700))
                        .map_err(io)?;
                }
                let fd = owned(
                    openat(
                        Some(d),
                        name.as_os_str(),
                        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(io)?,
                );
                set_owner_mode(&fd, uid, gid, mode, policy).map_err(io)?;
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                remove_at(d, name).map_err(io)?;
                let fd = owned(
                    openat(
                        Some(d),
                        name.as_os_str(),
                        OFlag::O_CREAT
                            | OFlag::O_EXCL
                            | OFlag::O_WRONLY
                            | OFlag::O_NOFOLLOW
                            | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(0o600),
                    )
                    .map_err(io)?,
                );
                let mut file = File::from(fd);
                let n = io::copy(&mut entry, &mut file).map_err(|e| read_err(e, policy))?;
                stats.bytes += n;
                let fd: OwnedFd = file.into();
                set_owner_mode(&fd, uid, gid, mode, policy).map_err(io)?;
                let t = TimeSpec::new(mtime, 0);
                futimens(fd.as_raw_fd(), &t, &t).map_err(io)?;
            }
            T::Symlink => {
                let link = entry
                    .link_name_bytes()
                    .ok_or_else(|| ExtractError::Unsupported {
                        path: path.clone(),
                        kind: b'2',
                    })?
                    .into_owned();
                remove_at(d, name).map_err(io)?;
                symlinkat(OsStr::from_bytes(&link), Some(d), name.as_os_str()).map_err(io)?;
                if policy.same_owner {
                    fchownat(
                        Some(d),
                        name.as_os_str(),
                        Some(Uid::from_raw(uid)),
                        Some(Gid::from_raw(gid)),
                        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                    )
                    .map_err(io)?;
                }
            }
            T::Link => {
                let link = entry
                    .link_name_bytes()
                    .ok_or_else(|| ExtractError::Unsupported {
                        path: path.clone(),
                        kind: b'1',
                    })?
                    .into_owned();
                let tcomps = sanitize(&link)?;
                let Some((tname, tparents)) = tcomps.split_last() else {
                    return Err(ExtractError::HardlinkTarget {
                        path,
                        target: lossy(&link),
                    });
                };
                let missing = || ExtractError::HardlinkTarget {
                    path: path.clone(),
                    target: lossy(&link),
                };
                let tdir = open_dir_in_root(&root, tparents).map_err(|_| missing())?;
                let st = fstatat(
                    Some(tdir.as_raw_fd()),
                    tname.as_os_str(),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|_| missing())?;
                if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                    return Err(missing());
                }
                if tcomps != comps {
                    remove_at(d, name).map_err(io)?;
                    linkat(
                        Some(tdir.as_raw_fd()),
                        tname.as_os_str(),
                        Some(d),
                        name.as_os_str(),
                        nix::fcntl::AtFlags::empty(),
                    )
                    .map_err(io)?;
                }
            }
            T::Char | T::Block => match policy.devices {
                DevicePolicy::Reject => return Err(ExtractError::DeviceNotAllowed(path)),
                DevicePolicy::Skip => stats.skipped_devices += 1,
                DevicePolicy::Create => {
                    let major = header.device_major().ok().flatten().unwrap_or(0);
                    let minor = header.device_minor().ok().flatten().unwrap_or(0);
                    let kind = if kind == T::Char {
                        SFlag::S_IFCHR
                    } else {
                        SFlag::S_IFBLK
                    };
                    remove_at(d, name).map_err(io)?;
                    mknodat(
                        Some(d),
                        name.as_os_str(),
                        kind,
                        Mode::from_bits_truncate(mode & 0o777),
                        libc::makedev(major, minor),
                    )
                    .map_err(io)?;
                    if policy.same_owner {
                        fchownat(
                            Some(d),
                            name.as_os_str(),
                            Some(Uid::from_raw(uid)),
                            Some(Gid::from_raw(gid)),
                            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                        )
                        .map_err(io)?;
                    }
                }
            },
            T::Fifo => {
                remove_at(d, name).map_err(io)?;
                mknodat(
                    Some(d),
                    name.as_os_str(),
                    SFlag::S_IFIFO,
                    Mode::from_bits_truncate(mode & 0o777),
                    0,
                )
                .map_err(io)?;
            }
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => continue,
            other => {
                return Err(ExtractError::Unsupported {
                    path,
                    kind: other.as_byte(),
                });
            }
        }
        written.insert(comps.clone());
    }
    // Drain the end-of-archive padding so truncation after the last entry is still caught.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| read_err(e, policy))?;
    Ok(stats)
}

fn set_owner_mode(
    fd: &OwnedFd,
    uid: u32,
    gid: u32,
    mode: u32,
    policy: &ExtractPolicy,
) -> Result<(), Errno> {
    if policy.same_owner {
        fchown(
            fd.as_raw_fd(),
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
        )?;
    }
    nix::sys::stat::fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(mode))
}

fn apply_opaque(
    root: &OwnedFd,
    dir: &OwnedFd,
    comps: &[OsString],
    written: &HashSet<Vec<OsString>>,
    policy: &ExtractPolicy,
) -> Result<(), Errno> {
    match policy.whiteouts {
        WhiteoutMode::Overlay => {
            let name = c"trusted.overlay.opaque";
            // SAFETY: `dir` is an open directory fd, `name` is NUL-terminated and the value
            // pointer/length describe a live one-byte buffer.
            let r = unsafe {
                libc::fsetxattr(dir.as_raw_fd(), name.as_ptr(), b"y".as_ptr().cast(), 1, 0)
            };
            Errno::result(r).map(drop)
        }
        WhiteoutMode::Apply => {
            let Some((last, parents)) = comps.split_last() else {
                // Opaque root: clear everything not written by this layer.
                return clear_dir(root.as_raw_fd(), OsStr::new("."), &|n| {
                    written.contains(&vec![n.to_os_string()])
                });
            };
            let parent = open_dir_in_root(root, parents)?;
            let _ = dir;
            clear_dir(parent.as_raw_fd(), last, &|n| {
                let mut p = comps.to_vec();
                p.push(n.to_os_string());
                written.contains(&p)
            })
        }
    }
}

/// Converts a path relative to the target into its components (for callers and tests).
pub fn components_of(p: &Path) -> Result<Vec<OsString>, ExtractError> {
    sanitize(p.as_os_str().as_bytes())
}
