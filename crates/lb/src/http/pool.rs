//! Backend connections for the L7 proxy: each client connection keeps the backend connections
//! it used (HTTP/1.1 serves one request at a time per connection, so they are never contended),
//! and hands them to the backend's idle pool when the client goes away. A shared pool lock is
//! taken only when a client connection starts using a backend or ends, never per request.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::backend::Backend;

/// Idle connections kept per backend.
pub const MAX_IDLE_PER_BACKEND: usize = 256;
/// A backend that does not accept within this fails the attempt.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// One keep-alive HTTP/1.1 connection to a backend.
#[derive(Debug)]
pub struct BackendConn {
    pub(crate) sender: http1::SendRequest<Incoming>,
}

impl BackendConn {
    /// Opens a connection to `backend` and spawns its I/O task.
    pub async fn connect(backend: &Backend) -> std::io::Result<Self> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend.addr()))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        let addr = backend.addr();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(backend = %addr, error = %e, "backend connection ended");
            }
        });
        Ok(BackendConn { sender })
    }

    /// Whether the connection was closed (by either side).
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// The backend connections one client connection holds.
#[derive(Debug, Default)]
pub struct ConnCache {
    conns: Mutex<Vec<(Arc<Backend>, BackendConn)>>,
}

impl ConnCache {
    /// A reusable connection to `backend`: this client's own, else one from the backend's idle
    /// pool. Closed connections found on the way are dropped.
    pub fn take(&self, backend: &Arc<Backend>) -> Option<BackendConn> {
        {
            let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(pos) = conns.iter().position(|(b, _)| Arc::ptr_eq(b, backend)) {
                let (_, conn) = conns.swap_remove(pos);
                if !conn.is_closed() {
                    return Some(conn);
                }
            }
        }
        let mut idle = backend.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(conn) = idle.pop() {
            if !conn.is_closed() {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps `conn` for this client's next request to `backend`.
    pub fn put(&self, backend: &Arc<Backend>, conn: BackendConn) {
        if conn.is_closed() || backend.is_removed() {
            return;
        }
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        // Drop connections to backends that left the set meanwhile.
        conns.retain(|(b, _)| !b.is_removed());
        conns.push((Arc::clone(backend), conn));
    }
}

impl Drop for ConnCache {
    fn drop(&mut self) {
        let conns = std::mem::take(self.conns.get_mut().unwrap_or_else(|e| e.into_inner()));
        for (backend, conn) in conns {
            if conn.is_closed() || backend.is_removed() {
                continue;
            }
            let mut idle = backend.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE_PER_BACKEND {
                idle.push(conn);
            }
        }
    }
}
