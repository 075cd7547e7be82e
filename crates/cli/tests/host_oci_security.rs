//! Host tests of `corral oci` security and process features (need root): capabilities,
//! no_new_privileges, rlimits, seccomp, masked/readonly paths, readonly root, user
//! namespaces, exec, pause/resume, events and hooks, each checked from inside.

mod oci_support;

use oci_support::{corral, host_ready, state, wait_pid_exit, TestBundle};
use serde_json::json;

#[test]
fn host_oci_dropped_capability_makes_chown_fail() {
    if !host_ready() {
        return;
    }
    let mut b = TestBundle::new(
        "caps",
        "touch /tmp/f; chown 1000 /tmp/f && echo chowned; grep Cap /proc/self/status",
    );
    let keep = json!(["CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    b.config["process"]["capabilities"] = json!({
        "bounding": keep, "effective": keep, "permitted": keep, "inheritable": keep, "ambient": keep
    });
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.contains("chowned"),
        "chown must fail without CAP_CHOWN: {out}"
    );
    assert!(err.contains("Operation not permitted"), "{err}");
    // CAP_KILL (5) and CAP_NET_BIND_SERVICE (10): 0x420 in every set, ambient included.
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert!(
            out.contains(&format!("{set}:\t0000000000000420")),
            "{set}: {out}"
        );
    }
}

#[test]
fn host_oci_no_new_privileges_and_rlimits() {
    if !host_ready() {
        return;
    }
    let mut b = TestBundle::new(
        "nnp",
        "grep NoNewPrivs /proc/self/status; ulimit -n; ulimit -Hn",
    );
    b.config["process"]["noNewPrivileges"] = true.into();
    b.config["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}]);
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["NoNewPrivs:\t1", "123", "456"]
    );
}

#[test]
fn host_oci_seccomp_rule_returns_configured_errno() {
    if !host_ready() {
        return;
    }
    let mut b = TestBundle::new(
        "seccomp",
        "mkdir /tmp/d && echo made; touch /tmp/ok && echo touched",
    );
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 28}]
    });
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("made"), "{out}");
    assert!(
        err.contains("No space left on device"),
        "errno 28 (ENOSPC) expected: {err}"
    );
    assert!(out.contains("touched"), "other syscalls allowed: {out}");
}

#[test]
fn host_oci_readonly_root_masked_and_readonly_paths() {
    if !host_ready() {
        return;
    }
    let mut b = TestBundle::new(
        "ro",
        "touch /x 2>&1; cat /proc/timer_list 2>&1 | wc -c; touch /proc/sys/kernel/hostname 2>&1; ls /proc/acpi 2>&1 | wc -l; echo end",
    );
    b.config["root"]["readonly"] = true.into();
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].contains("Read-only file system"),
        "readonly root refuses writes: {out}"
    );
    assert_eq!(
        lines[1], "0",
        "/proc/timer_list is masked (bound to /dev/null): {out}"
    );
    assert!(
        lines[2].contains("Read-only file system"),
        "/proc/sys is readonly: {out}"
    );
    assert_eq!(lines[3], "0", "/proc/acpi is an empty tmpfs: {out}");
}

