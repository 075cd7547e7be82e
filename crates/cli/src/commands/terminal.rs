//! The local end of an interactive terminal (`run -it`, `exec -it`, `vm console`): raw mode
//! restored on drop, the window size and its changes (SIGWINCH), and the copy between this
//! terminal and a byte stream from the daemon.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use anyhow::Context;
use corral_api::TtySize;
use nix::sys::termios::{self, SetArg, Termios};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The local terminal in raw mode until dropped.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Put stdin's terminal in raw mode (no echo, no line editing, no signals from keys).
    pub fn enter() -> anyhow::Result<RawMode> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).context("reading the terminal's mode")?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)
            .context("putting the terminal in raw mode")?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSADRAIN, &self.saved);
    }
}

/// Whether `fd` is a terminal.
pub fn is_tty(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: isatty only inspects a descriptor the borrow keeps open.
    unsafe { libc::isatty(fd.as_raw_fd()) == 1 }
}

/// The size of the local terminal (stdout's, else stdin's).
pub fn size() -> Option<TtySize> {
    for fd in [1, 0] {
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ fills a winsize we own.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_row > 0 {
            return Some(TtySize {
                rows: ws.ws_row,
                cols: ws.ws_col,
            });
        }
    }
    None
}

/// A detach key sequence (Docker's `--detach-keys`, default Ctrl-P Ctrl-Q) and how much of it
/// was typed: keys that start the sequence are held back until it completes (detach) or
/// another key shows it was not meant (the held keys go through).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetachKeys {
    seq: Vec<u8>,
    matched: usize,
}

/// Docker's default detach keys.
pub const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

impl DetachKeys {
    /// The sequence `seq` (not empty).
    pub fn from_bytes(seq: Vec<u8>) -> DetachKeys {
        assert!(!seq.is_empty(), "a detach sequence has at least one key");
        DetachKeys { seq, matched: 0 }
    }

    /// Parse Docker's notation: keys separated by commas, each a single character or
    /// `ctrl-X` with X one of a-z, @, [, \, ], ^, _.
    pub fn parse(spec: &str) -> anyhow::Result<DetachKeys> {
        let mut seq = Vec::new();
        for key in spec.split(',') {
            let lower = key.to_ascii_lowercase();
            let code = match (key.len(), lower.strip_prefix("ctrl-")) {
                (1, _) => key.as_bytes()[0],
                (_, Some(c)) if c.len() == 1 => match c.as_bytes()[0] {
                    b @ b'a'..=b'z' => b - b'a' + 1,
                    b'@' => 0,
                    b'[' => 27,
                    b'\\' => 28,
                    b']' => 29,
                    b'^' => 30,
                    b'_' => 31,
                    _ => anyhow::bail!("--detach-keys {spec:?}: unknown key {key:?}"),
                },
                _ => anyhow::bail!(
                    "--detach-keys {spec:?}: {key:?} is not a character or ctrl-<a-z@[\\]^_>"
                ),
            };
            seq.push(code);
        }
        Ok(DetachKeys::from_bytes(seq))
    }

    /// Pass typed `input` through the matcher: the bytes to send on, and whether the sequence
    /// completed (what follows it is dropped).
    pub fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if b != self.seq[self.matched] && self.matched > 0 {
                out.extend_from_slice(&self.seq[..self.matched]);
                self.matched = 0;
            }
            if b == self.seq[self.matched] {
                self.matched += 1;
                if self.matched == self.seq.len() {
                    self.matched = 0;
                    return (out, true);
                }
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The remote end closed the stream.
    Closed,
    /// The user typed the detach key.
    Detached,
}

/// Read stdin on its own thread (a blocked read must not hold up the exit).
pub fn stdin_channel() -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut stdin = std::io::stdin().lock();
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// Copy the stream to stdout and (with `input`) stdin to the stream until the stream ends or
/// the `detach` keys are typed; window changes go to `resize`.
pub async fn run<S, R, F>(
    stream: S,
    input: bool,
    mut detach: Option<DetachKeys>,
    mut resize: R,
) -> anyhow::Result<Ended>
where
    S: AsyncRead + AsyncWrite,
    R: FnMut(TtySize) -> F,
    F: std::future::Future<Output = ()>,
{
    // A write to a stream the daemon closed must fail (EPIPE), not kill us in raw mode.
    // SAFETY: setting a signal disposition to ignore; no handler runs.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut keys = if input { Some(stdin_channel()) } else { None };
    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        .context("watching window size changes")?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut stdout = std::io::stdout();
    loop {
        tokio::select! {
            n = rd.read(&mut buf) => {
                let n = n.context("reading the terminal stream")?;
                if n == 0 {
                    return Ok(Ended::Closed);
                }
                stdout.write_all(&buf[..n])?;
                stdout.flush()?;
            }
            k = async { keys.as_mut()?.recv().await }, if keys.is_some() => {
                let Some(k) = k else {
                    keys = None;
                    continue;
                };
                let (k, detached) = match detach.as_mut() {
                    Some(d) => d.feed(&k),
                    None => (k, false),
                };
                wr.write_all(&k).await.context("writing to the terminal stream")?;
                if detached {
                    return Ok(Ended::Detached);
                }
            }
            _ = winch.recv() => {
                if let Some(s) = size() {
                    resize(s).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse_dockers_notation() {
        assert_eq!(
            DetachKeys::parse(DEFAULT_DETACH_KEYS).unwrap(),
            DetachKeys::from_bytes(vec![0x10, 0x11])
        );
        assert_eq!(
            DetachKeys::parse("ctrl-A,x,ctrl-],ctrl-@").unwrap(),
            DetachKeys::from_bytes(vec![1, b'x', 29, 0])
        );
        for bad in ["", "ctrl-", "ctrl-1", "ab", "ctrl-p,"] {
            assert!(DetachKeys::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn detach_keys_are_held_until_the_sequence_completes_or_breaks() {
        let mut d = DetachKeys::parse(DEFAULT_DETACH_KEYS).unwrap();
        assert_eq!(d.feed(b"ls\r"), (b"ls\r".to_vec(), false));
        // Ctrl-P alone is held, then sent with the key that shows it was not a detach.
        assert_eq!(d.feed(&[0x10]), (vec![], false));
        assert_eq!(d.feed(b"a"), (vec![0x10, b'a'], false));
        // Ctrl-P Ctrl-P Ctrl-Q: the first goes through, the rest detaches.
        assert_eq!(d.feed(&[0x10, 0x10, 0x11, b'z']), (vec![0x10], true));
        // Split across reads.
        assert_eq!(d.feed(b"x\x10"), (b"x".to_vec(), false));
        assert_eq!(d.feed(b"\x11"), (vec![], true));
    }
}
