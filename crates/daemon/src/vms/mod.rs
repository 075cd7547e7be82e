//! The VM manager: definitions in `vms/NAME/vm.toml` ([`definition`]), one `corral vmm`
//! process per running VM with a control socket (the vmm's protocol v1: pause, resume, stop,
//! metrics), and the lifecycle: create, edit, start, pause, stop, remove, reattach.

pub mod agent;
mod definition;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use corral_api::{TapAttachment, VmEdit, VmSpec};
use corral_store::{InstanceRecord, Kind, Op, State};
use corral_vmm::VmConfig;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::{crash, proc};

use definition::{to_toml, validate, vm_net, VmNet};

/// Define a VM.
pub async fn create(state: &Arc<AppState>, mut spec: VmSpec) -> ApiResult<InstanceRecord> {
    validate(&mut spec)?;
    let id = crate::ids::new_id();
    let _guard = state.locks.lock(&id).await;
    let mut rec = InstanceRecord {
        id: id.clone(),
        kind: Kind::Vm,
        name: spec.name.clone(),
        state: State::Creating,
        spec: serde_json::to_value(&spec).expect("spec"),
        created_at: corral_store::now_ms(),
        started_at: None,
        finished_at: None,
        exit_code: None,
        supervisor_pid: None,
        supervisor_start: None,
        reason: None,
        restart_count: 0,
    };
    let dir = state.config.vm_dir(&spec.name);
    let network = match vm_net(&spec) {
        VmNet::Network(n) => {
            if !state.net.exists(&n)? {
                return Err(crate::network::api_error(
                    corral_net::NetError::NoSuchNetwork(n),
                ));
            }
            Some(n)
        }
        VmNet::None | VmNet::Tap(_) => {
            to_toml(&spec, &dir, None)?;
            None
        }
    };
    let journal = state.store().insert_instance(&rec, Op::Create, "begin")?;
    if let Err(e) = write_definition(state, &rec, &spec, network.as_deref()).await {
        teardown(state, &rec).await;
        state.store().delete_instance(&id)?;
        return Err(e);
    }
    crash::point("vmcreate:after-files");
    state.transition(&mut rec, State::Created, "create")?;
    state.store().journal_commit(journal)?;
    Ok(rec)
}

/// The tap of VM `id` on `network` (made when missing, see [`crate::network::vm_tap`]).
async fn tap_for(
    state: &AppState,
    rec: &InstanceRecord,
    network: &str,
) -> ApiResult<TapAttachment> {
    crate::network::vm_tap(state, &rec.id, network, vec![rec.name.to_ascii_lowercase()]).await
}

/// Plug the VM into its network (if any) and write `vms/NAME/vm.toml`.
async fn write_definition(
    state: &AppState,
    rec: &InstanceRecord,
    spec: &VmSpec,
    network: Option<&str>,
) -> ApiResult<()> {
    let dir = state.config.vm_dir(&spec.name);
    let tap = match network {
        Some(n) => Some(tap_for(state, rec, n).await?),
        None => None,
    };
    let text = to_toml(spec, &dir, tap.as_ref())?;
    std::fs::create_dir_all(dir.join("logs"))
        .and_then(|_| crate::shim::write_atomic(&dir.join("vm.toml"), text.as_bytes()))
        .map_err(|e| ApiError::internal(format!("writing {}", dir.display()), e))
}

/// Change a stopped or running VM's definition (applies at the next start).
pub async fn edit(state: &Arc<AppState>, key: &str, edit: VmEdit) -> ApiResult<InstanceRecord> {
    let rec = state.find(Kind::Vm, key)?;
    let _guard = state.locks.lock(&rec.id).await;
    let mut rec = state.store().get_instance(&rec.id)?;
    let mut spec: VmSpec = serde_json::from_value(rec.spec.clone()).unwrap_or_default();
    if let Some(c) = edit.cpus {
        spec.cpus = Some(c);
    }
    if let Some(m) = edit.memory_mib {
        spec.memory_mib = Some(m);
    }
    if let Some(c) = edit.cmdline {
        spec.cmdline = Some(c);
    }
    validate(&mut spec)?;
    let network = match vm_net(&spec) {
        VmNet::Network(n) => Some(n),
        _ => None,
    };
    write_definition(state, &rec, &spec, network.as_deref()).await?;
    rec.spec = serde_json::to_value(&spec).expect("spec");
    state.store().update_instance(&rec)?;
    state.events.emit(&rec, "edit");
    Ok(rec)
}

