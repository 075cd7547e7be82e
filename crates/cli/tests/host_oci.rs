//! Host tests of `corral oci` (need root, namespaces and cgroups): busybox bundles, each
//! asserting its effect from inside the container.

#[path = "host_oci/cgroups.rs"]
mod cgroups;
mod oci_support;

use oci_support::{corral, host_ready, state, wait_pid_exit, TestBundle};
use serde_json::json;

#[test]
fn host_oci_run_sets_identity_hostname_env_cwd_and_exit_code() {
    if !host_ready() {
        return;
    }
    let mut b = TestBundle::new(
        "ident",
        "hostname; echo $FOO; pwd; id -u; id -g; id -G; echo $$; exit 7",
    );
    b.config["hostname"] = "corral-box".into();
    b.config["process"]["env"] = json!(["PATH=/bin", "FOO=bar"]);
    b.config["process"]["cwd"] = "/tmp".into();
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1001, "additionalGids": [1002]});
    let (code, out, err) = b.run();
    assert_eq!(code, 7, "stderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "corral-box",
            "bar",
            "/tmp",
            "1000",
            "1001",
            "1001 1002",
            "1"
        ],
        "stderr: {err}"
    );
    assert!(!b.cgroup_exists(), "run removes the cgroup");
    assert!(
        !b.root(&corral()).join(&b.id).exists(),
        "run removes the state dir"
    );
}

#[test]
fn host_oci_standard_mounts_devices_and_pivot() {
    if !host_ready() {
        return;
    }
    let b = TestBundle::new(
        "mounts",
        "grep -c ' /proc proc ' /proc/mounts; grep -c ' /dev tmpfs ' /proc/mounts; \
         stat -c '%t:%T' /dev/null; readlink /dev/fd; cat /proc/mounts",
    );
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "stderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1", "proc mounted once: {out}");
    assert_eq!(lines[1], "1", "tmpfs /dev: {out}");
    assert_eq!(lines[2], "1:3", "/dev/null is the null device: {out}");
    assert_eq!(lines[3], "/proc/self/fd");
    // The old root is detached: no host-only mount point shows up inside.
    let inside: Vec<&str> = lines[4..]
        .iter()
        .filter_map(|l| l.split(' ').nth(1))
        .collect();
    let host = std::fs::read_to_string("/proc/self/mounts").unwrap();
    for mp in host.lines().filter_map(|l| l.split(' ').nth(1)) {
        let standard = mp == "/" || ["/proc", "/sys", "/dev"].iter().any(|p| mp.starts_with(p));
        assert!(
            standard || !inside.contains(&mp),
            "host mount {mp} visible inside: {inside:?}"
        );
    }
}

