//! Terminals and stdio over the API: attaching to a container (with or without a terminal),
//! exec sessions on a terminal, and window sizes.
//!
//! An attach is an HTTP/1.1 upgrade (`Connection: Upgrade`, `Upgrade: tcp`), as Docker's
//! hijacked attach. After `101 Switching Protocols` the connection carries:
//! - for a container with a terminal (`tty`): the terminal's raw bytes, input from the client
//!   and output to it, until the process's terminal closes;
//! - for a container without one: from the daemon, its stdout and stderr multiplexed in
//!   Docker's frames (see [`frame`]); from the client, raw bytes for the container's stdin
//!   (kept only when it was created `interactive`). The client ending its input (a write
//!   shutdown) closes the container's stdin when the attach asked `stdin_once`, as `run -i`.
//!
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
    /// It runs on a terminal.
    #[serde(default)]
    pub tty: bool,
    /// It has an input.
    #[serde(default)]
    pub interactive: bool,
}

/// The raw byte stream of an attached terminal.
pub type TtyStream = TokioIo<hyper::upgrade::Upgraded>;

/// The stream number of stdout in a multiplexed attach.
pub const STDOUT: u8 = 1;
/// The stream number of stderr in a multiplexed attach.
pub const STDERR: u8 = 2;
/// The size of a frame header.
pub const FRAME_HEADER: usize = 8;

/// One frame of a multiplexed attach (Docker's format): the stream number, three zero bytes,
/// the payload's length as a big-endian u32, then the payload.
pub fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER + payload.len());
    out.extend_from_slice(&[stream, 0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The stream number and payload length a frame header announces.
pub fn frame_header(h: &[u8; FRAME_HEADER]) -> (u8, usize) {
    (h[0], u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize)
}

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

    /// `POST /v1/containers/{id}/attach` of a container without a terminal: its output in
    /// frames, input to its stdin (started first when `start`; `stdin_once`: the end of this
    /// client's input closes the container's stdin).
    pub async fn attach_stdio(
        &self,
        id: &str,
        start: bool,
        stdin_once: bool,
    ) -> Result<TtyStream, ClientError> {
        self.upgrade(&format!(
            "/v1/containers/{}/attach?start={start}&stdin_once={stdin_once}",
            enc(id)
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

    /// `POST /v1/execs/{exec}/attach`: join a running session again (its terminal, sized
    /// `size` first, or its framed output and input).
    pub async fn attach_exec(
        &self,
        exec: &str,
        size: Option<TtySize>,
    ) -> Result<TtyStream, ClientError> {
        self.upgrade(&format!(
            "/v1/execs/{}/attach?{}",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_stream_and_length() {
        let f = frame(STDERR, b"oops\n");
        assert_eq!(&f[..FRAME_HEADER], &[2, 0, 0, 0, 0, 0, 0, 5]);
        let h: [u8; FRAME_HEADER] = f[..FRAME_HEADER].try_into().unwrap();
        assert_eq!(frame_header(&h), (STDERR, 5));
        assert_eq!(&f[FRAME_HEADER..], b"oops\n");
    }
}
