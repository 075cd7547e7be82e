//! Tearing down a test's private daemon, shared by the daemon test worlds: remove every
//! container it still has, prune its networks, stop it and wait until it is gone.

use std::process::Output;
use std::time::{Duration, Instant};

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
