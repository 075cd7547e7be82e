//! Starting a container's shim, watching it (pidfd) and acting on its exit: record the status,
//! apply the restart policy or `--rm`. After a daemon restart, `reattach` watches again.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use corral_store::{InstanceRecord, Kind, Op, State};

use crate::containers::{remove, spec::Restart, spec_of};
use crate::crash;
use crate::error::{ApiError, ApiResult};
use crate::proc;
use crate::shim;
use crate::state::AppState;

/// Start `rec` (its lock is held by the caller): spawn the shim, wait for its readiness line.
pub async fn start_locked(state: &Arc<AppState>, rec: &mut InstanceRecord) -> ApiResult<()> {
    let journal = state.store().journal_begin(&rec.id, Op::Start, "begin")?;
    let dir = state.config.container_dir(&rec.id);
    let image = super::rootfs::load(&dir)?;
    super::rootfs::mount_rootfs(&dir, &image)?;
    if let Err(e) = super::ensure_network(state, rec).await {
        state.store().journal_commit(journal)?;
        return Err(e);
    }
    for f in ["exit.json", "init.pid", "shim.pid"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    state.exit_channel(&rec.id).send_replace(None);
    crash::point("start:before-shim");
    let spec = spec_of(rec);
    let started = spawn_shim(state, &rec.id, spec.tty, spec.interactive).await;
    let (shim_pid, _init) = match started {
        Ok(p) => p,
        Err(e) => {
            state.store().journal_commit(journal)?;
            return Err(e);
        }
    };
    crash::point("start:after-shim");
    rec.supervisor_pid = Some(shim_pid);
    rec.supervisor_start = proc::start_time(shim_pid);
    rec.started_at = Some(corral_store::now_ms());
    rec.finished_at = None;
    rec.exit_code = None;
    rec.reason = None;
    state.transition(rec, State::Running, "start")?;
    watch(state.clone(), rec.id.clone(), shim_pid);
    state.store().journal_commit(journal)?;
    Ok(())
}

async fn spawn_shim(
    state: &Arc<AppState>,
    id: &str,
    tty: bool,
    stdin: bool,
) -> ApiResult<(i32, i32)> {
    let cfg = &state.config;
    let dir = cfg.container_dir(id);
    let shim_log = std::fs::File::create(dir.join("shim.log"))
        .map_err(|e| ApiError::internal("creating shim.log", e))?;
    let mut cmd = tokio::process::Command::new(&cfg.corral_exe);
    cmd.arg("shim")
        .arg("--id")
        .arg(id)
        .arg("--bundle")
        .arg(&dir)
        .arg("--runtime")
        .arg(&cfg.oci_runtime)
        .arg("--runtime-root")
        .arg(cfg.oci_root())
        .arg("--log-max-bytes")
        .arg(cfg.log_max_bytes.to_string())
        .arg("--ready-fd")
        .arg("3");
    // Every container can be attached to: its terminal, else its output (and input).
    let sock = cfg.shim_socket(id);
    if let Some(d) = sock.parent() {
        std::fs::create_dir_all(d)
            .map_err(|e| ApiError::internal(format!("creating {}", d.display()), e))?;
    }
    cmd.arg("--attach-socket").arg(sock);
    if tty {
        cmd.arg("--terminal");
    } else if stdin {
        cmd.arg("--stdin");
    }
    {
        let pending = state
            .attach_pending
            .lock()
            .expect("attach_pending poisoned");
        if pending.contains(id) {
            cmd.arg("--first-attach-wait-ms").arg("10000");
        }
    }
    for a in &cfg.oci_runtime_args {
        cmd.arg(format!("--runtime-arg={a}"));
    }
    let (shim_pid, line) = spawn_supervisor(cmd, shim_log, &cfg.corral_exe).await?;
    if let Some(pid) = line.strip_prefix("ok ") {
        let init: i32 = pid.parse().unwrap_or(0);
        return Ok((shim_pid, init));
    }
    let msg = line.strip_prefix("err ").unwrap_or(&line);
    let msg = if msg.is_empty() {
        let log = std::fs::read_to_string(dir.join("shim.log")).unwrap_or_default();
        format!("the shim exited without reporting: {}", log.trim())
    } else {
        msg.to_string()
    };
    Err(ApiError::Internal(format!("cannot start container: {msg}")))
}

/// Spawn a shim (`cmd`, which passes `--ready-fd 3`) in a session of its own with its output
/// in `log`, so it outlives the daemon; its pid and its readiness line (empty when it exited
/// without one).
pub(crate) async fn spawn_supervisor(
    mut cmd: tokio::process::Command,
    log: std::fs::File,
    exe: &std::path::Path,
) -> ApiResult<(i32, String)> {
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| ApiError::internal("creating the readiness pipe", e))?;
    cmd.stdin(std::process::Stdio::null())
        .stdout(
            log.try_clone()
                .map_err(|e| ApiError::internal("the shim's log", e))?,
        )
        .stderr(log);
    let wfd = ready_w.as_raw_fd();
    // SAFETY: between fork and exec we only call async-signal-safe functions (setsid, dup2,
    // fcntl) on fds that stay valid because the parent holds them until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            if wfd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0);
            } else if libc::dup2(wfd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| ApiError::internal(format!("starting {} shim", exe.display()), e))?;
    drop(ready_w);
    let shim_pid = child.id().unwrap_or(0) as i32;
    drop(child); // tokio reaps it when it exits
    let line = tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::from(ready_r);
        let mut s = String::new();
        let _ = f.read_to_string(&mut s);
        s
    })
    .await
    .map_err(|e| ApiError::internal("waiting for the shim", e))?;
    Ok((shim_pid, line.trim().to_string()))
}

