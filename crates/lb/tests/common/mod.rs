//! Test backends (tiny hyper and TCP servers on 127.0.0.1 ephemeral ports) and a client.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

/// An HTTP backend that answers with its name; `/slow` waits for `release`; `/health`
/// answers `health_status`.
pub struct HttpBackend {
    pub name: String,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    pub health_status: Arc<AtomicU16>,
    pub release: Arc<Notify>,
    pub slow_started: Arc<Notify>,
    task: JoinHandle<()>,
}

impl HttpBackend {
    pub async fn start(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let health_status = Arc::new(AtomicU16::new(200));
        let release = Arc::new(Notify::new());
        let slow_started = Arc::new(Notify::new());
        let (n, h, hs, r, ss) = (
            name.to_string(),
            hits.clone(),
            health_status.clone(),
            release.clone(),
            slow_started.clone(),
        );
        let task = tokio::spawn(async move {
            // Connection tasks live in this set, so aborting the server closes them too.
            let mut conns = JoinSet::new();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (n, h, hs, r, ss) = (n.clone(), h.clone(), hs.clone(), r.clone(), ss.clone());
                conns.spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let (n, h, hs, r, ss) =
                                (n.clone(), h.clone(), hs.clone(), r.clone(), ss.clone());
                            async move {
                                let path = req.uri().path().to_string();
                                let mut resp = Response::builder();
                                if path == "/health" {
                                    let status = hs.load(Ordering::SeqCst);
                                    return Ok::<_, Infallible>(
                                        resp.status(status)
                                            .body(Full::new(Bytes::from(n)))
                                            .unwrap(),
                                    );
                                }
                                h.fetch_add(1, Ordering::SeqCst);
                                if path == "/slow" {
                                    ss.notify_one();
                                    r.notified().await;
                                }
                                if let Some(xff) = req.headers().get("x-forwarded-for") {
                                    resp = resp.header("x-seen-xff", xff.clone());
                                }
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                resp = resp.header("x-backend", n.clone());
                                let text = if body.is_empty() {
                                    n.clone()
                                } else {
                                    format!("{n}:{}", String::from_utf8_lossy(&body))
                                };
                                Ok(resp.body(Full::new(Bytes::from(text))).unwrap())
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        HttpBackend {
            name: name.to_string(),
            addr,
            hits,
            health_status,
            release,
            slow_started,
            task,
        }
    }

    /// Stops the server and closes its connections.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// A TCP backend that writes its name to every connection, then echoes.
pub async fn tcp_backend(name: &str) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let name = name.to_string();
    let task = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let name = name.clone();
            conns.spawn(async move {
                let _ = s.write_all(format!("{name}\n").as_bytes()).await;
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, task)
}

/// Reads the first line a TCP service sends.
pub async fn tcp_hello(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    loop {
        let n = s.read(&mut b).await.unwrap();
        if n == 0 || b[0] == b'\n' {
            break;
        }
        out.push(b[0]);
    }
    String::from_utf8(out).unwrap()
}

/// A keep-alive HTTP/1.1 client connection.
pub struct Client {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

/// One answer.
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub headers: hyper::HeaderMap,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        Client { sender }
    }

    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.request("GET", path, headers, Bytes::new()).await
    }

    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "test");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.sender.ready().await.unwrap();
        let resp = self
            .sender
            .send_request(req.body(Full::new(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
            headers,
        }
    }
}

/// One GET on a fresh connection.
pub async fn get_once(addr: SocketAddr, path: &str) -> Answer {
    Client::connect(addr).await.get(path, &[]).await
}
