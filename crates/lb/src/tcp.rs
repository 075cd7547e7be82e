//! The L4 (TCP) proxy: one balancing decision per client connection, then bytes copied both
//! ways until either side closes. Sticky services remember the client IP.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;

use crate::algorithm::PickContext;
use crate::backend::BackendId;
use crate::http::pool::CONNECT_TIMEOUT;
use crate::service::Shared;

/// Proxies one client connection.
pub(crate) async fn serve(shared: Arc<Shared>, mut client: TcpStream, peer: SocketAddr) {
    let _ = client.set_nodelay(true);
    let mut ctx = PickContext::from_ip(peer.ip());
    ctx.ip_affinity = true;
    let set = shared.backends.load_full();
    let mut failed: Vec<BackendId> = Vec::new();
    for _ in 0..set.len().clamp(1, 3) {
        let Some(mut idx) = shared.picker.pick(&set, &ctx) else {
            break;
        };
        if failed.contains(&set.backends()[idx].id()) {
            match (0..set.len()).map(|k| (idx + k) % set.len()).find(|&i| {
                set.backends()[i].is_available() && !failed.contains(&set.backends()[i].id())
            }) {
                Some(i) => idx = i,
                None => break,
            }
        }
        let backend = &set.backends()[idx];
        let Some(guard) = backend.try_acquire() else {
            continue;
        };
        let connected =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend.addr())).await;
        let mut upstream = match connected {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(backend = %backend.addr(), error = %e, "backend connect failed");
                backend.record_failure();
                failed.push(backend.id());
                continue;
            }
            Err(_) => {
                backend.record_failure();
                failed.push(backend.id());
                continue;
            }
        };
        backend.record_success();
        let _ = upstream.set_nodelay(true);
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((up, down)) => {
                tracing::trace!(client = %peer, backend = %backend.addr(), up, down, "tcp stream done")
            }
            Err(e) => {
                tracing::debug!(client = %peer, backend = %backend.addr(), error = %e, "tcp stream ended")
            }
        }
        drop(guard);
        return;
    }
    tracing::debug!(service = %shared.name, client = %peer, "no backend for tcp connection");
}
