//! Terminal handlers: attach to a container's terminal or stdio, exec sessions on a terminal,
//! resizes. Attaches are HTTP/1.1 upgrades (`Connection: Upgrade`, `Upgrade: tcp`) answered
//! with `101 Switching Protocols`; the connection then carries the terminal's raw bytes, or
//! (no terminal) framed output and raw input (see `corral_api::tty`).

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::Json;
use corral_api::{ExecRequest, ExecSession, TtySize};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ApiJson, S};
use crate::containers::{attach, exec_session};
use crate::error::{ApiError, ApiResult};

/// Options of an attach.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AttachQuery {
    /// Start the container first (so no output is missed).
    start: Option<bool>,
    /// Terminal rows, set before any input flows.
    rows: Option<u16>,
    /// Terminal columns.
    cols: Option<u16>,
    /// Without a terminal: the end of the client's input closes the container's stdin.
    stdin_once: Option<bool>,
}

impl AttachQuery {
    fn size(&self) -> Option<TtySize> {
        Some(TtySize {
            rows: self.rows?,
            cols: self.cols?,
        })
    }
}

/// Take the upgrade of `req`, or refuse a request that does not ask for one.
fn upgrade_of(req: &mut Request) -> ApiResult<hyper::upgrade::OnUpgrade> {
    let asks = req
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"tcp"));
    if !asks {
        return Err(ApiError::invalid(
            "upgrade",
            "an attach is an HTTP upgrade: send `Connection: Upgrade` and `Upgrade: tcp`",
        ));
    }
    Ok(hyper::upgrade::on(req))
}

fn switching() -> Response {
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "tcp")
        .body(Body::empty())
        .expect("response parts are valid")
}

/// Attach to a container: its terminal's raw bytes, or without a terminal its output in
/// frames and input to its stdin (an upgrade).
#[utoipa::path(post, path = "/v1/containers/{id}/attach",
    params(("id" = String, Path, description = "name or id"), AttachQuery),
    responses((status = 101, description = "the terminal's raw bytes, or framed stdio, follow"),
        (status = 409, body = corral_api::ErrorBody)))]
pub async fn attach(
    State(state): S,
    Path(id): Path<String>,
    Query(q): Query<AttachQuery>,
    mut req: Request,
) -> ApiResult<Response> {
    let on_upgrade = upgrade_of(&mut req)?;
    let opts = attach::AttachOptions {
        start: q.start.unwrap_or(false),
        size: q.size(),
        stdin_once: q.stdin_once.unwrap_or(false),
    };
    let shim = attach::open(&state, &id, opts).await?;
    tokio::spawn(splice_upgraded(on_upgrade, shim));
    Ok(switching())
}

/// Resize a container's terminal.
#[utoipa::path(post, path = "/v1/containers/{id}/resize",
    params(("id" = String, Path, description = "name or id")), request_body = TtySize,
    responses((status = 204), (status = 409, body = corral_api::ErrorBody)))]
pub async fn resize(
    State(state): S,
    Path(id): Path<String>,
    ApiJson(size): ApiJson<TtySize>,
) -> ApiResult<StatusCode> {
    attach::resize(&state, &id, size).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Create an exec session (on a terminal or not) in a running container.
#[utoipa::path(post, path = "/v1/containers/{id}/execs",
    params(("id" = String, Path, description = "name or id")), request_body = ExecRequest,
    responses((status = 201, body = ExecSession), (status = 409, body = corral_api::ErrorBody)))]
pub async fn create_exec(
    State(state): S,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ExecRequest>,
) -> ApiResult<(StatusCode, Json<ExecSession>)> {
    Ok((
        StatusCode::CREATED,
        Json(exec_session::create(&state, &id, req)?),
    ))
}

/// Start an exec session and attach to it (an upgrade: a terminal's raw bytes, or without a
/// terminal the output in frames and raw input; the stream ends once the exit status is
/// known).
#[utoipa::path(post, path = "/v1/execs/{exec}/start",
    params(("exec" = String, Path, description = "session id"), AttachQuery),
    responses((status = 101, description = "the terminal's raw bytes, or framed stdio, follow"),
        (status = 404, body = corral_api::ErrorBody), (status = 409, body = corral_api::ErrorBody)))]
