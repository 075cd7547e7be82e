//! A VM's serial console shared over a Unix socket, served by its `corral vmm` process: the
//! guest's output still goes to the serial log and also to every connected client; what a
//! client writes is the guest's serial input. The socket carries raw bytes both ways, with no
//! framing; detaching is the client's business (it just closes the connection).
//!
//! The guest's output is written on a vCPU thread, so a client that does not keep up loses
//! output (sends do not wait) rather than stalling the guest; the log has it all.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_store::{Kind, State};
use nix::errno::Errno;
use nix::sys::socket::{send, MsgFlags};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The clients of one console.
#[derive(Debug, Default, Clone)]
pub struct Console {
    clients: Arc<Mutex<Vec<UnixStream>>>,
}

/// The serial output writer: the log, then every client.
struct Tee {
    log: Box<dyn Write + Send>,
    clients: Arc<Mutex<Vec<UnixStream>>>,
}

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.log.write(buf)?;
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        // Per call, not O_NONBLOCK: that flag would be shared with the client's reading side.
        let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
        clients.retain(|c| match send(c.as_raw_fd(), &buf[..n], flags) {
            Ok(_) | Err(Errno::EAGAIN) => true,
            Err(_) => false,
        });
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.log.flush()
    }
}

impl Console {
    /// The writer to give the serial port: `log` plus the console's clients.
    pub fn tee(&self, log: Box<dyn Write + Send>) -> Box<dyn Write + Send> {
        Box::new(Tee {
            log,
            clients: self.clients.clone(),
        })
    }

    /// Listen at `path` (mode 0600; a stale socket there is replaced); bytes from clients go
    /// to `input`, which returns how many it took (the UART's FIFO is small).
    pub fn serve<F>(&self, path: &Path, input: F) -> io::Result<()>
    where
        F: Fn(&[u8]) -> usize + Send + Sync + 'static,
    {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let clients = self.clients.clone();
        let input = Arc::new(input);
        std::thread::Builder::new()
            .name("console".into())
            .spawn(move || {
                for conn in listener.incoming().flatten() {
                    let Ok(out) = conn.try_clone() else { continue };
                    clients.lock().unwrap_or_else(|p| p.into_inner()).push(out);
                    let input = input.clone();
                    std::thread::spawn(move || feed(conn, &*input));
                }
            })?;
        Ok(())
    }
}

/// Copy one client's bytes into the guest until it leaves.
fn feed(mut conn: UnixStream, input: &dyn Fn(&[u8]) -> usize) {
    let mut buf = [0u8; 1024];
    loop {
        let n = match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            let taken = input(rest);
            rest = &rest[taken..];
            if taken == 0 {
                // The guest has not drained its FIFO yet; it does so at its own pace.
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

/// Where a VM's monitor shares its serial console (see [`crate::vm_console`]).
pub fn socket(dir: &Path) -> std::path::PathBuf {
    dir.join("console.sock")
}

/// Connect to the serial console of the running VM `key`.
pub async fn connect(state: &AppState, key: &str) -> ApiResult<tokio::net::UnixStream> {
    let rec = state.find(Kind::Vm, key)?;
    if !matches!(rec.state, State::Running | State::Paused) {
        return Err(ApiError::Conflict(format!(
            "VM {} is {}: start it to use its console",
            rec.name, rec.state
        )));
    }
    let path = socket(&state.config.vm_dir(&rec.name));
    tokio::net::UnixStream::connect(&path).await.map_err(|e| {
        ApiError::Conflict(format!(
            "VM {}: its monitor shares no console at {} ({e}); it was started by an older corral: restart the VM",
            rec.name,
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_see_output_and_their_input_reaches_the_guest_in_small_bites() {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("serial.log");
        let console = Console::default();
        let mut out = console.tee(Box::new(std::fs::File::create(&log_path).unwrap()));
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let tx = Mutex::new(tx);
        let sock = dir.path().join("console.sock");
        // A guest whose FIFO takes 3 bytes at a time.
        console
            .serve(&sock, move |b: &[u8]| {
                let n = b.len().min(3);
                let _ = tx.lock().unwrap().send(b[..n].to_vec());
                n
            })
            .unwrap();
        // Accepted in order: once the guest has `a`'s input, `b` is registered too.
        let mut b = UnixStream::connect(&sock).unwrap();
        let mut a = UnixStream::connect(&sock).unwrap();
        a.write_all(b"hello guest").unwrap();
        let mut got = Vec::new();
        while got.len() < 11 {
            let bite = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert!(bite.len() <= 3);
            got.extend(bite);
        }
        assert_eq!(got, b"hello guest");
        out.write_all(b"login: ").unwrap();
        let mut buf = [0u8; 7];
        a.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"login: ");
        b.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"login: ");
        // A client that left is dropped; the log has everything.
        drop(a);
        out.write_all(b"x").unwrap();
        out.write_all(b"y").unwrap();
        assert_eq!(std::fs::read(&log_path).unwrap(), b"login: xy");
    }
}
