//! A typed client of the daemon's REST API over its Unix socket, or over loopback TCP with the
//! bearer token. HTTP/1.1 through hyper; one connection per request (the socket is local).

use std::path::PathBuf;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::types::*;

/// Where the daemon listens.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// The Unix socket (no token: file permissions guard it).
    Unix(PathBuf),
    /// Loopback TCP with the bearer token.
    Tcp {
        /// `127.0.0.1:PORT`.
        addr: String,
        /// The token from the root dir.
        token: String,
    },
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Tcp { addr, .. } => write!(f, "tcp:{addr}"),
        }
    }
}

/// Errors of the API client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The daemon is not reachable.
    #[error("cannot connect to the corral daemon at {endpoint}: {source}")]
    Connect {
        /// Where we tried.
        endpoint: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The daemon answered with an error.
    #[error("{}", .body.message)]
    Api {
        /// HTTP status.
        status: u16,
        /// The error body.
        body: ErrorBody,
    },
    /// The daemon does not know a path this client uses: it runs an older build.
    #[error(
        "the daemon (corral {daemon_version}, commit {daemon_commit}, pid {pid}) does not know \
         {method} {path}, which this CLI (corral {cli_version}) uses: restart the daemon \
         (`kill {pid}`; containers and VMs keep running, and the next command starts the new one)"
    )]
    OldDaemon {
        /// The request's method.
        method: String,
        /// The request's path.
        path: String,
        /// The daemon's version.
        daemon_version: String,
        /// The daemon's commit.
        daemon_commit: String,
        /// The daemon's pid.
        pid: u32,
        /// This client's version.
        cli_version: String,
    },
    /// HTTP-level failure.
    #[error("HTTP exchange with the daemon failed: {0}")]
    Http(#[from] hyper::Error),
    /// A body that does not decode.
    #[error("cannot decode the daemon's answer to {path}: {source}")]
    Decode {
        /// The request path.
        path: String,
        /// The JSON error.
        source: serde_json::Error,
    },
}

impl ClientError {
    /// The HTTP status when the daemon answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The API client.
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: Endpoint,
}

/// A response body read line by line (logs with follow, the event stream).
pub struct LineStream {
    body: Incoming,
    buf: Vec<u8>,
    done: bool,
}

impl std::fmt::Debug for LineStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineStream").finish_non_exhaustive()
    }
}

impl LineStream {
    /// The next line without its newline; None at the end of the body.
    pub async fn next_line(&mut self) -> Result<Option<String>, ClientError> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Ok(Some(
                    String::from_utf8_lossy(&line[..line.len() - 1]).into_owned(),
                ));
            }
            if self.done {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let rest = std::mem::take(&mut self.buf);
                return Ok(Some(String::from_utf8_lossy(&rest).into_owned()));
            }
            match self.body.frame().await {
                Some(frame) => {
                    if let Ok(data) = frame?.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                None => self.done = true,
            }
        }
    }
}

impl Client {
    /// A client of the daemon at `endpoint`.
    pub fn new(endpoint: Endpoint) -> Self {
        Client { endpoint }
    }

    /// Where this client connects.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The bearer token when the daemon is reached over TCP.
    pub(crate) fn token(&self) -> Option<&str> {
        match &self.endpoint {
            Endpoint::Tcp { token, .. } => Some(token),
            Endpoint::Unix(_) => None,
        }
    }

