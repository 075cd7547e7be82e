//! The agent's connection to the host: connect (vsock, or a Unix socket for tests), say hello,
//! send heartbeats on time while listening for requests, and reconnect when it breaks.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corral_agent::guest_metrics;
use corral_agent::protocol::{Message, CAP_EXEC, MAX_LINE, PROTOCOL_VERSION};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, VsockAddr};

use crate::{Args, Target};

/// Longest wait between connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The host closed it.
    Closed,
    /// The host asked for a power-off.
    Shutdown,
}

/// A stream to the host: a vsock socket or a Unix socket.
trait Stream: Read + Write + AsFd {}
impl<T: Read + Write + AsFd> Stream for T {}

/// The sending side of the connection, shared by the heartbeat loop and running commands
/// (whole lines under one lock, so they never interleave).
#[derive(Clone)]
pub struct Writer(Arc<Mutex<std::fs::File>>);

impl Writer {
    /// A writer on a duplicate of the connection's descriptor.
    pub fn new(fd: BorrowedFd<'_>) -> std::io::Result<Self> {
        Ok(Writer(Arc::new(Mutex::new(std::fs::File::from(
            fd.try_clone_to_owned()?,
        )))))
    }

    /// Send one message.
    pub fn send(&self, m: &Message) -> std::io::Result<()> {
        let mut f = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(m.encode().as_bytes())
    }
}

