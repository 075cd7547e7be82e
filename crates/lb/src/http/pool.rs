//! Backend connections for the L7 proxy: each client connection keeps the backend connections
//! it used (HTTP/1.1 serves one request at a time per connection, so they are never contended),
//! and hands them to the backend's idle pool when the client goes away. A shared pool lock is
//! taken only when a client connection starts using a backend or ends, never per request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::body::Peer;
use crate::backend::Backend;

/// Idle connections kept per backend.
pub const MAX_IDLE_PER_BACKEND: usize = 256;
/// A backend that does not accept within this fails the attempt.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A connection idle for longer is checked for a close by the backend before reuse.
const CHECK_AFTER_IDLE: Duration = Duration::from_millis(500);

/// One keep-alive HTTP/1.1 connection to a backend.
#[derive(Debug)]
pub struct BackendConn {
    pub(crate) peer: Peer,
    last_used: Instant,
    /// Served at least one request: a failure before any response byte may be a close the
    /// backend made while the connection was idle, so a bodiless request is retried.
    pub(crate) reused: bool,
}

impl BackendConn {
    /// Opens a connection to `backend`.
    pub async fn connect(backend: &Backend) -> std::io::Result<Self> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend.addr()))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        stream.set_nodelay(true)?;
        Ok(BackendConn {
            peer: Peer::new(stream),
            last_used: Instant::now(),
            reused: false,
        })
    }

    /// Whether the connection can carry another request: nothing unread is pending and, when
    /// it sat idle for a while, the backend has not closed it.
    fn usable(&self) -> bool {
        if !self.peer.buf.is_empty() {
            return false;
        }
        if self.last_used.elapsed() < CHECK_AFTER_IDLE {
            return true;
        }
        let mut probe = [0u8; 1];
        matches!(self.peer.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

/// The backend connections one client connection holds.
#[derive(Debug, Default)]
pub struct ConnCache {
    conns: Vec<(Arc<Backend>, BackendConn)>,
}

impl ConnCache {
    /// A reusable connection to `backend`: this client's own, else one from the backend's idle
    /// pool. Unusable connections found on the way are dropped.
    pub fn take(&mut self, backend: &Arc<Backend>) -> Option<BackendConn> {
        if let Some(pos) = self.conns.iter().position(|(b, _)| Arc::ptr_eq(b, backend)) {
            let (_, conn) = self.conns.swap_remove(pos);
            if conn.usable() {
                return Some(conn);
            }
        }
        let mut idle = backend.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(conn) = idle.pop() {
            if conn.usable() {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps `conn` for this client's next request to `backend`.
    pub fn put(&mut self, backend: &Arc<Backend>, mut conn: BackendConn) {
        if backend.is_removed() {
            return;
        }
        conn.last_used = Instant::now();
        conn.reused = true;
        // Drop connections to backends that left the set meanwhile.
        self.conns.retain(|(b, _)| !b.is_removed());
        self.conns.push((Arc::clone(backend), conn));
    }
}

impl Drop for ConnCache {
    fn drop(&mut self) {
        for (backend, conn) in self.conns.drain(..) {
            if backend.is_removed() {
                continue;
            }
            let mut idle = backend.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE_PER_BACKEND {
                idle.push(conn);
            }
        }
    }
}
