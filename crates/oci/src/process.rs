//! Turning the spec's `process` into the running process: rlimits, user and groups,
//! capabilities (all five sets), `no_new_privileges`, umask, cwd, environment and the final
//! `execve` with every other descriptor closed.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use caps::{CapSet, CapsHashSet};
use oci_spec::runtime::{Capabilities, LinuxCapabilities, PosixRlimit, Process};

/// A process step that failed.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// A system call failed.
    #[error("{step}: {source}")]
    Sys {
        /// What was done.
        step: String,
        /// The errno.
        source: nix::Error,
    },
    /// A capability operation failed.
    #[error("{step}: {source}")]
    Caps {
        /// What was done.
        step: String,
        /// The cause.
        source: caps::errors::CapsError,
    },
    /// A field of `process` has a value that cannot be used.
    #[error("process.{field}: {reason}")]
    Invalid {
        /// The field.
        field: String,
        /// Why.
        reason: String,
    },
}

fn sys(step: impl Into<String>) -> impl FnOnce(nix::Error) -> ProcessError {
    let step = step.into();
    move |source| ProcessError::Sys { step, source }
}

fn caperr(step: &str) -> impl FnOnce(caps::errors::CapsError) -> ProcessError + '_ {
    move |source| ProcessError::Caps {
        step: step.to_owned(),
        source,
    }
}

/// The libc resource of an OCI rlimit type.
pub fn rlimit_resource(r: &PosixRlimit) -> Option<libc::__rlimit_resource_t> {
    Some(match r.typ().to_string().as_str() {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    })
}

/// Apply `process.rlimits`.
pub fn set_rlimits(p: &Process) -> Result<(), ProcessError> {
    for (i, r) in p.rlimits().iter().flatten().enumerate() {
        let res = rlimit_resource(r).ok_or_else(|| ProcessError::Invalid {
            field: format!("rlimits[{i}].type"),
            reason: format!("{} is not known", r.typ()),
        })?;
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: `lim` is a valid rlimit for the duration of the call.
        let rc = unsafe { libc::setrlimit(res, &lim) };
        nix::errno::Errno::result(rc).map_err(sys(format!("setrlimit {}", r.typ())))?;
    }
    Ok(())
}

/// Parse an OCI capability set into the `caps` crate's.
pub fn to_caps(set: &Option<Capabilities>) -> CapsHashSet {
    set.iter()
        .flatten()
        .filter_map(|c| {
            let name = serde_json::to_value(c).ok()?;
            caps::Capability::from_str(name.as_str()?).ok()
        })
        .collect()
}

/// Drop from the bounding set what the spec does not keep (needs CAP_SETPCAP, so before the
/// user switch).
pub fn drop_bounding(c: Option<&LinuxCapabilities>) -> Result<(), ProcessError> {
    let keep = c.map(|c| to_caps(c.bounding())).unwrap_or_default();
    for cap in caps::all() {
        if keep.contains(&cap) {
            continue;
        }
        // Dropping is idempotent: no need to read the set first (half the system calls).
        // SAFETY: prctl with integer arguments.
        let rc =
            unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap.index() as libc::c_ulong, 0, 0, 0) };
        // EINVAL: a capability this kernel does not know, so nothing to drop.
        if rc != 0 && nix::errno::Errno::last() != nix::errno::Errno::EINVAL {
            return Err(sys("drop bounding capability")(nix::errno::Errno::last()));
        }
    }
    Ok(())
}

/// Switch to the spec's user: supplementary groups, gid, uid, keeping capabilities across the
/// switch so [`set_caps`] can set them exactly.
pub fn set_user(p: &Process, userns: bool) -> Result<(), ProcessError> {
    let u = p.user();
    // SAFETY: prctl with integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    nix::errno::Errno::result(rc).map_err(sys("prctl(PR_SET_KEEPCAPS)"))?;
    let groups: Vec<nix::unistd::Gid> = u
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    // setgroups is denied in a user namespace whose setgroups file says "deny".
    let allowed = !userns
        || std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "allow");
    if allowed {
        nix::unistd::setgroups(&groups).map_err(sys("setgroups"))?;
    } else if !groups.is_empty() {
        return Err(ProcessError::Invalid {
            field: "user.additionalGids".into(),
            reason: "setgroups is denied in this user namespace".into(),
        });
    }
    let gid = nix::unistd::Gid::from_raw(u.gid());
    nix::unistd::setresgid(gid, gid, gid).map_err(sys(format!("setresgid {}", u.gid())))?;
    let uid = nix::unistd::Uid::from_raw(u.uid());
    nix::unistd::setresuid(uid, uid, uid).map_err(sys(format!("setresuid {}", u.uid())))?;
    // SAFETY: prctl with integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    nix::errno::Errno::result(rc).map_err(sys("prctl(PR_SET_KEEPCAPS)"))?;
    if let Some(mask) = u.umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    Ok(())
}

