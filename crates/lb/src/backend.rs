//! Backends (one replica's address) with their lock-free counters, and the backend set a service
//! swaps atomically when replicas come and go.

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::ring::HashRing;

/// A backend's stable identity: a hash of its address, so a sticky cookie stays valid across
/// balancer restarts and backend-set updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendId(pub u64);

impl BackendId {
    /// The id of the backend at `addr`.
    pub fn of(addr: SocketAddr) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        addr.hash(&mut h);
        BackendId(h.finish())
    }

    /// The id as 16 hex digits (the sticky cookie's value).
    pub fn to_hex(self) -> String {
        format!("{:016x}", self.0)
    }

    /// Parses 16 hex digits back into an id.
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 16 {
            return None;
        }
        u64::from_str_radix(s, 16).ok().map(BackendId)
    }
}

/// Milliseconds since the first call: a cheap monotonic clock for ejection deadlines.
pub(crate) fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    // Start at 1 so 0 can mean "not ejected".
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// One backend: an address plus the live state the algorithms and health checks read.
#[derive(Debug)]
pub struct Backend {
    id: BackendId,
    addr: SocketAddr,
    weight: u32,
    /// Requests (L7) or connections (L4) in flight.
    active: AtomicUsize,
    /// The active health check's verdict.
    healthy: AtomicBool,
    /// Passive ejection deadline (`now_ms` units); 0 when not ejected.
    ejected_until: AtomicU64,
    consecutive_failures: AtomicU32,
    /// Response-time EWMA in microseconds, stored as f64 bits.
    ewma_us: AtomicU64,
    /// Load reported by the backend (e.g. by its owner); `u64::MAX` when none.
    reported_load: AtomicU64,
    /// Set once the backend left the set: no new work, drain the rest.
    removed: AtomicBool,
    drained: tokio::sync::Notify,
    /// Idle keep-alive connections for the L7 proxy.
    pub(crate) idle: Mutex<Vec<crate::http::pool::BackendConn>>,
}

/// A snapshot of one backend's counters, for status output and tests.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendStats {
    /// Its address.
    pub addr: SocketAddr,
    /// Requests or connections in flight.
    pub active: usize,
    /// The active health check's verdict.
    pub healthy: bool,
    /// Whether passive ejection currently keeps it out.
    pub ejected: bool,
    /// Response-time EWMA in microseconds.
    pub ewma_us: f64,
}

/// Consecutive failures after which a backend is ejected passively.
pub const EJECT_AFTER_FAILURES: u32 = 3;
/// How long a passive ejection lasts.
pub const EJECT_FOR: Duration = Duration::from_secs(10);
const EWMA_ALPHA: f64 = 0.2;

impl Backend {
    /// A backend at `addr` with weight 1, healthy until a check says otherwise (the
    /// orchestrator adds only ready replicas).
    pub fn new(addr: SocketAddr) -> Self {
        Self::with_weight(addr, 1)
    }

