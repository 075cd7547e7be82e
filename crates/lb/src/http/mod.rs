//! The L7 (HTTP/1.1) proxy: keep-alive to clients, keep-alive connections reused per client to
//! backends, one balancing decision per request, X-Forwarded-For, sticky cookies, passive
//! ejection on connection failures, and graceful shutdown after the current request.

pub mod pool;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body as _, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::algorithm::{Algorithm, PickContext};
use crate::backend::{ActiveGuard, Backend, BackendId};
use crate::ring::hash64;
use crate::service::Shared;
use crate::sticky;
use pool::{BackendConn, ConnCache};

/// The body of a proxied response: the backend's, streamed, or the proxy's own error page.
pub type ProxyBody = Either<GuardedBody, Full<Bytes>>;

/// A backend's response body that keeps its request counted in flight until the body ends, so
/// a drain waits for the whole response, not just its head.
#[derive(Debug)]
pub struct GuardedBody {
    inner: Incoming,
    guard: Option<ActiveGuard>,
}

impl hyper::body::Body for GuardedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(None | Some(Err(_))) = polled {
            self.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Per client connection: what every request on it shares.
struct ClientConn {
    shared: Arc<Shared>,
    client_ip: IpAddr,
    /// The client's address as a header value, built once per connection.
    xff: HeaderValue,
    cache: ConnCache,
}

/// Serves one client connection until it closes or the service shuts down (then after the
/// request in progress).
pub(crate) async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let client_ip = peer.ip();
    let xff = HeaderValue::from_str(&client_ip.to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
    let state = Arc::new(ClientConn {
        shared,
        client_ip,
        xff,
        cache: ConnCache::default(),
    });
    let service = hyper::service::service_fn(move |req| {
        let state = Arc::clone(&state);
        async move { Ok::<_, std::convert::Infallible>(state.handle(req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        // No per-request header timer: it costs a timer registration per request, and idle
        // keep-alive clients are cheap here.
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(client = %peer, error = %e, "client connection ended");
            }
        }
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

fn error_response(status: StatusCode, msg: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from_static(msg.as_bytes()))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Removes hop-by-hop headers, including those the Connection header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if let Some(conn) = headers.remove(header::CONNECTION) {
        if let Ok(list) = conn.to_str() {
            for name in list.split(',') {
                let name = name.trim();
                if !name.is_empty() && !name.eq_ignore_ascii_case("close") {
                    headers.remove(name);
                }
            }
        }
    }
    for h in [
        KEEP_ALIVE,
        PROXY_CONNECTION,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
    ] {
        if headers.contains_key(&h) {
            headers.remove(&h);
        }
    }
}

impl ClientConn {
    fn context(&self, req: &Request<Incoming>) -> PickContext {
        let shared = &self.shared;
        let mut ctx = PickContext::from_ip(self.client_ip);
        if let Some(name) = &shared.hash_header {
            ctx.header_hash = req.headers().get(name).map(|v| hash64(v.as_bytes()));
        }
        if let Some(cookie) = &shared.sticky_cookie {
            ctx.sticky = req
                .headers()
                .get_all(header::COOKIE)
                .iter()
                .find_map(|v| sticky::backend_from_cookie(v.as_bytes(), cookie));
        }
        ctx
    }

    /// Picks a backend and a connection to it, trying other backends when one refuses.
    async fn connect(&self, ctx: &PickContext) -> Result<(ActiveGuard, BackendConn), StatusCode> {
        let set = self.shared.backends.load_full();
        let attempts = set.len().clamp(1, 3);
        let mut failed: [Option<BackendId>; 3] = [None; 3];
        for attempt in 0..attempts {
            let Some(mut idx) = self.shared.picker.pick(&set, ctx) else {
                return Err(StatusCode::SERVICE_UNAVAILABLE);
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
        Err(StatusCode::BAD_GATEWAY)
    }

    async fn handle(&self, mut req: Request<Incoming>) -> Response<ProxyBody> {
        let ctx = self.context(&req);
        strip_hop_by_hop(req.headers_mut());
        match req.headers_mut().entry(X_FORWARDED_FOR) {
            header::Entry::Occupied(mut e) => {
                let mut v = e.get().as_bytes().to_vec();
                v.extend_from_slice(b", ");
                v.extend_from_slice(self.xff.as_bytes());
                if let Ok(v) = HeaderValue::from_bytes(&v) {
                    e.insert(v);
                }
            }
            header::Entry::Vacant(e) => {
                e.insert(self.xff.clone());
            }
        }
        let (guard, mut conn) = match self.connect(&ctx).await {
            Ok(c) => c,
            Err(StatusCode::SERVICE_UNAVAILABLE) => {
                return error_response(StatusCode::SERVICE_UNAVAILABLE, "no backend available\n")
            }
            Err(status) => return error_response(status, "backend unreachable\n"),
        };
        let backend = Arc::clone(guard.backend());
        let started =
            matches!(self.shared.picker.algorithm(), Algorithm::LeastLoad).then(Instant::now);
        let resp = match self.send(&backend, &mut conn, req).await {
            Ok(r) => r,
            Err(status) => return error_response(status, "backend failed\n"),
        };
        if let Some(t) = started {
            backend.observe_latency(t.elapsed());
        }
        backend.record_success();
        self.cache.put(&backend, conn);
        let mut resp = resp.map(|inner| {
            let guard = (!inner.is_end_stream()).then_some(guard);
            Either::Left(GuardedBody { inner, guard })
        });
        strip_hop_by_hop(resp.headers_mut());
        if let Some(cookie) = &self.shared.sticky_cookie {
            if ctx.sticky != Some(backend.id()) {
                if let Ok(v) =
                    HeaderValue::from_str(&sticky::set_cookie_value(cookie, backend.id()))
                {
                    resp.headers_mut().append(header::SET_COOKIE, v);
                }
            }
        }
        resp
    }

    /// Sends the request; a pooled connection that turns out dead before the request left is
    /// replaced by a fresh one.
    async fn send(
        &self,
        backend: &Arc<Backend>,
        conn: &mut BackendConn,
        req: Request<Incoming>,
    ) -> Result<Response<Incoming>, StatusCode> {
        let req = match conn.sender.ready().await {
            Ok(()) => match conn.sender.try_send_request(req).await {
                Ok(resp) => return Ok(resp),
                Err(mut e) => match e.take_message() {
                    Some(req) => req,
                    None => {
                        tracing::debug!(backend = %backend.addr(), error = %e.error(), "request failed");
                        backend.record_failure();
                        return Err(StatusCode::BAD_GATEWAY);
                    }
                },
            },
            Err(_) => req,
        };
        *conn = BackendConn::connect(backend).await.map_err(|_| {
            backend.record_failure();
            StatusCode::BAD_GATEWAY
        })?;
        conn.sender.send_request(req).await.map_err(|e| {
            tracing::debug!(backend = %backend.addr(), error = %e, "request failed");
            backend.record_failure();
            StatusCode::BAD_GATEWAY
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed_with_those_connection_names() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(KEEP_ALIVE, HeaderValue::from_static("timeout=5"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::HOST, HeaderValue::from_static("example"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::HOST));
    }
}