    /// One HTTP/1.1 connection (upgrades allowed, for attaches).
    pub(crate) async fn connect(
        &self,
    ) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, ClientError> {
        let connect_err = |source| ClientError::Connect {
            endpoint: self.endpoint.to_string(),
            source,
        };
        macro_rules! handshake {
            ($stream:expr) => {{
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new($stream)).await?;
                tokio::spawn(async move {
                    let _ = conn.with_upgrades().await;
                });
                sender
            }};
        }
        Ok(match &self.endpoint {
            Endpoint::Unix(path) => {
                let s = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(connect_err)?;
                handshake!(s)
            }
            Endpoint::Tcp { addr, .. } => {
                let s = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(connect_err)?;
                handshake!(s)
            }
        })
    }

    /// Send one request; an error status becomes `ClientError::Api`.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response<Incoming>, ClientError> {
        let mut sender = self.connect().await?;
        let method_name = method.to_string();
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "corral");
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        if let Endpoint::Tcp { token, .. } = &self.endpoint {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("request parts are valid");
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        if status >= 400 {
            let err = error_of(resp).await;
            return Err(self.explain_unknown_path(err, &method_name, path).await);
        }
        Ok(resp)
    }

    /// A 404 for an API path (not an object) means the daemon is older than this client:
    /// say so, with both versions.
    async fn explain_unknown_path(
        &self,
        err: ClientError,
        method: &str,
        path: &str,
    ) -> ClientError {
        let unknown = matches!(&err, ClientError::Api { status: 404, body }
            if body.message.starts_with(UNKNOWN_PATH));
        if !unknown || path == "/v1/info" {
            return err;
        }
        let Ok(mut sender) = self.connect().await else {
            return err;
        };
        let mut req = Request::builder().uri("/v1/info").header("host", "corral");
        if let Some(token) = self.token() {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .expect("request parts are valid");
        let Ok(resp) = sender.send_request(req).await else {
            return err;
        };
        let Ok(body) = resp.into_body().collect().await else {
            return err;
        };
        match serde_json::from_slice::<Info>(&body.to_bytes()) {
            Ok(info) => ClientError::OldDaemon {
                method: method.to_string(),
                path: path.to_string(),
                daemon_version: info.version,
                daemon_commit: info.commit,
                pid: info.pid,
                cli_version: env!("CARGO_PKG_VERSION").to_string(),
            },
            Err(_) => err,
        }
    }

    /// Send a request and return the whole body as text.
    pub async fn text(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<String, ClientError> {
        let resp = self.send(method, path, body).await?;
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Send a request with an optional JSON body and decode a JSON answer.
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let body = body.map(|b| serde_json::to_vec(b).expect("API types serialise"));
        let text = self.text(method, path, body).await?;
        let text = if text.is_empty() { "null" } else { &text };
        serde_json::from_str(text).map_err(|source| ClientError::Decode {
            path: path.to_string(),
            source,
        })
    }

    /// Open a streaming GET (logs -f, events) read line by line.
    pub async fn lines(&self, path: &str) -> Result<LineStream, ClientError> {
        let resp = self.send(Method::GET, path, None).await?;
        Ok(LineStream {
            body: resp.into_body(),
            buf: Vec::new(),
            done: false,
        })
    }

    /// `GET /v1/info`.
    pub async fn info(&self) -> Result<Info, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/info", None).await
    }

    /// `GET /v1/instances`: every VM and container.
    pub async fn instances(&self) -> Result<Vec<Instance>, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/instances", None).await
    }

    /// `POST /v1/containers`: create and start a container.
    pub async fn run_container(&self, spec: &ContainerSpec) -> Result<Instance, ClientError> {
        self.call(Method::POST, "/v1/containers", Some(spec)).await
    }

    /// `POST /v1/containers?start=false`: create without starting.
    pub async fn create_container(&self, spec: &ContainerSpec) -> Result<Instance, ClientError> {
        self.call(Method::POST, "/v1/containers?start=false", Some(spec))
            .await
    }

    /// `POST /v1/containers/{id}/start`.
    pub async fn start_container(&self, id: &str) -> Result<Instance, ClientError> {
        self.call::<(), _>(
            Method::POST,
            &format!("/v1/containers/{}/start", enc(id)),
            None,
        )
        .await
    }

    /// `GET /v1/containers/{id}`.
    pub async fn container(&self, id: &str) -> Result<Instance, ClientError> {
        self.call::<(), _>(Method::GET, &format!("/v1/containers/{}", enc(id)), None)
            .await
    }

    /// `POST /v1/containers/{id}/wait`: block until it exits.
    pub async fn wait_container(&self, id: &str) -> Result<WaitResponse, ClientError> {
        self.call::<(), _>(
            Method::POST,
            &format!("/v1/containers/{}/wait", enc(id)),
            None,
        )
        .await
    }

    /// `POST /v1/containers/{id}/stop`.
    pub async fn stop_container(
        &self,
        id: &str,
        timeout_secs: u64,
    ) -> Result<Instance, ClientError> {
        let body = StopRequest {
            timeout_secs: Some(timeout_secs),
        };
        self.call(
            Method::POST,
            &format!("/v1/containers/{}/stop", enc(id)),
            Some(&body),
        )
        .await
    }

    /// `POST /v1/containers/{id}/kill` with `signal` (a name such as SIGTERM, or a number).
    pub async fn kill_container(&self, id: &str, signal: &str) -> Result<Instance, ClientError> {
        let body = crate::types::KillRequest {
            signal: Some(signal.to_string()),
        };
        self.call(
            Method::POST,
            &format!("/v1/containers/{}/kill", enc(id)),
            Some(&body),
        )
        .await
    }

    /// `DELETE /v1/containers/{id}?force=`.
    pub async fn remove_container(&self, id: &str, force: bool) -> Result<(), ClientError> {
        self.text(
            Method::DELETE,
            &format!("/v1/containers/{}?force={force}", enc(id)),
            None,
        )
        .await
        .map(|_| ())
    }

    /// `GET /v1/containers?label=K=V`: containers carrying every given label.
    pub async fn containers_with_labels(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<Instance>, ClientError> {
        let q: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("label={}", enc(&format!("{k}={v}"))))
            .collect();
        let path = if q.is_empty() {
            "/v1/containers".to_string()
        } else {
            format!("/v1/containers?{}", q.join("&"))
        };
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// `GET /v1/networks`.
    pub async fn networks(&self) -> Result<Vec<Network>, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/networks", None).await
    }

    /// `POST /v1/networks`.
    pub async fn create_network(&self, req: &NetworkCreate) -> Result<Network, ClientError> {
        self.call(Method::POST, "/v1/networks", Some(req)).await
    }

    /// `GET /v1/networks/{name}`.
    pub async fn network(&self, name: &str) -> Result<Network, ClientError> {
        self.call::<(), _>(Method::GET, &format!("/v1/networks/{}", enc(name)), None)
            .await
    }

    /// `DELETE /v1/networks/{name}`: refused (409) while instances use it.
    pub async fn remove_network(&self, name: &str) -> Result<(), ClientError> {
        self.text(Method::DELETE, &format!("/v1/networks/{}", enc(name)), None)
            .await
            .map(|_| ())
    }

    /// `POST /v1/networks/prune`.
    pub async fn prune_networks(&self) -> Result<NetworkPruneResponse, ClientError> {
        self.call::<(), _>(Method::POST, "/v1/networks/prune", None)
            .await
    }

    /// `GET /v1/inventory`: live figures of every instance.
    pub async fn inventory(&self) -> Result<Vec<InventoryRow>, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/inventory", None).await
    }
}

/// The error an answer carries (its JSON error body, or its status and text).
pub(crate) async fn error_of(resp: Response<Incoming>) -> ClientError {
    let status = resp.status().as_u16();
    match resp.into_body().collect().await {
        Ok(body) => crate::tty::refused(status, &body.to_bytes()),
        Err(e) => ClientError::Http(e),
    }
}

/// How the daemon's answer for a path it does not route begins.
pub const UNKNOWN_PATH: &str = "no such API path";

/// Percent-encode a path segment (names are restricted, but be safe).
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