    /// A backend with a weight (share of traffic relative to others; at least 1).
    pub fn with_weight(addr: SocketAddr, weight: u32) -> Self {
        Backend {
            id: BackendId::of(addr),
            addr,
            weight: weight.max(1),
            active: AtomicUsize::new(0),
            healthy: AtomicBool::new(true),
            ejected_until: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            ewma_us: AtomicU64::new(0f64.to_bits()),
            reported_load: AtomicU64::new(u64::MAX),
            removed: AtomicBool::new(false),
            drained: tokio::sync::Notify::new(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Its stable id.
    pub fn id(&self) -> BackendId {
        self.id
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its weight.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// Requests or connections in flight.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Whether new work may go to it: in the set, healthy and not ejected.
    pub fn is_available(&self) -> bool {
        if !self.healthy.load(Ordering::Relaxed) || self.removed.load(Ordering::Relaxed) {
            return false;
        }
        let until = self.ejected_until.load(Ordering::Relaxed);
        until == 0 || until <= now_ms()
    }

    /// Records the active health check's verdict.
    pub fn set_healthy(&self, healthy: bool) {
        let was = self.healthy.swap(healthy, Ordering::Relaxed);
        if was != healthy {
            tracing::info!(backend = %self.addr, healthy, "backend health changed");
        }
        if healthy {
            self.ejected_until.store(0, Ordering::Relaxed);
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// The active health check's last verdict.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Records a failed request or connection; ejects after [`EJECT_AFTER_FAILURES`].
    pub fn record_failure(&self) {
        let n = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= EJECT_AFTER_FAILURES {
            self.eject(EJECT_FOR);
        }
    }

    /// Takes the backend out of rotation for `d` (passive ejection).
    pub fn eject(&self, d: Duration) {
        self.ejected_until
            .store(now_ms() + d.as_millis() as u64, Ordering::Relaxed);
        tracing::warn!(backend = %self.addr, "backend ejected after failures");
    }

    /// Records a success: clears the failure streak (without writing when already clear).
    pub fn record_success(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// Folds one response time into the EWMA.
    pub fn observe_latency(&self, d: Duration) {
        let sample = d.as_secs_f64() * 1e6;
        let old = f64::from_bits(self.ewma_us.load(Ordering::Relaxed));
        let new = if old == 0.0 {
            sample
        } else {
            old + EWMA_ALPHA * (sample - old)
        };
        // A lost update under a race only delays the average by one sample.
        self.ewma_us.store(new.to_bits(), Ordering::Relaxed);
    }

    /// Response-time EWMA in microseconds (0 before the first response).
    pub fn ewma_us(&self) -> f64 {
        f64::from_bits(self.ewma_us.load(Ordering::Relaxed))
    }

    /// Sets the load the backend reports (any unit, lower is better); `None` clears it.
    pub fn set_reported_load(&self, load: Option<u64>) {
        self.reported_load
            .store(load.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The load score `least_load` minimises: the reported load when there is one, else the
    /// latency EWMA scaled by the work in flight.
    pub fn load_score(&self) -> f64 {
        let reported = self.reported_load.load(Ordering::Relaxed);
        if reported != u64::MAX {
            return reported as f64 / self.weight as f64;
        }
        // Unmeasured backends score as fast (1 µs) so they get tried.
        let ewma = self.ewma_us().max(1.0);
        ewma * (self.active() as f64 + 1.0) / self.weight as f64
    }

    /// Whether the backend left the set.
    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::SeqCst)
    }

    /// Marks the backend removed: no new work; `wait_drained` returns once in-flight work ends.
    pub fn mark_removed(&self) {
        self.removed.store(true, Ordering::SeqCst);
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
        if self.active.load(Ordering::SeqCst) == 0 {
            self.drained.notify_waiters();
        }
    }

    /// Counts one unit of work in, unless the backend was removed meanwhile (the removal and
    /// this check are ordered, so a drain never misses work that slipped in).
    pub fn try_acquire(self: &Arc<Self>) -> Option<ActiveGuard> {
        self.active.fetch_add(1, Ordering::SeqCst);
        if self.removed.load(Ordering::SeqCst) {
            self.release();
            return None;
        }
        Some(ActiveGuard {
            backend: Arc::clone(self),
        })
    }

    fn release(&self) {
        if self.active.fetch_sub(1, Ordering::SeqCst) == 1 && self.removed.load(Ordering::SeqCst) {
            self.drained.notify_waiters();
        }
    }

    /// Waits until a removed backend has no work in flight, or `timeout` passes; returns
    /// whether it drained.
    pub async fn wait_drained(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.drained.notified();
            if self.active.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.active.load(Ordering::SeqCst) == 0;
            }
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> BackendStats {
        let until = self.ejected_until.load(Ordering::Relaxed);
        BackendStats {
            addr: self.addr,
            active: self.active(),
            healthy: self.is_healthy(),
            ejected: until != 0 && until > now_ms(),
            ewma_us: self.ewma_us(),
        }
    }
}

/// One unit of work counted against a backend; dropping it ends the work.
#[derive(Debug)]
pub struct ActiveGuard {
    backend: Arc<Backend>,
}

impl ActiveGuard {
    /// The backend the work runs on.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.backend.release();
    }
}

/// The backends of one service at one moment, with what the algorithms precompute from them.
#[derive(Debug, Default)]
pub struct BackendSet {
    backends: Vec<Arc<Backend>>,
    ring: HashRing,
}

impl BackendSet {
    /// A set over these backends.
    pub fn new(backends: Vec<Arc<Backend>>) -> Self {
        let ring = HashRing::build(&backends);
        BackendSet { backends, ring }
    }

    /// The backends, in the order they were given.
    pub fn backends(&self) -> &[Arc<Backend>] {
        &self.backends
    }

    /// The consistent-hash ring over the backends.
    pub fn ring(&self) -> &HashRing {
        &self.ring
    }

    /// The backend with this id, if it is in the set.
    pub fn by_id(&self, id: BackendId) -> Option<&Arc<Backend>> {
        self.backends.iter().find(|b| b.id() == id)
    }

    /// The backend at this address, if it is in the set.
    pub fn by_addr(&self, addr: SocketAddr) -> Option<&Arc<Backend>> {
        self.backends.iter().find(|b| b.addr() == addr)
    }

    /// Number of backends.
    pub fn len(&self) -> usize {
        self.backends.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn id_round_trips_through_hex_and_is_stable_per_address() {
        let id = BackendId::of(addr(8080));
        assert_eq!(BackendId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(id, BackendId::of(addr(8080)));
        assert_ne!(id, BackendId::of(addr(8081)));
        assert_eq!(BackendId::from_hex("zz"), None);
    }

    #[test]
    fn failures_eject_after_threshold_and_success_resets_streak() {
        let b = Backend::new(addr(1));
        b.record_failure();
        b.record_failure();
        b.record_success();
        b.record_failure();
        b.record_failure();
        assert!(b.is_available());
        b.record_failure();
        assert!(!b.is_available());
        assert!(b.stats().ejected);
        b.set_healthy(true);
        assert!(b.is_available());
    }

    #[test]
    fn removed_backend_refuses_new_work() {
        let b = Arc::new(Backend::new(addr(2)));
        let g = b.try_acquire().expect("acquire");
        assert_eq!(b.active(), 1);
        b.mark_removed();
        assert!(b.try_acquire().is_none());
        assert_eq!(b.active(), 1);
        drop(g);
        assert_eq!(b.active(), 0);
        assert!(!b.is_available());
    }

    #[test]
    fn ewma_moves_toward_samples() {
        let b = Backend::new(addr(3));
        b.observe_latency(Duration::from_micros(100));
        assert_eq!(b.ewma_us(), 100.0);
        for _ in 0..50 {
            b.observe_latency(Duration::from_micros(1000));
        }
        assert!(b.ewma_us() > 990.0, "{}", b.ewma_us());
        b.set_reported_load(Some(7));
        assert_eq!(b.load_score(), 7.0);
    }

    #[tokio::test]
    async fn wait_drained_returns_when_last_work_ends() {
        let b = Arc::new(Backend::new(addr(4)));
        let g = b.try_acquire().unwrap();
        b.mark_removed();
        let b2 = Arc::clone(&b);
        let waiter = tokio::spawn(async move { b2.wait_drained(Duration::from_secs(5)).await });
        tokio::task::yield_now().await;
        drop(g);
        assert!(waiter.await.unwrap());
        let c = Arc::new(Backend::new(addr(5)));
        let _g = c.try_acquire().unwrap();
        c.mark_removed();
        assert!(!c.wait_drained(Duration::from_millis(20)).await);
    }
}