/// Start a VM under its own `corral vmm` process.
pub async fn start(state: &Arc<AppState>, key: &str) -> ApiResult<InstanceRecord> {
    let rec = state.find(Kind::Vm, key)?;
    let _guard = state.locks.lock(&rec.id).await;
    let mut rec = state.store().get_instance(&rec.id)?;
    if rec.state.has_supervisor() {
        return Ok(rec);
    }
    let journal = state.store().journal_begin(&rec.id, Op::Start, "begin")?;
    let dir = state.config.vm_dir(&rec.name);
    if let Err(e) = ensure_tap(state, &rec, &dir).await {
        state.store().journal_commit(journal)?;
        return Err(e);
    }
    // This run's end is news: stop and shutdown wait for it, not for the last run's.
    state.exit_channel(&rec.id).send_replace(None);
    let sock = state.config.vm_socket(&rec.name);
    let _ = std::fs::create_dir_all(sock.parent().expect("run/vms"));
    let _ = std::fs::remove_file(&sock);
    let log = std::fs::File::create(dir.join("logs/vmm.log"))
        .map_err(|e| ApiError::internal("creating vmm.log", e))?;
    let mut cmd = tokio::process::Command::new(&state.config.corral_exe);
    cmd.arg("vmm")
        .arg("--config")
        .arg(dir.join("vm.toml"))
        .arg("--control-socket")
        .arg(&sock)
        .arg("--console-socket")
        .arg(crate::vm_console::socket(&dir))
        .stdin(std::process::Stdio::null())
        .stdout(
            log.try_clone()
                .map_err(|e| ApiError::internal("vmm.log", e))?,
        )
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; it detaches the VMM from the daemon's session.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| ApiError::internal("starting corral vmm", e))?;
    let pid = child.id().unwrap_or(0) as i32;
    // Ready when the control socket accepts, or failed when the process ends first.
    let ready = tokio::select! {
        _ = proc::wait_exit(pid) => false,
        _ = wait_socket(&sock) => true,
    };
    drop(child);
    if !ready {
        state.store().journal_commit(journal)?;
        let log = std::fs::read_to_string(dir.join("logs/vmm.log")).unwrap_or_default();
        return Err(ApiError::Internal(format!(
            "the VM monitor exited before its control socket was ready: {}",
            log.trim()
        )));
    }
    rec.supervisor_pid = Some(pid);
    rec.supervisor_start = proc::start_time(pid);
    rec.started_at = Some(corral_store::now_ms());
    rec.exit_code = None;
    rec.reason = None;
    state.transition(&mut rec, State::Running, "start")?;
    watch(state.clone(), rec.id.clone(), pid);
    state.store().journal_commit(journal)?;
    Ok(rec)
}

/// Before a start: a VM on a network gets its tap back if it is gone (a host reboot removes
/// taps); vm.toml is rewritten only when the tap or address changed.
async fn ensure_tap(state: &AppState, rec: &InstanceRecord, dir: &Path) -> ApiResult<()> {
    let spec: VmSpec = serde_json::from_value(rec.spec.clone()).unwrap_or_default();
    let VmNet::Network(network) = vm_net(&spec) else {
        return Ok(());
    };
    let tap = tap_for(state, rec, &network).await?;
    let current = VmConfig::load(&dir.join("vm.toml")).ok();
    let same = current.is_some_and(|c| {
        c.net.is_some_and(|n| n.tap == tap.tap)
            && c.cmdline.is_some_and(|l| l.contains(&tap.kernel_ip_arg))
    });
    if !same {
        let text = to_toml(&spec, dir, Some(&tap))?;
        crate::shim::write_atomic(&dir.join("vm.toml"), text.as_bytes())
            .map_err(|e| ApiError::internal("writing vm.toml", e))?;
    }
    Ok(())
}

