//! `corral-agent`, the guest agent: it connects to the host over vsock (CID 2, port 1024),
//! sends a heartbeat with the guest's uptime, memory and load every few seconds, and powers
//! the guest off and runs commands when the host asks (protocol: `corral_agent::protocol`).
//! Started in the background by the guest's init; it reconnects whenever the connection breaks.

mod exec;
mod session;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use corral_agent::protocol::{AGENT_PORT, HOST_CID};

const USAGE: &str = "usage: corral-agent [--cid N] [--port N] [--interval SECONDS] [--unix PATH]

The corral guest agent: heartbeats with the guest's uptime, memory and load to the host over
vsock; a clean power-off and commands (`corral vm exec`) when the host asks.

  --cid N         the host's vsock CID (default 2)
  --port N        the host's vsock port (default 1024)
  --interval S    seconds between heartbeats (default 2)
  --unix PATH     talk over this Unix socket instead of vsock (testing on a host); a shutdown
                  request then ends the agent instead of powering off
  --once          end when the connection ends instead of reconnecting
  --version       print the version";

/// Where to connect.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// vsock (cid, port).
    Vsock(u32, u32),
    /// A Unix stream socket (tests on the host).
    Unix(PathBuf),
}

/// Parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    /// Where the host listens.
    pub target: Target,
    /// Time between heartbeats.
    pub interval: Duration,
    /// Stop after the first connection ends.
    pub once: bool,
}

fn parse_args(argv: &[String]) -> Result<Option<Args>, String> {
    let (mut cid, mut port, mut interval, mut unix, mut once) =
        (HOST_CID, AGENT_PORT, Duration::from_secs(2), None, false);
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let number = |name: &str, v: String| {
            v.parse::<u32>()
                .map_err(|_| format!("{name}: {v:?} is not a number"))
        };
        match a.as_str() {
            "--cid" => cid = number("--cid", value("--cid")?)?,
            "--port" => port = number("--port", value("--port")?)?,
            "--interval" => {
                let v = value("--interval")?;
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s >= 0.05 && *s <= 3600.0)
                    .ok_or_else(|| format!("--interval: {v:?} is not 0.05..3600 seconds"))?;
                interval = Duration::from_secs_f64(secs);
            }
            "--unix" => unix = Some(PathBuf::from(value("--unix")?)),
            "--once" => once = true,
            "--version" | "-V" => return Ok(None),
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(Args {
        target: unix.map_or(Target::Vsock(cid, port), Target::Unix),
        interval,
        once,
    }))
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&argv) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("corral-agent {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("corral-agent: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    session::run(&args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Option<Args>, String> {
        parse_args(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn defaults_and_flags() {
        let a = args("").unwrap().unwrap();
        assert_eq!(a.target, Target::Vsock(2, 1024));
        assert_eq!(a.interval, Duration::from_secs(2));
        let a = args("--cid 3 --port 9 --interval 0.5 --once")
            .unwrap()
            .unwrap();
        assert_eq!(a.target, Target::Vsock(3, 9));
        assert_eq!(a.interval, Duration::from_millis(500));
        assert!(a.once);
        let a = args("--unix /tmp/x.sock").unwrap().unwrap();
        assert_eq!(a.target, Target::Unix("/tmp/x.sock".into()));
        assert_eq!(args("--version"), Ok(None));
    }

    #[test]
    fn bad_flags_name_the_problem() {
        assert!(args("--port").unwrap_err().contains("--port needs a value"));
        assert!(args("--cid x").unwrap_err().contains("not a number"));
        assert!(args("--interval 0").unwrap_err().contains("--interval"));
        assert!(args("--frobnicate").unwrap_err().contains("--frobnicate"));
    }
}
