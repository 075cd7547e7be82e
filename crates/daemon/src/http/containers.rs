//! `/v1/containers` handlers.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use corral_api::{
    ContainerSpec, ExecRequest, ExecResponse, Instance, InventoryRow, KillRequest, StopRequest,
    TopResponse, WaitResponse,
};
use corral_store::Kind;
use futures_util::StreamExt;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ApiJson, S};
use crate::containers::{self as c, observe};
use crate::error::{ApiError, ApiResult};

/// `POST /v1/containers` options.
#[derive(Debug, Deserialize, IntoParams)]
pub struct CreateQuery {
    /// Start it right away (default true).
    start: Option<bool>,
}

/// `GET /v1/containers` filters.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// Only containers with this label, `KEY=VALUE` (or just `KEY`). Repeatable.
    #[allow(dead_code)]
    label: Option<Vec<String>>,
}

/// `DELETE /v1/containers/{id}` options.
#[derive(Debug, Deserialize, IntoParams)]
pub struct RemoveQuery {
    /// Kill a running container first.
    force: Option<bool>,
}

/// `GET /v1/containers/{id}/logs` options.
#[derive(Debug, Deserialize, IntoParams)]
pub struct LogsQuery {
    /// Keep streaming until the container exits.
    follow: Option<bool>,
    /// Only the last N lines.
    tail: Option<usize>,
    /// RFC 3339 time or a duration back from now (10m).
    since: Option<String>,
}

/// Every container (carrying the given labels).
#[utoipa::path(get, path = "/v1/containers", params(ListQuery), responses((status = 200, body = [Instance])))]
pub async fn list(
    State(state): S,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult<Json<Vec<Instance>>> {
    let all = state.store().list_instances(Some(Kind::Container))?;
    let wanted: Vec<(&str, Option<&str>)> = q
        .iter()
        .filter(|(k, _)| k == "label")
        .map(|(_, l)| l)
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (l.as_str(), None),
        })
        .collect();
    Ok(Json(
        all.iter()
            .filter(|r| {
                let labels = c::spec_of(r).labels;
                wanted.iter().all(|(k, v)| {
                    labels
                        .get(*k)
                        .is_some_and(|have| v.is_none_or(|v| v == have))
                })
            })
            .map(|r| state.wire(r))
            .collect(),
    ))
}

/// Create (and by default start) a container.
#[utoipa::path(post, path = "/v1/containers", params(CreateQuery), request_body = ContainerSpec,
    responses((status = 201, body = Instance), (status = 400, body = corral_api::ErrorBody),
        (status = 404, body = corral_api::ErrorBody), (status = 409, body = corral_api::ErrorBody)))]
pub async fn create(
    State(state): S,
    Query(q): Query<CreateQuery>,
    ApiJson(spec): ApiJson<ContainerSpec>,
) -> ApiResult<(StatusCode, Json<Instance>)> {
    let rec = c::run(&state, spec, q.start.unwrap_or(true)).await?;
    Ok((StatusCode::CREATED, Json(state.wire(&rec))))
}

/// One container.
#[utoipa::path(get, path = "/v1/containers/{id}", params(("id" = String, Path, description = "name, id or id prefix")),
    responses((status = 200, body = Instance), (status = 404, body = corral_api::ErrorBody)))]
pub async fn inspect(State(state): S, Path(id): Path<String>) -> ApiResult<Json<Instance>> {
    Ok(Json(state.wire(&state.find(Kind::Container, &id)?)))
}

/// Remove a container.
#[utoipa::path(delete, path = "/v1/containers/{id}", params(("id" = String, Path, description = "name or id"), RemoveQuery),
    responses((status = 204), (status = 409, body = corral_api::ErrorBody)))]
pub async fn remove(
    State(state): S,
    Path(id): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> ApiResult<StatusCode> {
    c::remove(&state, &id, q.force.unwrap_or(false)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Start a created or exited container.
#[utoipa::path(post, path = "/v1/containers/{id}/start", params(("id" = String, Path, description = "name or id")),
    responses((status = 200, body = Instance)))]
pub async fn start(State(state): S, Path(id): Path<String>) -> ApiResult<Json<Instance>> {
    Ok(Json(state.wire(&c::start(&state, &id).await?)))
}

/// SIGTERM, then SIGKILL after the timeout.
#[utoipa::path(post, path = "/v1/containers/{id}/stop", params(("id" = String, Path, description = "name or id")),
    request_body = StopRequest, responses((status = 200, body = Instance)))]
