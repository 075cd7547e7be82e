//! `/v1/networks` handlers: create, list, inspect, remove (refused while in use), prune, and
//! taps for VMs.

use std::collections::{BTreeSet, HashMap};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use corral_api::{Network, NetworkCreate, NetworkPruneResponse, TapAttachment, TapRequest};

use super::{ApiJson, S};
use crate::error::ApiResult;
use crate::state::AppState;

/// Instance ids to names, for the endpoint lists.
fn names(state: &AppState) -> ApiResult<HashMap<String, String>> {
    Ok(state
        .store()
        .list_instances(None)?
        .into_iter()
        .map(|r| (r.id, r.name))
        .collect())
}

/// Every network with its instances.
#[utoipa::path(get, path = "/v1/networks", responses((status = 200, body = [Network])))]
pub async fn list(State(state): S) -> ApiResult<Json<Vec<Network>>> {
    let names = names(&state)?;
    Ok(Json(state.net.list(&names)?))
}

/// Create a network: a bridge with its own subnet.
#[utoipa::path(post, path = "/v1/networks", request_body = NetworkCreate,
    responses((status = 201, body = Network), (status = 400, body = corral_api::ErrorBody),
        (status = 409, body = corral_api::ErrorBody)))]
pub async fn create(
    State(state): S,
    ApiJson(req): ApiJson<NetworkCreate>,
) -> ApiResult<(StatusCode, Json<Network>)> {
    let net = state
        .net
        .create_network(&req.name, req.subnet.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(net)))
}

/// One network with its instances.
#[utoipa::path(get, path = "/v1/networks/{name}", params(("name" = String, Path, description = "network name")),
    responses((status = 200, body = Network), (status = 404, body = corral_api::ErrorBody)))]
pub async fn inspect(State(state): S, Path(name): Path<String>) -> ApiResult<Json<Network>> {
    let names = names(&state)?;
    Ok(Json(state.net.inspect(&name, &names)?))
}

/// Remove a network nobody uses.
#[utoipa::path(delete, path = "/v1/networks/{name}", params(("name" = String, Path, description = "network name")),
    responses((status = 204), (status = 404, body = corral_api::ErrorBody), (status = 409, body = corral_api::ErrorBody)))]
pub async fn remove(State(state): S, Path(name): Path<String>) -> ApiResult<StatusCode> {
    state.net.remove_network(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove every unused network and whatever instances the daemon no longer knows left.
#[utoipa::path(post, path = "/v1/networks/prune", responses((status = 200, body = NetworkPruneResponse)))]
pub async fn prune(State(state): S) -> ApiResult<Json<NetworkPruneResponse>> {
    let known: BTreeSet<String> = names(&state)?.into_keys().collect();
    Ok(Json(state.net.prune(&known).await?))
}

/// Give a VM a persistent tap on the network (idempotent per instance).
#[utoipa::path(post, path = "/v1/networks/{name}/taps", params(("name" = String, Path, description = "network name")),
    request_body = TapRequest,
    responses((status = 201, body = TapAttachment), (status = 404, body = corral_api::ErrorBody)))]
pub async fn tap(
    State(state): S,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<TapRequest>,
) -> ApiResult<(StatusCode, Json<TapAttachment>)> {
    let vm = state.find(corral_store::Kind::Vm, &req.instance)?;
    let mut names = vec![vm.name.to_ascii_lowercase()];
    names.extend(req.names.iter().map(|n| n.to_ascii_lowercase()));
    let tap = crate::network::vm_tap(&state, &vm.id, &name, names).await?;
    Ok((StatusCode::CREATED, Json(tap)))
}
