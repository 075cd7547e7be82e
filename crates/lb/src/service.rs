//! A running balanced service: its listener and accept loop, its live backend set, its health
//! checker, and the handle its owner uses to change backends and to drain it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::algorithm::{Algorithm, HashKey, Picker};
use crate::backend::{Backend, BackendSet, BackendStats};
use crate::config::{Mode, ServiceConfig};
use crate::error::LbError;

/// What every connection of a service shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) picker: Picker,
    pub(crate) backends: ArcSwap<BackendSet>,
    /// Serialises backend-set updates (never taken on the request path).
    update: Mutex<()>,
    /// The request header the `hash` algorithm reads, lowercase.
    pub(crate) hash_header: Option<String>,
    /// The sticky cookie's name, for HTTP services using `sticky`.
    pub(crate) sticky_cookie: Option<String>,
}

impl Shared {
    fn new(cfg: &ServiceConfig) -> Self {
        let hash_header = match cfg.algorithm {
            Algorithm::Hash(HashKey::Header(ref h)) => Some(h.to_ascii_lowercase()),
            _ => None,
        };
        let sticky_cookie = match cfg.algorithm {
            Algorithm::Sticky { ref cookie } => Some(cookie.clone()),
            _ => None,
        };
        let backends = cfg
            .backends
            .iter()
            .map(|a| Arc::new(Backend::new(*a)))
            .collect();
        Shared {
            name: cfg.name.clone(),
            picker: Picker::new(cfg.algorithm.clone()),
            backends: ArcSwap::from_pointee(BackendSet::new(backends)),
            update: Mutex::new(()),
            hash_header,
            sticky_cookie,
        }
    }

    /// Replaces the backend set, keeping the objects (and counters, pools) of backends that
    /// stay; returns the ones that left, already marked removed.
    fn set_backends(&self, addrs: &[SocketAddr]) -> Vec<Arc<Backend>> {
        let _serial = self.update.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.backends.load_full();
        let mut next = Vec::with_capacity(addrs.len());
        for addr in addrs {
            if next.iter().any(|b: &Arc<Backend>| b.addr() == *addr) {
                continue;
            }
            match old.by_addr(*addr) {
                Some(b) => next.push(Arc::clone(b)),
                None => next.push(Arc::new(Backend::new(*addr))),
            }
        }
        let removed: Vec<_> = old
            .backends()
            .iter()
            .filter(|b| !addrs.contains(&b.addr()))
            .cloned()
            .collect();
        self.backends.store(Arc::new(BackendSet::new(next)));
        for b in &removed {
            b.mark_removed();
            tracing::info!(service = %self.name, backend = %b.addr(), "backend removed; draining");
        }
        removed
    }
}

/// The owner's handle on a running service.
#[derive(Debug)]
pub struct ServiceHandle {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    mode: Mode,
    drain_timeout: Duration,
    shutdown: watch::Sender<bool>,
    accept_task: JoinHandle<()>,
    health_task: Option<JoinHandle<()>>,
}

/// Binds the service's address and starts proxying on the current tokio runtime.
pub async fn start_service(cfg: ServiceConfig) -> Result<ServiceHandle, LbError> {
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| LbError::Bind {
            service: cfg.name.clone(),
            addr: cfg.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| LbError::Bind {
        service: cfg.name.clone(),
        addr: cfg.listen,
        source,
    })?;
    let shared = Arc::new(Shared::new(&cfg));
    let (shutdown, shutdown_rx) = watch::channel(false);
    let accept_task = tokio::spawn(accept_loop(
        Arc::clone(&shared),
        listener,
        cfg.mode,
        shutdown_rx.clone(),
        cfg.drain_timeout(),
    ));
    let health_task = cfg.health.clone().map(|check| {
        tokio::spawn(crate::health::run(
            Arc::clone(&shared),
            check,
            shutdown_rx.clone(),
        ))
    });
    tracing::info!(service = %cfg.name, addr = %local_addr, mode = ?cfg.mode, algorithm = %cfg.algorithm, "service listening");
    Ok(ServiceHandle {
        shared,
        local_addr,
        mode: cfg.mode,
        drain_timeout: cfg.drain_timeout(),
        shutdown,
        accept_task,
        health_task,
    })
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    mode: Mode,
    mut shutdown: watch::Receiver<bool>,
    drain_timeout: Duration,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let shared = Arc::clone(&shared);
                    let rx = shutdown.clone();
                    match mode {
                        Mode::Http => conns.spawn(crate::http::serve(shared, stream, peer, rx)),
                        Mode::Tcp => conns.spawn(crate::tcp::serve(shared, stream, peer)),
                    };
                }
                Err(e) => {
                    // Out of descriptors and the like: back off briefly instead of spinning.
                    tracing::warn!(service = %shared.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(drain_timeout, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(service = %shared.name, left = conns.len(), "drain timed out; closing connections");
        conns.abort_all();
    }
}

impl ServiceHandle {
    /// The address clients connect to (the bound port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// L4 or L7.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Replaces the backends live. Backends that stay keep their connections and counters;
    /// those that left are returned, marked removed: nothing new goes to them, and
    /// [`Backend::wait_drained`] tells when their in-flight work is done.
    pub fn set_backends(&self, addrs: &[SocketAddr]) -> Vec<Arc<Backend>> {
        self.shared.set_backends(addrs)
    }

    /// Adds one backend (no-op when present).
    pub fn add_backend(&self, addr: SocketAddr) {
        let mut addrs = self.backend_addrs();
        if !addrs.contains(&addr) {
            addrs.push(addr);
            self.shared.set_backends(&addrs);
        }
    }

    /// Removes one backend and returns it for draining.
    pub fn remove_backend(&self, addr: SocketAddr) -> Option<Arc<Backend>> {
        let addrs: Vec<_> = self
            .backend_addrs()
            .into_iter()
            .filter(|a| *a != addr)
            .collect();
        self.shared.set_backends(&addrs).into_iter().next()
    }

    /// Removes one backend and waits (up to the drain timeout) for its in-flight work.
    pub async fn drain_backend(&self, addr: SocketAddr) -> bool {
        match self.remove_backend(addr) {
            Some(b) => b.wait_drained(self.drain_timeout).await,
            None => true,
        }
    }

    /// The current backends' addresses.
    pub fn backend_addrs(&self) -> Vec<SocketAddr> {
        self.shared
            .backends
            .load()
            .backends()
            .iter()
            .map(|b| b.addr())
            .collect()
    }

    /// The current backends with their counters.
    pub fn backends(&self) -> Vec<Arc<Backend>> {
        self.shared.backends.load().backends().to_vec()
    }

    /// The current backends' counters.
    pub fn stats(&self) -> Vec<BackendStats> {
        self.shared
            .backends
            .load()
            .backends()
            .iter()
            .map(|b| b.stats())
            .collect()
    }

    /// Stops accepting, lets open connections finish their current request (HTTP) or stream
    /// (TCP) up to the drain timeout, then closes the rest.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.accept_task.await;
        if let Some(h) = self.health_task {
            let _ = h.await;
        }
        tracing::info!(service = %self.shared.name, "service stopped");
    }
}
