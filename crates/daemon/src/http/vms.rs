//! `/v1/vms` handlers.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use corral_api::{Instance, ShutdownRequest, VmEdit, VmExecRequest, VmExecResponse, VmSpec};
use corral_store::Kind;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ApiJson, S};
use crate::error::ApiResult;
use crate::vms as v;

/// `DELETE /v1/vms/{name}` options.
#[derive(Debug, Deserialize, IntoParams)]
pub struct RemoveQuery {
    /// Turn a running VM off first.
    force: Option<bool>,
}

/// Every VM.
#[utoipa::path(get, path = "/v1/vms", responses((status = 200, body = [Instance])))]
pub async fn list(State(state): S) -> ApiResult<Json<Vec<Instance>>> {
    let all = state.store().list_instances(Some(Kind::Vm))?;
    Ok(Json(all.iter().map(|r| state.wire(r)).collect()))
}

/// Define a VM (writes vms/NAME/vm.toml).
#[utoipa::path(post, path = "/v1/vms", request_body = VmSpec,
    responses((status = 201, body = Instance), (status = 400, body = corral_api::ErrorBody), (status = 409, body = corral_api::ErrorBody)))]
pub async fn create(
    State(state): S,
    ApiJson(spec): ApiJson<VmSpec>,
) -> ApiResult<(StatusCode, Json<Instance>)> {
    Ok((
        StatusCode::CREATED,
        Json(state.wire(&v::create(&state, spec).await?)),
    ))
}

/// One VM.
#[utoipa::path(get, path = "/v1/vms/{name}", params(("name" = String, Path, description = "VM name")),
    responses((status = 200, body = Instance), (status = 404, body = corral_api::ErrorBody)))]
pub async fn inspect(State(state): S, Path(name): Path<String>) -> ApiResult<Json<Instance>> {
    let rec = state.find(Kind::Vm, &name)?;
    let mut inst = state.wire(&rec);
    if rec.state.has_supervisor() {
        let paused = rec.state == corral_store::State::Paused;
        inst.guest_agent = v::agent::inspect(&state, &rec.name, paused).await;
    }
    Ok(Json(inst))
}

/// Remove a VM and its folder.
#[utoipa::path(delete, path = "/v1/vms/{name}", params(("name" = String, Path, description = "VM name"), RemoveQuery),
    responses((status = 204)))]
pub async fn remove(
    State(state): S,
    Path(name): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> ApiResult<StatusCode> {
    v::remove(&state, &name, q.force.unwrap_or(false)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change the definition; applies at the next start.
#[utoipa::path(patch, path = "/v1/vms/{name}", params(("name" = String, Path, description = "VM name")),
    request_body = VmEdit, responses((status = 200, body = Instance)))]
pub async fn edit(
    State(state): S,
    Path(name): Path<String>,
    ApiJson(e): ApiJson<VmEdit>,
) -> ApiResult<Json<Instance>> {
    Ok(Json(state.wire(&v::edit(&state, &name, e).await?)))
}

/// Start the VM under its own monitor process.
#[utoipa::path(post, path = "/v1/vms/{name}/start", params(("name" = String, Path, description = "VM name")),
    responses((status = 200, body = Instance)))]
pub async fn start(State(state): S, Path(name): Path<String>) -> ApiResult<Json<Instance>> {
    Ok(Json(state.wire(&v::start(&state, &name).await?)))
}

/// Ask the guest to power off; turn it off after the timeout.
#[utoipa::path(post, path = "/v1/vms/{name}/shutdown", params(("name" = String, Path, description = "VM name")),
    request_body = ShutdownRequest, responses((status = 200, body = Instance)))]
pub async fn shutdown(
    State(state): S,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<ShutdownRequest>,
) -> ApiResult<Json<Instance>> {
    let t = body.timeout_secs.unwrap_or(30);
    Ok(Json(state.wire(
        &v::stop(&state, &name, true, Duration::from_secs(t)).await?,
    )))
}

/// Run a command in the guest through its guest agent; answers once it ended.
#[utoipa::path(post, path = "/v1/vms/{name}/exec", params(("name" = String, Path, description = "VM name")),
    request_body = VmExecRequest, responses((status = 200, body = VmExecResponse),
    (status = 409, description = "not running, or no guest agent connected", body = corral_api::ErrorBody)))]
pub async fn exec(
    State(state): S,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<VmExecRequest>,
) -> ApiResult<Json<VmExecResponse>> {
    Ok(Json(v::agent::exec(&state, &name, body).await?))
}

/// Turn the VM off now.
#[utoipa::path(post, path = "/v1/vms/{name}/off", params(("name" = String, Path, description = "VM name")),
    responses((status = 200, body = Instance)))]
pub async fn off(State(state): S, Path(name): Path<String>) -> ApiResult<Json<Instance>> {
    Ok(Json(state.wire(
        &v::stop(&state, &name, false, Duration::from_secs(5)).await?,
    )))
}

/// Pause the vCPUs.
#[utoipa::path(post, path = "/v1/vms/{name}/pause", params(("name" = String, Path, description = "VM name")),
    responses((status = 200, body = Instance)))]
pub async fn pause(State(state): S, Path(name): Path<String>) -> ApiResult<Json<Instance>> {
    Ok(Json(state.wire(&v::pause(&state, &name, true).await?)))
}

/// Resume the vCPUs.
#[utoipa::path(post, path = "/v1/vms/{name}/resume", params(("name" = String, Path, description = "VM name")),
    responses((status = 200, body = Instance)))]
pub async fn resume(State(state): S, Path(name): Path<String>) -> ApiResult<Json<Instance>> {
    Ok(Json(state.wire(&v::pause(&state, &name, false).await?)))
}