pub async fn start_exec(
    State(state): S,
    Path(exec): Path<String>,
    Query(q): Query<AttachQuery>,
    mut req: Request,
) -> ApiResult<Response> {
    let on_upgrade = upgrade_of(&mut req)?;
    let shim = exec_session::start(&state, &exec, q.size()).await?;
    tokio::spawn(splice_upgraded(on_upgrade, shim));
    Ok(switching())
}

/// Join a running exec session again: its terminal's raw bytes, or its framed output and
/// input (an upgrade).
#[utoipa::path(post, path = "/v1/execs/{exec}/attach",
    params(("exec" = String, Path, description = "session id"), AttachQuery),
    responses((status = 101, description = "the terminal's raw bytes, or framed stdio, follow"),
        (status = 404, body = corral_api::ErrorBody), (status = 409, body = corral_api::ErrorBody)))]
pub async fn attach_exec(
    State(state): S,
    Path(exec): Path<String>,
    Query(q): Query<AttachQuery>,
    mut req: Request,
) -> ApiResult<Response> {
    let on_upgrade = upgrade_of(&mut req)?;
    let shim = exec_session::attach(&state, &exec, q.size()).await?;
    tokio::spawn(splice_upgraded(on_upgrade, shim));
    Ok(switching())
}

/// Splice an upgraded client connection with a shim's attach (a terminal or framed stdio).
async fn splice_upgraded(on_upgrade: hyper::upgrade::OnUpgrade, shim: attach::Attached) {
    match on_upgrade.await {
        Ok(up) if shim.tty => {
            attach::splice(
                TokioIo::new(up),
                shim.stream,
                std::future::pending(),
                async { Vec::new() },
            )
            .await
        }
        Ok(up) => attach::splice_stdio(TokioIo::new(up), shim.stream).await,
        Err(e) => tracing::warn!(error = %e, "attach upgrade failed"),
    }
}

/// Resize an exec session's terminal.
#[utoipa::path(post, path = "/v1/execs/{exec}/resize",
    params(("exec" = String, Path, description = "session id")), request_body = TtySize,
    responses((status = 204), (status = 404, body = corral_api::ErrorBody)))]
pub async fn resize_exec(
    State(state): S,
    Path(exec): Path<String>,
    ApiJson(size): ApiJson<TtySize>,
) -> ApiResult<StatusCode> {
    exec_session::resize(&state, &exec, size).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An exec session: running, or its exit status.
#[utoipa::path(get, path = "/v1/execs/{exec}",
    params(("exec" = String, Path, description = "session id")),
    responses((status = 200, body = ExecSession), (status = 404, body = corral_api::ErrorBody)))]
pub async fn inspect_exec(
    State(state): S,
    Path(exec): Path<String>,
) -> ApiResult<Json<ExecSession>> {
    Ok(Json(exec_session::inspect(&state, &exec)?))
}

/// Attach to a running VM's serial console (an upgrade to its raw bytes; closing the
/// connection detaches).
#[utoipa::path(post, path = "/v1/vms/{name}/console",
    params(("name" = String, Path, description = "VM name")),
    responses((status = 101, description = "the console's raw bytes follow"),
        (status = 409, body = corral_api::ErrorBody)))]
pub async fn vm_console(
    State(state): S,
    Path(name): Path<String>,
    mut req: Request,
) -> ApiResult<Response> {
    let on_upgrade = upgrade_of(&mut req)?;
    let console = crate::vm_console::connect(&state, &name).await?;
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(up) => {
                attach::splice(TokioIo::new(up), console, std::future::pending(), async {
                    Vec::new()
                })
                .await
            }
            Err(e) => tracing::warn!(error = %e, "console upgrade failed"),
        }
    });
    Ok(switching())
}
