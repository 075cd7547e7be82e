//! Attaching API clients to a container: to its terminal when started with `tty`, else to its
//! output (framed) and stdin. The daemon connects to the shim's attach socket (protocol in
//! [`crate::shim::tty`] and [`crate::shim::stdio`]) and splices it with the client's upgraded
//! connection.

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
    connect_at(&state.config.shim_socket(id)).await
}

/// Connect to the attach socket at `path` (a container's shim or an exec session's).
pub(crate) async fn connect_at(path: &std::path::Path) -> ApiResult<UnixStream> {
    UnixStream::connect(path).await.map_err(|e| {
        ApiError::internal(
            format!("connecting to the terminal at {}", path.display()),
            e,
        )
    })
}

/// Ask the shim of container `id` to resize its terminal.
async fn shim_resize(state: &AppState, id: &str, size: TtySize) -> ApiResult<()> {
    shim_resize_at(&state.config.shim_socket(id), size).await
}

/// Ask the shim serving the attach socket at `path` to resize its terminal.
pub(crate) async fn shim_resize_at(path: &std::path::Path, size: TtySize) -> ApiResult<()> {
    let mut s = connect_at(path).await?;
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

/// What an attach asks.
#[derive(Debug, Clone, Copy, Default)]
pub struct AttachOptions {
    /// Start the container first (so no output is missed).
    pub start: bool,
    /// The terminal's size, set before any input flows.
    pub size: Option<TtySize>,
    /// Without a terminal: the end of the client's input closes the container's stdin.
    pub stdin_once: bool,
}

/// An open attach: the shim's connection, and whether it carries a terminal.
pub struct Attached {
    /// The shim's attach connection, past the request line.
    pub stream: UnixStream,
    /// The container has a terminal (raw bytes) rather than framed stdio.
    pub tty: bool,
}

/// Open the terminal or stdio of container `key` (starting it first when asked).
pub async fn open(state: &Arc<AppState>, key: &str, opts: AttachOptions) -> ApiResult<Attached> {
    let AttachOptions {
        start,
        size,
        stdin_once,
    } = opts;
    let mut rec = state.find(Kind::Container, key)?;
    let tty = spec_of(&rec).tty;
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
    if let (Some(size), true) = (size, tty) {
        shim_resize(state, &rec.id, size).await?;
    }
    let mut s = connect(state, &rec.id).await?;
    let flags = if stdin_once && !tty {
        " close-stdin"
    } else {
        ""
    };
    s.write_all(format!("{PROTOCOL} attach{flags}\n").as_bytes())
        .await
        .map_err(|e| ApiError::internal("attaching to the shim", e))?;
    Ok(Attached { stream: s, tty })
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

/// Copy between a client and a container's stdio until the container's side ends; the end of
/// the client's input is passed on (a write shutdown) and its output still flows, so `run -i`
/// gets everything its input caused.
pub async fn splice_stdio<C, T>(client: C, shim: T)
where
    C: AsyncRead + AsyncWrite,
    T: AsyncRead + AsyncWrite,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut tr, mut tw) = tokio::io::split(shim);
    let input = async {
        let _ = tokio::io::copy(&mut cr, &mut tw).await;
        let _ = tw.shutdown().await;
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = input => {}
        _ = tokio::io::copy(&mut tr, &mut cw) => {}
    }
    let _ = cw.shutdown().await;
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
