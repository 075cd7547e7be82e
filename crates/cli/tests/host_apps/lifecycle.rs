//! Apps over time: `app logs -f` following replicas as they come and go, and restart counts
//! and CrashLoopBackOff deadlines that survive the daemon's death.

use std::io::BufRead;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::support::*;

/// Lines of a child's stdout, as they come.
fn stdout_lines(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    rx
}

/// Read lines into `seen` until `want` holds for them (up to 60 s).
fn read_until(
    w: &World,
    app: &str,
    rx: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    want: impl Fn(&[String]) -> bool,
) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if want(seen) {
            return;
        }
        if let Ok(l) = rx.recv_timeout(Duration::from_secs(1)) {
            seen.push(l);
        }
    }
    panic!(
        "no such line within 60 s; the stream so far:\n{}\n--- status ---\n{:#}\n--- daemon log (end) ---\n{}",
        seen.join("\n"),
        w.status(app),
        tail(&w.daemon_log(), 40)
    );
}

fn runs_of(seen: &[String], prefix: &str) -> usize {
    seen.iter()
        .filter(|l| l.starts_with(&format!("{prefix} | run of ")))
        .count()
}

#[test]
fn host_compose_logs_follow_replicas_as_they_come_and_go() {
    if skip() {
        return;
    }
    require_host();
    let w = World::app("logs", 6);
    let app = w.app_name("l");
    w.write(
        "compose.yml",
        "services:\n  web:\n    image: busybox\n    restart: always\n    \
         command: [sh, -c, 'echo \"run of $$HOSTNAME\"; echo to-stderr >&2; exec sleep 300']\n",
    );
    w.ok(&["app", "up", "-d", "-p", &app]);
    let mut child = w
        .cmd(&["app", "logs", "-f", "-p", &app])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = stdout_lines(&mut child);
    let mut seen = Vec::new();
    // Compose's prefix: service-N, the project left out; stderr too.
    read_until(&w, &app, &rx, &mut seen, |s| runs_of(s, "web-1") == 1);
    read_until(&w, &app, &rx, &mut seen, |s| {
        s.iter().any(|l| l == "web-1 | to-stderr")
    });

    // The reconciler restarts a killed replica: its new run joins the same stream.
    w.ok(&["kill", &format!("{app}-web-1")]);
    read_until(&w, &app, &rx, &mut seen, |s| runs_of(s, "web-1") == 2);
    // A replica added by `app scale` joins too, padded like Compose pads prefixes.
    w.ok(&["app", "scale", "-p", &app, "web=2"]);
    read_until(&w, &app, &rx, &mut seen, |s| runs_of(s, "web-2") == 1);
    assert!(
        child.try_wait().unwrap().is_none(),
        "`app logs -f` ended while the app runs"
    );

    // Ctrl-C ends it.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "{status:?}");
    seen.extend(rx.try_iter());
    // Every run once: a restart does not replay the replica's earlier output.
    assert_eq!(runs_of(&seen, "web-1"), 2, "{}", seen.join("\n"));
    assert_eq!(runs_of(&seen, "web-2"), 1, "{}", seen.join("\n"));

    // Without -f: everything so far, then the command ends; one service only.
    let out = w.ok(&["app", "logs", "-p", &app, "web"]);
    let lines: Vec<String> = out.lines().map(String::from).collect();
    assert_eq!(runs_of(&lines, "web-1"), 2, "{out}");
    assert_eq!(runs_of(&lines, "web-2"), 1, "{out}");
    let bad = w.corral(&["app", "logs", "-p", &app, "nope"]);
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("has no service nope"),
        "{bad:?}"
    );
    w.ok(&["app", "down", "-p", &app]);
}

/// Milliseconds of an RFC 3339 time.
fn ms(t: &serde_json::Value) -> u128 {
    let t = humantime::parse_rfc3339(t.as_str().unwrap()).unwrap();
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
}

#[test]
fn host_app_restart_counts_and_backoff_survive_a_daemon_kill() {
    if skip() {
        return;
    }
    require_host();
    let w = World::app("restarts", 7);
    // Backoffs of 0, 2, 4 s… instead of Kubernetes' 0, 10, 20 s.
    w.set_env("CORRAL_APP_BACKOFF_MS", "2000");
    let app = w.app_name("r");
    w.write(
        "compose.yml",
        "services:\n  web:\n    image: busybox\n    restart: always\n    command: [sh, -c, 'exit 3']\n",
    );
    // `up` may see the crash loop and say so; the app is recorded either way.
    let _ = w.corral(&["app", "up", "-d", "-p", &app]);
    // Restarted at once, then after 2 s; now waiting 4 s.
    let st = w.wait_for(&app, "two restarts and a backoff", |st| {
        replicas_of(st, "web")
            .first()
            .is_some_and(|r| r["restarts"] == 2 && r["status"] == "CrashLoopBackOff")
    });
    let started = replicas_of(&st, "web")[0]["started"].clone();

    assert!(w.kill9_daemon(), "a running daemon to kill");
    // The next command starts a new daemon: the count is still 2, still backing off.
    let ps = w.ok(&["app", "ps", "-p", &app]);
    let row = ps
        .lines()
        .find(|l| l.starts_with(&format!("{app}-web-1 ")))
        .unwrap_or_else(|| panic!("{ps}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[2..4], ["CrashLoopBackOff", "2"], "{ps}");

    // The next restart keeps the deadline the dead daemon set (4 s after that run ended),
    // rather than coming at once, and counts on from 2.
    let st = w.wait_for(&app, "the third restart", |st| {
        replicas_of(st, "web")
            .first()
            .is_some_and(|r| r["restarts"] == 3)
    });
    let restarted = &replicas_of(&st, "web")[0]["started"];
    let gap = ms(restarted) - ms(&started);
    assert!(
        gap >= 3900,
        "restarted {gap} ms after the previous start: the backoff was forgotten"
    );
    w.ok(&["app", "down", "-p", &app]);
}
