//! The world's daemon: its pid and log, crash points, `kill -9`, waiting until it is gone,
//! tearing it down, and the leak checks of containers.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::World;

impl World {
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

    /// Start the daemon through the CLI with a crash point armed.
    pub fn start_with_crash(&self, point: &str) {
        self.start_daemon_with("CORRAL_CRASH_AT", point);
    }

    /// Start the daemon through the CLI (`ps`) with `key`=`value` in its environment, which
    /// it inherits; later commands do not get it.
    pub fn start_daemon_with(&self, key: &str, value: &str) {
        let out = self.cmd(&["ps"]).env(key, value).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// SIGKILL the daemon, if there is one, and wait until it is gone (containers and exec
    /// sessions live on in their shims); whether there was one to kill.
    pub fn kill9_daemon(&self) -> bool {
        let Some(pid) = self.daemon_pid() else {
            return false;
        };
        let killed = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .is_ok();
        wait_gone(pid);
        killed
    }

    /// Wait for the daemon the crash point killed; it must be gone.
    pub fn wait_daemon_dead(&self) {
        if let Some(pid) = self.daemon_pid() {
            wait_gone(pid);
        }
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

/// Removes whatever a failed test left through the CLI, prunes the networks (a default
/// network's bridge and table outlive containers by design), then SIGTERMs the daemon and
/// waits until it is gone.
pub(super) fn stop_world(w: &World) {
    let listed = w.corral(&["ps", "-a", "--format", "json"]);
    if let Ok(list) = serde_json::from_slice::<Vec<serde_json::Value>>(&listed.stdout) {
        for c in list {
            let _ = w.corral(&["rm", "-f", c["id"].as_str().unwrap_or("")]);
        }
    }
    let _ = w.corral(&["network", "prune"]);
    if let Some(pid) = w.daemon_pid() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
        wait_gone(pid);
    }
}

/// Waits until process `pid` has exited with all its threads, so none of them still holds
/// its sockets open (a connect then would be reset); fails after 30 s.
pub fn wait_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !exited(pid) {
        assert!(
            Instant::now() < deadline,
            "process {pid} is still running 30 s after it was told to end"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Gone, or a zombie whose other threads have all exited too: a thread-group leader turns
/// zombie while the rest of its threads may still be exiting, holding the shared files.
fn exited(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
    stat.contains(") Z ") && threads <= 1
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
