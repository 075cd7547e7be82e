//! Driving an interactive `corral` through a pseudo-terminal, as a person at a terminal would:
//! the child gets the pty's slave as stdin, stdout, stderr and controlling terminal (so window
//! changes reach it as SIGWINCH); the test reads what it prints and types into the master.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A child process on a pty.
pub struct PtyChild {
    master: File,
    child: Child,
    out: Arc<(Mutex<Vec<u8>>, Condvar)>,
    /// Where the next `expect` starts looking.
    seen: usize,
}

fn winsize(rows: u16, cols: u16) -> nix::pty::Winsize {
    nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl PtyChild {
    /// Start `cmd` on a new pty of `rows` x `cols`.
    pub fn spawn(mut cmd: Command, rows: u16, cols: u16) -> PtyChild {
        let pty = nix::pty::openpty(Some(&winsize(rows, cols)), None).expect("openpty");
        let slave: OwnedFd = pty.slave;
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave.try_clone().unwrap()));
        // SAFETY: setsid and ioctl(TIOCSCTTY) are async-signal-safe; fd 0 is the slave.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn on the pty");
        // Only the child may hold the slave, so the master reads EOF (EIO) when it is done.
        drop(cmd);
        drop(slave);
        let master = File::from(pty.master);
        let out = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let mut reader = master.try_clone().unwrap();
        let out2 = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        out2.0.lock().unwrap().extend_from_slice(&buf[..n]);
                        out2.1.notify_all();
                    }
                }
            }
        });
        PtyChild {
            master,
            child,
            out,
            seen: 0,
        }
    }

    /// Everything printed so far (lossy UTF-8).
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.out.0.lock().unwrap()).into_owned()
    }

    /// Wait until `needle` is printed after what earlier expects matched; None on timeout.
    pub fn try_expect(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut out = self.out.0.lock().unwrap();
        loop {
            let text = String::from_utf8_lossy(&out[self.seen..]).into_owned();
            if let Some(pos) = text.find(needle) {
                let upto = text[..pos + needle.len()].len();
                self.seen += upto;
                return Some(text[..upto].to_string());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            out = self.out.1.wait_timeout(out, left).unwrap().0;
        }
    }

    /// Like `try_expect`, failing the test with everything printed when it times out.
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> String {
        match self.try_expect(needle, timeout) {
            Some(s) => s,
            None => panic!(
                "{needle:?} not printed within {timeout:?}; the terminal shows:\n{}",
                self.output()
            ),
        }
    }

    /// Type `bytes`.
    pub fn send(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
    }

    /// Resize the terminal (the child's foreground process group gets SIGWINCH).
    pub fn resize(&self, rows: u16, cols: u16) {
        let ws = winsize(rows, cols);
        // SAFETY: TIOCSWINSZ reads a winsize we own.
        let rc = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(rc, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
    }

    /// Wait for the child to exit; kills it after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "the child did not exit within {timeout:?}; the terminal shows:\n{}",
                    self.output()
                );
            }
            // The child's exit has no descriptor to wait on here; a short poll it is.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PtyChild {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