#[test]
fn host_oci_lifecycle_create_start_kill_delete() {
    if !host_ready() {
        return;
    }
    let b = TestBundle::new("life", "echo started > /tmp/started; exec sleep 1000");
    let rt = corral();
    let pidfile = b.dir.path().join("pid");
    let out = b.rt(
        &rt,
        &["create", "--pid-file", pidfile.to_str().unwrap(), &b.id],
    );
    assert!(
        out.status.success(),
        "create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = state(&b, &rt).expect("state after create");
    assert_eq!(s["status"], "created");
    let pid = s["pid"].as_i64().unwrap() as i32;
    assert_eq!(std::fs::read_to_string(&pidfile).unwrap(), pid.to_string());
    assert!(
        !b.bundle().join("rootfs/tmp/started").exists(),
        "process must not run before start"
    );
    let out = b.rt(&rt, &["list", "--format", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["id"], b.id.as_str());

    assert!(b.rt(&rt, &["start", &b.id]).status.success());
    assert_eq!(state(&b, &rt).unwrap()["status"], "running");
    let out = b.rt(&rt, &["start", &b.id]);
    assert_eq!(out.status.code(), Some(1), "second start fails");
    let out = b.rt(&rt, &["delete", &b.id]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "delete of a running container needs --force"
    );

    let out = b.rt(&rt, &["ps", "--format", "json", &b.id]);
    let pids: Vec<i32> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pids, [pid]);

    assert!(b.rt(&rt, &["kill", &b.id, "KILL"]).status.success());
    wait_pid_exit(pid);
    let s = state(&b, &rt).unwrap();
    assert_eq!(
        (s["status"].as_str(), s["pid"].as_i64()),
        (Some("stopped"), Some(0))
    );
    assert_eq!(
        b.rt(&rt, &["kill", &b.id, "KILL"]).status.code(),
        Some(1),
        "kill of a stopped container"
    );
    assert!(b.rt(&rt, &["delete", &b.id]).status.success());
    assert!(state(&b, &rt).is_none(), "state after delete fails");
    assert!(!b.cgroup_exists());
}

#[test]
fn host_oci_create_then_start_as_an_unprivileged_user() {
    if !host_ready() {
        return;
    }
    let mut b = TestBundle::new("nonroot", "id -u > /tmp/uid");
    b.config["process"]["user"] = json!({"uid": 65534, "gid": 65534});
    let tmp = b.bundle().join("rootfs/tmp");
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    let rt = corral();
    let out = b.rt(&rt, &["create", &b.id]);
    assert!(
        out.status.success(),
        "create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = state(&b, &rt).unwrap()["pid"].as_i64().unwrap() as i32;
    let out = b.rt(&rt, &["start", &b.id]);
    assert!(
        out.status.success(),
        "start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_pid_exit(pid);
    assert_eq!(std::fs::read_to_string(tmp.join("uid")).unwrap(), "65534\n");
    assert!(b.rt(&rt, &["delete", &b.id]).status.success());
}

#[test]
fn host_oci_bad_config_names_field_and_leaves_nothing() {
    if !host_ready() {
        return;
    }
    let mut b = TestBundle::new("bad", "true");
    b.config["process"]["user"]["uid"] = "root".into();
    let out = b.rt(&corral(), &["create", &b.id]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("process.user.uid"), "{err}");
    assert!(!b.root(&corral()).join(&b.id).exists());

    let mut b = TestBundle::new("badexec", "true");
    b.config["process"]["args"] = json!(["/no/such/program"]);
    let out = b.rt(&corral(), &["create", &b.id]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/no/such/program"), "{err}");
    assert!(
        !b.root(&corral()).join(&b.id).exists(),
        "state dir removed after failed create"
    );
    assert!(!b.cgroup_exists(), "cgroup removed after failed create");
}

#[test]
fn host_oci_no_pivot_sysctl_and_domainname() {
    if !host_ready() {
        return;
    }
    let mut b = TestBundle::new(
        "nopivot",
        "cat /proc/sys/net/ipv4/ip_forward; cat /proc/sys/kernel/domainname; ls /",
    );
    b.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    b.config["domainname"] = "corral.test".into();
    let out = b.rt(&corral(), &["run", "--no-pivot", &b.id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[..2], ["1", "corral.test"], "{text}");
    assert!(
        lines.contains(&"bin") && !lines.contains(&"work"),
        "the rootfs is / : {text}"
    );
}

#[test]
fn host_oci_time_namespace_personality_io_priority_and_scheduler() {
    if !host_ready() {
        return;
    }
    let mut b = TestBundle::new(
        "attrs",
        "cut -d. -f1 /proc/uptime; uname -m; ionice -p $$; cut -d' ' -f19 /proc/self/stat",
    );
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "time"}));
    b.config["linux"]["timeOffsets"] = json!({"boottime": {"secs": 10_000_000, "nanosecs": 0}});
    b.config["linux"]["personality"] = json!({"domain": "LINUX32"});
    b.config["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0});
    b.config["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 7});
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "stderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    let uptime: u64 = lines[0].parse().unwrap();
    assert!(uptime >= 10_000_000, "boottime offset applies: {out}");
    assert_eq!(lines[1], "i686", "LINUX32 persona: {out}");
    assert_eq!(lines[2], "idle", "I/O priority class: {out}");
    assert_eq!(lines[3], "7", "nice from the scheduler: {out}");
}

#[test]
fn host_oci_unsupported_fields_are_refused_by_name() {
    if !host_ready() {
        return;
    }
    for (field, value, path) in [
        (
            "apparmorProfile",
            json!("docker-default"),
            "process.apparmorProfile",
        ),
        (
            "selinuxLabel",
            json!("system_u:system_r:svirt_lxc_net_t:s0"),
            "process.selinuxLabel",
        ),
    ] {
        let mut b = TestBundle::new("refuse", "true");
        b.config["process"][field] = value;
        let out = b.rt(&corral(), &["create", &b.id]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(path), "{field}: {err}");
        assert!(!b.root(&corral()).join(&b.id).exists());
        assert!(!b.cgroup_exists());
    }
    let mut b = TestBundle::new("refuse", "true");
    b.config["linux"]["intelRdt"] = json!({"closID": "x"});
    let out = b.rt(&corral(), &["create", &b.id]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("linux.intelRdt"), "{err}");
}

#[test]
fn host_oci_mqueue_rbind_umask_oom_score_and_joined_net_namespace() {
    if !host_ready() {
        return;
    }
    let netns = format!("ocinet{}", std::process::id());
    let ip = |args: &[&str]| {
        let st = std::process::Command::new("ip")
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "ip {args:?}");
    };
    ip(&["netns", "add", &netns]);
    struct NetnsGuard(String);
    impl Drop for NetnsGuard {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "delete", &self.0])
                .status();
        }
    }
    let _guard = NetnsGuard(netns.clone());
    ip(&[
        "-n",
        &netns,
        "link",
        "add",
        "ocidummy0",
        "type",
        "veth",
        "peer",
        "name",
        "ocidummy1",
    ]);
    let shared = tempfile::tempdir().unwrap();
    std::fs::write(shared.path().join("hello"), "from the host\n").unwrap();

    let mut b = TestBundle::new(
        "mix",
        "grep -c ' /dev/mqueue mqueue ' /proc/mounts; cat /shared/hello; \
         touch /shared/new 2>/dev/null && echo writable || echo readonly; \
         umask; cat /proc/self/oom_score_adj; grep -c ocidummy0 /proc/net/dev",
    );
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.push(json!({"destination": "/shared", "type": "bind",
        "source": shared.path(), "options": ["rbind", "ro"]}));
    b.config["process"]["user"]["umask"] = json!(0o077);
    b.config["process"]["oomScoreAdj"] = json!(500);
    let namespaces = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    namespaces.retain(|n| n["type"] != "network");
    namespaces.push(json!({"type": "network", "path": format!("/run/netns/{netns}")}));
    assert!(
        b.config["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["type"] == "mqueue"),
        "the default spec mounts mqueue"
    );
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "stderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        ["1", "from the host", "readonly", "0077", "500", "1"],
        "stderr: {err}"
    );
}

