//! Tearing down a test's private daemon, shared by the daemon test worlds: remove every
//! container it still has, prune its networks, stop it and wait until it is gone.

use std::process::Output;
use std::time::{Duration, Instant};

/// Waits (up to 10 s) until `pid` has exited: gone, or a zombie.
pub fn wait_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let gone = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true);
        if gone {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Removes whatever a failed test left through `corral`, prunes the networks (a default
/// network's bridge and table outlive containers by design), then SIGTERMs the daemon.
pub fn stop_world(corral: &dyn Fn(&[&str]) -> Output, daemon_pid: &dyn Fn() -> Option<i32>) {
    let listed = corral(&["ps", "-a", "--format", "json"]);
    if let Ok(list) = serde_json::from_slice::<Vec<serde_json::Value>>(&listed.stdout) {
        for c in list {
            let _ = corral(&["rm", "-f", c["id"].as_str().unwrap_or("")]);
        }
    }
    let _ = corral(&["network", "prune"]);
    if let Some(pid) = daemon_pid() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
        wait_gone(pid);
    }
}
