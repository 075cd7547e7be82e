//! The L7 (HTTP/1.1) proxy: keep-alive to clients, keep-alive connections reused per client to
//! backends, one balancing decision per request, X-Forwarded-For, sticky cookies, passive
//! ejection on connection failures, and graceful shutdown after the current request.
//!
//! Each client connection is one task that relays its requests itself: heads are parsed with
//! httparse from the connection's buffer and rewritten in one pass, bodies are streamed by
//! their framing, and the backend connection is driven by the same task. hyper's server and
//! client (a header map per message, a separate task per backend connection and a channel
//! hop per request) cost about a fifth of the throughput HAProxy reaches on this path.

pub mod body;
pub mod head;
pub mod pool;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Buf;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::algorithm::{Algorithm, PickContext};
use crate::backend::{ActiveGuard, Backend, BackendId};
use crate::sticky;
use body::{Peer, RelayError};
use head::{Framing, HeadError, RequestHead, RequestRewrite, ResponseHead, ResponseRewrite};
use pool::{BackendConn, ConnCache};

/// A request head begun but not finished within this is answered 408 (slow-header clients
/// would otherwise hold connections forever). Idle keep-alive connections have no timer.
const HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How one exchange with a backend went wrong.
#[derive(Debug)]
enum Failure {
    /// The client went away or sent a malformed body: close without an answer.
    Client,
    /// The backend failed before a complete response head: answer 502.
    Backend,
    /// A reused connection failed before any response byte of a bodiless request (the backend
    /// closed it while idle): retry on a fresh connection.
    Stale,
}

/// One client connection and what its requests share.
struct ClientConn {
    shared: Arc<crate::service::Shared>,
    client: Peer,
    client_ip: IpAddr,
    /// The client's address as X-Forwarded-For text.
    ip_text: String,
    cache: ConnCache,
    /// The current request's rewritten head.
    req_out: Vec<u8>,
    /// The current response's rewritten head (and body bytes queued behind it).
    resp_out: Vec<u8>,
}

/// Serves one client connection until it closes or the service shuts down (then after the
/// request in progress).
pub(crate) async fn serve(
    shared: Arc<crate::service::Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let mut conn = ClientConn {
        shared,
        client: Peer::new(stream),
        client_ip: peer.ip(),
        ip_text: peer.ip().to_string(),
        cache: ConnCache::default(),
        req_out: Vec::with_capacity(1024),
        resp_out: Vec::with_capacity(1024),
    };
    loop {
        let Some(head) = conn.next_request(&mut shutdown).await else {
            return;
        };
        let stopping = *shutdown.borrow();
        if !conn.exchange(head, stopping).await || stopping {
            return;
        }
    }
}

impl ClientConn {
    /// Reads the next request head; `None` when the client closed, sent garbage (answered
    /// 400/431) or the service is stopping while the connection is idle.
    async fn next_request(&mut self, shutdown: &mut watch::Receiver<bool>) -> Option<RequestHead> {
        let mut stopping = *shutdown.borrow();
        loop {
            let rw = RequestRewrite {
                client_ip: self.ip_text.as_bytes(),
                hash_header: self.shared.hash_header.as_deref(),
                sticky_cookie: self.shared.sticky_cookie.as_deref(),
            };
            match head::parse_request(&self.client.buf, &mut self.req_out, &rw) {
                Ok(Some(h)) => return Some(h),
                Ok(None) => {}
                Err(e) => {
                    let (status, reason) = match e {
                        HeadError::TooLarge => (431, "Request Header Fields Too Large"),
                        HeadError::Malformed(_) => (400, "Bad Request"),
                    };
                    let page = head::own_response(status, reason, &format!("{e}\n"), true);
                    let _ = self.client.stream.write_all(&page).await;
                    return None;
                }
            }
            if stopping && self.client.buf.is_empty() {
                return None;
            }
            let partial = !self.client.buf.is_empty();
            tokio::select! {
                n = self.client.fill() => if !matches!(n, Ok(k) if k > 0) { return None },
                _ = tokio::time::sleep(HEAD_TIMEOUT), if partial => {
                    let page = head::own_response(408, "Request Timeout", "request head incomplete\n", true);
                    let _ = self.client.stream.write_all(&page).await;
                    return None;
                }
                changed = shutdown.changed(), if !stopping => {
                    stopping = changed.is_err() || *shutdown.borrow();
                }
            }
        }
    }

