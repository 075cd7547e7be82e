//! The terminal of a container started with `tty` (or of an exec session's process): the shim
//! holds the pty master, copies its output into the log (as `stdout`; an exec has none) and to
//! every attached client, and serves the attach socket, which the daemon connects to on behalf
//! of API clients.
//!
//! # Attach socket protocol, version 1
//! A client connects and writes one request line:
//! - `corral-tty 1 attach[ close-stdin]\n`: from then on the connection carries raw bytes:
//!   what the client writes is the terminal's input, what it reads the terminal's output. The
//!   first client to attach also receives the output made before it came (at most 1 MiB), so
//!   a foreground `run -it` misses nothing. The shim closes the connection when the terminal
//!   closes. (A container without a terminal serves the same request, see [`super::stdio`].)
//! - `corral-tty 1 resize ROWS COLS\n`: sets the window size; the answer is `ok\n` or
//!   `error MESSAGE\n`, then the shim closes the connection.
//!
//! Any other line is answered with `error MESSAGE\n`.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_api::TtySize;

use super::fanout::Fanout;
use super::log::{Lines, LogWriter};

/// The request line's prefix.
pub const PROTOCOL: &str = "corral-tty 1";

/// A served terminal.
pub struct Terminal {
    path: PathBuf,
    clients: Arc<Fanout>,
    done: mpsc::Receiver<()>,
}

/// What a request line asks.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// Stream the terminal (or the stdio of a container without one; `close_stdin`: the end
    /// of this client's input closes the container's stdin).
    Attach {
        /// Close the container's stdin when this client's input ends.
        close_stdin: bool,
    },
    /// Set the window size.
    Resize(TtySize),
}

/// Parse a request line (without its newline).
pub fn parse_request(line: &str) -> Result<Request, String> {
    let rest = line
        .strip_prefix(PROTOCOL)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or_else(|| format!("expected `{PROTOCOL} attach|resize …`"))?;
    let words: Vec<&str> = rest.split_whitespace().collect();
    match words.as_slice() {
        ["attach"] => Ok(Request::Attach { close_stdin: false }),
        ["attach", "close-stdin"] => Ok(Request::Attach { close_stdin: true }),
        ["resize", rows, cols] => {
            let n = |s: &str| s.parse::<u16>().map_err(|_| format!("bad size {s:?}"));
            Ok(Request::Resize(TtySize {
                rows: n(rows)?,
                cols: n(cols)?,
            }))
        }
        _ => Err(format!("unknown request {rest:?}")),
    }
}

