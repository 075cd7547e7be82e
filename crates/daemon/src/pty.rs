//! Pseudo-terminals the OCI runtime makes for a process with `process.terminal`: the console
//! socket that receives the pty's master (runc's `--console-socket` protocol: one message
//! whose `SCM_RIGHTS` carries the master), and window sizes.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use corral_api::TtySize;

/// Set the window size of the terminal behind `fd` (its processes get SIGWINCH).
pub fn set_size(fd: RawFd, size: TtySize) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize we own for the duration of the call.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receive one descriptor sent with `SCM_RIGHTS` on the connected socket `sock`.
pub fn recv_fd(sock: RawFd) -> io::Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut name = [0u8; 256];
    let mut iov = [io::IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                for &extra in &fds[1..] {
                    // SAFETY: descriptors we just received and nobody else owns.
                    drop(unsafe { OwnedFd::from_raw_fd(extra) });
                }
                // SAFETY: the kernel installed this descriptor for us alone.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "the console socket's message carried no descriptor",
    ))
}

/// A listening console socket, removed when dropped.
#[derive(Debug)]
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    /// Listen at `path` (a stale file there is replaced), mode 0600.
    pub fn bind(path: &Path) -> io::Result<ConsoleSocket> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(ConsoleSocket {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// Where it listens.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Wait for the runtime to send the pty master, while `alive()` says the runtime still
    /// runs (checked every 50 ms) and at most `timeout`.
    pub fn receive(
        &self,
        timeout: Duration,
        mut alive: impl FnMut() -> bool,
    ) -> io::Result<OwnedFd> {
        let deadline = Instant::now() + timeout;
        let mut last_look = false;
        loop {
            match self.listener.accept() {
                Ok((conn, _)) => {
                    conn.set_nonblocking(false)?;
                    conn.set_read_timeout(Some(
                        deadline
                            .saturating_duration_since(Instant::now())
                            .max(Duration::from_millis(100)),
                    ))?;
                    return recv_fd(conn.as_raw_fd());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if last_look {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "the runtime ended without sending a terminal",
                ));
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the runtime sent no terminal in time",
                ));
            }
            let mut fds = [nix::poll::PollFd::new(
                std::os::fd::AsFd::as_fd(&self.listener),
                nix::poll::PollFlags::POLLIN,
            )];
            let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(50u16));
            if !alive() {
                // One more look: it may have connected just before it exited.
                last_look = true;
            }
        }
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Set `O_NONBLOCK` on `fd`.
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on a descriptor the caller owns; integers only.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_master_sent_over_the_console_socket_arrives_and_takes_a_size() {
        let dir = tempfile::tempdir().unwrap();
        let sock = ConsoleSocket::bind(&dir.path().join("c.sock")).unwrap();
        let pty = nix::pty::openpty(None, None).unwrap();
        let path = sock.path().to_path_buf();
        let master_raw = pty.master.as_raw_fd();
        let sender = std::thread::spawn(move || {
            let s = std::os::unix::net::UnixStream::connect(&path).unwrap();
            let fds = [master_raw];
            let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
            let iov = [io::IoSlice::new(b"/dev/ptmx")];
            nix::sys::socket::sendmsg::<()>(
                s.as_raw_fd(),
                &iov,
                &cmsg,
                nix::sys::socket::MsgFlags::empty(),
                None,
            )
            .unwrap();
        });
        let got = sock.receive(Duration::from_secs(5), || true).unwrap();
        sender.join().unwrap();
        set_size(
            got.as_raw_fd(),
            TtySize {
                rows: 33,
                cols: 101,
            },
        )
        .unwrap();
        // SAFETY: winsize is plain integers; all zeroes is a valid value.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ fills a winsize we own.
        let rc = unsafe { libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
        assert_eq!(rc, 0);
        assert_eq!((ws.ws_row, ws.ws_col), (33, 101));
    }

    #[test]
    fn a_runtime_that_ends_without_a_terminal_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let sock = ConsoleSocket::bind(&dir.path().join("c.sock")).unwrap();
        let err = sock.receive(Duration::from_secs(5), || false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        drop(sock);
        assert!(!dir.path().join("c.sock").exists());
    }
}
