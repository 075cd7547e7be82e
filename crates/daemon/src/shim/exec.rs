//! `corral shim --exec DIR`: one process per exec session. It runs `runtime exec` for the
//! session's request, holds the process's terminal (the pty master) or its pipes, serves them
//! on the session's attach socket (the protocol of [`super::tty`] and [`super::stdio`]) and
//! records the exit status in the session's folder before it lets its clients go. It outlives
//! the daemon, so a daemon crash leaves the process running with its terminal, and the next
//! daemon reads its status from the folder.
//!
//! Files in the session folder: `exec.json` (the [`corral_api::ExecRequest`], written by the
//! daemon), `shim.pid`, `exit.json` (as a container's, see [`super::ExitRecord`]).
//! Readiness goes to the daemon on `--ready-fd`: `ok PID\n` (the runtime's) or `err MESSAGE\n`.

use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_api::ExecRequest;

use super::fanout::Fanout;
use super::{io_err, write_atomic, ExitRecord, Ready, ShimError};

/// How long the output of an ended process may take to drain: its background children can
/// keep the terminal or the pipes open (Docker's exec does not wait for them either).
const DRAIN: Duration = Duration::from_secs(1);

/// What one exec shim supervises.
#[derive(Debug, Clone)]
pub struct ExecShimConfig {
    /// The container's id (the runtime's id).
    pub container: String,
    /// The session folder.
    pub dir: PathBuf,
    /// OCI runtime binary.
    pub runtime: PathBuf,
    /// Arguments before the runtime's global flags (e.g. `oci`).
    pub runtime_args: Vec<String>,
    /// The runtime's `--root`.
    pub runtime_root: PathBuf,
    /// Where to report readiness.
    pub ready_fd: Option<i32>,
    /// Serve the terminal or the stdio here.
    pub attach_socket: PathBuf,
    /// A client attaches right after the start: after the end, wait this long for it.
    pub first_attach_wait: Option<Duration>,
    /// The terminal's first size.
    pub size: Option<corral_api::TtySize>,
}

/// Read a session's request from its folder.
pub fn read_request(dir: &Path) -> Result<ExecRequest, ShimError> {
    let path = dir.join("exec.json");
    let bytes = std::fs::read(&path).map_err(io_err("read", &path))?;
    serde_json::from_slice(&bytes).map_err(|e| ShimError::Io {
        op: "parse",
        path,
        source: std::io::Error::other(e),
    })
}

impl ExecShimConfig {
    /// `runtime … exec [--tty --console-socket P] [--env K=V]… [--user U] ID CMD…`.
    fn exec_command(&self, req: &ExecRequest, console: Option<&Path>) -> Command {
        let mut cmd = Command::new(&self.runtime);
        cmd.args(&self.runtime_args)
            .arg("--root")
            .arg(&self.runtime_root)
            .arg("exec");
        if let Some(c) = console {
            cmd.arg("--tty").arg("--console-socket").arg(c);
        }
        for e in &req.env {
            cmd.arg("--env").arg(e);
        }
        if let Some(u) = &req.user {
            cmd.arg("--user").arg(u);
        }
        cmd.arg(&self.container).args(&req.command);
        cmd
    }
}

/// Run the session's process until it ends; returns its exit code.
pub fn run(cfg: &ExecShimConfig) -> Result<i32, ShimError> {
    let mut ready = Ready::from_fd(cfg.ready_fd);
    match supervise(cfg, &mut ready) {
        Ok(code) => Ok(code),
        Err(e) => {
            ready.send(&format!("err {e}"));
            Err(e)
        }
    }
}

/// The process's way out: its terminal, or its pipes' pumps.
enum Served {
    Terminal(super::tty::Terminal),
    Stdio {
        stdio: super::stdio::Stdio,
        pumps_done: mpsc::Receiver<()>,
    },
}