impl Terminal {
    /// Serve `master` on a socket at `path`, logging its output into `log`. Clients are let go
    /// when the terminal closes, unless `hold_open`: then at [`Terminal::finish`] (an exec's
    /// shim sends the runtime's error first).
    pub fn serve(
        master: OwnedFd,
        path: &Path,
        log: Option<Arc<Mutex<LogWriter>>>,
        hold_open: bool,
    ) -> std::io::Result<Terminal> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let master = File::from(master);
        let clients = Arc::new(Fanout::new(true));
        let (done_tx, done) = mpsc::channel();
        {
            let reader = master.try_clone()?;
            let clients = clients.clone();
            std::thread::spawn(move || {
                copy_output(reader, &clients, log.as_deref());
                if !hold_open {
                    clients.close();
                }
                let _ = done_tx.send(());
            });
        }
        {
            let clients = clients.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming().flatten() {
                    let Ok(input) = master.try_clone() else {
                        continue;
                    };
                    let clients = clients.clone();
                    std::thread::spawn(move || serve_client(conn, input, &clients));
                }
            });
        }
        Ok(Terminal {
            path: path.to_path_buf(),
            clients,
            done,
        })
    }

    /// Wait up to `grace` for the terminal to close (the output drained).
    pub fn drain(&self, grace: Duration) {
        let _ = self.done.recv_timeout(grace);
    }

    /// Send `bytes` to every client after the terminal's output.
    pub fn push(&self, bytes: &[u8]) {
        self.clients.push(bytes);
    }

    /// After the container ended: let the output drain (the terminal closes when its last
    /// process does; at most `grace`); when a client is on its way (`first_attach`), wait that
    /// long for it to collect the output; then close every client and remove the socket.
    pub fn finish(self, grace: Duration, first_attach: Option<Duration>) {
        let _ = self.done.recv_timeout(grace);
        if let Some(wait) = first_attach {
            self.clients.wait_first_client(wait);
        }
        self.clients.close();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Copy the master's output to the log and the clients until the terminal closes (EIO).
fn copy_output(mut master: File, clients: &Fanout, log: Option<&Mutex<LogWriter>>) {
    let mut buf = [0u8; 8192];
    let mut lines = Lines::new("stdout");
    loop {
        let n = match master.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let out = &buf[..n];
        if let Some(log) = log {
            lines.push(out, log);
        }
        clients.push(out);
    }
    if let Some(log) = log {
        lines.flush(log);
    }
}

fn serve_client(conn: UnixStream, mut master: File, clients: &Fanout) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let Ok(mut conn) = reader.get_ref().try_clone() else {
        return;
    };
    match parse_request(line.trim_end()) {
        Err(e) => {
            let _ = writeln!(conn, "error {e}");
        }
        Ok(Request::Resize(size)) => {
            let answer = match crate::pty::set_size(master.as_raw_fd(), size) {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("error {e}"),
            };
            let _ = writeln!(conn, "{answer}");
        }
        Ok(Request::Attach { .. }) => {
            // A process that already ended: its output, then the end.
            if !clients.attach(&conn) {
                return;
            }
            let _ = reader.get_ref().set_read_timeout(None);
            // Bytes the BufReader already holds come first, then the rest of the input.
            let held = reader.buffer().to_vec();
            if master.write_all(&held).is_err() {
                return;
            }
            let mut input = reader.into_inner();
            let mut buf = [0u8; 4096];
            loop {
                match input.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if master.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            parse_request("corral-tty 1 attach"),
            Ok(Request::Attach { close_stdin: false })
        );
        assert_eq!(
            parse_request("corral-tty 1 attach close-stdin"),
            Ok(Request::Attach { close_stdin: true })
        );
        assert_eq!(
            parse_request("corral-tty 1 resize 40 120"),
            Ok(Request::Resize(TtySize {
                rows: 40,
                cols: 120
            }))
        );
        assert!(parse_request("corral-tty 2 attach").is_err());
        assert!(parse_request("corral-tty 1 resize 40").is_err());
        assert!(parse_request("corral-tty 1 resize -1 2").is_err());
    }

    #[test]
    fn first_client_gets_the_backlog_then_input_and_resize_reach_the_terminal() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(Mutex::new(
            LogWriter::open(&dir.path().join("container.log"), 1 << 20).unwrap(),
        ));
        let pty = nix::pty::openpty(None, None).unwrap();
        // Raw slave: no echo, no line discipline, so bytes pass unchanged.
        let mut t = nix::sys::termios::tcgetattr(&pty.slave).unwrap();
        nix::sys::termios::cfmakeraw(&mut t);
        nix::sys::termios::tcsetattr(&pty.slave, nix::sys::termios::SetArg::TCSANOW, &t).unwrap();
        let path = dir.path().join("attach.sock");
        let term = Terminal::serve(pty.master, &path, Some(log.clone()), false).unwrap();
        let mut slave = File::from(pty.slave);
        slave.write_all(b"before attach\n").unwrap();

        let mut conn = UnixStream::connect(&path).unwrap();
        writeln!(conn, "{PROTOCOL} attach").unwrap();
        let mut got = vec![0u8; 14];
        conn.read_exact(&mut got).unwrap();
        assert_eq!(got, b"before attach\n");
        conn.write_all(b"typed").unwrap();
        let mut typed = [0u8; 5];
        slave.read_exact(&mut typed).unwrap();
        assert_eq!(&typed, b"typed");

        let mut r = UnixStream::connect(&path).unwrap();
        writeln!(r, "{PROTOCOL} resize 24 99").unwrap();
        let mut answer = String::new();
        r.read_to_string(&mut answer).unwrap();
        assert_eq!(answer, "ok\n");
        // SAFETY: winsize is plain integers; all zeroes is a valid value.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ fills a winsize we own.
        let rc = unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
        assert_eq!(rc, 0);
        assert_eq!((ws.ws_row, ws.ws_col), (24, 99));

        // The terminal closes with its last process: the client sees the end.
        slave.write_all(b"bye\n").unwrap();
        drop(slave);
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"bye\n");
        term.finish(Duration::from_secs(5), None);
        assert!(!path.exists());
        let logged: Vec<String> = super::super::log::read_all(&dir.path().join("container.log"))
            .into_iter()
            .map(|l| l.log)
            .collect();
        assert_eq!(logged, ["before attach\n", "bye\n"]);
    }
}
