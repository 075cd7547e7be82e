//! Exec sessions and signals end to end: `exec -i` without a terminal (stdin piped in, stdout
//! and stderr apart, the exit status), exec sessions that outlive a daemon killed with SIGKILL
//! (their shim holds the process's terminal or pipes and records its status; `attach SESSION`
//! joins one again), a container's
//! removal ending its sessions, and Docker's `--sig-proxy` for attached runs without a
//! terminal. Needs root (containers): names start with `host_`.

mod world;

use std::io::{BufRead, BufReader};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use world::daemon::processes_mentioning;
use world::pty::PtyChild;
use world::{require_host, skip, World};

const T: Duration = Duration::from_secs(30);

/// Start `args` with stdout piped and wait for its first line, which must be `want`; the
/// child (its stdin piped and kept open) and the rest of its stdout.
fn spawn_until_line(
    w: &World,
    args: &[&str],
    want: &str,
) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = w.spawn_piped(args);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = out.read_line(&mut line);
        let _ = tx.send((line, out));
    });
    match rx.recv_timeout(T) {
        Ok((line, out)) if line == want => (child, out),
        got => {
            let _ = child.kill();
            let err = child
                .wait_with_output()
                .map(|o| o.stderr)
                .unwrap_or_default();
            panic!(
                "corral {args:?} printed {:?} first, not {want:?}: {}",
                got.map(|g| g.0),
                String::from_utf8_lossy(&err)
            );
        }
    }
}