    /// Proxies one request and its response; whether the client connection goes on.
    async fn exchange(&mut self, head: RequestHead, stopping: bool) -> bool {
        self.client.buf.advance(head.len);
        if head.expect_continue && head.framing != Framing::Empty {
            let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
            if self.client.stream.write_all(interim).await.is_err() {
                return false;
            }
        }
        let mut ctx = PickContext::from_ip(self.client_ip);
        ctx.header_hash = head.header_hash;
        ctx.sticky = head.sticky;
        let (guard, mut conn) = match self.connect(&ctx).await {
            Ok(c) => c,
            Err(status) => {
                // An unread request body leaves the connection unusable.
                let close = !head.keep_alive || head.framing != Framing::Empty;
                let (reason, body) = match status {
                    503 => ("Service Unavailable", "no backend available\n"),
                    _ => ("Bad Gateway", "backend unreachable\n"),
                };
                let page = head::own_response(status, reason, body, close);
                return self.client.stream.write_all(&page).await.is_ok() && !close;
            }
        };
        let backend = Arc::clone(guard.backend());
        let set_cookie = self
            .shared
            .sticky_cookie
            .as_ref()
            .filter(|_| ctx.sticky != Some(backend.id()))
            .map(|c| sticky::set_cookie_value(c, backend.id()));
        let rw = ResponseRewrite {
            is_head: head.is_head,
            client_keep_alive: head.keep_alive && !stopping,
            client_http10: head.http10,
            set_cookie: set_cookie.as_deref(),
        };
        let started = Instant::now();
        let resp = match self.forward(&backend, &mut conn, &head, &rw).await {
            Ok(r) => r,
            Err(Failure::Client) => return false,
            Err(Failure::Backend | Failure::Stale) => {
                tracing::debug!(backend = %backend.addr(), "backend failed before its response");
                backend.record_failure();
                let page = head::own_response(502, "Bad Gateway", "backend failed\n", true);
                let _ = self.client.stream.write_all(&page).await;
                return false;
            }
        };
        if matches!(self.shared.picker.algorithm(), Algorithm::LeastLoad) {
            backend.observe_latency(started.elapsed());
        }
        let relayed = body::relay(
            &mut conn.peer,
            &mut self.client.stream,
            &mut self.resp_out,
            resp.framing,
        )
        .await;
        match relayed {
            Ok(()) => {}
            Err(RelayError::Sink(_)) => return false,
            Err(e) => {
                // A truncated response cannot be repaired: close the client too.
                tracing::debug!(backend = %backend.addr(), error = %e, "response body failed");
                backend.record_failure();
                return false;
            }
        }
        backend.record_success();
        if resp.reusable {
            self.cache.put(&backend, conn);
        }
        drop(guard);
        rw.client_keep_alive && resp.framing != Framing::UntilClose
    }

    /// Sends the request (head and body) and reads the final response head, forwarding interim
    /// responses; a stale pooled connection is replaced once.
    async fn forward(
        &mut self,
        backend: &Arc<Backend>,
        conn: &mut BackendConn,
        head: &RequestHead,
        rw: &ResponseRewrite<'_>,
    ) -> Result<ResponseHead, Failure> {
        match self.try_forward(conn, head, rw).await {
            Err(Failure::Stale) => {
                *conn = BackendConn::connect(backend)
                    .await
                    .map_err(|_| Failure::Backend)?;
                self.try_forward(conn, head, rw).await
            }
            other => other,
        }
    }

    async fn try_forward(
        &mut self,
        conn: &mut BackendConn,
        head: &RequestHead,
        rw: &ResponseRewrite<'_>,
    ) -> Result<ResponseHead, Failure> {
        let retryable = conn.reused && head.framing == Framing::Empty;
        let stale_or = |f: Failure| if retryable { Failure::Stale } else { f };
        if head.framing == Framing::Empty {
            // Kept in `req_out` so a retry can send it again.
            conn.peer
                .stream
                .write_all(&self.req_out)
                .await
                .map_err(|_| stale_or(Failure::Backend))?;
        } else {
            body::relay(
                &mut self.client,
                &mut conn.peer.stream,
                &mut self.req_out,
                head.framing,
            )
            .await
            .map_err(|e| match e {
                RelayError::Sink(_) => Failure::Backend,
                RelayError::Source(_) | RelayError::Malformed => Failure::Client,
            })?;
        }
        let mut received_any = false;
        loop {
            match head::parse_response(&conn.peer.buf, &mut self.resp_out, rw) {
                Ok(Some(h)) if h.status == 101 => return Err(Failure::Backend),
                Ok(Some(h)) if (100..200).contains(&h.status) => {
                    conn.peer.buf.advance(h.len);
                    if !(h.status == 100 && head.expect_continue) {
                        self.client
                            .stream
                            .write_all(&self.resp_out)
                            .await
                            .map_err(|_| Failure::Client)?;
                    }
                    continue;
                }
                Ok(Some(h)) => {
                    conn.peer.buf.advance(h.len);
                    return Ok(h);
                }
                Ok(None) => {}
                Err(_) => return Err(Failure::Backend),
            }
            match conn.peer.fill().await {
                Ok(n) if n > 0 => received_any = true,
                _ if received_any => return Err(Failure::Backend),
                _ => return Err(stale_or(Failure::Backend)),
            }
        }
    }

    /// Picks a backend and a connection to it, trying other backends when one refuses.
    async fn connect(&mut self, ctx: &PickContext) -> Result<(ActiveGuard, BackendConn), u16> {
        let set = self.shared.backends.load_full();
        let attempts = set.len().clamp(1, 3);
        let mut failed: [Option<BackendId>; 3] = [None; 3];
        for attempt in 0..attempts {
            let Some(mut idx) = self.shared.picker.pick(&set, ctx) else {
                return Err(503);
            };
            if failed.contains(&Some(set.backends()[idx].id())) {
                // The algorithm insists on a backend that just failed: take the next one.
                match (0..set.len()).map(|k| (idx + k) % set.len()).find(|&i| {
                    set.backends()[i].is_available()
                        && !failed.contains(&Some(set.backends()[i].id()))
                }) {
                    Some(i) => idx = i,
                    None => break,
                }
            }
            let backend = &set.backends()[idx];
            let Some(guard) = backend.try_acquire() else {
                continue;
            };
            if let Some(conn) = self.cache.take(backend) {
                return Ok((guard, conn));
            }
            match BackendConn::connect(backend).await {
                Ok(conn) => return Ok((guard, conn)),
                Err(e) => {
                    tracing::debug!(backend = %backend.addr(), error = %e, "backend connect failed");
                    backend.record_failure();
                    failed[attempt] = Some(backend.id());
                }
            }
        }
        Err(502)
    }
}
