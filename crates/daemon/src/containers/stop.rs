//! Stopping, signalling and removing containers, and the teardown shared with recovery.

use std::sync::Arc;
use std::time::Duration;

use corral_store::{InstanceRecord, Kind, Op, State};

use super::{rootfs, runtime, supervise};
use crate::crash;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Normalise a signal name or number (`TERM`, `SIGTERM`, `15`) to runc's `SIGTERM` form.
pub fn parse_signal(s: &str) -> ApiResult<String> {
    let bad = || ApiError::invalid("signal", format!("unknown signal {s:?}"));
    if let Ok(n) = s.parse::<i32>() {
        let sig = nix::sys::signal::Signal::try_from(n).map_err(|_| bad())?;
        return Ok(sig.as_str().to_string());
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map_err(|_| bad())?;
    Ok(name)
}

async fn wait_exit_for(state: &Arc<AppState>, id: &str, limit: Duration) -> bool {
    let mut rx = state.exit_channel(id).subscribe();
    let done = tokio::time::timeout(limit, rx.wait_for(|v| v.is_some()))
        .await
        .is_ok();
    done
}

/// Stop: SIGTERM, then SIGKILL after `timeout`. A container that is not running is left as is.
pub async fn stop(
    state: &Arc<AppState>,
    key: &str,
    timeout: Duration,
) -> ApiResult<InstanceRecord> {
    let rec = state.find(Kind::Container, key)?;
    // Also when it just exited: a restart its policy has queued must not happen.
    state
        .user_stopped
        .lock()
        .expect("user_stopped poisoned")
        .insert(rec.id.clone());
    let _guard = state.locks.lock(&rec.id).await;
    let mut rec = state.store().get_instance(&rec.id)?;
    if !matches!(rec.state, State::Running | State::Paused | State::Stopping) {
        return Ok(rec);
    }
    let journal = state.store().journal_begin(&rec.id, Op::Stop, "begin")?;
    state.transition(&mut rec, State::Stopping, "stop")?;
    crash::point("stop:after-journal");
    stop_running(state, &rec.id, timeout).await;
    state.store().journal_commit(journal)?;
    Ok(state.store().get_instance(&rec.id)?)
}

/// TERM, wait, KILL, wait: used by stop, rm -f and recovery.
pub async fn stop_running(state: &Arc<AppState>, id: &str, timeout: Duration) {
    if runtime::kill(&state.config, id, "SIGTERM").await.is_ok() {
        crash::point("stop:after-term");
        if wait_exit_for(state, id, timeout).await {
            return;
        }
    }
    let _ = runtime::kill(&state.config, id, "SIGKILL").await;
    if !wait_exit_for(state, id, Duration::from_secs(10)).await {
        tracing::warn!(%id, "container did not exit 10 s after SIGKILL");
    }
}

/// Send a signal to a running container.
pub async fn kill(state: &Arc<AppState>, key: &str, signal: &str) -> ApiResult<InstanceRecord> {
    let signal = parse_signal(signal)?;
    let rec = state.find(Kind::Container, key)?;
    let _guard = state.locks.lock(&rec.id).await;
    let rec = state.store().get_instance(&rec.id)?;
    if !matches!(rec.state, State::Running | State::Paused | State::Stopping) {
        return Err(ApiError::Conflict(format!(
            "container {} is {}, not running",
            rec.name, rec.state
        )));
    }
    runtime::kill(&state.config, &rec.id, &signal).await?;
    Ok(rec)
}

/// Remove a container: refuses a running one unless `force`.
pub async fn remove(state: &Arc<AppState>, key: &str, force: bool) -> ApiResult<()> {
    let rec = state.find(Kind::Container, key)?;
    let _guard = state.locks.lock(&rec.id).await;
    let mut rec = state.store().get_instance(&rec.id)?;
    if rec.state.has_supervisor() {
        if !force {
            return Err(ApiError::Conflict(format!(
                "container {} is {}: stop it first or use `rm -f`",
                rec.name, rec.state
            )));
        }
        let _ = runtime::kill(&state.config, &rec.id, "SIGKILL").await;
        wait_exit_for(state, &rec.id, Duration::from_secs(10)).await;
        rec = state.store().get_instance(&rec.id)?;
    }
    state.store().journal_begin(&rec.id, Op::Remove, "begin")?;
    state.transition(&mut rec, State::Removing, "remove")?;
    crash::point("rm:after-journal");
    teardown(state, &rec).await;
    state.store().delete_instance(&rec.id)?;
    state.events.emit(&rec, "destroy");
    state.locks.forget(&rec.id);
    state
        .user_stopped
        .lock()
        .expect("user_stopped poisoned")
        .remove(&rec.id);
    supervise::forget_exit_later(state, &rec.id);
    Ok(())
}

/// Undo everything a container has on the host: its processes (through the runtime), its
/// cgroups (runtime delete), its network (endpoint, veth, rules, namespace), its image mark,
/// its root filesystem mount and its folder.
pub async fn teardown(state: &Arc<AppState>, rec: &InstanceRecord) {
    let dir = state.config.container_dir(&rec.id);
    if let Some(pid) = rec
        .supervisor_pid
        .or_else(|| crate::shim::read_shim_pid(&dir))
    {
        if crate::proc::alive(pid, None)
            && crate::proc::cmdline(pid).is_some_and(|c| c.contains(&rec.id))
        {
            let _ = runtime::kill(&state.config, &rec.id, "SIGKILL").await;
            let _ =
                tokio::time::timeout(Duration::from_secs(10), crate::proc::wait_exit(pid)).await;
        }
    }
    runtime::delete_force(&state.config, &rec.id).await;
    super::exec_session::end_all(state, &dir).await;
    // A shim that was killed left its attach socket behind.
    let sock = state.config.shim_socket(&rec.id);
    for path in [sock.with_extension("console"), sock] {
        let _ = std::fs::remove_file(path);
    }
    if let Err(e) = state.net.detach(&rec.id).await {
        tracing::warn!(id = %rec.id, error = %e, "teardown: network (the next start-up retries)");
    }
    rootfs::release(&state.config.root, &rec.id);
    if let Err(e) = rootfs::unmount_rootfs(&dir) {
        tracing::warn!(id = %rec.id, error = %e, "teardown");
    }
    crash::point("rm:after-unmount");
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(id = %rec.id, error = %e, "removing {}", dir.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_normalised() {
        assert_eq!(parse_signal("TERM").unwrap(), "SIGTERM");
        assert_eq!(parse_signal("sigkill").unwrap(), "SIGKILL");
        assert_eq!(parse_signal("9").unwrap(), "SIGKILL");
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("999").is_err());
    }
}
