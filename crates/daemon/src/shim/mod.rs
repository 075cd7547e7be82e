//! `corral shim`: one process per container. It owns the container's stdio (copied into a
//! json-lines log), drives the OCI runtime binary through runc's command line (`create`,
//! `start`, `delete`), reaps the container's init as a child subreaper, and records the exit
//! status in `exit.json` before it exits. It outlives the daemon.
//!
//! Files in the container folder: `shim.pid`, `init.pid` (from the runtime), `container.log`
//! (+ `.1`), `exit.json` (`{"exit_code": N, "finished_at": ms}`, written atomically).
//! Readiness goes to the daemon on `--ready-fd`: `ok PID\n` or `err MESSAGE\n`.
//! With `--attach-socket` clients attach there: to the terminal the shim holds for a
//! container with `--terminal` ([`tty`]), else to its output and, with `--stdin`, to the
//! input pipe the shim holds for it ([`stdio`]). An exec session has a shim of its own
//! ([`exec`]).

pub mod exec;
pub mod fanout;
pub mod log;
pub mod stdio;
pub mod tty;

use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use log::LogWriter;

/// What one shim supervises.
#[derive(Debug, Clone)]
pub struct ShimConfig {
    /// Container id (the runtime's id too).
    pub id: String,
    /// The OCI bundle.
    pub bundle: PathBuf,
    /// The container folder (logs, pid files, exit status).
    pub dir: PathBuf,
    /// OCI runtime binary.
    pub runtime: PathBuf,
    /// Arguments before the runtime's global flags (e.g. `oci`).
    pub runtime_args: Vec<String>,
    /// The runtime's `--root`.
    pub runtime_root: PathBuf,
    /// Rotate the log past this size.
    pub log_max_bytes: u64,
    /// Where to report readiness.
    pub ready_fd: Option<i32>,
    /// Serve attaches here: the terminal (see [`tty`]) or the stdio (see [`stdio`]).
    pub attach_socket: Option<PathBuf>,
    /// The container runs on a terminal (`process.terminal` in the bundle; needs
    /// `attach_socket`).
    pub terminal: bool,
    /// Without a terminal: give the container a stdin pipe that attached clients write to.
    pub stdin: bool,
    /// A client attaches right after the start: after the end, wait this long for it to
    /// collect the output of a process that ended before it came.
    pub first_attach_wait: Option<std::time::Duration>,
}

/// Errors of the shim.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// A file in the container folder.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The runtime failed a step.
    #[error("OCI runtime {step} failed: {message}")]
    Runtime {
        /// create, start.
        step: &'static str,
        /// The runtime's stderr or status.
        message: String,
    },
}

/// The recorded end of a container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExitRecord {
    /// 0..255, or 128+N for signal N.
    pub exit_code: i32,
    /// ms since the epoch.
    pub finished_at: i64,
}

/// Read `exit.json` from a container folder.
pub fn read_exit(dir: &Path) -> Option<ExitRecord> {
    serde_json::from_slice(&std::fs::read(dir.join("exit.json")).ok()?).ok()
}