#[test]
fn host_oci_kill_all_signals_every_process() {
    if !host_ready() {
        return;
    }
    // The init (sh) has no TERM handler, so as pid 1 it ignores a TERM from outside; only
    // `kill --all` reaches the two sleeps, after which `wait` returns and sh exits.
    let b = TestBundle::new("killall", "sleep 100 & sleep 100 & wait; echo waited");
    let rt = corral();
    assert!(b.rt(&rt, &["create", &b.id]).status.success());
    assert!(b.rt(&rt, &["start", &b.id]).status.success());
    let pid = state(&b, &rt).unwrap()["pid"].as_i64().unwrap() as i32;
    let out = b.rt(&rt, &["ps", "--format", "json", &b.id]);
    let pids: Vec<i32> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pids.len(), 3, "sh and two sleeps: {pids:?}");
    let out = b.rt(&rt, &["kill", "--all", &b.id, "TERM"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_pid_exit(pid);
    assert_eq!(state(&b, &rt).unwrap()["status"], "stopped");
    assert!(b.rt(&rt, &["delete", &b.id]).status.success());
}

#[test]
fn host_oci_errors_go_to_the_log_file_as_json_lines() {
    if !host_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("runtime.log");
    let out = std::process::Command::new(corral())
        .args(["oci", "--root"])
        .arg(dir.path().join("state"))
        .arg("--log")
        .arg(&log)
        .args(["--log-format", "json", "state", "no-such-container"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = std::fs::read_to_string(&log).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(line["level"], "error");
    assert!(
        line["msg"].as_str().unwrap().contains("no-such-container"),
        "{line}"
    );
    assert!(
        line["time"].as_str().is_some_and(|t| t.contains('T')),
        "{line}"
    );

    let out = std::process::Command::new(corral())
        .args(["oci", "--log-format", "yaml", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--log-format"));
}