fn connect_vsock(cid: u32, port: u32) -> std::io::Result<std::fs::File> {
    let fd: OwnedFd = socket(
        AddressFamily::Vsock,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    connect(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &VsockAddr::new(cid, port),
    )?;
    Ok(std::fs::File::from(fd))
}

fn open(target: &Target) -> std::io::Result<Box<dyn Stream>> {
    Ok(match target {
        Target::Vsock(cid, port) => Box::new(connect_vsock(*cid, *port)?),
        Target::Unix(path) => Box::new(UnixStream::connect(path)?),
    })
}

/// Connect, serve, reconnect; returns when a shutdown was handled (or with `--once`).
pub fn run(args: &Args) -> ExitCode {
    let mut backoff = Duration::from_millis(200);
    let mut last_error = String::new();
    loop {
        let end = match open(&args.target) {
            Ok(mut s) => {
                eprintln!("corral-agent: connected to the host ({:?})", args.target);
                last_error.clear();
                backoff = Duration::from_millis(200);
                serve(s.as_mut(), args.interval, Path::new("/proc")).unwrap_or_else(|e| {
                    eprintln!("corral-agent: connection lost: {e}");
                    End::Closed
                })
            }
            Err(e) => {
                // Say it once, not every retry (the host may not listen yet, or ever).
                let msg = e.to_string();
                if msg != last_error {
                    eprintln!(
                        "corral-agent: cannot reach the host ({:?}): {msg}; retrying",
                        args.target
                    );
                    last_error = msg;
                }
                End::Closed
            }
        };
        match end {
            End::Shutdown => return power_off(&args.target),
            End::Closed if args.once => return ExitCode::SUCCESS,
            End::Closed => {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// A shutdown request: sync and power off (in the guest), or just end (`--unix`, on a host).
fn power_off(target: &Target) -> ExitCode {
    if let Target::Unix(_) = target {
        eprintln!("corral-agent: shutdown requested (not powering off: --unix)");
        return ExitCode::SUCCESS;
    }
    eprintln!("corral-agent: shutdown requested by the host: powering off");
    nix::unistd::sync();
    let Err(e) = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    eprintln!("corral-agent: power-off failed: {e}");
    ExitCode::FAILURE
}

/// One connection: hello, then heartbeats every `interval` while reading requests.
fn serve(s: &mut dyn Stream, interval: Duration, proc_root: &Path) -> std::io::Result<End> {
    let out = Writer::new(s.as_fd())?;
    let running = Arc::new(AtomicUsize::new(0));
    out.send(&Message::Hello {
        version: PROTOCOL_VERSION,
        agent: env!("CARGO_PKG_VERSION").into(),
        caps: vec![CAP_EXEC.into()],
    })?;
    let mut seq = 0u64;
    let mut next = Instant::now();
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let now = Instant::now();
        if now >= next {
            seq += 1;
            out.send(&Message::Heartbeat(guest_metrics::read(proc_root, seq)))?;
            next = now + interval;
        }
        let wait = next.saturating_duration_since(Instant::now());
        let ms = u16::try_from(wait.as_millis().max(1)).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(s.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let n = match s.read(&mut buf) {
            Ok(0) => return Ok(End::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(i) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            let line = String::from_utf8_lossy(&line);
            match Message::parse(&line) {
                Ok(Message::Shutdown) => {
                    out.send(&Message::Ack {
                        op: "shutdown".into(),
                    })?;
                    return Ok(End::Shutdown);
                }
                Ok(Message::Exec {
                    id,
                    timeout_ms,
                    argv,
                }) => crate::exec::spawn(
                    id,
                    argv,
                    Duration::from_millis(timeout_ms),
                    out.clone(),
                    running.clone(),
                ),
                Ok(other) => eprintln!("corral-agent: ignoring {other:?} from the host"),
                Err(e) => eprintln!("corral-agent: ignoring a line from the host: {e}"),
            }
        }
        if pending.len() > MAX_LINE {
            return Err(std::io::Error::new(
                ErrorKind::InvalidData,
                format!("the host sent a line longer than {MAX_LINE} bytes"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};

    #[test]
    fn hello_heartbeats_then_a_shutdown_request_is_acknowledged() {
        let (mut agent_side, host) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            serve(
                &mut agent_side,
                Duration::from_millis(20),
                Path::new("/proc"),
            )
        });
        let mut r = BufReader::new(host.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert_eq!(
            Message::parse(&line).unwrap(),
            Message::Hello {
                version: 1,
                agent: env!("CARGO_PKG_VERSION").into(),
                caps: vec!["exec".into()],
            }
        );
        for want in 1..=3 {
            line.clear();
            r.read_line(&mut line).unwrap();
            let Ok(Message::Heartbeat(h)) = Message::parse(&line) else {
                panic!("{line:?}")
            };
            assert_eq!(h.seq, want);
            assert!(h.mem_total_kib.is_some(), "{line}");
        }
        // Requests of unknown kinds are ignored; a command runs; a shutdown is acknowledged.
        let exec = Message::Exec {
            id: 5,
            timeout_ms: 10_000,
            argv: vec!["echo".into(), "hi there".into()],
        };
        (&host).write_all(b"migrate to=x\n").unwrap();
        (&host).write_all(exec.encode().as_bytes()).unwrap();
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            match Message::parse(&line).unwrap() {
                Message::ExecOut { id: 5, data, .. } => assert_eq!(data, b"hi there\n"),
                Message::ExecExit { id: 5, end } => {
                    assert_eq!(end, corral_agent::protocol::ExecEnd::Code(0));
                    break;
                }
                _ => {}
            }
        }
        (&host).write_all(b"shutdown\n").unwrap();
        let end = t.join().unwrap().unwrap();
        assert_eq!(end, End::Shutdown);
        let rest: Vec<Message> = r
            .lines()
            .map(|l| Message::parse(&l.unwrap()).unwrap())
            .collect();
        assert_eq!(
            rest.last(),
            Some(&Message::Ack {
                op: "shutdown".into()
            })
        );
    }

    #[test]
    fn the_host_closing_ends_the_connection_and_a_huge_line_is_refused() {
        let (mut a, host) = UnixStream::pair().unwrap();
        drop(host);
        let r = serve(&mut a, Duration::from_secs(60), Path::new("/proc"));
        assert!(matches!(r, Ok(End::Closed)) || r.is_err());

        let (mut a, host) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || serve(&mut a, Duration::from_secs(60), Path::new("/")));
        (&host).write_all(&[b'x'; MAX_LINE + 10]).unwrap();
        let err = t.join().unwrap().unwrap_err();
        assert!(err.to_string().contains("longer than"), "{err}");
    }
}
