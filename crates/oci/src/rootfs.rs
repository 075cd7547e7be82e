//! The container's filesystem: propagation, the spec's mounts, devices, `pivot_root` (or
//! `MS_MOVE` with `--no-pivot`), masked and readonly paths and a readonly root.

use std::path::{Component, Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::SFlag;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount};

use crate::cgroups::CgroupRecord;
use crate::syscall::Syscall;

/// A rootfs step that failed.
#[derive(Debug, thiserror::Error)]
#[error("{step} {path}: {source}")]
pub struct RootfsError {
    /// What was being done, e.g. "mount proc on".
    pub step: String,
    /// The path involved.
    pub path: PathBuf,
    /// The errno.
    pub source: nix::Error,
}

fn err(step: impl Into<String>, path: &Path) -> impl FnOnce(nix::Error) -> RootfsError {
    let step = step.into();
    let path = path.to_path_buf();
    move |source| RootfsError { step, path, source }
}

/// The mount flag of a `rootfsPropagation` or mount propagation option.
pub fn propagation_flag(name: &str) -> Option<MsFlags> {
    Some(match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// Mount options split into flags, propagation changes and filesystem data.
#[derive(Debug, PartialEq)]
pub struct MountOptions {
    /// Flags for mount(2).
    pub flags: MsFlags,
    /// Propagation changes applied after the mount.
    pub propagation: Vec<MsFlags>,
    /// Filesystem-specific options (`mode=755,size=64k`).
    pub data: String,
}

/// Split the spec's option strings.
pub fn parse_options(options: &[String]) -> MountOptions {
    let mut o = MountOptions {
        flags: MsFlags::empty(),
        propagation: Vec::new(),
        data: String::new(),
    };
    let mut data = Vec::new();
    for opt in options {
        let (set, clear) = match opt.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            other => {
                if let Some(p) = propagation_flag(other) {
                    o.propagation.push(p);
                } else if other != "tmpcopyup" {
                    data.push(other.to_owned());
                }
                continue;
            }
        };
        o.flags.insert(set);
        o.flags.remove(clear);
    }
    o.data = data.join(",");
    o
}

/// `root` joined with `unsafe_path`, resolving symlinks as if `root` were `/`, so the result
/// never leaves `root` (what runc's securejoin does).
pub fn secure_join(root: &Path, unsafe_path: &Path) -> PathBuf {
    let mut resolved = PathBuf::new();
    let mut pending: Vec<PathBuf> = vec![unsafe_path.to_path_buf()];
    let mut links = 0;
    while let Some(p) = pending.pop() {
        let comps: Vec<Component> = p.components().collect();
        for (i, c) in comps.iter().enumerate() {
            match c {
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
                Component::ParentDir => {
                    resolved.pop();
                }
                Component::Normal(name) => {
                    let candidate = resolved.join(name);
                    let full = root.join(&candidate);
                    match std::fs::read_link(&full) {
                        Ok(target) if links < 255 => {
                            links += 1;
                            let rest: PathBuf = comps[i + 1..].iter().collect();
                            if target.is_absolute() {
                                resolved = PathBuf::new();
                            }
                            pending.push(target.join(rest));
                            break;
                        }
                        _ => resolved = candidate,
                    }
                }
            }
        }
    }
    root.join(resolved)
}

/// What the mount code needs to know beyond the spec.
#[derive(Debug)]
pub struct RootfsContext<'a> {
    /// Absolute rootfs.
    pub rootfs: &'a Path,
    /// Absolute bundle (relative bind sources resolve against it).
    pub bundle: &'a Path,
    /// The container's cgroups (for `cgroup` mounts on v1).
    pub cgroup: &'a CgroupRecord,
    /// Whether the container has its own user namespace (devices are bind-mounted then).
    pub userns: bool,
}