#[test]
fn host_oci_user_namespace_maps_root() {
    if !host_ready() {
        return;
    }
    let mut b = TestBundle::new(
        "userns",
        "id -u; cat /proc/self/uid_map; touch /tmp/owned; stat -c %u /tmp/owned",
    );
    let ns = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    ns.push(json!({"type": "user"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    // The rootfs must belong to the mapped root to be writable.
    let rootfs = b.bundle().join("rootfs");
    let chown = std::process::Command::new("chown")
        .args(["-R", "-h", "100000:100000"])
        .arg(&rootfs)
        .status()
        .unwrap();
    assert!(chown.success());
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );
    assert_eq!(lines[2], "0", "inside: owned by root");
    use std::os::unix::fs::MetadataExt;
    let host_uid = std::fs::metadata(rootfs.join("tmp/owned")).unwrap().uid();
    assert_eq!(host_uid, 100000, "uid 0 inside is host uid 100000");
}

#[test]
fn host_oci_exec_pause_resume_events() {
    if !host_ready() {
        return;
    }
    let b = TestBundle::new("exec", "exec sleep 1000");
    let rt = corral();
    assert!(b.rt(&rt, &["run", "--detach", &b.id]).status.success());
    let pid = state(&b, &rt).unwrap()["pid"].as_i64().unwrap() as i32;
    let out = b.rt(
        &rt,
        &[
            "exec",
            "--env",
            "X=42",
            "--cwd",
            "/tmp",
            &b.id,
            "sh",
            "-c",
            "echo $X $$; pwd; hostname",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("42 "), "{text}");
    assert_ne!(lines[0], "42 1", "exec'd process is not the init");
    assert_eq!(lines[1], "/tmp");
    let out = b.rt(&rt, &["exec", &b.id, "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "exec passes the exit status");

    assert!(b.rt(&rt, &["pause", &b.id]).status.success());
    assert_eq!(state(&b, &rt).unwrap()["status"], "paused");
    assert!(b.rt(&rt, &["resume", &b.id]).status.success());
    assert_eq!(state(&b, &rt).unwrap()["status"], "running");

    let out = b.rt(&rt, &["events", "--stats", &b.id]);
    let ev: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ev["type"], "stats");
    assert_eq!(ev["data"]["pids"]["current"], 1);
    assert!(ev["data"]["memory"]["usage"]["usage"].as_u64().unwrap() > 0);

    assert!(b.rt(&rt, &["delete", "--force", &b.id]).status.success());
    wait_pid_exit(pid);
    assert!(state(&b, &rt).is_none());
    assert!(!b.cgroup_exists());
}

#[test]
fn host_oci_hooks_run_with_state_on_stdin() {
    if !host_ready() {
        return;
    }
    let mut b = TestBundle::new("hooks", "echo main");
    let log = b.dir.path().join("hooks.log");
    let hook = |name: &str| json!([{"path": "/bin/sh", "args": ["sh", "-c", format!("read -r s; echo {name} >> {}; echo \"$s\" | grep -q '\"id\"' && echo {name}-state >> {}", log.display(), log.display())]}]);
    b.config["hooks"] = json!({
        "createRuntime": hook("createRuntime"),
        "poststart": hook("poststart"),
        "poststop": hook("poststop"),
    });
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "main");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "createRuntime",
            "createRuntime-state",
            "poststart",
            "poststart-state",
            "poststop",
            "poststop-state"
        ]
    );
}

#[test]
fn host_oci_no_host_fd_leaks_and_runtime_binary_is_unreachable() {
    if !host_ready() {
        return;
    }
    // CVE-2024-21626 class: only stdio reaches the process (fd 3 is ls's own directory).
    let b = TestBundle::new("fds", "ls /proc/self/fd | wc -l; readlink /proc/1/exe");
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0].trim(), "4", "fds 0-2 and ls's own: {out}");
    assert_eq!(lines[1], "/bin/busybox");

    // CVE-2019-5736 class: a script whose interpreter is /proc/self/exe is refused.
    let mut b = TestBundle::new("exe", "true");
    let evil = b.bundle().join("rootfs/bin/evil");
    std::fs::write(&evil, "#!/proc/self/exe\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&evil, std::fs::Permissions::from_mode(0o755)).unwrap();
    b.config["process"]["args"] = json!(["/bin/evil"]);
    let (code, _, err) = b.run();
    assert_eq!(code, 1);
    assert!(err.contains("runtime's own binary"), "{err}");
}

