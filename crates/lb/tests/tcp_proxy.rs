//! The L4 proxy against real TCP backends on 127.0.0.1.

mod common;

use std::collections::HashMap;

use common::{tcp_backend, tcp_hello};
use corral_lb::{start_service, Mode, ServiceConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn tcp_service(
    backends: Vec<std::net::SocketAddr>,
    algorithm: &str,
) -> corral_lb::ServiceHandle {
    let mut cfg = ServiceConfig::new("kv", "127.0.0.1:0".parse().unwrap());
    cfg.mode = Mode::Tcp;
    cfg.algorithm = algorithm.parse().unwrap();
    cfg.backends = backends;
    cfg.drain_timeout_ms = 5_000;
    start_service(cfg).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_connections_and_bytes_flow_both_ways() {
    let mut addrs = Vec::new();
    let mut tasks = Vec::new();
    for n in ["a", "b", "c"] {
        let (addr, t) = tcp_backend(n).await;
        addrs.push(addr);
        tasks.push(t);
    }
    let svc = tcp_service(addrs, "round_robin").await;
    let mut seen = HashMap::new();
    for _ in 0..9 {
        *seen.entry(tcp_hello(svc.local_addr()).await).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.values().all(|&n| n == 3));

    let mut s = tokio::net::TcpStream::connect(svc.local_addr())
        .await
        .unwrap();
    let mut hello = [0u8; 2];
    s.read_exact(&mut hello).await.unwrap();
    s.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    s.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"ping");
    drop(s);
    svc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_keeps_a_client_ip_on_one_backend_and_dead_backend_is_skipped() {
    let (a, ta) = tcp_backend("a").await;
    let (b, _tb) = tcp_backend("b").await;
    let svc = tcp_service(vec![a, b], "sticky").await;
    let first = tcp_hello(svc.local_addr()).await;
    for _ in 0..6 {
        assert_eq!(tcp_hello(svc.local_addr()).await, first);
    }
    // Kill `a`: connections go to `b` without failing.
    ta.abort();
    let _ = ta.await;
    for _ in 0..6 {
        assert_eq!(tcp_hello(svc.local_addr()).await, "b");
    }
    svc.shutdown().await;
}
