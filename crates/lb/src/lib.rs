//! corral's load balancer: L4 (TCP) and L7 (HTTP/1.1) proxying, the balancing algorithms,
//! health checks. It does not know where backends come from: its owner (the daemon, fed by the
//! orchestrator's readiness) sets each service's backend set live with
//! [`ServiceHandle::set_backends`], and removed backends drain before their owner stops them.
//!
//! Hot-path design: the backend set is an [`arc_swap::ArcSwap`] snapshot (lock-free reads),
//! per-backend counters are atomics, and the L7 proxy keeps backend connections per client
//! connection (so a keep-alive client reuses its backend connections without touching a shared
//! pool), returning them to a per-backend idle pool when the client goes away.

pub mod algorithm;
pub mod backend;
pub mod config;
pub mod error;
pub mod health;
pub mod http;
pub mod ring;
pub mod service;
pub mod sticky;
pub mod tcp;

pub use algorithm::{Algorithm, HashKey, PickContext};
pub use backend::{Backend, BackendId, BackendSet, BackendStats};
pub use config::{HealthCheck, HealthCheckKind, LbConfig, Mode, ServiceConfig};
pub use error::LbError;
pub use service::{start_service, ServiceHandle};