/// Wait (bounded) for `child` to end; its status and stderr.
fn wait_child(mut child: Child) -> (ExitStatus, String) {
    let deadline = Instant::now() + T;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
            return (st, err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the command did not end within {T:?}");
        }
        // A child's exit has no descriptor to wait on here; a short poll it is.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The exec session id a message names.
fn session_id(text: &str) -> String {
    let at = text
        .find("exec session ")
        .unwrap_or_else(|| panic!("no session named in {text:?}"));
    text[at + 13..].chars().take(32).collect()
}

/// Poll `corral inspect SESSION` until it has an exit status (bounded); the status.
fn session_exit(w: &World, sid: &str) -> i64 {
    let deadline = Instant::now() + T;
    loop {
        let v = w.inspect(sid);
        if let Some(code) = v["exit_code"].as_i64() {
            assert_eq!(v["running"], false, "{v}");
            return code;
        }
        assert!(Instant::now() < deadline, "session {sid} never ended: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn host_exec_i_without_t_pipes_stdin_keeps_streams_apart_and_returns_the_status() {
    if skip() {
        return;
    }
    require_host();
    let w = World::new();
    let id = w.ok(&["run", "-d", "--name", "box", "busybox", "sleep", "1000"]);
    let id = id.trim();
    // Docker's `echo hi | docker exec -i box cat`.
    let out = w.with_input(&["exec", "-i", "box", "cat"], b"hi\n");
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).as_ref()
        ),
        (Some(0), "hi\n"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Each stream to its own; the end of input reaches the process; its status is ours.
    let script = "while read l; do echo out-$l; echo err-$l >&2; done; exit 3";
    let out = w.with_input(
        &["exec", "-i", "-e", "X=1", "box", "sh", "-c", script],
        b"a\nb\n",
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out-a\nout-b\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err-a\nerr-b\n");
    // Without -i the process gets no input (Docker's): cat ends at once.
    let out = w.with_input(&["exec", "box", "cat"], b"not read\n");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    // Exec output is not the container's log.
    assert_eq!(w.ok(&["logs", "box"]), "");
    // A command that does not exist: an error and a failing status, no hang.
    let out = w.with_input(&["exec", "-i", "box", "no-such-command"], b"");
    assert_ne!(out.status.code(), Some(0));
    assert!(!out.stderr.is_empty());
    // Removing the container ends a session still running, and leaves nothing behind.
    let (child, _out) = spawn_until_line(
        &w,
        &["exec", "-i", "box", "sh", "-c", "echo up; cat"],
        "up\n",
    );
    w.ok(&["rm", "-f", "box"]);
    let (st, err) = wait_child(child);
    assert_ne!(st.code(), Some(0), "{err}");
    w.assert_no_leaks(id);
    let sockets: Vec<_> = std::fs::read_dir(w.run.join("execs"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(sockets.is_empty(), "exec sockets left behind: {sockets:?}");
}

#[test]
fn host_exec_sessions_outlive_a_daemon_crash_and_record_their_status() {
    if skip() {
        return;
    }
    require_host();
    let w = World::new();
    w.ok(&["run", "-d", "--name", "box", "busybox", "sleep", "1000"]);
    // Without a terminal: the process waits for a file, the daemon dies meanwhile.
    let script = "echo started; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo late; exit 7";
    let (child, _out) =
        spawn_until_line(&w, &["exec", "-i", "box", "sh", "-c", script], "started\n");
    w.kill9_daemon();
    let (st, err) = wait_child(child);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(
        err.contains("its process runs on in container box"),
        "{err}"
    );
    let sid = session_id(&err);
    // The next daemon (started by this command) knows the session; the process still runs.
    let v = w.inspect(&sid);
    assert_eq!(v["running"], true, "{v}");
    w.ok(&["exec", "box", "touch", "/tmp/go"]);
    assert_eq!(session_exit(&w, &sid), 7);

    // On a terminal: the shell keeps its terminal (the session's shim holds it), and attach
    // joins it again under the next daemon.
    let mut p = PtyChild::spawn(w.cmd(&["exec", "-it", "box", "sh"]), 24, 80);
    p.expect("# ", T);
    p.send(b"cd /tmp; echo one-$((1+1))\r");
    p.expect("one-2", T);
    w.kill9_daemon();
    assert_eq!(p.wait(T).code(), Some(1), "{}", p.output());
    p.expect("went away during exec session", T);
    p.expect("the session's shim holds its terminal", T);
    let sid = session_id(&p.output());
    assert_eq!(w.inspect(&sid)["running"], true);
    let mut p = PtyChild::spawn(w.cmd(&["attach", &sid]), 30, 90);
    // The same shell: its working directory, and the new size.
    p.send(b"echo again-$((2+3)) $PWD; stty size; exit 5\r");
    p.expect("again-5 /tmp", T);
    p.expect("30 90", T);
    assert_eq!(p.wait(T).code(), Some(5), "{}", p.output());
    assert_eq!(session_exit(&w, &sid), 5);
    // An ended session cannot be joined.
    let out = w.corral(&["attach", &sid]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ended with status 5"),
        "{out:?}"
    );
    let info = w.inspect("box");
    assert_eq!(info["state"], "running", "{info}");
    w.ok(&["rm", "-f", "box"]);
}

#[test]
fn host_attached_runs_pass_signals_to_the_container() {
    if skip() {
        return;
    }
    require_host();
    let w = World::new();
    let script = "trap 'echo got-TERM; exit 3' TERM; trap 'echo got-INT; exit 4' INT; \
                  echo ready; while :; do sleep 0.05; done";
    // Attached without a terminal: SIGTERM to the CLI reaches the container's process.
    let (child, mut out) = spawn_until_line(
        &w,
        &["run", "--rm", "busybox", "sh", "-c", script],
        "ready\n",
    );
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let (st, err) = wait_child(child);
    assert_eq!(st.code(), Some(3), "{err}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!(rest, "got-TERM\n");
    // run -i: Ctrl-C's SIGINT the same way.
    let (child, mut out) = spawn_until_line(
        &w,
        &["run", "-i", "--rm", "busybox", "sh", "-c", script],
        "ready\n",
    );
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let (st, err) = wait_child(child);
    assert_eq!(st.code(), Some(4), "{err}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!(rest, "got-INT\n");
    // --sig-proxy=false: the signal ends the CLI and the container runs on.
    let (child, _out) = spawn_until_line(
        &w,
        &[
            "run",
            "--sig-proxy=false",
            "--name",
            "np",
            "busybox",
            "sh",
            "-c",
            script,
        ],
        "ready\n",
    );
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let (st, _) = wait_child(child);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&st),
        Some(15),
        "{st:?}"
    );
    assert_eq!(w.inspect("np")["state"], "running");
    w.ok(&["rm", "-f", "np"]);
    assert!(processes_mentioning("got-TERM").is_empty());
}