/// Set effective, permitted, inheritable and ambient capabilities (no capabilities when the
/// spec has none, as runc).
pub fn set_caps(c: Option<&LinuxCapabilities>) -> Result<(), ProcessError> {
    let none = CapsHashSet::new();
    let (eff, perm, inh, amb) = match c {
        Some(c) => (
            to_caps(c.effective()),
            to_caps(c.permitted()),
            to_caps(c.inheritable()),
            to_caps(c.ambient()),
        ),
        None => (none.clone(), none.clone(), none.clone(), none),
    };
    capset(&eff, &perm, &inh)?;
    caps::clear(None, CapSet::Ambient).map_err(caperr("clear ambient capabilities"))?;
    for cap in amb {
        caps::raise(None, CapSet::Ambient, cap).map_err(caperr("raise ambient capability"))?;
    }
    Ok(())
}

/// One `capset(2)` for the three sets, so no intermediate state breaks the kernel's rules
/// (effective ⊆ permitted).
fn capset(eff: &CapsHashSet, perm: &CapsHashSet, inh: &CapsHashSet) -> Result<(), ProcessError> {
    let mask = |s: &CapsHashSet| s.iter().fold(0u64, |m, c| m | c.bitmask());
    let (e, p, i) = (mask(eff), mask(perm), mask(inh));
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let hdr = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let data = [
        Data {
            effective: e as u32,
            permitted: p as u32,
            inheritable: i as u32,
        },
        Data {
            effective: (e >> 32) as u32,
            permitted: (p >> 32) as u32,
            inheritable: (i >> 32) as u32,
        },
    ];
    // SAFETY: header and two data words as capset(2) version 3 expects, alive for the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &hdr as *const Header, data.as_ptr()) };
    nix::errno::Errno::result(rc)
        .map(drop)
        .map_err(sys("capset"))
}

/// Set `no_new_privileges`.
pub fn set_no_new_privs() -> Result<(), ProcessError> {
    // SAFETY: prctl with integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    nix::errno::Errno::result(rc)
        .map(drop)
        .map_err(sys("prctl(PR_SET_NO_NEW_PRIVS)"))
}

/// The environment to exec with: the spec's, plus `HOME` from `/etc/passwd` when absent and
/// a default `PATH` when absent.
pub fn environment(p: &Process) -> Vec<String> {
    let mut env: Vec<String> = p.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let uid = p.user().uid();
        let home = std::fs::read_to_string("/etc/passwd")
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() > 5 && f[2] == uid.to_string()).then(|| f[5].to_owned())
                })
            })
            .unwrap_or_else(|| "/".into());
        env.push(format!("HOME={home}"));
    }
    env
}

/// Find `prog` in the `PATH` of `env` (inside the container's root).
pub fn lookup(prog: &str, env: &[String]) -> Result<PathBuf, ProcessError> {
    if prog.contains('/') {
        return match nix::unistd::access(prog, nix::unistd::AccessFlags::X_OK) {
            Ok(()) => Ok(PathBuf::from(prog)),
            Err(e) => Err(ProcessError::Invalid {
                field: "args[0]".into(),
                reason: format!("{prog}: {e}"),
            }),
        };
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let cand = Path::new(dir).join(prog);
        if nix::unistd::access(&cand, nix::unistd::AccessFlags::X_OK).is_ok() && cand.is_file() {
            return Ok(cand);
        }
    }
    Err(ProcessError::Invalid {
        field: "args[0]".into(),
        reason: format!("executable file {prog:?} not found in $PATH"),
    })
}

