//! The REST server: routes under `/v1`, the bearer-token check for TCP clients, `/metrics`
//! and the OpenAPI document generated from the handlers.

mod apps;
mod containers;
mod networks;
pub mod openapi;
mod system;
mod tty;
mod vms;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body whose rejection is a JSON error with the offending field.
#[derive(axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// Shared state in handlers.
pub type S = State<Arc<AppState>>;

/// Every route.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/openapi.json", get(system::openapi))
        .route("/v1/info", get(system::info))
        .route("/v1/events", get(system::events))
        .route("/v1/instances", get(system::instances))
        .route("/v1/inventory", get(system::inventory))
        .route("/metrics", get(system::metrics))
        .route(
            "/v1/containers",
            get(containers::list).post(containers::create),
        )
        .route(
            "/v1/containers/{id}",
            get(containers::inspect).delete(containers::remove),
        )
        .route("/v1/containers/{id}/start", post(containers::start))
        .route("/v1/containers/{id}/stop", post(containers::stop))
        .route("/v1/containers/{id}/kill", post(containers::kill))
        .route("/v1/containers/{id}/wait", post(containers::wait))
        .route("/v1/containers/{id}/exec", post(containers::exec))
        .route("/v1/containers/{id}/logs", get(containers::logs))
        .route("/v1/containers/{id}/top", get(containers::top))
        .route("/v1/containers/{id}/stats", get(containers::stats))
        .route("/v1/containers/{id}/attach", post(tty::attach))
        .route("/v1/containers/{id}/resize", post(tty::resize))
        .route("/v1/containers/{id}/execs", post(tty::create_exec))
        .route("/v1/execs/{exec}", get(tty::inspect_exec))
        .route("/v1/execs/{exec}/start", post(tty::start_exec))
        .route("/v1/execs/{exec}/attach", post(tty::attach_exec))
        .route("/v1/execs/{exec}/resize", post(tty::resize_exec))
        .route("/v1/networks", get(networks::list).post(networks::create))
        .route("/v1/networks/prune", post(networks::prune))
        .route(
            "/v1/networks/{name}",
            get(networks::inspect).delete(networks::remove),
        )
        .route("/v1/networks/{name}/taps", post(networks::tap))
        .route("/v1/apps", get(apps::list).post(apps::up))
        .route("/v1/apps/{name}", get(apps::inspect).delete(apps::down))
        .route("/v1/apps/{name}/scale", post(apps::scale))
        .route("/v1/apps/{name}/restart", post(apps::restart))
        .route("/v1/apps/{name}/logs", get(apps::logs))
        .route("/v1/kube/apply", post(apps::kube_apply))
        .route("/v1/kube/delete", post(apps::kube_delete))
        .route("/v1/vms", get(vms::list).post(vms::create))
        .route(
            "/v1/vms/{name}",
            get(vms::inspect).delete(vms::remove).patch(vms::edit),
        )
        .route("/v1/vms/{name}/start", post(vms::start))
        .route("/v1/vms/{name}/shutdown", post(vms::shutdown))
        .route("/v1/vms/{name}/exec", post(vms::exec))
        .route("/v1/vms/{name}/off", post(vms::off))
        .route("/v1/vms/{name}/pause", post(vms::pause))
        .route("/v1/vms/{name}/resume", post(vms::resume))
        .route("/v1/vms/{name}/console", post(tty::vm_console))
        .fallback(|| async {
            ApiError::NotFound(format!(
                "{} (see /v1/openapi.json)",
                corral_api::client::UNKNOWN_PATH
            ))
        })
        .layer(axum::middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

async fn count(State(state): S, req: Request, next: Next) -> Response {
    state.http_requests.fetch_add(1, Ordering::Relaxed);
    next.run(req).await
}

/// For TCP: refuse requests without the right bearer token.
pub async fn require_token(
    State(state): S,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(presented.as_bytes(), state.token.as_bytes()) {
        return Err(ApiError::Unauthorized);
    }
    Ok(next.run(req).await)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
