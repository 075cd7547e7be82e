//! Attaching API clients to the terminal of a container started with `tty`: the daemon
//! connects to the shim's attach socket (protocol in [`crate::shim::tty`]) and splices it with
//! the client's upgraded connection.

use std::sync::Arc;

use corral_api::TtySize;
use corral_store::{Kind, State};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::containers::spec_of;
use crate::error::{ApiError, ApiResult};
use crate::shim::tty::PROTOCOL;
use crate::state::AppState;

async fn connect(state: &AppState, id: &str) -> ApiResult<UnixStream> {
    let path = state.config.shim_socket(id);
    UnixStream::connect(&path).await.map_err(|e| {
        ApiError::internal(
            format!("connecting to the terminal at {}", path.display()),
            e,
        )
    })
}

/// Ask the shim of container `id` to resize its terminal.
async fn shim_resize(state: &AppState, id: &str, size: TtySize) -> ApiResult<()> {
    let mut s = connect(state, id).await?;
    let line = format!("{PROTOCOL} resize {} {}\n", size.rows, size.cols);
    s.write_all(line.as_bytes())
        .await
        .map_err(|e| ApiError::internal("asking the shim to resize", e))?;
    let mut answer = String::new();
    BufReader::new(s)
        .read_line(&mut answer)
        .await
        .map_err(|e| ApiError::internal("reading the shim's answer", e))?;
    match answer.trim_end() {
        "ok" => Ok(()),
        other => Err(ApiError::Internal(format!(
            "the shim refused the resize: {}",
            other.strip_prefix("error ").unwrap_or(other)
        ))),
    }
}

/// The running container `key` that has a terminal, or why not.
fn with_terminal(state: &AppState, key: &str) -> ApiResult<corral_store::InstanceRecord> {
    let rec = state.find(Kind::Container, key)?;
    if !spec_of(&rec).tty {
        return Err(ApiError::Conflict(format!(
            "container {} has no terminal (run it with -t to attach)",
            rec.name
        )));
    }
    Ok(rec)
}

/// Open the terminal of container `key` (starting it first when `start`), sized to `size`
/// before any input flows.
pub async fn open(
    state: &Arc<AppState>,
    key: &str,
    start: bool,
    size: Option<TtySize>,
) -> ApiResult<UnixStream> {
    let mut rec = with_terminal(state, key)?;
    if start {
        // The shim keeps the output of a process that ends before we attach.
        let pending = |on: bool| {
            let mut p = state
                .attach_pending
                .lock()
                .expect("attach_pending poisoned");
            if on {
                p.insert(rec.id.clone());
            } else {
                p.remove(&rec.id);
            }
        };
        pending(true);
        let started = super::start(state, &rec.id).await;
        pending(false);
        rec = started?;
    }
    if rec.state != State::Running {
        return Err(ApiError::Conflict(format!(
            "container {} is {}, not running",
            rec.name, rec.state
        )));
    }
    if let Some(size) = size {
        shim_resize(state, &rec.id, size).await?;
    }
    let mut s = connect(state, &rec.id).await?;
    s.write_all(format!("{PROTOCOL} attach\n").as_bytes())
        .await
        .map_err(|e| ApiError::internal("attaching to the shim", e))?;
    Ok(s)
}

/// Resize the terminal of the running container `key`.
pub async fn resize(state: &Arc<AppState>, key: &str, size: TtySize) -> ApiResult<()> {
    let rec = with_terminal(state, key)?;
    if rec.state != State::Running {
        return Err(ApiError::Conflict(format!(
            "container {} is {}, not running",
            rec.name, rec.state
        )));
    }
    shim_resize(state, &rec.id, size).await
}

/// Copy between a client and a terminal until either side ends: the client leaving detaches;
/// the terminal closing, or `ended` completing, ends the client's stream with the bytes
/// `before_close` gives (e.g. the runtime's error after waiting for an exit status).
pub async fn splice<C, T, E, F>(client: C, terminal: T, ended: E, before_close: F)
where
    C: AsyncRead + AsyncWrite,
    T: AsyncRead + AsyncWrite,
    E: std::future::Future<Output = ()>,
    F: std::future::Future<Output = Vec<u8>>,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut tr, mut tw) = tokio::io::split(terminal);
    let closed = tokio::select! {
        _ = tokio::io::copy(&mut cr, &mut tw) => false,
        _ = tokio::io::copy(&mut tr, &mut cw) => true,
        _ = ended => true,
    };
    if closed {
        let tail = before_close.await;
        let _ = cw.write_all(&tail).await;
        let _ = cw.shutdown().await;
    }
}
