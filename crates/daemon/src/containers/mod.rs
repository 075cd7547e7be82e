//! The container manager: create, start, stop, kill, remove, wait, exec. Every multi-step
//! operation journals its intent first and commits at the end; `recover` finishes or undoes
//! whatever a crash interrupted.

pub mod attach;
mod caps;
pub mod cgroup;
pub mod exec_session;
mod netsetup;
pub mod observe;
pub mod oci_config;
pub mod rootfs;
pub mod runtime;
pub mod spec;
mod stop;
mod supervise;

use std::sync::Arc;

use corral_api::ContainerSpec;
use corral_store::{InstanceRecord, Kind, Op, State};

use crate::crash;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub use netsetup::ensure as ensure_network;
pub use stop::{kill, remove, stop, teardown};
pub use supervise::{reattach, wait};

/// The stored request of a container.
pub fn spec_of(rec: &InstanceRecord) -> ContainerSpec {
    serde_json::from_value(rec.spec.clone()).unwrap_or_default()
}

/// Create a container (folder, root filesystem, bundle) and start it unless `start` is false.
pub async fn run(
    state: &Arc<AppState>,
    spec: ContainerSpec,
    start_it: bool,
) -> ApiResult<InstanceRecord> {
    spec::validate(&spec)?;
    if let spec::NetMode::Bridge(net) = spec::net_mode(&spec) {
        if !state.net.exists(&net)? {
            return Err(ApiError::NotFound(format!(
                "no such network: {net} (see `corral network ls`, or create it with `corral network create {net}`)"
            )));
        }
    }
    let image = rootfs::resolve_image(&state.config.root, &spec.image)?;
    let mut spec = spec;
    if spec.publish_all {
        publish_exposed(&mut spec, &image)?;
    }
    for p in spec::ports(&spec)? {
        crate::network::check_host_port(&p)?;
    }
    let id = crate::ids::new_id();
    let name = spec
        .name
        .clone()
        .unwrap_or_else(|| crate::ids::name_for(&id));
    let _guard = state.locks.lock(&id).await;
    let mut rec = InstanceRecord {
        id: id.clone(),
        kind: Kind::Container,
        name,
        state: State::Creating,
        spec: serde_json::to_value(&spec).expect("spec serialises"),
        created_at: corral_store::now_ms(),
        started_at: None,
        finished_at: None,
        exit_code: None,
        supervisor_pid: None,
        supervisor_start: None,
        reason: None,
        restart_count: 0,
    };
    let journal = state.store().insert_instance(&rec, Op::Create, "begin")?;
    crash::point("create:after-journal");
    if let Err(e) = build(state, &rec, &spec, &image, journal).await {
        teardown(state, &rec).await;
        let _ = state.store().delete_instance(&id);
        return Err(e);
    }
    state.transition(&mut rec, State::Created, "create")?;
    state.store().journal_commit(journal)?;
    crash::point("create:after-commit");
    if start_it {
        if let Err(e) = supervise::start_locked(state, &mut rec).await {
            if spec.auto_remove {
                drop(_guard);
                let _ = remove(state, &id, true).await;
            }
            return Err(e);
        }
    }
    Ok(rec)
}