fn supervise(cfg: &ExecShimConfig, ready: &mut Ready) -> Result<i32, ShimError> {
    let pid_path = cfg.dir.join("shim.pid");
    std::fs::write(&pid_path, std::process::id().to_string())
        .map_err(io_err("write", &pid_path))?;
    let req = read_request(&cfg.dir)?;
    let (mut child, served, err_text) = if req.tty {
        spawn_on_terminal(cfg, &req)?
    } else {
        spawn_on_pipes(cfg, &req)?
    };
    ready.send(&format!("ok {}", child.id()));
    let status = child.wait().map_err(io_err("run", &cfg.runtime))?;
    let code = status.code().unwrap_or_else(|| {
        128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(127)
    });
    // The runtime's own complaint (a terminal carries only the process's output).
    let complaint = err_text.map(|t| t.join().unwrap_or_default());
    match &served {
        Served::Terminal(t) => {
            t.drain(DRAIN);
            if let Some(text) = complaint.filter(|t| code != 0 && !t.trim_ascii().is_empty()) {
                t.push(&crlf(&text));
            }
        }
        Served::Stdio { pumps_done, .. } => {
            let deadline = Instant::now() + DRAIN;
            for _ in 0..2 {
                let left = deadline.saturating_duration_since(Instant::now());
                let _ = pumps_done.recv_timeout(left);
            }
        }
    }
    // The status first: a client that sees the end asks for it next.
    let rec = ExitRecord {
        exit_code: code,
        finished_at: corral_store::now_ms(),
    };
    let exit_path = cfg.dir.join("exit.json");
    write_atomic(&exit_path, &serde_json::to_vec(&rec).expect("serialise"))
        .map_err(io_err("write", &exit_path))?;
    match served {
        Served::Terminal(t) => t.finish(Duration::ZERO, cfg.first_attach_wait),
        Served::Stdio { stdio, .. } => stdio.finish(cfg.first_attach_wait),
    }
    Ok(code)
}

type Spawned = (Child, Served, Option<std::thread::JoinHandle<Vec<u8>>>);

/// `exec -t`: the runtime hands over the pty master on a console socket.
fn spawn_on_terminal(cfg: &ExecShimConfig, req: &ExecRequest) -> Result<Spawned, ShimError> {
    let console_path = cfg.attach_socket.with_extension("console");
    let console =
        crate::pty::ConsoleSocket::bind(&console_path).map_err(io_err("bind", &console_path))?;
    let mut child = cfg
        .exec_command(req, Some(&console_path))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_err("run", &cfg.runtime))?;
    let stderr = child.stderr.take().expect("piped");
    let err_text = std::thread::spawn(move || read_all(stderr));
    let received = console.receive(Duration::from_secs(30), || {
        matches!(child.try_wait(), Ok(None))
    });
    drop(console);
    let master = match received {
        Ok(m) => m,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            let text = err_text.join().unwrap_or_default();
            let text = String::from_utf8_lossy(&text);
            return Err(ShimError::Runtime {
                step: "exec",
                message: if text.trim().is_empty() {
                    e.to_string()
                } else {
                    text.trim().to_string()
                },
            });
        }
    };
    if let Some(size) = cfg.size {
        let _ = crate::pty::set_size(std::os::fd::AsRawFd::as_raw_fd(&master), size);
    }
    let term = super::tty::Terminal::serve(master, &cfg.attach_socket, None, true)
        .map_err(io_err("bind", &cfg.attach_socket))?;
    Ok((child, Served::Terminal(term), Some(err_text)))
}

/// `exec [-i]` without a terminal: stdout and stderr pipes (framed to the clients), and with
/// `-i` a stdin pipe the clients write to.
fn spawn_on_pipes(cfg: &ExecShimConfig, req: &ExecRequest) -> Result<Spawned, ShimError> {
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from);
    let (out_r, out_w) = pipe().map_err(io_err("pipe", &cfg.dir))?;
    let (err_r, err_w) = pipe().map_err(io_err("pipe", &cfg.dir))?;
    let (stdin_r, stdin_w) = if req.interactive {
        let (r, w) = pipe().map_err(io_err("pipe", &cfg.dir))?;
        (Some(r), Some(File::from(w)))
    } else {
        (None, None)
    };
    let stdio = super::stdio::Stdio::serve(&cfg.attach_socket, stdin_w, true)
        .map_err(io_err("bind", &cfg.attach_socket))?;
    let (done_tx, pumps_done) = mpsc::channel();
    for (fd, number) in [
        (out_r, corral_api::tty::STDOUT),
        (err_r, corral_api::tty::STDERR),
    ] {
        let (clients, done) = (stdio.clients(), done_tx.clone());
        std::thread::spawn(move || {
            pump(fd, &clients, number);
            let _ = done.send(());
        });
    }
    let mut cmd = cfg.exec_command(req, None);
    cmd.stdin(stdin_r.map_or_else(Stdio::null, Stdio::from))
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w));
    let child = cmd.spawn().map_err(io_err("run", &cfg.runtime))?;
    // The command holds the pipes' write ends; only the runtime may keep them open.
    drop(cmd);
    Ok((child, Served::Stdio { stdio, pumps_done }, None))
}