pub async fn stop(
    State(state): S,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<StopRequest>,
) -> ApiResult<Json<Instance>> {
    let t = body.timeout_secs.unwrap_or(10);
    Ok(Json(state.wire(
        &c::stop(&state, &id, Duration::from_secs(t)).await?,
    )))
}

/// Send a signal.
#[utoipa::path(post, path = "/v1/containers/{id}/kill", params(("id" = String, Path, description = "name or id")),
    request_body = KillRequest, responses((status = 200, body = Instance)))]
pub async fn kill(
    State(state): S,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<KillRequest>,
) -> ApiResult<Json<Instance>> {
    let sig = body.signal.unwrap_or_else(|| "KILL".into());
    Ok(Json(state.wire(&c::kill(&state, &id, &sig).await?)))
}

/// Block until the container exits.
#[utoipa::path(post, path = "/v1/containers/{id}/wait", params(("id" = String, Path, description = "name or id")),
    responses((status = 200, body = WaitResponse)))]
pub async fn wait(State(state): S, Path(id): Path<String>) -> ApiResult<Json<WaitResponse>> {
    Ok(Json(WaitResponse {
        exit_code: c::wait(&state, &id).await?,
    }))
}

/// Run a command in a running container.
#[utoipa::path(post, path = "/v1/containers/{id}/exec", params(("id" = String, Path, description = "name or id")),
    request_body = ExecRequest, responses((status = 200, body = ExecResponse)))]
pub async fn exec(
    State(state): S,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ExecRequest>,
) -> ApiResult<Json<ExecResponse>> {
    Ok(Json(c::exec(&state, &id, req).await?))
}

/// The container's output as JSON lines (`LogLine`), optionally followed.
#[utoipa::path(get, path = "/v1/containers/{id}/logs", params(("id" = String, Path, description = "name or id"), LogsQuery),
    responses((status = 200, description = "application/x-ndjson of LogLine", body = corral_api::LogLine)))]
pub async fn logs(
    State(state): S,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> ApiResult<Response> {
    let since = q.since.as_deref().map(observe::parse_since).transpose()?;
    let follow = q.follow.unwrap_or(false);
    let filtered = q.tail.is_some() || since.is_some();
    if follow && !filtered {
        let rec = state.find(Kind::Container, &id)?;
        let stream =
            observe::follow(state.clone(), rec.id, 0).map(Ok::<_, std::convert::Infallible>);
        return Ok(ndjson(Body::from_stream(stream)));
    }
    let path_len = {
        let rec = state.find(Kind::Container, &id)?;
        std::fs::metadata(state.config.container_dir(&rec.id).join("container.log"))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    let (cid, lines) = observe::log_lines(&state, &id, q.tail, since)?;
    let mut text = String::new();
    for l in lines {
        text += &serde_json::to_string(&l).expect("log line");
        text.push('\n');
    }
    if !follow {
        return Ok(ndjson(Body::from(text)));
    }
    let head = futures_util::stream::once(async move { text });
    let rest = observe::follow(state.clone(), cid, path_len);
    Ok(ndjson(Body::from_stream(
        head.chain(rest).map(Ok::<_, std::convert::Infallible>),
    )))
}

fn ndjson(body: Body) -> Response {
    ([("content-type", "application/x-ndjson")], body).into_response()
}

/// Processes in the container.
#[utoipa::path(get, path = "/v1/containers/{id}/top", params(("id" = String, Path, description = "name or id")),
    responses((status = 200, body = TopResponse)))]
pub async fn top(State(state): S, Path(id): Path<String>) -> ApiResult<Json<TopResponse>> {
    Ok(Json(observe::top(&state, &id)?))
}

/// Live figures of one container.
#[utoipa::path(get, path = "/v1/containers/{id}/stats", params(("id" = String, Path, description = "name or id")),
    responses((status = 200, body = InventoryRow)))]
pub async fn stats(State(state): S, Path(id): Path<String>) -> ApiResult<Json<InventoryRow>> {
    let rec = state.find(Kind::Container, &id)?;
    Ok(Json(crate::inventory::row(&state, &rec)))
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        ApiError::invalid("body", e.body_text())
    }
}
