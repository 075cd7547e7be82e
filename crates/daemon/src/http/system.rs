//! Daemon-wide endpoints: info, instances, inventory, events (SSE), metrics, OpenAPI.

use std::convert::Infallible;
use std::fmt::Write;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::Json;
use corral_api::{Info, Instance, InventoryRow};
use corral_store::{Kind, State as St};
use futures_util::stream::Stream;
use utoipa::OpenApi;

use super::S;
use crate::error::ApiResult;

/// Daemon information.
#[utoipa::path(get, path = "/v1/info", responses((status = 200, body = Info)))]
pub async fn info(State(state): S) -> ApiResult<Json<Info>> {
    let all = state.store().list_instances(None)?;
    Ok(Json(Info {
        version: env!("CARGO_PKG_VERSION").into(),
        commit: state.config.build.clone(),
        pid: std::process::id(),
        root: state.config.root.display().to_string(),
        oci_runtime: state.config.oci_runtime.display().to_string(),
        host: nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default(),
        containers: all.iter().filter(|r| r.kind == Kind::Container).count(),
        vms: all.iter().filter(|r| r.kind == Kind::Vm).count(),
    }))
}

/// Every VM and container.
#[utoipa::path(get, path = "/v1/instances", responses((status = 200, body = [Instance])))]
pub async fn instances(State(state): S) -> ApiResult<Json<Vec<Instance>>> {
    let all = state.store().list_instances(None)?;
    Ok(Json(all.iter().map(|r| state.wire(r)).collect()))
}

/// Live figures of every VM and container.
#[utoipa::path(get, path = "/v1/inventory", responses((status = 200, body = [InventoryRow])))]
pub async fn inventory(State(state): S) -> ApiResult<Json<Vec<InventoryRow>>> {
    let all = state.store().list_instances(None)?;
    Ok(Json(
        all.iter()
            .map(|r| crate::inventory::row(&state, r))
            .collect(),
    ))
}

/// State changes as Server-Sent Events (`data:` is an `Event` as JSON).
#[utoipa::path(get, path = "/v1/events", responses((status = 200, description = "text/event-stream of Event", body = corral_api::Event)))]
pub async fn events(State(state): S) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = state.events.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(ev) => {
                    let data = serde_json::to_string(&ev).expect("event serialises");
                    return Some((
                        Ok(SseEvent::default().event(ev.action.clone()).data(data)),
                        rx,
                    ));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Prometheus text metrics.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", body = String)))]
pub async fn metrics(State(state): S) -> ApiResult<impl IntoResponse> {
    let all = state.store().list_instances(None)?;
    let mut out = String::new();
    out += "# HELP corral_instances Instances by kind and state.\n# TYPE corral_instances gauge\n";
    for kind in [Kind::Container, Kind::Vm] {
        for st in St::ALL {
            let n = all
                .iter()
                .filter(|r| r.kind == kind && r.state == st)
                .count();
            let _ = writeln!(
                out,
                "corral_instances{{kind=\"{kind}\",state=\"{st}\"}} {n}"
            );
        }
    }
    out += "# HELP corral_http_requests_total API requests served.\n# TYPE corral_http_requests_total counter\n";
    let _ = writeln!(
        out,
        "corral_http_requests_total {}",
        state.http_requests.load(Ordering::Relaxed)
    );
    out += "# HELP corral_daemon_uptime_seconds Seconds since the daemon started.\n# TYPE corral_daemon_uptime_seconds gauge\n";
    let _ = writeln!(
        out,
        "corral_daemon_uptime_seconds {}",
        state.started.elapsed().as_secs()
    );
    if let Some(rss) = crate::proc::rss_bytes(std::process::id() as i32) {
        out += "# HELP corral_daemon_resident_bytes Resident memory of the daemon.\n# TYPE corral_daemon_resident_bytes gauge\n";
        let _ = writeln!(out, "corral_daemon_resident_bytes {rss}");
    }
    out += "# HELP corral_instance_memory_bytes Memory in use per running instance.\n# TYPE corral_instance_memory_bytes gauge\n";
    let rows: Vec<_> = all
        .iter()
        .filter(|r| r.state.has_supervisor())
        .map(|r| crate::inventory::row(&state, r))
        .collect();
    for r in &rows {
        if let Some(m) = r.memory_demand {
            let kind = serde_json::to_value(r.kind).unwrap_or_default();
            let _ = writeln!(
                out,
                "corral_instance_memory_bytes{{kind={kind},name=\"{}\"}} {m}",
                r.name
            );
        }
    }
    Ok(([("content-type", "text/plain; version=0.0.4")], out))
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", responses((status = 200, description = "OpenAPI 3 document")))]
pub async fn openapi() -> impl IntoResponse {
    Json(super::openapi::ApiDoc::openapi())
}
