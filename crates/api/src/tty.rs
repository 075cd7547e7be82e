//! Terminals over the API: attaching to a container started with `tty`, exec sessions on a
//! terminal, and window sizes.
//!
//! An attach is an HTTP/1.1 upgrade (`Connection: Upgrade`, `Upgrade: tcp`), as Docker's
//! hijacked attach: after `101 Switching Protocols` the connection carries the terminal's raw
//! bytes, input from the client and output to it, until the process's terminal closes.
//! Window sizes travel on separate requests (`…/resize`).

use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::client::{enc, Client, ClientError};
use crate::types::{ErrorBody, ExecRequest};

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct TtySize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// An exec session (`POST /v1/containers/{id}/execs`, `GET /v1/execs/{exec}`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ExecSession {
    /// The session's id.
    pub id: String,
    /// The container's id.
    pub container: String,
    /// Whether its process runs now.
    pub running: bool,
    /// Its exit status once it ended.
    pub exit_code: Option<i32>,
}

/// The raw byte stream of an attached terminal.
pub type TtyStream = TokioIo<hyper::upgrade::Upgraded>;

/// The `rows`/`cols` query of an attach.
fn size_query(size: Option<TtySize>) -> String {
    size.map_or_else(String::new, |s| format!("rows={}&cols={}", s.rows, s.cols))
}

impl Client {
    /// Send an upgrade request and return the raw stream once the daemon switched protocols.
    pub async fn upgrade(&self, path: &str) -> Result<TtyStream, ClientError> {
        let mut sender = self.connect().await?;
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("host", "corral")
            .header("connection", "Upgrade")
            .header("upgrade", "tcp");
        if let Some(token) = self.token() {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = req
            .body(http_body_util::Full::new(Bytes::new()))
            .expect("request parts are valid");
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        if status != StatusCode::SWITCHING_PROTOCOLS {
            return Err(crate::client::error_of(resp).await);
        }
        let upgraded = hyper::upgrade::on(resp).await?;
        Ok(TokioIo::new(upgraded))
    }

    /// `POST /v1/containers/{id}/attach`: the container's terminal (started first with
    /// `start`), sized to `size` before any input flows.
    pub async fn attach_container(
        &self,
        id: &str,
        start: bool,
        size: Option<TtySize>,
    ) -> Result<TtyStream, ClientError> {
        self.upgrade(&format!(
            "/v1/containers/{}/attach?start={start}&{}",
            enc(id),
            size_query(size)
        ))
        .await
    }

    /// `POST /v1/containers/{id}/resize`.
    pub async fn resize_container(&self, id: &str, size: TtySize) -> Result<(), ClientError> {
        self.text(
            Method::POST,
            &format!("/v1/containers/{}/resize", enc(id)),
            Some(serde_json::to_vec(&size).expect("size serialises")),
        )
        .await
        .map(drop)
    }

    /// `POST /v1/containers/{id}/execs`: a session for a process on a terminal.
    pub async fn create_exec(
        &self,
        id: &str,
        req: &ExecRequest,
    ) -> Result<ExecSession, ClientError> {
        self.call(
            Method::POST,
            &format!("/v1/containers/{}/execs", enc(id)),
            Some(req),
        )
        .await
    }

    /// `POST /v1/execs/{exec}/start`: start the session's process and attach to its terminal.
    pub async fn start_exec(
        &self,
        exec: &str,
        size: Option<TtySize>,
    ) -> Result<TtyStream, ClientError> {
        self.upgrade(&format!(
            "/v1/execs/{}/start?{}",
            enc(exec),
            size_query(size)
        ))
        .await
    }

    /// `POST /v1/execs/{exec}/resize`.
    pub async fn resize_exec(&self, exec: &str, size: TtySize) -> Result<(), ClientError> {
        self.text(
            Method::POST,
            &format!("/v1/execs/{}/resize", enc(exec)),
            Some(serde_json::to_vec(&size).expect("size serialises")),
        )
        .await
        .map(drop)
    }

    /// `GET /v1/execs/{exec}`.
    pub async fn exec_session(&self, exec: &str) -> Result<ExecSession, ClientError> {
        self.call::<(), _>(Method::GET, &format!("/v1/execs/{}", enc(exec)), None)
            .await
    }
}

/// An error body for a refused upgrade.
pub(crate) fn refused(status: u16, text: &[u8]) -> ClientError {
    let body = serde_json::from_slice(text).unwrap_or_else(|_| ErrorBody {
        code: "http".into(),
        message: format!("HTTP {status}: {}", String::from_utf8_lossy(text)),
        details: serde_json::Value::Null,
    });
    ClientError::Api { status, body }
}
