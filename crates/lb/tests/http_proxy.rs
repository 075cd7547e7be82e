//! The L7 proxy against real backends on 127.0.0.1: spreading, forwarding, ejection, live
//! backend changes, draining, stickiness, health checks.

mod common;
#[path = "http_proxy/wire.rs"]
mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::{get_once, Client, HttpBackend};
use corral_lb::{start_service, HealthCheck, HealthCheckKind, ServiceConfig, ServiceHandle};

async fn service(backends: &[&HttpBackend], algorithm: &str) -> ServiceHandle {
    let mut cfg = ServiceConfig::new("web", "127.0.0.1:0".parse().unwrap());
    cfg.algorithm = algorithm.parse().unwrap();
    cfg.backends = backends.iter().map(|b| b.addr).collect();
    cfg.drain_timeout_ms = 5_000;
    start_service(cfg).await.unwrap()
}

async fn tally(addr: SocketAddr, n: usize) -> HashMap<String, usize> {
    let mut client = Client::connect(addr).await;
    let mut seen = HashMap::new();
    for _ in 0..n {
        let a = client.get("/", &[]).await;
        assert_eq!(a.status, 200, "{}", a.body);
        *seen.entry(a.body).or_insert(0) += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_requests_of_one_keep_alive_client_and_forwards() {
    let (a, b, c) = (
        HttpBackend::start("a").await,
        HttpBackend::start("b").await,
        HttpBackend::start("c").await,
    );
    let svc = service(&[&a, &b, &c], "round_robin").await;
    let seen = tally(svc.local_addr(), 30).await;
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.values().all(|&n| n == 10), "{seen:?}");

    let mut client = Client::connect(svc.local_addr()).await;
    let ans = client.get("/", &[("x-forwarded-for", "10.1.2.3")]).await;
    assert_eq!(ans.headers["x-seen-xff"], "10.1.2.3, 127.0.0.1");
    let ans = client.get("/", &[]).await;
    assert_eq!(ans.headers["x-seen-xff"], "127.0.0.1");
    // Request bodies reach the backend.
    let ans = client
        .request("POST", "/", &[], Bytes::from_static(b"payload"))
        .await;
    assert!(ans.body.ends_with(":payload"), "{}", ans.body);
    svc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_backend_is_ejected_and_no_request_fails() {
    let (a, b, c) = (
        HttpBackend::start("a").await,
        HttpBackend::start("b").await,
        HttpBackend::start("c").await,
    );
    let svc = service(&[&a, &b, &c], "round_robin").await;
    let dead = c.addr;
    c.kill().await;
    for _ in 0..30 {
        let ans = get_once(svc.local_addr(), "/").await;
        assert_eq!(ans.status, 200, "{}", ans.body);
        assert_ne!(ans.body, "c");
    }
    let stats = svc.stats();
    let c_stats = stats.iter().find(|s| s.addr == dead).unwrap();
    assert!(c_stats.ejected, "{stats:?}");
    svc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_backends_dead_answers_502_and_empty_set_503() {
    let a = HttpBackend::start("a").await;
    let svc = service(&[&a], "round_robin").await;
    a.kill().await;
    assert_eq!(get_once(svc.local_addr(), "/").await.status, 502);
    svc.set_backends(&[]);
    assert_eq!(get_once(svc.local_addr(), "/").await.status, 503);
    svc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_backend_drains_its_in_flight_request_and_adding_one_gets_traffic() {
    let (a, b) = (HttpBackend::start("a").await, HttpBackend::start("b").await);
    let svc = service(&[&a], "round_robin").await;
    let addr = svc.local_addr();
    // A slow request is in flight on `a`.
    let slow = tokio::spawn(async move { get_once(addr, "/slow").await });
    a.slow_started.notified().await;
    svc.add_backend(b.addr);
    let removed = svc.remove_backend(a.addr).expect("a was in the set");
    let drained = tokio::spawn(async move { removed.wait_drained(Duration::from_secs(10)).await });
    // New requests go to `b` only, on existing and fresh connections.
    for _ in 0..10 {
        assert_eq!(get_once(addr, "/").await.body, "b");
    }
    assert!(!drained.is_finished());
    a.release.notify_one();
    let ans = slow.await.unwrap();
    assert_eq!((ans.status, ans.body.as_str()), (200, "a"));
    assert!(drained.await.unwrap());
    svc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_cookie_pins_a_client() {
    let (a, b, c) = (
        HttpBackend::start("a").await,
        HttpBackend::start("b").await,
        HttpBackend::start("c").await,
    );
    let svc = service(&[&a, &b, &c], "sticky:cookie=SRV").await;
    let first = get_once(svc.local_addr(), "/").await;
    let set_cookie = first.headers["set-cookie"].to_str().unwrap().to_string();
    assert!(set_cookie.starts_with("SRV="), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let mut client = Client::connect(svc.local_addr()).await;
    for _ in 0..12 {
        let ans = client.get("/", &[("cookie", &cookie)]).await;
        assert_eq!(ans.body, first.body);
        assert!(!ans.headers.contains_key("set-cookie"));
    }
    svc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_on_header_keeps_a_user_on_one_backend() {
    let (a, b, c) = (
        HttpBackend::start("a").await,
        HttpBackend::start("b").await,
        HttpBackend::start("c").await,
    );
    let svc = service(&[&a, &b, &c], "hash:header=X-User").await;
    let mut client = Client::connect(svc.local_addr()).await;
    let mut users_per_backend = HashMap::new();
    for user in 0..30 {
        let user = format!("user{user}");
        let first = client.get("/", &[("x-user", &user)]).await.body;
        for _ in 0..3 {
            assert_eq!(client.get("/", &[("x-user", &user)]).await.body, first);
        }
        *users_per_backend.entry(first).or_insert(0) += 1;
    }
    assert_eq!(users_per_backend.len(), 3, "{users_per_backend:?}");
    svc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_http_check_takes_a_failing_backend_out_and_back() {
    let (a, b) = (HttpBackend::start("a").await, HttpBackend::start("b").await);
    let mut cfg = ServiceConfig::new("web", "127.0.0.1:0".parse().unwrap());
    cfg.backends = vec![a.addr, b.addr];
    let mut check = HealthCheck::new(HealthCheckKind::Http {
        path: "/health".into(),
    });
    check.interval_ms = 20;
    check.rise = 1;
    check.fall = 1;
    cfg.health = Some(check);
    let svc = start_service(cfg).await.unwrap();
    b.health_status
        .store(500, std::sync::atomic::Ordering::SeqCst);
    let wait_for = |want: bool| {
        let backends = svc.backends();
        async move {
            let b = backends
                .iter()
                .find(|x| x.addr() != a.addr)
                .unwrap()
                .clone();
            tokio::time::timeout(Duration::from_secs(5), async {
                while b.is_healthy() != want {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await
            .expect("health state change");
        }
    };
    wait_for(false).await;
    let seen = tally(svc.local_addr(), 10).await;
    assert_eq!(seen.get("a"), Some(&10), "{seen:?}");
    b.health_status
        .store(200, std::sync::atomic::Ordering::SeqCst);
    wait_for(true).await;
    let seen = tally(svc.local_addr(), 10).await;
    assert_eq!(seen.get("b"), Some(&5), "{seen:?}");
    svc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_request_in_progress_finish() {
    let a = HttpBackend::start("a").await;
    let svc = service(&[&a], "least_connections").await;
    let addr = svc.local_addr();
    let slow = tokio::spawn(async move { get_once(addr, "/slow").await });
    a.slow_started.notified().await;
    let stopping = tokio::spawn(svc.shutdown());
    a.release.notify_one();
    assert_eq!(slow.await.unwrap().status, 200);
    stopping.await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