/// Watch the shim `pid` of container `id` and record the exit when it goes away.
pub fn watch(state: Arc<AppState>, id: String, pid: i32) {
    tokio::spawn(async move {
        proc::wait_exit(pid).await;
        on_shim_exit(&state, &id).await;
    });
}

async fn on_shim_exit(state: &Arc<AppState>, id: &str) {
    let Ok(mut rec) = state.store().get_instance(id) else {
        return;
    };
    if !rec.state.has_supervisor() {
        return;
    }
    let was_stopping = rec.state == State::Stopping;
    let dir = state.config.container_dir(id);
    let code = record_exit(state, &mut rec, &dir);
    state.exit_channel(id).send_replace(Some(code));
    let spec = spec_of(&rec);
    let policy = spec
        .restart
        .as_deref()
        .and_then(Restart::parse)
        .unwrap_or(Restart::No);
    if spec.auto_remove {
        let state = state.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            if let Err(e) = remove(&state, &id, true).await {
                tracing::warn!(%id, error = %e, "auto-remove failed");
            }
        });
    } else if !was_stopping && policy.should_restart(code, rec.restart_count) {
        let state = state.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            let _guard = state.locks.lock(&id).await;
            let Ok(mut rec) = state.store().get_instance(&id) else {
                return;
            };
            let stopped = state
                .user_stopped
                .lock()
                .expect("user_stopped poisoned")
                .contains(&id);
            if rec.state != State::Exited || stopped {
                return;
            }
            rec.restart_count += 1;
            if let Err(e) = start_locked(&state, &mut rec).await {
                tracing::warn!(%id, error = %e, "restart failed");
            }
        });
    }
}

/// Record the end of a run from `exit.json` (exited) or its absence (dead). Returns the code.
pub fn record_exit(state: &AppState, rec: &mut InstanceRecord, dir: &std::path::Path) -> i32 {
    let (next, action, code) = match shim::read_exit(dir) {
        Some(e) => {
            rec.exit_code = Some(e.exit_code);
            rec.finished_at = Some(e.finished_at);
            rec.reason = None;
            (State::Exited, "die", e.exit_code)
        }
        None => {
            rec.reason = Some(format!(
                "its shim (pid {}) died without recording an exit status",
                rec.supervisor_pid.unwrap_or(0)
            ));
            rec.finished_at = Some(corral_store::now_ms());
            (State::Dead, "dead", 255)
        }
    };
    rec.supervisor_pid = None;
    rec.supervisor_start = None;
    if let Err(e) = state.transition(rec, next, action) {
        tracing::warn!(id = %rec.id, error = %e, "recording exit");
    }
    code
}

/// After a daemon restart: watch a live shim again, or record what happened while away.
pub fn reattach(state: &Arc<AppState>, rec: &mut InstanceRecord) {
    let dir = state.config.container_dir(&rec.id);
    let pid = rec.supervisor_pid.or_else(|| shim::read_shim_pid(&dir));
    match pid {
        Some(pid)
            if proc::alive(pid, rec.supervisor_start.or(proc::start_time(pid)))
                && proc::cmdline(pid).is_some_and(|c| c.contains(&rec.id)) =>
        {
            if rec.supervisor_pid != Some(pid) {
                rec.supervisor_pid = Some(pid);
                rec.supervisor_start = proc::start_time(pid);
                rec.started_at = rec.started_at.or(proc::started_at_ms(pid));
                if rec.state == State::Created {
                    let _ = state.transition(rec, State::Running, "start");
                } else {
                    let _ = state.store().update_instance(rec);
                }
            }
            tracing::info!(id = %rec.id, pid, "reattached to shim");
            watch(state.clone(), rec.id.clone(), pid);
        }
        _ => {
            if rec.state.has_supervisor() {
                let code = record_exit(state, rec, &dir);
                state.exit_channel(&rec.id).send_replace(Some(code));
            }
        }
    }
}

/// Block until the container's current run ends; its exit code.
pub async fn wait(state: &Arc<AppState>, key: &str) -> ApiResult<i32> {
    let id = match state.find(Kind::Container, key) {
        Ok(rec) => rec.id,
        Err(e) => {
            // A `--rm` container that just ended: its exit channel outlives it briefly.
            let ch = state.exits.lock().expect("exits").get(key).cloned();
            return match ch.and_then(|c| *c.borrow()) {
                Some(code) => Ok(code),
                None => Err(e),
            };
        }
    };
    let mut rx = state.exit_channel(&id).subscribe();
    let rec = state.store().get_instance(&id);
    match rec {
        Ok(r) if matches!(r.state, State::Exited | State::Dead) && rx.borrow().is_none() => {
            return Ok(r.exit_code.unwrap_or(255))
        }
        Err(_) => {}
        Ok(_) => {}
    }
    loop {
        if let Some(code) = *rx.borrow_and_update() {
            return Ok(code);
        }
        if rx.changed().await.is_err() {
            return Err(ApiError::Internal("exit channel closed".into()));
        }
    }
}

/// Forget the exit channel of a removed container after a grace period for `wait` callers.
pub fn forget_exit_later(state: &Arc<AppState>, id: &str) {
    let state = state.clone();
    let id = id.to_string();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        state.exits.lock().expect("exits").remove(&id);
    });
}
