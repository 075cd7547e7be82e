//! Exec sessions, Docker's shape: a session is created with its request (on a terminal or not,
//! with stdin or not), started by an attach, resized, joined again while it runs (Docker has
//! no such verb; it makes a session's terminal outlive its first client), and read back for
//! its exit status. A
//! started session has a shim of its own (`corral shim --exec`, see [`crate::shim::exec`])
//! that holds the process's terminal or pipes and records its exit status, so the process
//! outlives a daemon crash and the next daemon still answers for it.
//!
//! The truth is on disk: `containers/<id>/execs/<session>/` holds `exec.json` (the request),
//! `started` (made once: a session starts once) and the shim's `shim.pid`, `shim.log` and
//! `exit.json`; the attach socket is `<run>/execs/<session>.sock`. The folder goes with the
//! container.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use corral_api::{ExecRequest, ExecSession, TtySize};
use corral_store::{Kind, State};
use tokio::io::AsyncWriteExt;

use super::attach::{connect_at, shim_resize_at, Attached};
use crate::error::{ApiError, ApiResult};
use crate::shim::tty::PROTOCOL;
use crate::state::AppState;

/// The running container `key`.
fn running(state: &AppState, key: &str) -> ApiResult<corral_store::InstanceRecord> {
    let rec = state.find(Kind::Container, key)?;
    if rec.state != State::Running {
        return Err(ApiError::Conflict(format!(
            "container {} is {}, not running",
            rec.name, rec.state
        )));
    }
    Ok(rec)
}

/// The sessions folder of a container folder.
fn sessions_dir(container_dir: &Path) -> PathBuf {
    container_dir.join("execs")
}

/// The attach socket of session `id` (run dir: short of the 108-byte socket limit).
fn socket(state: &AppState, id: &str) -> PathBuf {
    state.config.run.join("execs").join(format!("{id}.sock"))
}

/// Session `id`'s container id and folder.
fn locate(state: &AppState, id: &str) -> ApiResult<(String, PathBuf)> {
    let missing = || ApiError::NotFound(format!("no such exec session: {id}"));
    // Ids are ours (hex), which also keeps a request from naming a path.
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(missing());
    }
    let containers = state.config.root.join("containers");
    for entry in std::fs::read_dir(&containers)
        .into_iter()
        .flatten()
        .flatten()
    {
        let dir = sessions_dir(&entry.path()).join(id);
        if dir.join("exec.json").exists() {
            return Ok((entry.file_name().to_string_lossy().into_owned(), dir));
        }
    }
    Err(missing())
}

/// The shim of the session in `dir` (named `id`) runs.
fn shim_alive(dir: &Path, id: &str) -> bool {
    crate::shim::read_shim_pid(dir).is_some_and(|pid| {
        crate::proc::alive(pid, None) && crate::proc::cmdline(pid).is_some_and(|c| c.contains(id))
    })
}

/// The API's view of the session in `dir`.
fn wire(container: String, id: &str, dir: &Path) -> ExecSession {
    let exit = crate::shim::read_exit(dir);
    let req = crate::shim::exec::read_request(dir).unwrap_or_default();
    ExecSession {
        id: id.to_string(),
        container,
        running: exit.is_none() && shim_alive(dir, id),
        exit_code: exit.map(|e| e.exit_code),
        tty: req.tty,
        interactive: req.interactive,
    }
}

/// Create a session for `req` in the running container `key`.
pub fn create(state: &Arc<AppState>, key: &str, req: ExecRequest) -> ApiResult<ExecSession> {
    if req.command.is_empty() {
        return Err(ApiError::invalid("command", "a command is required"));
    }
    for (i, e) in req.env.iter().enumerate() {
        if !e.contains('=') {
            return Err(ApiError::invalid(format!("env[{i}]"), "expected K=V"));
        }
    }
    let rec = running(state, key)?;
    let id = crate::ids::new_id()[..32].to_string();
    let dir = sessions_dir(&state.config.container_dir(&rec.id)).join(&id);
    std::fs::create_dir_all(&dir)
        .map_err(|e| ApiError::internal(format!("creating {}", dir.display()), e))?;
    let request = serde_json::to_vec(&req).expect("request serialises");
    crate::shim::write_atomic(&dir.join("exec.json"), &request)
        .map_err(|e| ApiError::internal("writing exec.json", e))?;
    Ok(wire(rec.id, &id, &dir))
}

/// The session `id`.
pub fn inspect(state: &AppState, id: &str) -> ApiResult<ExecSession> {
    let (container, dir) = locate(state, id)?;
    Ok(wire(container, id, &dir))
}

/// Resize the terminal of session `id`.
pub async fn resize(state: &AppState, id: &str, size: TtySize) -> ApiResult<()> {
    let (container, dir) = locate(state, id)?;
    if !wire(container, id, &dir).running {
        return Err(ApiError::Conflict(format!(
            "exec session {id} does not run"
        )));
    }
    shim_resize_at(&socket(state, id), size).await
}

