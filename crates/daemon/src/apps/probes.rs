//! Readiness and liveness probes of one replica's run: `httpGet` and `tcpSocket` against the
//! replica's address, `exec` (and Compose's `CMD-SHELL`) through the OCI runtime. Each run of
//! a replica gets its own prober task; its flags feed the reconciler's `ready` and `live`.
//!
//! Until a replica has been ready once, readiness is probed every 100 ms rather than at the
//! probe's period, so a new replica joins the balancer as soon as it answers (Kubernetes waits
//! a whole period; Compose's `start_interval` is the same idea).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use corral_orchestrator::model::{Probe, ProbeAction};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::state::AppState;

const FAST_START: Duration = Duration::from_millis(100);

/// What a replica's probes say, for one run of it.
#[derive(Debug)]
pub struct Prober {
    /// The run probed: container id and start time.
    pub run: (String, Option<i64>),
    /// Readiness (true at once when there is no readiness probe).
    pub ready: Arc<AtomicBool>,
    /// Liveness (false once the liveness probe failed past its threshold).
    pub live: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Prober {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The probes of one replica run.
#[derive(Debug, Clone)]
pub struct ProbeSet {
    /// Gates traffic.
    pub readiness: Option<Probe>,
    /// Restarts the replica.
    pub liveness: Option<Probe>,
}

impl Prober {
    /// Start probing container `id` (run started at `started`) at `ip`.
    pub fn spawn(
        rt: &tokio::runtime::Handle,
        state: Arc<AppState>,
        run: (String, Option<i64>),
        ip: Option<IpAddr>,
        probes: ProbeSet,
    ) -> Prober {
        let ready = Arc::new(AtomicBool::new(probes.readiness.is_none()));
        let live = Arc::new(AtomicBool::new(true));
        let mut tasks = Vec::new();
        let target = Target {
            state,
            id: run.0.clone(),
            ip,
        };
        if let Some(p) = probes.readiness {
            tasks.push(rt.spawn(probe_loop(target.clone(), p, ready.clone(), true)));
        }
        if let Some(p) = probes.liveness {
            tasks.push(rt.spawn(probe_loop(target, p, live.clone(), false)));
        }
        Prober {
            run,
            ready,
            live,
            tasks,
        }
    }

    /// Readiness now.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Liveness now.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct Target {
    state: Arc<AppState>,
    id: String,
    ip: Option<IpAddr>,
}

async fn probe_loop(t: Target, p: Probe, flag: Arc<AtomicBool>, readiness: bool) {
    tokio::time::sleep(p.initial_delay).await;
    let (mut ok_run, mut fail_run) = (0u32, 0u32);
    let mut was_ready = false;
    loop {
        let ok = matches!(
            tokio::time::timeout(p.timeout, run_probe(&t, &p.action)).await,
            Ok(Ok(()))
        );
        if ok {
            ok_run += 1;
            fail_run = 0;
            if ok_run >= p.success_threshold.max(1) {
                flag.store(true, Ordering::Relaxed);
                was_ready = true;
            }
        } else {
            fail_run += 1;
            ok_run = 0;
            if fail_run >= p.failure_threshold.max(1) && (was_ready || !readiness) {
                flag.store(false, Ordering::Relaxed);
            }
        }
        let wait = if readiness && !was_ready {
            FAST_START.min(p.interval)
        } else {
            p.interval
        };
        tokio::time::sleep(wait).await;
    }
}

async fn run_probe(t: &Target, action: &ProbeAction) -> Result<(), String> {
    let addr = |port: u16| {
        t.ip.map(|ip| SocketAddr::new(ip, port))
            .ok_or_else(|| "the replica has no address".to_string())
    };
    match action {
        ProbeAction::TcpSocket { port } => TcpStream::connect(addr(*port)?)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        ProbeAction::HttpGet { path, port } => http_get(addr(*port)?, path).await,
        ProbeAction::Exec { command } => exec(t, command.clone()).await,
        ProbeAction::Shell { script } => {
            exec(t, vec!["/bin/sh".into(), "-c".into(), script.clone()]).await
        }
    }
}

/// One `GET`; 2xx and 3xx succeed (Kubernetes' rule). HTTP/1.0 so the answer ends with the
/// connection; only the status line is read.
async fn http_get(addr: SocketAddr, path: &str) -> Result<(), String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let req = format!(
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: corral-probe\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        let k = s.read(&mut buf[n..]).await.map_err(|e| e.to_string())?;
        if k == 0 {
            break;
        }
        n += k;
    }
    status_ok(&buf[..n])
}

fn status_ok(head: &[u8]) -> Result<(), String> {
    let line = String::from_utf8_lossy(head);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {line:?}"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP {code}"))
    }
}

async fn exec(t: &Target, command: Vec<String>) -> Result<(), String> {
    let out = crate::containers::runtime::exec(&t.state.config, &t.id, &command, &[], None)
        .await
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("exit status {:?}", out.status.code()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_status_lines_are_judged_like_kubernetes() {
        assert!(status_ok(b"HTTP/1.1 200 OK\r\n").is_ok());
        assert!(status_ok(b"HTTP/1.0 302 Found").is_ok());
        assert_eq!(
            status_ok(b"HTTP/1.1 503 Unavailable"),
            Err("HTTP 503".into())
        );
        assert!(status_ok(b"SSH-2.0-OpenSSH").is_err());
    }

    #[tokio::test]
    async fn http_and_tcp_probes_reach_a_local_server() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut b = [0u8; 256];
                let _ = s.read(&mut b).await;
                let path_ok = String::from_utf8_lossy(&b).starts_with("GET /healthz ");
                let answer: &[u8] = if path_ok {
                    b"HTTP/1.0 204 No Content\r\n\r\n"
                } else {
                    b"HTTP/1.0 404 Not Found\r\n\r\n"
                };
                let _ = s.write_all(answer).await;
            }
        });
        assert_eq!(http_get(addr, "/healthz").await, Ok(()));
        assert_eq!(http_get(addr, "/nope").await, Err("HTTP 404".into()));
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        assert!(TcpStream::connect(closed).await.is_err());
    }
}
