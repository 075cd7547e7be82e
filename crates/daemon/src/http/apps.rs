//! `/v1/apps` (Compose projects and every app's status) and `/v1/kube` (Kubernetes apply and
//! delete) handlers.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use corral_api::{AppChange, AppStatus, ComposeUpRequest, KubeRequest, ScaleRequest};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ApiJson, S};
use crate::apps::{self, parse};
use crate::error::ApiResult;

/// `GET /v1/apps/{name}/logs` options.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AppLogsQuery {
    /// Keep streaming as replicas come and go, until the client leaves or the app is removed.
    follow: Option<bool>,
    /// Only this service's replicas.
    service: Option<String>,
}

/// Every replica's output, tagged with the replica, optionally followed across restarts,
/// scaling and rolling updates.
#[utoipa::path(get, path = "/v1/apps/{name}/logs", params(("name" = String, Path, description = "app name"), AppLogsQuery),
    responses((status = 200, description = "application/x-ndjson of AppLogLine", body = corral_api::AppLogLine),
        (status = 404, body = corral_api::ErrorBody)))]
pub async fn logs(
    State(state): S,
    Path(name): Path<String>,
    Query(q): Query<AppLogsQuery>,
) -> ApiResult<Response> {
    apps::logs::check(&state, &name, q.service.as_deref())?;
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(256);
    tokio::spawn(apps::logs::stream(
        state.clone(),
        name,
        q.service,
        q.follow.unwrap_or(false),
        tx,
    ));
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|l| (Ok::<_, std::convert::Infallible>(l), rx))
    });
    Ok((
        [("content-type", "application/x-ndjson")],
        Body::from_stream(body),
    )
        .into_response())
}

/// `DELETE /v1/apps/{name}` options.
#[derive(Debug, Deserialize, IntoParams)]
pub struct DownQuery {
    /// Remove the app's named volumes too.
    volumes: Option<bool>,
}

/// Every app with its services, replicas and entry points.
#[utoipa::path(get, path = "/v1/apps", responses((status = 200, body = [AppStatus])))]
pub async fn list(State(state): S) -> ApiResult<Json<Vec<AppStatus>>> {
    Ok(Json(apps::list(&state).await?))
}

/// Bring a Compose project up, or change it to these files (rolling update).
#[utoipa::path(post, path = "/v1/apps", request_body = ComposeUpRequest,
    responses((status = 200, body = AppChange), (status = 400, body = corral_api::ErrorBody),
        (status = 409, body = corral_api::ErrorBody), (status = 501, body = corral_api::ErrorBody)))]
pub async fn up(
    State(state): S,
    ApiJson(req): ApiJson<ComposeUpRequest>,
) -> ApiResult<Json<AppChange>> {
    let desired = parse::compose(&req)?;
    apps::put(&state, &desired, &parse::Objects::new()).await?;
    let status = apps::status(&state, &desired.app.name).await?;
    Ok(Json(AppChange {
        app: Some(status),
        warnings: desired.warnings,
        changes: Vec::new(),
    }))
}

/// One app.
#[utoipa::path(get, path = "/v1/apps/{name}", params(("name" = String, Path, description = "app name")),
    responses((status = 200, body = AppStatus), (status = 404, body = corral_api::ErrorBody)))]
pub async fn inspect(State(state): S, Path(name): Path<String>) -> ApiResult<Json<AppStatus>> {
    Ok(Json(apps::status(&state, &name).await?))
}

/// Remove everything the app made, and the app.
#[utoipa::path(delete, path = "/v1/apps/{name}", params(("name" = String, Path, description = "app name"), DownQuery),
    responses((status = 204), (status = 404, body = corral_api::ErrorBody)))]
pub async fn down(
    State(state): S,
    Path(name): Path<String>,
    Query(q): Query<DownQuery>,
) -> ApiResult<StatusCode> {
    apps::down(&state, &name, q.volumes.unwrap_or(false)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Set services' replica counts.
#[utoipa::path(post, path = "/v1/apps/{name}/scale", params(("name" = String, Path, description = "app name")),
    request_body = ScaleRequest, responses((status = 200, body = AppStatus), (status = 400, body = corral_api::ErrorBody)))]
pub async fn scale(
    State(state): S,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<ScaleRequest>,
) -> ApiResult<Json<AppStatus>> {
    apps::scale(&state, &name, &req.replicas).await?;
    Ok(Json(apps::status(&state, &name).await?))
}

/// Restart every replica.
#[utoipa::path(post, path = "/v1/apps/{name}/restart", params(("name" = String, Path, description = "app name")),
    responses((status = 200, body = AppStatus)))]
pub async fn restart(State(state): S, Path(name): Path<String>) -> ApiResult<Json<AppStatus>> {
    apps::restart(&state, &name).await?;
    Ok(Json(apps::status(&state, &name).await?))
}

/// Apply Kubernetes manifests: their objects join the namespace's app (created on first use).
#[utoipa::path(post, path = "/v1/kube/apply", request_body = KubeRequest,
    responses((status = 200, body = AppChange), (status = 400, body = corral_api::ErrorBody)))]
pub async fn kube_apply(
    State(state): S,
    ApiJson(req): ApiJson<KubeRequest>,
) -> ApiResult<Json<AppChange>> {
    let out = parse::kube_apply(&req.files, |ns| apps::stored_objects(&state, ns))?;
    let app = match &out.desired {
        Some(desired) => {
            apps::put(&state, desired, &out.objects).await?;
            Some(apps::status(&state, &out.namespace).await?)
        }
        None => None,
    };
    Ok(Json(AppChange {
        app,
        warnings: out.desired.map(|d| d.warnings).unwrap_or_default(),
        changes: out.changes,
    }))
}

/// Delete the objects Kubernetes manifests name; the app goes with its last object.
#[utoipa::path(post, path = "/v1/kube/delete", request_body = KubeRequest,
    responses((status = 200, body = AppChange), (status = 404, body = corral_api::ErrorBody)))]
pub async fn kube_delete(
    State(state): S,
    ApiJson(req): ApiJson<KubeRequest>,
) -> ApiResult<Json<AppChange>> {
    let out = parse::kube_delete(&req.files, |ns| apps::stored_objects(&state, ns))?;
    let app = match &out.desired {
        Some(desired) => {
            apps::put(&state, desired, &out.objects).await?;
            Some(apps::status(&state, &out.namespace).await?)
        }
        None => {
            apps::down(&state, &out.namespace, false).await?;
            None
        }
    };
    Ok(Json(AppChange {
        app,
        warnings: Vec::new(),
        changes: out.changes,
    }))
}