/// Read `shim.pid` from a container folder.
pub fn read_shim_pid(dir: &Path) -> Option<i32> {
    std::fs::read_to_string(dir.join("shim.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ShimError + 'a {
    move |source| ShimError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Write a file atomically: temp file, fsync, rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

struct Ready(Option<File>);

impl Ready {
    /// The readiness fd the daemon passed (ours alone from here on), kept from our children.
    fn from_fd(fd: Option<i32>) -> Ready {
        // SAFETY: the fd was passed by the daemon for us alone; we own it from here on.
        let f = fd.map(|fd| File::from(unsafe { OwnedFd::from_raw_fd(fd) }));
        if let Some(f) = &f {
            // SAFETY: F_SETFD on an fd we own; no pointers.
            unsafe {
                libc::fcntl(
                    std::os::fd::AsRawFd::as_raw_fd(f),
                    libc::F_SETFD,
                    libc::FD_CLOEXEC,
                )
            };
        }
        Ready(f)
    }

    fn send(&mut self, msg: &str) {
        if let Some(mut f) = self.0.take() {
            let _ = writeln!(f, "{}", msg.replace('\n', " "));
        }
    }
}

impl ShimConfig {
    fn runtime(&self) -> Command {
        let mut cmd = Command::new(&self.runtime);
        cmd.args(&self.runtime_args)
            .arg("--root")
            .arg(&self.runtime_root);
        cmd
    }

    /// `runtime delete --force ID`, ignoring failure (cleanup).
    fn delete(&self) {
        let _ = self
            .runtime()
            .args(["delete", "--force", &self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Run the shim until the container exits; returns the container's exit code.
pub fn run(cfg: &ShimConfig) -> Result<i32, ShimError> {
    let mut ready = Ready::from_fd(cfg.ready_fd);
    match supervise(cfg, &mut ready) {
        Ok(code) => Ok(code),
        Err(e) => {
            ready.send(&format!("err {e}"));
            Err(e)
        }
    }
}

fn supervise(cfg: &ShimConfig, ready: &mut Ready) -> Result<i32, ShimError> {
    let pid_path = cfg.dir.join("shim.pid");
    std::fs::write(&pid_path, std::process::id().to_string())
        .map_err(io_err("write", &pid_path))?;
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes integers only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };

    let log_path = cfg.dir.join("container.log");
    let log = Arc::new(Mutex::new(
        LogWriter::open(&log_path, cfg.log_max_bytes).map_err(io_err("open", &log_path))?,
    ));
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from);
    let (out_r, out_w) = pipe().map_err(io_err("pipe", &cfg.dir))?;
    let (err_r, err_w) = pipe().map_err(io_err("pipe", &cfg.dir))?;
    let (stdin_r, stdin_w) = if cfg.stdin && !cfg.terminal {
        let (r, w) = pipe().map_err(io_err("pipe", &cfg.dir))?;
        (Some(r), Some(File::from(w)))
    } else {
        (None, None)
    };
    let stdio = match (&cfg.attach_socket, cfg.terminal) {
        (Some(path), false) => Some(
            stdio::Stdio::serve(path, stdin_w, cfg.first_attach_wait.is_some())
                .map_err(io_err("bind", path))?,
        ),
        _ => None,
    };
    let tee = |number| stdio.as_ref().map(|s| (s.clients(), number));
    let pumps = [
        spawn_pump(out_r, "stdout", log.clone(), tee(corral_api::tty::STDOUT)),
        spawn_pump(err_r, "stderr", log.clone(), tee(corral_api::tty::STDERR)),
    ];

    let init_pid_path = cfg.dir.join("init.pid");
    let mut create = cfg.runtime();
    create
        .arg("create")
        .arg("--bundle")
        .arg(&cfg.bundle)
        .arg("--pid-file")
        .arg(&init_pid_path);
    let console = match &cfg.attach_socket {
        Some(attach) if cfg.terminal => {
            let path = attach.with_extension("console");
            let sock = crate::pty::ConsoleSocket::bind(&path).map_err(io_err("bind", &path))?;
            create.arg("--console-socket").arg(&path);
            Some(sock)
        }
        _ => None,
    };
    let mut child = create
        .arg(&cfg.id)
        .stdin(stdin_r.map_or_else(Stdio::null, Stdio::from))
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w))
        .spawn()
        .map_err(io_err("run", &cfg.runtime))?;
    // The command holds the pipes' write ends; only the runtime may keep them open.
    drop(create);
    let master = console.as_ref().map(|sock| {
        sock.receive(std::time::Duration::from_secs(60), || {
            matches!(child.try_wait(), Ok(None))
        })
    });
    let status = child.wait().map_err(io_err("run", &cfg.runtime))?;
    drop(console);
    if !status.success() {
        // The runtime wrote its reason to the container's stderr pipe; wait for it.
        for p in pumps {
            let _ = p.join();
        }
        let tail = log.lock().expect("log poisoned").stderr_tail.clone();
        cfg.delete();
        return Err(ShimError::Runtime {
            step: "create",
            message: format!("{status}: {}", String::from_utf8_lossy(&tail).trim()),
        });
    }
    let terminal = match (master, &cfg.attach_socket) {
        (Some(Ok(master)), Some(path)) => Some(
            tty::Terminal::serve(master, path, Some(log.clone()), false)
                .map_err(io_err("bind", path))?,
        ),
        (Some(Err(e)), _) => {
            cfg.delete();
            return Err(ShimError::Runtime {
                step: "create",
                message: format!("no terminal from the runtime: {e}"),
            });
        }
        _ => None,
    };
    let init_pid: i32 = std::fs::read_to_string(&init_pid_path)
        .map_err(io_err("read", &init_pid_path))?
        .trim()
        .parse()
        .map_err(|e| ShimError::Runtime {
            step: "create",
            message: format!("bad pid file {}: {e}", init_pid_path.display()),
        })?;

    let out = cfg
        .runtime()
        .args(["start", &cfg.id])
        .stdin(Stdio::null())
        .output()
        .map_err(io_err("run", &cfg.runtime))?;
    if !out.status.success() {
        cfg.delete();
        return Err(ShimError::Runtime {
            step: "start",
            message: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    ready.send(&format!("ok {init_pid}"));

    let code = reap_until(init_pid);
    if let Some(t) = terminal {
        t.finish(std::time::Duration::from_secs(5), cfg.first_attach_wait);
    }
    // The pid namespace died with its init, so the pipes reach EOF promptly.
    for p in pumps {
        let _ = p.join();
    }
    if let Some(s) = stdio {
        s.finish(cfg.first_attach_wait);
    }
    let rec = ExitRecord {
        exit_code: code,
        finished_at: corral_store::now_ms(),
    };
    let exit_path = cfg.dir.join("exit.json");
    write_atomic(&exit_path, &serde_json::to_vec(&rec).expect("serialise"))
        .map_err(io_err("write", &exit_path))?;
    cfg.delete();
    Ok(code)
}

fn spawn_pump(
    fd: OwnedFd,
    stream: &'static str,
    log: Arc<Mutex<LogWriter>>,
    tee: Option<(Arc<fanout::Fanout>, u8)>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || log::pump(File::from(fd), stream, log, tee))
}

/// Reap children until `init` exits; its exit code (128+N for signal N).
fn reap_until(init: i32) -> i32 {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(pid, code)) if pid.as_raw() == init => return code,
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid.as_raw() == init => {
                return 128 + sig as i32
            }
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => {
                // No children left yet init was not seen: it was reaped elsewhere.
                return 255;
            }
        }
    }
}
