//! Process facts from /proc, and waiting for a process that is not our child (pidfd).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

/// The start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat).
pub fn start_time(pid: i32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Fields of /proc/PID/stat after the command name (field 3 is index 0).
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    Some(after.split_whitespace().map(String::from).collect())
}

/// Whether `pid` is alive and is the same process that started at `start` (not a zombie).
pub fn alive(pid: i32, start: Option<u64>) -> bool {
    match stat_fields(pid) {
        Some(f) => {
            f.first().map(String::as_str) != Some("Z")
                && (start.is_none() || f.get(19).and_then(|s| s.parse().ok()) == start)
        }
        None => false,
    }
}

/// The process's command line, NUL-separated arguments joined by spaces.
pub fn cmdline(pid: i32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// CPU time (user + system) of `pid` in nanoseconds.
pub fn cpu_ns(pid: i32) -> Option<u64> {
    let f = stat_fields(pid)?;
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(ticks * 1_000_000_000 / hz)
}

/// Resident set size of `pid` in bytes.
pub fn rss_bytes(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Seconds since boot when `pid` started, as wall-clock ms since the epoch.
pub fn started_at_ms(pid: i32) -> Option<i64> {
    let ticks = start_time(pid)?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let boot_ms = corral_store::now_ms() - (uptime * 1000.0) as i64;
    Some(boot_ms + (ticks * 1000 / hz) as i64)
}

/// Wait until `pid` exits, whether or not it is our child. Returns at once if it is gone.
pub async fn wait_exit(pid: i32) {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no pointers.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return;
    }
    // SAFETY: the syscall returned a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: the AsyncFd owns the OwnedFd, so the descriptor stays open and the same until
    // it is dropped.
    let Ok(afd) = (unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) })
    else {
        return;
    };
    if let Ok(mut guard) = afd.readable().await {
        guard.retain_ready();
    }
    let _ = afd.get_ref().as_raw_fd();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_with_its_start_time() {
        let me = std::process::id() as i32;
        let st = start_time(me).expect("start time");
        assert!(alive(me, Some(st)));
        assert!(!alive(me, Some(st + 1)));
        assert!(rss_bytes(me).unwrap() > 0);
        assert!(cmdline(me).is_some());
    }

    #[tokio::test]
    async fn wait_exit_returns_when_a_process_ends() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let waiter = tokio::spawn(wait_exit(pid));
        child.wait().unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
            .await
            .expect("pidfd readable after exit")
            .unwrap();
    }
}