async fn wait_socket(path: &Path) {
    // The VMM creates its socket once ready; a connect succeeds from then on.
    loop {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Watch a VMM process and record its end.
pub fn watch(state: Arc<AppState>, id: String, pid: i32) {
    tokio::spawn(async move {
        proc::wait_exit(pid).await;
        let Ok(mut rec) = state.store().get_instance(&id) else {
            return;
        };
        if !rec.state.has_supervisor() {
            return;
        }
        rec.supervisor_pid = None;
        rec.supervisor_start = None;
        rec.finished_at = Some(corral_store::now_ms());
        let _ = state.transition(&mut rec, State::Exited, "die");
        state.exit_channel(&id).send_replace(Some(0));
    });
}

/// Send one request to a running VM's monitor (control protocol v1: one JSON line each way,
/// `{"version":1,"op":OP}` → `{"version":1,"ok":bool,"result"|"error"}`); its result.
pub async fn control(state: &AppState, name: &str, op: &str) -> ApiResult<serde_json::Value> {
    control_with(state, name, op, serde_json::Value::Null).await
}

/// [`control`] with the operation's arguments (`args`' fields join the request object).
pub async fn control_with(
    state: &AppState,
    name: &str,
    op: &str,
    args: serde_json::Value,
) -> ApiResult<serde_json::Value> {
    let sock = state.config.vm_socket(name);
    let stream = tokio::net::UnixStream::connect(&sock).await.map_err(|e| {
        ApiError::Conflict(format!("VM {name}: control socket {}: {e}", sock.display()))
    })?;
    let (r, mut w) = stream.into_split();
    let mut req = serde_json::json!({ "version": 1, "op": op });
    if let (Some(r), serde_json::Value::Object(a)) = (req.as_object_mut(), args) {
        r.extend(a);
    }
    let req = req.to_string() + "\n";
    w.write_all(req.as_bytes())
        .await
        .map_err(|e| ApiError::internal("control socket", e))?;
    let mut line = String::new();
    let mut r = BufReader::new(r);
    tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut line))
        .await
        .map_err(|_| ApiError::Internal(format!("VM {name}: no answer to {op}")))?
        .map_err(|e| ApiError::internal("control socket", e))?;
    let v: serde_json::Value = serde_json::from_str(line.trim())
        .map_err(|e| ApiError::internal(format!("VM {name}: bad answer {line:?}"), e))?;
    if v.get("ok").and_then(|o| o.as_bool()) != Some(true) {
        let err = v.get("error").and_then(|e| e.as_str()).unwrap_or("refused");
        return Err(ApiError::Conflict(format!("VM {name}: {op}: {err}")));
    }
    Ok(v.get("result").cloned().unwrap_or(serde_json::Value::Null))
}

/// Pause or resume.
pub async fn pause(state: &Arc<AppState>, key: &str, pause: bool) -> ApiResult<InstanceRecord> {
    let rec = state.find(Kind::Vm, key)?;
    let _guard = state.locks.lock(&rec.id).await;
    let mut rec = state.store().get_instance(&rec.id)?;
    let (from, to, cmd) = if pause {
        (State::Running, State::Paused, "pause")
    } else {
        (State::Paused, State::Running, "resume")
    };
    if rec.state != from {
        return Err(ApiError::Conflict(format!(
            "VM {} is {}, not {from}",
            rec.name, rec.state
        )));
    }
    control(state, &rec.name, cmd).await?;
    state.transition(&mut rec, to, cmd)?;
    Ok(rec)
}

