//! Active health checks: a TCP connect or an HTTP GET per backend at an interval, with rise and
//! fall thresholds (HAProxy's model). Passive ejection lives in [`crate::backend::Backend`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::backend::BackendId;
use crate::config::{HealthCheck, HealthCheckKind};
use crate::service::Shared;

/// Probes `addr` once; true when it is healthy.
pub async fn probe(addr: SocketAddr, check: &HealthCheck) -> bool {
    tokio::time::timeout(check.timeout(), probe_inner(addr, &check.kind))
        .await
        .unwrap_or(false)
}

async fn probe_inner(addr: SocketAddr, kind: &HealthCheckKind) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return false;
    };
    let path = match kind {
        HealthCheckKind::Tcp => return true,
        HealthCheckKind::Http { path } => path,
    };
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: corral-lb-health\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let mut len = 0;
    while len < 12 {
        match stream.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => len += n,
        }
    }
    status_is_healthy(&buf[..len])
}

/// Whether a response starting with this status line means healthy (2xx or 3xx).
pub fn status_is_healthy(head: &[u8]) -> bool {
    let Some(rest) = head.strip_prefix(b"HTTP/1.") else {
        return false;
    };
    matches!(rest.get(2), Some(b'2' | b'3')) && rest.get(1) == Some(&b' ')
}

/// Runs the checks of one service until shutdown.
pub(crate) async fn run(
    shared: Arc<Shared>,
    check: HealthCheck,
    mut shutdown: watch::Receiver<bool>,
) {
    // Consecutive (successes, failures) per backend.
    let mut streaks: HashMap<BackendId, (u32, u32)> = HashMap::new();
    let mut ticker = tokio::time::interval(check.interval());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let set = shared.backends.load_full();
        let mut probes = JoinSet::new();
        for b in set.backends() {
            let (b, check) = (Arc::clone(b), check.clone());
            probes.spawn(async move {
                let ok = probe(b.addr(), &check).await;
                (b, ok)
            });
        }
        while let Some(done) = probes.join_next().await {
            let Ok((b, ok)) = done else { continue };
            let streak = streaks.entry(b.id()).or_insert((0, 0));
            if ok {
                *streak = (streak.0 + 1, 0);
                if streak.0 >= check.rise && !b.is_healthy() {
                    b.set_healthy(true);
                }
            } else {
                *streak = (0, streak.1 + 1);
                if streak.1 >= check.fall && b.is_healthy() {
                    b.set_healthy(false);
                }
            }
        }
        streaks.retain(|id, _| set.by_id(*id).is_some());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_classified() {
        assert!(status_is_healthy(b"HTTP/1.1 200 OK\r\n"));
        assert!(status_is_healthy(b"HTTP/1.0 302 Found\r\n"));
        assert!(!status_is_healthy(b"HTTP/1.1 500 Oops\r\n"));
        assert!(!status_is_healthy(b"HTTP/1.1 404 Not Found\r\n"));
        assert!(!status_is_healthy(b"SSH-2.0-OpenSSH\r\n"));
    }
}