async fn build(
    state: &Arc<AppState>,
    rec: &InstanceRecord,
    spec: &ContainerSpec,
    image: &rootfs::ImageDefaults,
    journal: i64,
) -> ApiResult<()> {
    let dir = state.config.container_dir(&rec.id);
    std::fs::create_dir_all(&dir)
        .map_err(|e| ApiError::internal(format!("creating {}", dir.display()), e))?;
    // The log exists from creation on, so `logs -f` can attach before the start.
    std::fs::File::create(dir.join("container.log"))
        .map_err(|e| ApiError::internal("creating container.log", e))?;
    rootfs::save(&state.config.root, &dir, &rec.id, image)?;
    rootfs::mount_rootfs(&dir, image)?;
    state.store().journal_step(journal, "rootfs")?;
    crash::point("create:after-rootfs");
    let user = spec.user.as_deref().or(image.user.as_deref()).unwrap_or("");
    let user = corral_image::build::user::resolve_in_rootfs(&dir.join("rootfs"), user)
        .map_err(|e| ApiError::invalid("user", e.reason))?;
    let mut inputs = oci_config::OciInputs {
        image: image.clone(),
        user: Some(user),
        ..Default::default()
    };
    netsetup::setup(state, rec, spec, &mut inputs).await?;
    state.store().journal_step(journal, "network")?;
    crash::point("create:after-network");
    let oci = oci_config::to_oci(spec, &rec.id, &inputs)?;
    let config = serde_json::to_vec_pretty(&oci).expect("spec serialises");
    crate::shim::write_atomic(&dir.join("config.json"), &config)
        .map_err(|e| ApiError::internal("writing config.json", e))?;
    state.store().journal_step(journal, "bundle")?;
    Ok(())
}

/// `-P`: publish each port the image exposes (and the request does not publish already) on a
/// free host port; the choice is recorded in the stored request.
fn publish_exposed(spec: &mut ContainerSpec, image: &rootfs::ImageDefaults) -> ApiResult<()> {
    if !matches!(spec::net_mode(spec), spec::NetMode::Bridge(_)) {
        return Err(ApiError::invalid(
            "publish_all",
            "ports are published on a corral network, not with --network none or host",
        ));
    }
    let taken = spec::ports(spec)?;
    for exposed in &image.exposed_ports {
        let (port, proto) = exposed.split_once('/').unwrap_or((exposed, "tcp"));
        let (Ok(port), "tcp" | "udp") = (port.parse::<u16>(), proto) else {
            tracing::warn!(image = %image.reference, exposed, "skipping an exposed port");
            continue;
        };
        if taken
            .iter()
            .any(|t| t.port == port && t.protocol.as_str() == proto)
        {
            continue;
        }
        let host = crate::network::free_host_port(proto == "udp")?;
        spec.publish.push(format!("{host}:{port}/{proto}"));
    }
    Ok(())
}

/// Start a created or exited container.
pub async fn start(state: &Arc<AppState>, key: &str) -> ApiResult<InstanceRecord> {
    let rec = state.find(Kind::Container, key)?;
    let _guard = state.locks.lock(&rec.id).await;
    let mut rec = state.store().get_instance(&rec.id)?;
    match rec.state {
        State::Running | State::Paused => return Ok(rec),
        State::Created | State::Exited | State::Dead => {}
        s => return Err(ApiError::Conflict(format!("container {} is {s}", rec.name))),
    }
    state
        .user_stopped
        .lock()
        .expect("user_stopped poisoned")
        .remove(&rec.id);
    supervise::start_locked(state, &mut rec).await?;
    Ok(rec)
}

/// Run a command in a running container and collect its output.
pub async fn exec(
    state: &Arc<AppState>,
    key: &str,
    req: corral_api::ExecRequest,
) -> ApiResult<corral_api::ExecResponse> {
    if req.command.is_empty() {
        return Err(ApiError::invalid("command", "a command is required"));
    }
    for (i, e) in req.env.iter().enumerate() {
        if !e.contains('=') {
            return Err(ApiError::invalid(format!("env[{i}]"), "expected K=V"));
        }
    }
    if req.tty || req.interactive {
        return Err(ApiError::invalid(
            if req.tty { "tty" } else { "interactive" },
            "a terminal or an input needs a session: POST /v1/containers/{id}/execs",
        ));
    }
    let rec = state.find(Kind::Container, key)?;
    if rec.state != State::Running {
        return Err(ApiError::Conflict(format!(
            "container {} is {}, not running",
            rec.name, rec.state
        )));
    }
    let out = runtime::exec(
        &state.config,
        &rec.id,
        &req.command,
        &req.env,
        req.user.as_deref(),
    )
    .await?;
    Ok(corral_api::ExecResponse {
        exit_code: out.status.code().unwrap_or(255),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
