//! The reconciler: a pure state machine that compares an app's desired state with the observed
//! replicas and says what to do: create, restart (per policy, with exponential backoff shown as
//! CrashLoopBackOff), drain-then-remove, and which replicas the balancer may send traffic to.
//!
//! Removal always drains: a replica leaves the backend set first ([`Action::SetBackends`]),
//! and only once its in-flight requests are done (or the drain timeout passed) is it removed.
//! Rolling updates start new replicas and wait for them to be ready before old ones leave, so
//! with `maxUnavailable: 0` no request is ever dropped.
//!
//! The clock is a number of milliseconds the caller passes in, so tests drive time by hand.

mod driver;
mod names;
mod plan;

pub use driver::{run_once, Driver, DriverError};
pub use names::{pod_template_hash, Namer, FIRST_ORDINAL};
pub use plan::ReconcileConfig;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::model::{ServiceSpec, UpdateStrategy};

/// Milliseconds on the caller's clock.
pub type Millis = u64;

/// What the driver reports about one replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstanceState {
    /// Created, process not yet running.
    Starting,
    /// Its process runs.
    Running,
    /// Its process exited with this status.
    Exited {
        /// Exit status (128+signal for a signal).
        code: i32,
    },
}

/// One observed replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// Its name (see [`Namer`]).
    pub name: String,
    /// Its service.
    pub service: String,
    /// Its ordinal.
    pub ordinal: u32,
    /// The spec revision it runs.
    pub revision: String,
    /// Process state.
    pub state: InstanceState,
    /// Readiness: the probe passes (or there is none and it runs).
    pub ready: bool,
    /// Liveness: false once the liveness probe failed past its threshold.
    pub live: bool,
    /// When its process last started.
    pub started_at: Millis,
    /// A user stopped it (`unless-stopped` then leaves it alone).
    pub stopped_by_user: bool,
    /// Requests or connections the balancer still has in flight to it.
    pub in_flight: u32,
}

/// What to create.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceSpec {
    /// The app.
    pub app: String,
    /// The name (see [`Namer`]).
    pub name: String,
    /// Its service.
    pub service: String,
    /// Its ordinal.
    pub ordinal: u32,
    /// The spec revision.
    pub revision: String,
    /// The service spec to run.
    pub spec: ServiceSpec,
}

/// One step toward the desired state.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create and start a replica.
    Create(Box<InstanceSpec>),
    /// Restart a replica's process.
    Restart {
        /// The replica.
        name: String,
    },
    /// Stop and delete a replica (it was drained first).
    Remove {
        /// The replica.
        name: String,
    },
    /// The replicas a service's balancer may send new traffic to.
    SetBackends {
        /// The service.
        service: String,
        /// Replica names, sorted.
        instances: Vec<String>,
    },
}

/// A replica's status as `ps`/`get pods` show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Starting up.
    Starting,
    /// Running and ready.
    Ready,
    /// Running, not (yet) ready.
    NotReady,
    /// Exited and waiting out its restart backoff.
    CrashLoopBackOff,
    /// Exited 0 and will not restart.
    Completed,
    /// Exited non-zero and will not restart.
    Error,
    /// Leaving: out of the balancer, draining.
    Terminating,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Starting => "ContainerCreating",
            Status::Ready => "Running",
            Status::NotReady => "NotReady",
            Status::CrashLoopBackOff => "CrashLoopBackOff",
            Status::Completed => "Completed",
            Status::Error => "Error",
            Status::Terminating => "Terminating",
        })
    }
}

/// Restart bookkeeping for one replica: what must survive a restart of whoever runs the
/// reconciler (the daemon stores it), so RESTARTS keeps counting and a CrashLoopBackOff keeps
/// its deadline. Times are on the caller's clock, which must be wall-clock time for that.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RestartState {
    /// Restarts so far (kubectl's RESTARTS: never reset while the replica exists).
    pub count: u32,
    /// Restarts since the replica last ran healthily for long enough: the backoff exponent.
    pub backoff: u32,
    /// The exit being waited on, if any: restart at this time.
    pub restart_at: Option<Millis>,
}

/// A replica leaving: out of the balancer since `since`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Draining {
    pub(crate) since: Millis,
}

/// The reconciler of one app. Keep it across steps: it remembers restart counts, drains in
/// progress and the backend sets it last announced.
#[derive(Debug, Default)]
pub struct Reconciler {
    config: ReconcileConfig,
    restarts: BTreeMap<String, RestartState>,
    draining: HashMap<String, Draining>,
    backends: BTreeMap<String, Vec<String>>,
    namer: Namer,
}

/// A stable 64-bit FNV-1a hash: revisions must not change when the toolchain does (std's
/// hasher makes no such promise), or every upgrade would roll every app.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The revision of a service spec: changes when what runs in a replica changes. The replica
/// count, the published ports and the balancing algorithm are the balancer's business (a
/// Kubernetes Service applied next to a Deployment does not roll its pods).
pub fn revision(spec: &ServiceSpec) -> String {
    let mut s = spec.clone();
    s.replicas = 0;
    s.ports.clear();
    s.lb.clear();
    let json = serde_json::to_vec(&s).unwrap_or_default();
    format!("{:012x}", fnv1a(&json) & 0xffff_ffff_ffff)
}

impl Reconciler {
    /// A reconciler with this configuration.
    pub fn new(config: ReconcileConfig) -> Self {
        Reconciler {
            config,
            ..Default::default()
        }
    }

    /// The status of an observed replica.
    pub fn status(&self, inst: &Instance) -> Status {
        if self.draining.contains_key(&inst.name) {
            return Status::Terminating;
        }
        match inst.state {
            InstanceState::Starting => Status::Starting,
            InstanceState::Running if inst.ready => Status::Ready,
            InstanceState::Running => Status::NotReady,
            InstanceState::Exited { code } => match self.restarts.get(&inst.name) {
                Some(RestartState {
                    restart_at: Some(_),
                    ..
                }) => Status::CrashLoopBackOff,
                _ if code == 0 => Status::Completed,
                _ => Status::Error,
            },
        }
    }

    /// Restarts of a replica so far.
    pub fn restart_count(&self, name: &str) -> u32 {
        self.restarts.get(name).map_or(0, |r| r.count)
    }

    /// The restart bookkeeping of every replica seen, to store across restarts of the caller.
    pub fn restart_memory(&self) -> &BTreeMap<String, RestartState> {
        &self.restarts
    }

    /// Take up stored restart bookkeeping (before the first step). Entries of replicas that
    /// no longer exist are dropped at the next step.
    pub fn remember_restarts(&mut self, memory: BTreeMap<String, RestartState>) {
        self.restarts = memory;
    }

    /// The backends last announced for a service.
    pub fn backends(&self, service: &str) -> &[String] {
        self.backends.get(service).map_or(&[], Vec::as_slice)
    }
}

/// The surge and unavailability a strategy allows for `replicas` (never both 0).
pub fn rolling_bounds(strategy: &UpdateStrategy, replicas: u32) -> Option<(u32, u32)> {
    match strategy {
        UpdateStrategy::Recreate => None,
        UpdateStrategy::RollingUpdate {
            max_surge,
            max_unavailable,
        } => {
            let s = max_surge.resolve(replicas, true);
            let u = max_unavailable.resolve(replicas, false);
            Some(if s == 0 && u == 0 { (1, 0) } else { (s, u) })
        }
    }
}

#[cfg(test)]
mod tests;