/// Start session `id` (on a terminal sized `size`) and attach to it: the terminal's raw
/// bytes, or its output in frames and its stdin.
pub async fn start(state: &Arc<AppState>, id: &str, size: Option<TtySize>) -> ApiResult<Attached> {
    let (container, dir) = locate(state, id)?;
    let rec = running(state, &container)?;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dir.join("started"))
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(ApiError::Conflict(format!(
                "exec session {id} was started already"
            )))
        }
        Err(e) => return Err(ApiError::internal("marking the session started", e)),
    }
    let req = crate::shim::exec::read_request(&dir)
        .map_err(|e| ApiError::internal("reading the session", e))?;
    let cfg = &state.config;
    let sock = socket(state, id);
    if let Some(d) = sock.parent() {
        std::fs::create_dir_all(d)
            .map_err(|e| ApiError::internal(format!("creating {}", d.display()), e))?;
    }
    let log = std::fs::File::create(dir.join("shim.log"))
        .map_err(|e| ApiError::internal("creating shim.log", e))?;
    let mut cmd = tokio::process::Command::new(&cfg.corral_exe);
    cmd.arg("shim")
        .arg("--exec")
        .arg(&dir)
        .arg("--id")
        .arg(&rec.id)
        .arg("--runtime")
        .arg(&cfg.oci_runtime)
        .arg("--runtime-root")
        .arg(cfg.oci_root())
        .arg("--ready-fd")
        .arg("3")
        .arg("--attach-socket")
        .arg(&sock)
        // The attach below is on its way: the shim keeps the output for it.
        .arg("--first-attach-wait-ms")
        .arg("10000");
    if let Some(s) = size.filter(|_| req.tty) {
        cmd.arg("--rows")
            .arg(s.rows.to_string())
            .arg("--cols")
            .arg(s.cols.to_string());
    }
    for a in &cfg.oci_runtime_args {
        cmd.arg(format!("--runtime-arg={a}"));
    }
    let (_pid, line) = super::supervise::spawn_supervisor(cmd, log, &cfg.corral_exe).await?;
    if !line.starts_with("ok ") {
        let msg = match line.strip_prefix("err ") {
            Some(m) => m.to_string(),
            None => {
                let log = std::fs::read_to_string(dir.join("shim.log")).unwrap_or_default();
                format!("the exec shim exited without reporting: {}", log.trim())
            }
        };
        return Err(ApiError::Conflict(format!(
            "cannot exec in container {}: {msg}",
            rec.name
        )));
    }
    let mut stream = connect_at(&sock).await?;
    let flags = if req.interactive && !req.tty {
        " close-stdin"
    } else {
        ""
    };
    stream
        .write_all(format!("{PROTOCOL} attach{flags}\n").as_bytes())
        .await
        .map_err(|e| ApiError::internal("attaching to the exec shim", e))?;
    Ok(Attached {
        stream,
        tty: req.tty,
    })
}

/// Join session `id` while its process runs (after its first client left, or a daemon that
/// died under it): its terminal (sized `size` first), or its output and stdin.
pub async fn attach(state: &AppState, id: &str, size: Option<TtySize>) -> ApiResult<Attached> {
    let (container, dir) = locate(state, id)?;
    let now = wire(container, id, &dir);
    if !now.running {
        return Err(ApiError::Conflict(match now.exit_code {
            Some(c) => format!("exec session {id} ended with status {c}"),
            None => format!("exec session {id} does not run"),
        }));
    }
    let sock = socket(state, id);
    if let (Some(size), true) = (size, now.tty) {
        shim_resize_at(&sock, size).await?;
    }
    let mut stream = connect_at(&sock).await?;
    stream
        .write_all(format!("{PROTOCOL} attach\n").as_bytes())
        .await
        .map_err(|e| ApiError::internal("attaching to the exec shim", e))?;
    Ok(Attached {
        stream,
        tty: now.tty,
    })
}

/// Before a container's folder goes: end the shims of its sessions still running (their
/// processes died with the container, or are about to) and remove their sockets.
pub async fn end_all(state: &AppState, container_dir: &Path) {
    let dirs = std::fs::read_dir(sessions_dir(container_dir));
    for entry in dirs.into_iter().flatten().flatten() {
        let id = entry.file_name().to_string_lossy().into_owned();
        let dir = entry.path();
        if shim_alive(&dir, &id) {
            if let Some(pid) = crate::shim::read_shim_pid(&dir) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let _ = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    crate::proc::wait_exit(pid),
                )
                .await;
            }
        }
        let sock = socket(state, &id);
        for path in [sock.with_extension("console"), sock] {
            let _ = std::fs::remove_file(path);
        }
    }
}