/// Refuse to exec the runtime's own binary, directly, through a symlink such as
/// `/proc/self/exe`, or as the interpreter of a `#!` script chain (the CVE-2019-5736 attack
/// makes the container re-run the runtime and then overwrite it through /proc/<pid>/exe).
pub fn refuse_runtime_binary(prog: &Path) -> Result<(), ProcessError> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let Ok(me) = std::fs::metadata("/proc/self/exe") else {
        return Ok(());
    };
    let mut path = prog.to_path_buf();
    // The kernel follows at most 4 levels of interpreters.
    for _ in 0..5 {
        let Ok(meta) = std::fs::metadata(&path) else {
            return Ok(());
        };
        if meta.dev() == me.dev() && meta.ino() == me.ino() {
            return Err(ProcessError::Invalid {
                field: "args[0]".into(),
                reason: format!(
                    "{} resolves to the runtime's own binary, which a container may not run",
                    prog.display()
                ),
            });
        }
        let mut head = [0u8; 256];
        let n = std::fs::File::open(&path)
            .and_then(|mut f| f.read(&mut head))
            .unwrap_or(0);
        let Some(line) = head[..n].strip_prefix(b"#!") else {
            return Ok(());
        };
        let line = line.split(|b| *b == b'\n').next().unwrap_or_default();
        let interp = String::from_utf8_lossy(line);
        let Some(next) = interp.split_whitespace().next() else {
            return Ok(());
        };
        path = PathBuf::from(next);
    }
    Ok(())
}

/// Mark every descriptor from `first` up close-on-exec (CVE-2024-21626 class: no host
/// descriptor reaches the container).
pub fn cloexec_from(first: u32) -> Result<(), ProcessError> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes descriptor flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    nix::errno::Errno::result(rc)
        .map(drop)
        .map_err(sys("close_range"))
}

/// Exec `path` with `args` and `env`; only returns on error.
pub fn exec(path: &Path, args: &[String], env: &[String]) -> ProcessError {
    let cstr = |s: &str| CString::new(s).unwrap_or_default();
    let Ok(p) = CString::new(path.as_os_str().as_bytes()) else {
        return ProcessError::Invalid {
            field: "args[0]".into(),
            reason: "contains NUL".into(),
        };
    };
    let argv: Vec<CString> = args.iter().map(|a| cstr(a)).collect();
    let envp: Vec<CString> = env.iter().map(|e| cstr(e)).collect();
    match nix::unistd::execve(&p, &argv, &envp) {
        Err(source) => ProcessError::Sys {
            step: format!("exec {}", path.display()),
            source,
        },
        Ok(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names_convert() {
        let c: LinuxCapabilities =
            serde_json::from_str(r#"{"bounding":["CAP_CHOWN","CAP_NET_ADMIN"],"ambient":[]}"#)
                .unwrap();
        let set = to_caps(c.bounding());
        assert!(set.contains(&caps::Capability::CAP_CHOWN));
        assert!(set.contains(&caps::Capability::CAP_NET_ADMIN));
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn env_gets_path_and_home() {
        let p: Process = serde_json::from_str(
            r#"{"user":{"uid":4242,"gid":0},"cwd":"/","args":["sh"],"env":["A=1"]}"#,
        )
        .unwrap();
        let env = environment(&p);
        assert!(env.iter().any(|e| e.starts_with("PATH=")));
        assert!(env.iter().any(|e| e == "HOME=/"));
    }

    #[test]
    fn lookup_uses_path() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_owned()];
        assert!(lookup("sh", &env).unwrap().ends_with("sh"));
        assert!(lookup("no-such-program-corral", &env)
            .unwrap_err()
            .to_string()
            .contains("not found"));
    }

    #[test]
    fn runtime_binary_is_refused_even_as_interpreter() {
        assert!(refuse_runtime_binary(Path::new("/proc/self/exe")).is_err());
        let t = tempfile::tempdir().unwrap();
        let script = t.path().join("evil");
        std::fs::write(&script, "#!/proc/self/exe\n").unwrap();
        assert!(refuse_runtime_binary(&script).is_err());
        let ok = t.path().join("fine");
        std::fs::write(&ok, "#!/bin/sh\necho\n").unwrap();
        assert!(refuse_runtime_binary(&ok).is_ok());
        assert!(refuse_runtime_binary(Path::new("/bin/sh")).is_ok());
    }

    #[test]
    fn rlimit_names() {
        let r: PosixRlimit =
            serde_json::from_str(r#"{"type":"RLIMIT_NOFILE","hard":10,"soft":5}"#).unwrap();
        assert_eq!(rlimit_resource(&r), Some(libc::RLIMIT_NOFILE));
    }
}
