//! One private daemon world per test, shared by the daemon's container test files: its own
//! root and run dirs with the busybox image, the CLI pointed at them (the daemon is started by
//! the CLI), crash points, leak checks, and a teardown that leaves nothing behind.
//!
//! The runtime is corral's own (`corral oci`, the daemon's default), or the binary named by
//! `CORRAL_TEST_OCI_RUNTIME` (e.g. /usr/sbin/runc, to check the tests themselves).

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::daemon_teardown::{stop_world, wait_gone};

/// Whether host tests are skipped (CORRAL_SKIP_HOST_TESTS=1).
pub fn skip() -> bool {
    std::env::var("CORRAL_SKIP_HOST_TESTS").as_deref() == Ok("1")
}

/// The OCI runtime under test when it is not corral's own.
pub fn runtime() -> Option<String> {
    std::env::var("CORRAL_TEST_OCI_RUNTIME").ok()
}

/// Fail loudly unless this is root with busybox-static (and the runtime asked for).
pub fn require_host() {
    assert_eq!(
        nix::unistd::geteuid().as_raw(),
        0,
        "host_ tests need root (set CORRAL_SKIP_HOST_TESTS=1 to skip)"
    );
    if let Some(rt) = runtime() {
        assert!(Path::new(&rt).exists(), "OCI runtime {rt} is missing");
    }
    assert!(
        Path::new("/bin/busybox").exists(),
        "/bin/busybox is missing (apt-get install busybox-static)"
    );
}

/// One private daemon world: its own root and run dirs; the daemon is started by the CLI.
pub struct World {
    _dir: tempfile::TempDir,
    /// The root dir (CORRAL_ROOT).
    pub root: PathBuf,
    /// The run dir (CORRAL_RUN).
    pub run: PathBuf,
}

impl World {
    /// A new world with the busybox image imported.
    pub fn new() -> World {
        let dir = tempfile::Builder::new()
            .prefix(&format!("daemon-{}-", std::process::id()))
            .tempdir()
            .unwrap();
        let w = World {
            root: dir.path().join("root"),
            run: dir.path().join("run"),
            _dir: dir,
        };
        import_busybox(&w.root);
        w
    }

    /// The CLI with `args`, pointed at this world.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_corral"));
        c.args(args)
            .env("CORRAL_ROOT", &self.root)
            .env("CORRAL_RUN", &self.run)
            .env_remove("CORRAL_OCI_RUNTIME")
            .env_remove("CORRAL_CRASH_AT");
        if let Some(rt) = runtime() {
            c.env("CORRAL_OCI_RUNTIME", rt);
        }
        c
    }

    /// Run the CLI with `args`.
    pub fn corral(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Run the CLI with `args` and `input` on its stdin (then closed), stdout and stderr
    /// captured; fails the test instead of hanging when it has not ended after 30 s.
    pub fn with_input(&self, args: &[&str], input: &'static [u8]) -> Output {
        const LIMIT: std::time::Duration = std::time::Duration::from_secs(30);
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            let _ = stdin.write_all(input);
        });
        let pid = child.id() as i32;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(LIMIT) {
            Ok(out) => out.unwrap(),
            Err(_) => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                panic!("corral {args:?} did not end within {LIMIT:?}");
            }
        }
    }

    /// Run and require success; stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.corral(args);
        assert!(
            out.status.success(),
            "corral {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.daemon_log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Start the daemon through the CLI with a crash point armed.
    pub fn start_with_crash(&self, point: &str) {
        let out = self
            .cmd(&["ps"])
            .env("CORRAL_CRASH_AT", point)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The daemon's pid from its pid file.
    pub fn daemon_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.run.join("corral.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The daemon's log.
    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.root.join("daemon.log")).unwrap_or_default()
    }

    /// SIGKILL the daemon and wait until it is gone.
    pub fn kill9_daemon(&self) {
        if let Some(pid) = self.daemon_pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            wait_gone(pid);
        }
    }

    /// Wait for the daemon the crash point killed; it must be gone.
    pub fn wait_daemon_dead(&self) {
        if let Some(pid) = self.daemon_pid() {
            wait_gone(pid);
        }
    }

    /// `corral inspect NAME` as JSON.
    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let out = self.ok(&["inspect", name]);
        serde_json::from_str::<serde_json::Value>(&out).unwrap()[0].clone()
    }

    /// Nothing of container `id` is left on the host.
    pub fn assert_no_leaks(&self, id: &str) {
        let dir = self.root.join("containers").join(id);
        assert!(!dir.exists(), "{} left behind", dir.display());
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(id), "a mount of {id} left behind");
        for entry in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let cg = entry.path().join("corral").join(id);
            assert!(!cg.exists(), "cgroup {} left behind", cg.display());
        }
        assert!(
            processes_mentioning(id).is_empty(),
            "processes of {id} left behind"
        );
        assert!(
            !self.run.join("oci").join(id).exists(),
            "runtime state of {id} left behind"
        );
        assert!(
            !self.run.join("netns").join(id).exists(),
            "network namespace of {id} left behind"
        );
        let sock = self.run.join("shims").join(format!("{}.sock", &id[..32]));
        assert!(
            !sock.exists(),
            "attach socket {} left behind",
            sock.display()
        );
    }
}

impl Drop for World {
    fn drop(&mut self) {
        stop_world(&|args| self.corral(args), &|| self.daemon_pid());
    }
}

/// Import the `busybox` image into the image store under `root` with the project's script
/// (Debian's busybox-static, no network).
pub fn import_busybox(root: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/busybox-image.sh");
    let out = Command::new(&script)
        .env("CORRAL", env!("CARGO_BIN_EXE_corral"))
        .env("CORRAL_ROOT", root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Live processes whose command line names `id`.
pub fn processes_mentioning(id: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            if String::from_utf8_lossy(&cmd).contains(id) {
                let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true);
                if !zombie {
                    out.push(pid);
                }
            }
        }
    }
    out
}