/// Stop a VM: `graceful` asks the guest (then turns it off after `timeout`), else turns it off.
pub async fn stop(
    state: &Arc<AppState>,
    key: &str,
    graceful: bool,
    timeout: Duration,
) -> ApiResult<InstanceRecord> {
    let rec = state.find(Kind::Vm, key)?;
    let _guard = state.locks.lock(&rec.id).await;
    let mut rec = state.store().get_instance(&rec.id)?;
    if !rec.state.has_supervisor() {
        return Ok(rec);
    }
    let journal = state.store().journal_begin(&rec.id, Op::Stop, "begin")?;
    let pid = rec.supervisor_pid.unwrap_or(0);
    let was_paused = rec.state == State::Paused;
    state.transition(&mut rec, State::Stopping, "stop")?;
    let mut rx = state.exit_channel(&rec.id).subscribe();
    // Guest-cooperative: the guest agent's power-off when an agent is connected, else
    // Ctrl-Alt-Del on the i8042 (the guest's init shuts down and reboots, and a reboot ends a
    // microVM). A paused guest is resumed to hear it.
    let asked = graceful
        && (!was_paused || control(state, &rec.name, "resume").await.is_ok())
        && (control(state, &rec.name, "agent_shutdown").await.is_ok()
            || control(state, &rec.name, "ctrl_alt_del").await.is_ok());
    let mut exited = asked
        && tokio::time::timeout(timeout, rx.wait_for(|v| v.is_some()))
            .await
            .is_ok();
    let mut turned_off = false;
    if !exited {
        // Turn it off: the monitor ends the VM cleanly; SIGKILL is the last resort.
        turned_off = graceful;
        exited = control(state, &rec.name, "stop").await.is_ok()
            && tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|v| v.is_some()))
                .await
                .is_ok();
    }
    if !exited && pid > 0 && proc::alive(pid, rec.supervisor_start) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|v| v.is_some())).await;
    }
    if turned_off {
        let mut done = state.store().get_instance(&rec.id)?;
        done.reason = Some(format!(
            "the guest did not shut down within {}s; it was turned off",
            timeout.as_secs()
        ));
        state.store().update_instance(&done)?;
    }
    state.store().journal_commit(journal)?;
    Ok(state.store().get_instance(&rec.id)?)
}

/// Remove a stopped VM (or a running one with `force`) and its folder.
pub async fn remove(state: &Arc<AppState>, key: &str, force: bool) -> ApiResult<()> {
    let rec = state.find(Kind::Vm, key)?;
    if rec.state.has_supervisor() {
        if !force {
            return Err(ApiError::Conflict(format!(
                "VM {} is {}: turn it off first or use `vm rm -f`",
                rec.name, rec.state
            )));
        }
        stop(state, &rec.id, false, Duration::from_secs(5)).await?;
    }
    let _guard = state.locks.lock(&rec.id).await;
    let mut rec = state.store().get_instance(&rec.id)?;
    state.store().journal_begin(&rec.id, Op::Remove, "begin")?;
    state.transition(&mut rec, State::Removing, "remove")?;
    teardown(state, &rec).await;
    state.store().delete_instance(&rec.id)?;
    state.events.emit(&rec, "destroy");
    state.locks.forget(&rec.id);
    Ok(())
}

/// Remove a VM's tap (and address), folder and socket.
pub async fn teardown(state: &AppState, rec: &InstanceRecord) {
    if let Err(e) = state.net.detach(&rec.id).await {
        tracing::warn!(id = %rec.id, error = %e, "teardown: network (the next start-up retries)");
    }
    let _ = std::fs::remove_file(state.config.vm_socket(&rec.name));
    let _ = std::fs::remove_dir_all(state.config.vm_dir(&rec.name));
}

/// After a daemon restart: watch a live VMM again, or record that it ended.
pub fn reattach(state: &Arc<AppState>, rec: &mut InstanceRecord) {
    match rec.supervisor_pid {
        Some(pid) if proc::alive(pid, rec.supervisor_start) => {
            watch(state.clone(), rec.id.clone(), pid);
        }
        _ => {
            if rec.state.has_supervisor() {
                rec.reason = Some("its VM monitor ended while the daemon was away".into());
                rec.supervisor_pid = None;
                rec.finished_at = Some(corral_store::now_ms());
                let _ = state.transition(rec, State::Exited, "die");
            }
        }
    }
}