#[test]
fn host_oci_console_socket_receives_pty_master() {
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    if !host_ready() {
        return;
    }
    let mut b = TestBundle::new("tty", "[ -t 0 ] && echo is-a-tty; readlink /proc/self/fd/0");
    b.config["process"]["terminal"] = true.into();
    let sock_path = b.dir.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let rt = corral();
    let out = b.rt(
        &rt,
        &[
            "create",
            "--console-socket",
            sock_path.to_str().unwrap(),
            &b.id,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (conn, _) = listener.accept().unwrap();
    let mut buf = [0u8; 64];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = nix::sys::socket::recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::empty(),
    )
    .unwrap();
    let fd = msg
        .cmsgs()
        .unwrap()
        .find_map(|c| match c {
            nix::sys::socket::ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
            _ => None,
        })
        .expect("a pty master over SCM_RIGHTS");
    // SAFETY: the descriptor just arrived over SCM_RIGHTS and is ours.
    let master = unsafe { OwnedFd::from_raw_fd(fd) };
    assert!(b.rt(&rt, &["start", &b.id]).status.success());
    let mut f = std::fs::File::from(master);
    let mut text = String::new();
    // Reading the master ends with EIO once the slave side is closed.
    let _ = f.read_to_string(&mut text);
    assert!(text.contains("is-a-tty"), "{text:?}");
    assert!(text.contains("/dev/pts/"), "{text:?}");
}

/// Drop CAP_SYS_PTRACE from every set of the calling process (async-signal-safe: raw syscalls
/// only, for `pre_exec`).
fn drop_sys_ptrace() -> std::io::Result<()> {
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
    const SYS_PTRACE: u32 = 19;
    let mut hdr = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: plain syscalls on local, correctly sized structures.
    unsafe {
        if libc::prctl(libc::PR_CAPBSET_DROP, SYS_PTRACE, 0, 0, 0) != 0
            || libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        let bit = !(1u32 << SYS_PTRACE);
        data[0].effective &= bit;
        data[0].permitted &= bit;
        data[0].inheritable &= bit;
        if libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[test]
fn host_oci_runtime_processes_exe_cannot_be_opened_from_the_container() {
    if !host_ready() {
        return;
    }
    // CVE-2019-5736 class: a container sharing the host's pid namespace sees the `corral oci
    // run` process that waits for it (the parent of its init). Its /proc/<pid>/exe, the host
    // binary, must not open: not for writing, and not for reading either (an fd kept open
    // could be reopened for writing once the runtime exits). The append open writes nothing.
    let mut b = TestBundle::new(
        "exe-open",
        "pp=$(cut -d' ' -f4 /proc/$$/stat); cut -d' ' -f2 /proc/$pp/stat
         cat /proc/$pp/exe > /dev/null 2>&1 && echo read-open || echo read-denied
         (exec 3>>/proc/$pp/exe) 2>/dev/null && echo write-open || echo write-denied
         readlink /proc/$pp/exe > /dev/null 2>&1 && echo link-visible || echo link-hidden",
    );
    let ns = b.config["linux"]["namespaces"].as_array().unwrap().clone();
    b.config["linux"]["namespaces"] = ns.into_iter().filter(|n| n["type"] != "pid").collect();
    // A nearly privileged container: every capability this host grants but CAP_SYS_PTRACE.
    let all: Vec<String> = caps::read(None, caps::CapSet::Bounding)
        .unwrap()
        .into_iter()
        .filter(|c| *c != caps::Capability::CAP_SYS_PTRACE)
        .map(|c| c.to_string())
        .collect();
    for set in [
        "bounding",
        "effective",
        "permitted",
        "inheritable",
        "ambient",
    ] {
        b.config["process"]["capabilities"][set] = json!(all);
    }
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["(corral)", "read-denied", "write-denied", "link-hidden"],
        "{out}"
    );

    // A runtime started without CAP_SYS_PTRACE (a daemon with a narrowed bounding set): the
    // container now holds every capability the runtime has, so the kernel's capability
    // check no longer stands in the way; the runtime being non-dumpable still does.
    b.write();
    let root = b.root(&corral());
    let out = unsafe_pre_exec(
        std::process::Command::new(corral())
            .arg("oci")
            .arg("--root")
            .arg(&root)
            .args(["run", &b.id])
            .current_dir(b.bundle()),
    )
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        ["(corral)", "read-denied", "write-denied", "link-hidden"],
        "{text}"
    );
}

fn unsafe_pre_exec(cmd: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook only makes raw system calls (no allocation, no locks).
    unsafe { cmd.pre_exec(drop_sys_ptrace) }
}
