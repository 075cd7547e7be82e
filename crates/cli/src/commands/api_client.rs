//! The CLI's side of the API: connect to the daemon's socket, starting the daemon (detached,
//! logging to `daemon.log` in the root dir) when nobody answers.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use corral_api::{Client, Endpoint};

use crate::cli::GlobalArgs;

/// A connected API client with the runtime that drives it.
pub struct Api {
    rt: tokio::runtime::Runtime,
    /// The typed client.
    pub client: Client,
}

impl Api {
    /// Connect to the daemon of this root/run dir, starting it if needed.
    pub fn connect(global: &GlobalArgs) -> anyhow::Result<Api> {
        let socket = global.run_dir.join("corral.sock");
        if std::os::unix::net::UnixStream::connect(&socket).is_err() {
            start_daemon(global).context("starting the corral daemon")?;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("creating the async runtime")?;
        Ok(Api {
            rt,
            client: Client::new(Endpoint::Unix(socket)),
        })
    }

    /// Run a future to completion.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

/// Start `corral daemon` detached and wait for its readiness line.
fn start_daemon(global: &GlobalArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&global.root)
        .with_context(|| format!("creating {}", global.root.display()))?;
    let log_path = global.root.join("daemon.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let wfd = ready_w.as_raw_fd();
    let exe = std::env::current_exe().context("finding the corral executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("--root")
        .arg(&global.root)
        .arg("--run-dir")
        .arg(&global.run_dir)
        .arg("daemon")
        .arg("--ready-fd")
        .arg("3")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: only async-signal-safe calls (setsid, dup2, fcntl) between fork and exec, on an
    // fd the parent keeps open until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            nix::libc::setsid();
            if wfd == 3 {
                nix::libc::fcntl(3, nix::libc::F_SETFD, 0);
            } else if nix::libc::dup2(wfd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let _child = cmd.spawn().context("spawning `corral daemon`")?;
    drop(ready_w);
    let mut answer = String::new();
    std::fs::File::from(ready_r).read_to_string(&mut answer)?;
    if answer.trim() == "ready" {
        return Ok(());
    }
    // Another CLI may have started one at the same moment: use it if it answers.
    if std::os::unix::net::UnixStream::connect(global.run_dir.join("corral.sock")).is_ok() {
        return Ok(());
    }
    bail!(
        "the daemon exited during start-up; the end of {}:\n{}",
        log_path.display(),
        tail(&log_path, 5)
    )
}

fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Parse a size such as `256m`, `1G`, `512k` or plain bytes.
pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix('b')
        .unwrap_or(&t)
        .strip_suffix('i')
        .unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num
        .parse()
        .with_context(|| format!("{s:?} is not a size like 256m or 1g"))?;
    if n < 0.0 {
        bail!("{s:?}: a size cannot be negative");
    }
    Ok((n * mult as f64) as u64)
}

/// Format bytes for tables (`12.3MiB`).
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b}B")
    } else {
        format!("{v:.1}{}", UNITS[i])
    }
}

/// Seconds from an RFC 3339 time until now; None when it does not parse.
pub fn seconds_since(rfc3339: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339_weak(rfc3339).ok()?;
    Some(
        std::time::SystemTime::now()
            .duration_since(t)
            .unwrap_or_default()
            .as_secs(),
    )
}

/// kubectl's AGE column (`42s`, `5m12s`), `<unknown>` when the time does not parse.
pub fn age(rfc3339: &str) -> String {
    seconds_since(rfc3339).map_or_else(|| "<unknown>".into(), human_secs)
}

/// Docker's CREATED column (`42 seconds ago`), `N/A` when the time does not parse.
pub fn ago(rfc3339: &str) -> String {
    match seconds_since(rfc3339) {
        None => "N/A".into(),
        Some(secs @ 0..=59) => format!("{secs} seconds ago"),
        Some(secs @ 60..=3599) => format!("{} minutes ago", secs / 60),
        Some(secs @ 3600..=86399) => format!("{} hours ago", secs / 3600),
        Some(secs) => format!("{} days ago", secs / 86400),
    }
}

/// Format seconds as `3d4h`, `5m12s`, `42s`.
pub fn human_secs(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

/// Print rows as a left-aligned table with the given header.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out += c;
            } else {
                out += &format!("{c:<w$}   ", w = widths[i]);
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.iter().map(|s| s.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256m").unwrap(), 256 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").is_err());
        assert_eq!(human_bytes(1536), "1.5KiB");
        assert_eq!(human_secs(3725), "1h2m");
    }
}