/// Copy a pipe to the clients in frames of stream `number` until its end.
fn pump(fd: OwnedFd, clients: &Arc<Fanout>, number: u8) {
    let mut from = File::from(fd);
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => clients.push(&corral_api::tty::frame(number, &buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
}

fn read_all(mut from: impl Read) -> Vec<u8> {
    let mut text = Vec::new();
    let _ = from.read_to_end(&mut text);
    text
}

/// Text for a terminal in raw mode: a fresh line, and every newline a CR LF.
fn crlf(text: &[u8]) -> Vec<u8> {
    let mut out = b"\r\n".to_vec();
    for &b in text.trim_ascii_end() {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::shim::tty::PROTOCOL;
    use corral_api::tty::{frame_header, FRAME_HEADER};
    use std::io::{BufRead, Write};
    use std::os::fd::IntoRawFd;
    use std::os::unix::net::UnixStream;

    /// A shim around a stand-in runtime (a shell that drops the arguments up to the container
    /// id `c1` and runs the command here), started on a thread; the readiness line.
    fn shim(dir: &Path, req: &ExecRequest) -> (std::thread::JoinHandle<i32>, String) {
        std::fs::write(dir.join("exec.json"), serde_json::to_vec(req).unwrap()).unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        let cfg = ExecShimConfig {
            container: "c1".into(),
            dir: dir.to_path_buf(),
            runtime: "/bin/sh".into(),
            runtime_args: vec![
                "-c".into(),
                "while [ \"$1\" != c1 ]; do shift; done; shift; exec \"$@\"".into(),
                "runtime".into(),
            ],
            runtime_root: dir.join("oci"),
            ready_fd: Some(w.into_raw_fd()),
            attach_socket: dir.join("s.sock"),
            first_attach_wait: Some(Duration::from_secs(10)),
            size: None,
        };
        let t = std::thread::spawn(move || run(&cfg).unwrap_or(-1));
        let mut line = String::new();
        std::io::BufReader::new(File::from(r))
            .read_line(&mut line)
            .unwrap();
        (t, line)
    }

    #[test]
    fn input_reaches_the_process_its_streams_stay_apart_and_the_status_is_recorded_first() {
        let dir = tempfile::tempdir().unwrap();
        let req = ExecRequest {
            command: vec![
                "sh".into(),
                "-c".into(),
                "while read l; do echo out-$l; echo err-$l >&2; done; exit 3".into(),
            ],
            interactive: true,
            ..Default::default()
        };
        let (t, ready) = shim(dir.path(), &req);
        assert!(ready.starts_with("ok "), "{ready}");
        let mut c = UnixStream::connect(dir.path().join("s.sock")).unwrap();
        writeln!(c, "{PROTOCOL} attach close-stdin").unwrap();
        c.write_all(b"a\nb\n").unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut header = [0u8; FRAME_HEADER];
        while c.read_exact(&mut header).is_ok() {
            // The end of the stream comes after the status was written.
            let (stream, len) = frame_header(&header);
            let mut payload = vec![0u8; len];
            c.read_exact(&mut payload).unwrap();
            match stream {
                corral_api::tty::STDOUT => out.extend(payload),
                _ => err.extend(payload),
            }
        }
        assert!(super::super::read_exit(dir.path()).is_some());
        assert_eq!(t.join().unwrap(), 3);
        assert_eq!(String::from_utf8_lossy(&out), "out-a\nout-b\n");
        assert_eq!(String::from_utf8_lossy(&err), "err-a\nerr-b\n");
        assert_eq!(super::super::read_exit(dir.path()).unwrap().exit_code, 3);
        assert!(!dir.path().join("s.sock").exists());
    }

    #[test]
    fn a_runtime_that_cannot_hand_over_a_terminal_is_reported_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let req = ExecRequest {
            command: vec![
                "sh".into(),
                "-c".into(),
                "echo no console here >&2; exit 1".into(),
            ],
            tty: true,
            ..Default::default()
        };
        let (t, ready) = shim(dir.path(), &req);
        assert!(ready.starts_with("err "), "{ready}");
        assert!(ready.contains("no console here"), "{ready}");
        let _ = t.join();
    }

    #[test]
    fn a_complaint_is_set_on_its_own_lines_for_a_raw_terminal() {
        assert_eq!(
            crlf(b"no such file\nreally\n"),
            b"\r\nno such file\r\nreally\r\n"
        );
    }
}
