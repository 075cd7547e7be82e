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

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The remote end closed the stream.
    Closed,
    /// The user typed the detach key.
    Detached,
}

/// Read stdin on its own thread (a blocked read must not hold up the exit).
fn stdin_channel() -> tokio::sync::mpsc::Receiver<Vec<u8>> {
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
/// the `detach` key is typed; window changes go to `resize`.
pub async fn run<S, R, F>(
    stream: S,
    input: bool,
    detach: Option<u8>,
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
                let (k, detached) = match detach.and_then(|d| k.iter().position(|&b| b == d)) {
                    Some(at) => (&k[..at], true),
                    None => (&k[..], false),
                };
                wr.write_all(k).await.context("writing to the terminal stream")?;
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