/// Make the host's mounts non-propagating into ours and bind the rootfs onto itself.
pub fn prepare(
    sys: &dyn Syscall,
    rootfs: &Path,
    propagation: Option<&str>,
) -> Result<(), RootfsError> {
    let flags = propagation
        .and_then(propagation_flag)
        .unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    sys.mount(None, Path::new("/"), None, flags, None)
        .map_err(err("set propagation of", Path::new("/")))?;
    sys.mount(
        Some(rootfs),
        rootfs,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(err("bind rootfs", rootfs))
}

/// Perform one spec mount inside the rootfs.
pub fn mount_one(sys: &dyn Syscall, ctx: &RootfsContext, m: &Mount) -> Result<(), RootfsError> {
    let dest = secure_join(ctx.rootfs, m.destination());
    let opts = parse_options(m.options().as_deref().unwrap_or(&[]));
    let typ = m.typ().as_deref().unwrap_or("");
    let is_bind = opts.flags.contains(MsFlags::MS_BIND) || typ == "bind";
    let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
    if is_bind {
        let src = m.source().clone().unwrap_or_default();
        let src = if src.is_absolute() {
            src
        } else {
            ctx.bundle.join(src)
        };
        if src.is_dir() {
            sys.mkdir_all(&dest, 0o755)
                .map_err(err("create mount point", &dest))?;
        } else {
            if let Some(parent) = dest.parent() {
                sys.mkdir_all(parent, 0o755)
                    .map_err(err("create mount point", parent))?;
            }
            sys.touch(&dest).map_err(err("create mount point", &dest))?;
        }
        let bind = MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC);
        sys.mount(Some(&src), &dest, None, bind, None)
            .map_err(err(format!("bind {} on", src.display()), &dest))?;
        let extra = opts.flags - (MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        if !extra.is_empty() {
            sys.mount(
                None,
                &dest,
                None,
                extra | MsFlags::MS_BIND | MsFlags::MS_REMOUNT,
                None,
            )
            .map_err(err("remount bind", &dest))?;
        }
    } else if typ == "cgroup" {
        mount_cgroup(sys, ctx, &dest, opts.flags)?;
    } else {
        sys.mkdir_all(&dest, 0o755)
            .map_err(err("create mount point", &dest))?;
        let source = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
        let r = sys.mount(Some(&source), &dest, Some(typ), opts.flags, data);
        match r {
            // Without its own network namespace (or in a user namespace) sysfs cannot be
            // mounted; bind the host's instead, as runc does.
            Err(nix::Error::EPERM) if typ == "sysfs" => {
                sys.mount(
                    Some(Path::new("/sys")),
                    &dest,
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None,
                )
                .map_err(err("bind /sys on", &dest))?;
                sys.mount(
                    None,
                    &dest,
                    None,
                    opts.flags | MsFlags::MS_BIND | MsFlags::MS_REMOUNT,
                    None,
                )
                .map_err(err("remount", &dest))?;
            }
            r => r.map_err(err(format!("mount {typ} on"), &dest))?,
        }
    }
    for p in &opts.propagation {
        sys.mount(None, &dest, None, *p, None)
            .map_err(err("set propagation of", &dest))?;
    }
    Ok(())
}

/// A `cgroup` mount: on v1 a tmpfs with each hierarchy's container directory bound below it
/// (and, on hybrid hosts, its unified directory at `unified`); on v2 the unified hierarchy.
fn mount_cgroup(
    sys: &dyn Syscall,
    ctx: &RootfsContext,
    dest: &Path,
    flags: MsFlags,
) -> Result<(), RootfsError> {
    sys.mkdir_all(dest, 0o755)
        .map_err(err("create mount point", dest))?;
    if ctx.cgroup.version == 2 {
        return sys
            .mount(
                Some(Path::new("cgroup2")),
                dest,
                Some("cgroup2"),
                flags,
                None,
            )
            .map_err(err("mount cgroup2 on", dest));
    }
    sys.mount(
        Some(Path::new("tmpfs")),
        dest,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=755"),
    )
    .map_err(err("mount tmpfs on", dest))?;
    let hierarchies = ctx
        .cgroup
        .paths
        .iter()
        .zip(ctx.cgroup.controllers.iter().map(String::as_str))
        .chain(ctx.cgroup.unified.iter().map(|dir| (dir, "unified")));
    for (dir, name) in hierarchies {
        let target = dest.join(name);
        sys.mkdir_all(&target, 0o755)
            .map_err(err("create mount point", &target))?;
        sys.mount(Some(dir), &target, None, MsFlags::MS_BIND, None)
            .map_err(err(format!("bind {} on", dir.display()), &target))?;
        let ro = flags
            & (MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
        sys.mount(
            None,
            &target,
            None,
            ro | MsFlags::MS_BIND | MsFlags::MS_REMOUNT,
            None,
        )
        .map_err(err("remount", &target))?;
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        sys.mount(
            None,
            dest,
            None,
            MsFlags::MS_RDONLY
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC,
            Some("mode=755"),
        )
        .map_err(err("remount readonly", dest))?;
    }
    Ok(())
}

/// (path, kind, major, minor) of the devices every container gets.
const DEFAULT_DEVICES: [(&str, SFlag, u64, u64); 6] = [
    ("dev/null", SFlag::S_IFCHR, 1, 3),
    ("dev/zero", SFlag::S_IFCHR, 1, 5),
    ("dev/full", SFlag::S_IFCHR, 1, 7),
    ("dev/random", SFlag::S_IFCHR, 1, 8),
    ("dev/urandom", SFlag::S_IFCHR, 1, 9),
    ("dev/tty", SFlag::S_IFCHR, 5, 0),
];

/// Create the default devices, the spec's `linux.devices` and the `/dev` symlinks.
pub fn create_devices(
    sys: &dyn Syscall,
    ctx: &RootfsContext,
    devices: &[LinuxDevice],
) -> Result<(), RootfsError> {
    let dev = ctx.rootfs.join("dev");
    sys.mkdir_all(&dev, 0o755).map_err(err("create", &dev))?;
    let make = |rel: &Path, kind: SFlag, major: u64, minor: u64, mode: u32, uid: u32, gid: u32| {
        let path = secure_join(ctx.rootfs, rel);
        if let Some(parent) = path.parent() {
            sys.mkdir_all(parent, 0o755)
                .map_err(err("create", parent))?;
        }
        if ctx.userns {
            // mknod is refused in a user namespace: bind the host's node instead.
            sys.touch(&path).map_err(err("create", &path))?;
            let host = Path::new("/").join(rel);
            sys.mount(Some(&host), &path, None, MsFlags::MS_BIND, None)
                .map_err(err(format!("bind {} on", host.display()), &path))
        } else {
            let devno = nix::sys::stat::makedev(major, minor);
            sys.mknod(&path, kind, mode, devno, uid, gid)
                .map_err(err("mknod", &path))
        }
    };
    for (rel, kind, major, minor) in DEFAULT_DEVICES {
        make(Path::new(rel), kind, major, minor, 0o666, 0, 0)?;
    }
    for d in devices {
        let kind = match d.typ() {
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            _ => SFlag::S_IFCHR,
        };
        let rel = d.path().strip_prefix("/").unwrap_or(d.path());
        make(
            rel,
            kind,
            d.major() as u64,
            d.minor() as u64,
            d.file_mode().unwrap_or(0o666) & 0o7777,
            d.uid().unwrap_or(0),
            d.gid().unwrap_or(0),
        )?;
    }
    for (target, link) in [
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("/proc/kcore", "core"),
    ] {
        let l = dev.join(link);
        sys.symlink(Path::new(target), &l)
            .map_err(err("symlink", &l))?;
    }
    if ctx.rootfs.join("dev/pts").is_dir() {
        let l = dev.join("ptmx");
        if l.symlink_metadata().is_err() {
            sys.symlink(Path::new("pts/ptmx"), &l)
                .map_err(err("symlink", &l))?;
        }
    }
    Ok(())
}

/// Make the rootfs `/`: `pivot_root` and detach the old root, or with `no_pivot`
/// `MS_MOVE` it over `/` and chroot.
pub fn enter(sys: &dyn Syscall, rootfs: &Path, no_pivot: bool) -> Result<(), RootfsError> {
    let dot = Path::new(".");
    sys.chdir(rootfs).map_err(err("chdir", rootfs))?;
    if no_pivot {
        sys.mount(Some(rootfs), Path::new("/"), None, MsFlags::MS_MOVE, None)
            .map_err(err("move rootfs to /", rootfs))?;
        sys.chroot(dot).map_err(err("chroot", rootfs))?;
    } else {
        sys.pivot_root(dot, dot)
            .map_err(err("pivot_root", rootfs))?;
        // The old root is stacked under "."; keep its unmount from propagating to the host.
        sys.mount(None, dot, None, MsFlags::MS_SLAVE | MsFlags::MS_REC, None)
            .map_err(err("make old root rslave", dot))?;
        sys.umount2(dot, MntFlags::MNT_DETACH)
            .map_err(err("detach old root", dot))?;
    }
    sys.chdir(Path::new("/"))
        .map_err(err("chdir", Path::new("/")))
}

/// After entering the rootfs: hide masked paths, make readonly paths and (optionally) the
/// root readonly.
pub fn finish(
    sys: &dyn Syscall,
    masked: &[String],
    readonly: &[String],
    readonly_root: bool,
) -> Result<(), RootfsError> {
    for p in readonly {
        let path = Path::new(p);
        if path.symlink_metadata().is_err() {
            continue;
        }
        sys.mount(
            Some(path),
            path,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )
        .map_err(err("bind readonly path", path))?;
        let flags = MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC;
        sys.mount(None, path, None, flags, None)
            .map_err(err("remount readonly path", path))?;
    }
    for p in masked {
        let path = Path::new(p);
        let Ok(meta) = path.symlink_metadata() else {
            continue;
        };
        let r = if meta.is_dir() {
            sys.mount(
                Some(Path::new("tmpfs")),
                path,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None,
            )
        } else {
            sys.mount(
                Some(Path::new("/dev/null")),
                path,
                None,
                MsFlags::MS_BIND,
                None,
            )
        };
        r.map_err(err("mask", path))?;
    }
    if readonly_root {
        sys.mount(
            None,
            Path::new("/"),
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None,
        )
        .map_err(err("remount readonly", Path::new("/")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::RecordingSyscall;

    #[test]
    fn options_split() {
        let o = parse_options(&[
            "nosuid".into(),
            "rw".into(),
            "mode=755".into(),
            "rslave".into(),
            "size=1k".into(),
        ]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID);
        assert_eq!(o.data, "mode=755,size=1k");
        assert_eq!(o.propagation, [MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        assert!(parse_options(&["ro".into(), "rw".into()]).flags.is_empty());
    }

    #[test]
    fn secure_join_stays_inside() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir(r.join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc", r.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../..", r.join("up")).unwrap();
        assert_eq!(
            secure_join(r, Path::new("/abs/passwd")),
            r.join("etc/passwd")
        );
        assert_eq!(secure_join(r, Path::new("/up/etc")), r.join("etc"));
        assert_eq!(secure_join(r, Path::new("../../x")), r.join("x"));
    }

    #[test]
    fn proc_and_bind_mounts_are_issued_in_order() {
        let t = tempfile::tempdir().unwrap();
        let sys = RecordingSyscall::default();
        let rec = CgroupRecord::default();
        let ctx = RootfsContext {
            rootfs: t.path(),
            bundle: t.path(),
            cgroup: &rec,
            userns: false,
        };
        let m: Mount = serde_json::from_str(
            r#"{"destination":"/proc","type":"proc","source":"proc","options":["nosuid"]}"#,
        )
        .unwrap();
        mount_one(&sys, &ctx, &m).unwrap();
        let b: Mount = serde_json::from_str(
            r#"{"destination":"/data","type":"none","source":"/tmp","options":["rbind","ro"]}"#,
        )
        .unwrap();
        mount_one(&sys, &ctx, &b).unwrap();
        let calls = sys.calls.borrow();
        let root = t.path().display();
        assert_eq!(
            calls[1],
            format!("mount proc {root}/proc proc MsFlags(MS_NOSUID) -")
        );
        assert_eq!(
            calls[3],
            format!("mount /tmp {root}/data - MsFlags(MS_BIND | MS_REC) -")
        );
        assert_eq!(
            calls[4],
            format!("mount - {root}/data - MsFlags(MS_RDONLY | MS_REMOUNT | MS_BIND) -")
        );
    }

    #[test]
    fn pivot_detaches_old_root() {
        let sys = RecordingSyscall::default();
        enter(&sys, Path::new("/r"), false).unwrap();
        let calls = sys.calls.borrow();
        assert_eq!(calls[1], "pivot_root . .");
        assert_eq!(calls[3], "umount .");
        let sys = RecordingSyscall::default();
        enter(&sys, Path::new("/r"), true).unwrap();
        assert_eq!(sys.calls.borrow()[2], "chroot .");
    }
}
