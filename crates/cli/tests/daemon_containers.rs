//! Containers end to end through the CLI, the daemon it starts, the shim and an OCI runtime,
//! plus crash recovery: the daemon is killed with SIGKILL at several points of create, start,
//! stop and rm, restarted, and checked for consistency and leaks (processes, mounts, cgroups,
//! files). Every test needs root (mounts, namespaces, cgroups): names start with `host_`.
//! The world each test runs in is in `world`.

mod world;

use world::{require_host, skip, World};

#[test]
fn host_run_wait_logs_ps_rm() {
    if skip() {
        return;
    }
    require_host();
    let w = World::new();
    let id = w
        .ok(&[
            "run",
            "-d",
            "--name",
            "c1",
            "busybox",
            "sh",
            "-c",
            "echo hello; echo oops >&2; exit 3",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64, "{id}");
    assert_eq!(w.ok(&["wait", "c1"]).trim(), "3");
    let logs = w.corral(&["logs", "c1"]);
    assert_eq!(String::from_utf8_lossy(&logs.stdout), "hello\n");
    assert_eq!(String::from_utf8_lossy(&logs.stderr), "oops\n");
    let tail = w.ok(&["logs", "--tail", "0", "c1"]);
    assert_eq!(tail, "");
    let ps = w.ok(&["ps", "-a"]);
    assert!(ps.contains("exited (3)") && ps.contains("c1"), "{ps}");
    assert!(
        !w.ok(&["ps"]).contains("c1"),
        "ps without -a shows only running"
    );
    let json: Vec<serde_json::Value> =
        serde_json::from_str(&w.ok(&["ps", "-a", "--format", "json"])).unwrap();
    assert_eq!(json[0]["exit_code"], 3);
    // A second container with the same name is refused.
    let dup = w.corral(&["run", "-d", "--name", "c1", "busybox", "true"]);
    assert_eq!(dup.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    w.ok(&["rm", "c1"]);
    w.assert_no_leaks(&id);
    // With no command the image's Cmd runs, and ps names it (not "").
    w.ok(&["run", "-d", "--name", "dflt", "busybox"]);
    w.ok(&["wait", "dflt"]);
    assert_eq!(w.inspect("dflt")["command"], serde_json::json!(["/bin/sh"]));
    let ps = w.ok(&["ps", "-a"]);
    let row = ps.lines().find(|l| l.contains("dflt")).unwrap();
    assert!(row.contains("\"/bin/sh\""), "{ps}");
    w.ok(&["rm", "dflt"]);
}

#[test]
fn host_foreground_run_streams_output_and_returns_the_exit_code() {
    if skip() {
        return;
    }
    require_host();
    let w = World::new();
    let out = w.corral(&[
        "run",
        "--rm",
        "-e",
        "GREETING=hi there",
        "busybox",
        "sh",
        "-c",
        "echo $GREETING; exit 7",
    ]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi there\n");
    // --rm: the container is gone by the time `run` returns, as with Docker.
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&w.ok(&["ps", "-a", "--format", "json"])).unwrap();
    assert!(list.is_empty(), "--rm container still listed: {list:?}");
}

#[test]
fn host_exec_top_stop_escalates_to_sigkill() {
    if skip() {
        return;
    }
    require_host();
    let w = World::new();
    // sleep as PID 1 ignores SIGTERM, so stop must escalate.
    let id = w.ok(&[
        "run", "-d", "--name", "sleeper", "--memory", "64m", "busybox", "sleep", "1000",
    ]);
    let id = id.trim();
    let out = w.corral(&[
        "exec",
        "sleeper",
        "sh",
        "-c",
        "echo in-container; cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null; exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("in-container\n"), "{text}");
    let top = w.ok(&["top", "sleeper"]);
    assert!(top.contains("sleep 1000"), "{top}");
    let stats = w.ok(&["stats", "sleeper"]);
    assert!(stats.contains("64.0MiB"), "{stats}");
    let inv = w.ok(&["ps", "--all-kinds"]);
    assert!(
        inv.contains("MEMORY PRESSURE") && inv.contains("sleeper") && inv.contains("n/a"),
        "{inv}"
    );
    w.ok(&["stop", "-t", "1", "sleeper"]);
    let info = w.inspect("sleeper");
    assert_eq!(info["state"], "exited");
    assert_eq!(info["exit_code"], 137);
    let rm = w.corral(&["exec", "sleeper", "true"]);
    assert_eq!(rm.status.code(), Some(1));
    w.ok(&["rm", "sleeper"]);
    w.assert_no_leaks(id);
}

#[test]
fn host_bad_input_leaves_nothing_behind() {
    if skip() {
        return;
    }
    require_host();
    let w = World::new();
    let out = w.corral(&["run", "-d", "no-such-image"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such image"));
    let out = w.corral(&["run", "-d", "-v", "/nonexistent-src:/x", "busybox", "true"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("volumes[0]"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = w.corral(&["run", "-d", "busybox", "/no/such/binary"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a command that cannot start fails the run"
    );
    let out = w.corral(&["rm", "ghost"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such container: ghost"));
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&w.ok(&["ps", "-a", "--format", "json"])).unwrap();
    for c in list {
        let id = c["id"].as_str().unwrap().to_string();
        w.ok(&["rm", "-f", &id]);
        w.assert_no_leaks(&id);
    }
}

#[test]
fn host_daemon_kill9_leaves_containers_running_and_reattaches() {
    if skip() {
        return;
    }
    require_host();
    let w = World::new();
    let id = w.ok(&["run", "-d", "--name", "keeper", "busybox", "sleep", "1000"]);
    let id = id.trim().to_string();
    let before = w.inspect("keeper");
    w.kill9_daemon();
    // The next command starts a new daemon that reattaches.
    let after = w.inspect("keeper");
    assert_eq!(after["state"], "running");
    assert_eq!(after["supervisor_pid"], before["supervisor_pid"]);
    // The shim dies: the container is shown dead, never running.
    let shim = before["supervisor_pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let dead = (0..400).any(|_| {
        if w.inspect("keeper")["state"] == "dead" {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
        false
    });
    assert!(dead, "a container whose shim died must be marked dead");
    w.ok(&["rm", "-f", "keeper"]);
    w.assert_no_leaks(&id);
}

/// Kill the daemon at `point` during `op`, restart, return the world for checks.
fn crash_during(point: &str, setup: &[&[&str]], op: &[&str]) -> World {
    let w = World::new();
    for s in setup {
        w.ok(s);
    }
    w.kill9_daemon();
    w.start_with_crash(point);
    let out = w.corral(op);
    assert!(
        !out.status.success(),
        "{op:?} should have been cut short by {point}"
    );
    w.wait_daemon_dead();
    w
}

fn ids(w: &World) -> Vec<(String, String, String)> {
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&w.ok(&["ps", "-a", "--format", "json"])).unwrap();
    list.iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["name"].as_str().unwrap().to_string(),
                c["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn host_crash_during_create_rolls_back() {
    if skip() {
        return;
    }
    require_host();
    for point in ["create:after-journal", "create:after-rootfs"] {
        let w = crash_during(
            point,
            &[],
            &["run", "-d", "--name", "half", "busybox", "sleep", "100"],
        );
        assert!(
            ids(&w).is_empty(),
            "{point}: half-created container still listed"
        );
        let leftovers: Vec<_> = std::fs::read_dir(w.root.join("containers"))
            .unwrap()
            .collect();
        assert!(
            leftovers.is_empty(),
            "{point}: container folder left behind"
        );
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains(&w.root.display().to_string()),
            "{point}: mount left behind"
        );
        // The name is free again.
        w.ok(&["run", "-d", "--name", "half", "busybox", "true"]);
    }
}

#[test]
fn host_crash_after_shim_start_reattaches() {
    if skip() {
        return;
    }
    require_host();
    let w = crash_during(
        "start:after-shim",
        &[],
        &["run", "-d", "--name", "s1", "busybox", "sleep", "100"],
    );
    let list = ids(&w);
    assert_eq!(list.len(), 1);
    assert_eq!(
        list[0].2, "running",
        "the shim outlived the daemon: the container runs"
    );
    let pid = w.inspect("s1")["supervisor_pid"].as_i64().unwrap();
    assert!(pid > 0);
    w.ok(&["stop", "-t", "1", "s1"]);
    assert_eq!(w.inspect("s1")["state"], "exited");
    w.ok(&["rm", "s1"]);
    w.assert_no_leaks(&list[0].0);
}

#[test]
fn host_crash_during_stop_finishes_the_stop() {
    if skip() {
        return;
    }
    require_host();
    let w = crash_during(
        "stop:after-term",
        &[&["run", "-d", "--name", "st", "busybox", "sleep", "100"]],
        &["stop", "-t", "1", "st"],
    );
    // Recovery finishes the stop; wait for the exit it records.
    let code = w.ok(&["wait", "st"]);
    assert_eq!(code.trim(), "137");
    assert_eq!(w.inspect("st")["state"], "exited");
    let id = w.inspect("st")["id"].as_str().unwrap().to_string();
    w.ok(&["rm", "st"]);
    w.assert_no_leaks(&id);
}

#[test]
fn host_crash_during_rm_finishes_the_removal() {
    if skip() {
        return;
    }
    require_host();
    for point in ["rm:after-journal", "rm:after-unmount"] {
        let w = World::new();
        let id = w
            .ok(&["run", "-d", "--name", "gone", "busybox", "sleep", "100"])
            .trim()
            .to_string();
        w.kill9_daemon();
        w.start_with_crash(point);
        let out = w.corral(&["rm", "-f", "gone"]);
        assert!(
            !out.status.success(),
            "{point}: rm should have been cut short"
        );
        w.wait_daemon_dead();
        assert!(
            ids(&w).is_empty(),
            "{point}: removed container still listed"
        );
        w.assert_no_leaks(&id);
    }
}

/// The daemon's event stream (Server-Sent Events) read straight off its socket.
struct Events(std::io::BufReader<std::os::unix::net::UnixStream>);

impl Events {
    fn open(w: &World) -> Events {
        w.ok(&["ps"]); // the daemon runs
        let mut s = std::os::unix::net::UnixStream::connect(w.run.join("corral.sock")).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .unwrap();
        std::io::Write::write_all(&mut s, b"GET /v1/events HTTP/1.1\r\nHost: corral\r\n\r\n")
            .unwrap();
        Events(std::io::BufReader::new(s))
    }

    /// Wait for the next event `action` of the instance named `name`.
    fn next(&mut self, name: &str, action: &str) {
        let mut line = String::new();
        loop {
            line.clear();
            let n = std::io::BufRead::read_line(&mut self.0, &mut line)
                .unwrap_or_else(|e| panic!("no {action} event for {name}: {e}"));
            assert!(n > 0, "the event stream ended before {action} of {name}");
            let Some(data) = line.trim().strip_prefix("data:") else {
                continue;
            };
            let Ok(ev) = serde_json::from_str::<serde_json::Value>(data.trim()) else {
                continue;
            };
            if ev["name"] == name && ev["action"] == action {
                return;
            }
        }
    }
}

#[test]
fn host_restart_policies_on_failure_n_and_always() {
    if skip() {
        return;
    }
    require_host();
    let w = World::new();
    let mut ev = Events::open(&w);
    // on-failure:2: the first run and two restarts, then it stays exited.
    w.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo run; exit 1",
    ]);
    for _ in 0..3 {
        ev.next("flaky", "die");
    }
    let info = w.inspect("flaky");
    assert_eq!(info["restart_count"], 2, "{info}");
    assert_eq!(info["exit_code"], 1, "{info}");
    let logs = w.ok(&["logs", "flaky"]);
    assert_eq!(logs.matches("run\n").count(), 3, "{logs}");
    // A clean exit is not a failure.
    w.ok(&[
        "run",
        "-d",
        "--name",
        "fine",
        "--restart",
        "on-failure",
        "busybox",
        "true",
    ]);
    ev.next("fine", "die");
    assert_eq!(w.inspect("fine")["restart_count"], 0);
    // always: restarted after clean exits too, until the user stops it.
    w.ok(&[
        "run",
        "-d",
        "--name",
        "loop",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "sleep 0.2",
    ]);
    for _ in 0..3 {
        ev.next("loop", "start");
    }
    w.ok(&["stop", "-t", "1", "loop"]);
    let info = w.inspect("loop");
    assert_eq!(info["state"], "exited", "{info}");
    assert!(info["restart_count"].as_i64().unwrap() >= 2, "{info}");
    for n in ["flaky", "fine", "loop"] {
        w.ok(&["rm", n]);
    }
}

#[test]
fn host_logs_rotate_by_size_and_read_across_the_rotation() {
    if skip() {
        return;
    }
    require_host();
    let w = World::new();
    // The daemon the CLI starts inherits the size limit from the environment.
    w.start_daemon_with("CORRAL_LOG_MAX_SIZE", "4k");
    let id = w
        .ok(&[
            "run",
            "-d",
            "--name",
            "chatty",
            "busybox",
            "sh",
            "-c",
            "i=0; while [ $i -lt 400 ]; do echo line-$i; i=$((i+1)); done",
        ])
        .trim()
        .to_string();
    assert_eq!(w.ok(&["wait", "chatty"]).trim(), "0");
    let dir = w.root.join("containers").join(&id);
    let current = std::fs::metadata(dir.join("container.log")).unwrap().len();
    assert!(current <= 4096, "container.log is {current} bytes");
    assert!(
        dir.join("container.log.1").exists(),
        "no rotated generation"
    );
    // `logs` reads the rotated generation then the current one: contiguous, newest last,
    // the oldest lines gone.
    let logs = w.ok(&["logs", "chatty"]);
    let nums: Vec<u32> = logs
        .lines()
        .map(|l| l.strip_prefix("line-").unwrap().parse().unwrap())
        .collect();
    assert_eq!(*nums.last().unwrap(), 399, "{logs}");
    assert!(nums[0] > 0, "nothing was rotated away");
    assert!(nums.windows(2).all(|p| p[1] == p[0] + 1), "{logs}");
    w.ok(&["rm", "chatty"]);
}

/// The effective capability mask of the first process of `corral run --rm ARGS… busybox`,
/// with the result of a `chown` it tries (CapEff from /proc/self/status).
fn cap_eff_and_chown(w: &World, args: &[&str]) -> (u64, bool) {
    let mut argv = vec!["run", "--rm"];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&[
        "busybox",
        "sh",
        "-c",
        "grep CapEff /proc/self/status; touch /tmp/f; chown 1000:1000 /tmp/f && stat -c owner=%u /tmp/f",
    ]);
    let out = w.corral(&argv);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mask = text
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .unwrap_or_else(|| {
            panic!(
                "corral {argv:?}: no CapEff in {text:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    (mask, text.contains("owner=1000"))
}

#[test]
fn host_run_gives_dockers_default_capabilities_and_cap_add_drop_apply_on_top() {
    if skip() {
        return;
    }
    require_host();
    let w = World::new();
    // Docker's 14: CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP,
    // NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP.
    const DOCKER: u64 = 0xa804_25fb;
    const CHOWN: u64 = 1 << 0;
    const KILL: u64 = 1 << 5;
    const NET_ADMIN: u64 = 1 << 12;
    const SYS_ADMIN: u64 = 1 << 21;
    assert_eq!(cap_eff_and_chown(&w, &[]), (DOCKER, true));
    assert_eq!(
        cap_eff_and_chown(&w, &["--cap-drop", "CHOWN"]),
        (DOCKER & !CHOWN, false)
    );
    assert_eq!(
        cap_eff_and_chown(&w, &["--cap-drop", "kill", "--cap-add", "CAP_NET_ADMIN"]),
        ((DOCKER & !KILL) | NET_ADMIN, true)
    );
    assert_eq!(
        cap_eff_and_chown(&w, &["--cap-drop", "ALL", "--cap-add", "chown"]),
        (CHOWN, true)
    );
    // ALL: every capability the daemon has to hand on (the host may have taken some away).
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let all = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())
        .unwrap();
    assert_eq!(
        cap_eff_and_chown(&w, &["--cap-add", "ALL", "--cap-drop", "SYS_ADMIN"]),
        (all & !SYS_ADMIN, true)
    );
    // A user other than root starts without capabilities; the bounding set is still Docker's.
    let out = w.ok(&[
        "run",
        "--rm",
        "-u",
        "1000",
        "busybox",
        "grep",
        "-E",
        "Cap(Eff|Bnd)",
        "/proc/self/status",
    ]);
    assert!(
        out.contains("CapEff:\t0000000000000000") && out.contains("CapBnd:\t00000000a80425fb"),
        "{out}"
    );
    let bad = w.corral(&["run", "--rm", "--cap-add", "NOPE", "busybox", "true"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("cap_add[0]"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
fn host_run_user_takes_its_groups_and_home_from_the_image() {
    if skip() {
        return;
    }
    require_host();
    let w = World::new();
    // An image where `nobody` is also in `staff`, as Docker resolves USER / -u.
    let ctx = w.root.parent().unwrap().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Containerfile"),
        "FROM busybox\nRUN echo staff:x:50:nobody >> /etc/group\n",
    )
    .unwrap();
    w.ok(&["build", "-t", "grouped", ctx.to_str().unwrap()]);
    let id = |args: &[&str]| {
        let mut argv = vec!["run", "--rm"];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&[
            "grouped",
            "sh",
            "-c",
            "echo $(id -u) $(id -g) $(id -G) $HOME",
        ]);
        w.ok(&argv)
    };
    assert_eq!(id(&["-u", "nobody"]), "65534 65534 65534 50 /nonexistent\n");
    // A group given replaces the memberships, as Docker.
    assert_eq!(id(&["-u", "nobody:staff"]), "65534 50 50 /nonexistent\n");
    assert_eq!(id(&[]), "0 0 0 /root\n");
    let bad = w.corral(&["run", "--rm", "-u", "nosuch", "grouped", "true"]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("user: no user \"nosuch\""), "{err}");
}
