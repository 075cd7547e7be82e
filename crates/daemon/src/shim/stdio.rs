//! The stdio of a container started without a terminal, served on the attach socket (the
//! protocol of [`super::tty`]): after `corral-tty 1 attach[ close-stdin]\n` a client reads
//! the container's stdout and stderr in Docker's frames ([`corral_api::tty::frame`]), and
//! what it writes goes to the container's stdin when the container was started with one (a
//! pipe the shim holds; otherwise the input is dropped). When the client's input ends, a
//! `close-stdin` attach closes the container's stdin (`run -i`: `cat` sees its end of file);
//! a plain attach leaves it open for the next client, and so does a client that vanished
//! (its connection closed both ways, as when the daemon dies). A resize is refused: there is no
//! terminal.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::fanout::Fanout;
use super::tty::{parse_request, Request};

/// The container's stdin: the write end of its pipe while open.
type Stdin = Arc<Mutex<Option<File>>>;

/// A served stdio.
pub struct Stdio {
    path: PathBuf,
    clients: Arc<Fanout>,
}

impl Stdio {
    /// Serve on a socket at `path`: output pushed to [`Stdio::clients`], input to `stdin`.
    /// With `backlog`, output is kept for the first client (one is on its way).
    pub fn serve(path: &Path, stdin: Option<File>, backlog: bool) -> std::io::Result<Stdio> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let clients = Arc::new(Fanout::new(backlog));
        let stdin: Stdin = Arc::new(Mutex::new(stdin));
        {
            let clients = clients.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming().flatten() {
                    let (clients, stdin) = (clients.clone(), stdin.clone());
                    std::thread::spawn(move || serve_client(conn, &clients, &stdin));
                }
            });
        }
        Ok(Stdio {
            path: path.to_path_buf(),
            clients,
        })
    }

    /// Where the output goes (framed).
    pub fn clients(&self) -> Arc<Fanout> {
        self.clients.clone()
    }

    /// After the container ended and its output drained: when a client is on its way
    /// (`first_attach`), wait that long for it; then close every client, remove the socket.
    pub fn finish(self, first_attach: Option<Duration>) {
        if let Some(wait) = first_attach {
            self.clients.wait_first_client(wait);
        }
    }
}

impl Drop for Stdio {
    /// Every way out (a failed start included) ends the clients and removes the socket.
    fn drop(&mut self) {
        self.clients.close();
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve_client(conn: UnixStream, clients: &Fanout, stdin: &Mutex<Option<File>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let Ok(mut conn) = reader.get_ref().try_clone() else {
        return;
    };
    let close_stdin = match parse_request(line.trim_end()) {
        Err(e) => {
            let _ = writeln!(conn, "error {e}");
            return;
        }
        Ok(Request::Resize(_)) => {
            let _ = writeln!(conn, "error the container has no terminal");
            return;
        }
        Ok(Request::Attach { close_stdin }) => close_stdin,
    };
    if !clients.attach(&conn) {
        return;
    }
    let _ = reader.get_ref().set_read_timeout(None);
    let write = |bytes: &[u8]| {
        let mut s = stdin.lock().expect("stdin poisoned");
        if let Some(f) = s.as_mut() {
            if f.write_all(bytes).is_err() {
                // The container closed its end: nobody reads any more.
                *s = None;
            }
        }
    };
    // Bytes the BufReader already holds come first, then the rest of the input.
    write(reader.buffer());
    let mut input = reader.into_inner();
    let mut buf = [0u8; 8192];
    loop {
        match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => write(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
    // A client that vanished (its connection closed both ways: the daemon died) did not end
    // the input; the process keeps its stdin for the next one.
    if close_stdin && !hung_up(&input) {
        stdin.lock().expect("stdin poisoned").take();
    }
}

/// Whether the peer of `conn` closed it entirely, rather than only ended its writing.
fn hung_up(conn: &UnixStream) -> bool {
    let mut fds = [libc::pollfd {
        fd: std::os::fd::AsRawFd::as_raw_fd(conn),
        events: libc::POLLOUT,
        revents: 0,
    }];
    // SAFETY: poll reads and writes the one pollfd we own, for the length we pass.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) };
    n == 1 && fds[0].revents & libc::POLLHUP != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shim::tty::PROTOCOL;
    use corral_api::tty::{frame, STDERR, STDOUT};

    #[test]
    fn output_in_frames_input_to_stdin_and_close_stdin_ends_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("attach.sock");
        let (r, w) = nix::unistd::pipe().unwrap();
        let stdio = Stdio::serve(&path, Some(File::from(w)), true).unwrap();
        let out = stdio.clients();
        out.push(&frame(STDOUT, b"before\n"));

        // A plain attach: its input reaches stdin; its end leaves stdin open.
        let mut a = UnixStream::connect(&path).unwrap();
        writeln!(a, "{PROTOCOL} attach").unwrap();
        let mut got = vec![0u8; 15];
        a.read_exact(&mut got).unwrap();
        assert_eq!(got, frame(STDOUT, b"before\n"));
        a.write_all(b"one\n").unwrap();
        a.shutdown(std::net::Shutdown::Write).unwrap();
        let mut stdin = File::from(r);
        let mut line = [0u8; 4];
        stdin.read_exact(&mut line).unwrap();
        assert_eq!(&line, b"one\n");

        // A close-stdin client that vanishes (closed both ways) leaves stdin open.
        let mut gone = UnixStream::connect(&path).unwrap();
        writeln!(gone, "{PROTOCOL} attach close-stdin").unwrap();
        gone.write_all(b"gone\n").unwrap();
        drop(gone);
        let mut word = [0u8; 5];
        stdin.read_exact(&mut word).unwrap();
        assert_eq!(&word, b"gone\n");

        // A close-stdin attach: its end is the container's end of input.
        let mut b = UnixStream::connect(&path).unwrap();
        writeln!(b, "{PROTOCOL} attach close-stdin").unwrap();
        b.write_all(b"two\n").unwrap();
        b.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        stdin.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"two\n");

        // Output reaches both; a resize is refused; the end closes every client.
        out.push(&frame(STDERR, b"err\n"));
        let mut r = UnixStream::connect(&path).unwrap();
        writeln!(r, "{PROTOCOL} resize 1 2").unwrap();
        let mut answer = String::new();
        r.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("error "), "{answer}");
        stdio.finish(None);
        assert!(!path.exists());
        for mut c in [a, b] {
            let mut tail = Vec::new();
            c.read_to_end(&mut tail).unwrap();
            assert_eq!(tail, frame(STDERR, b"err\n"));
        }
    }
}
