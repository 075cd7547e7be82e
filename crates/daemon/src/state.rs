//! The daemon's shared state: configuration, store, events, per-object locks and the exit
//! notifications of running containers.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use corral_api::{Instance, InstanceKind, InstanceState};
use corral_store::{InstanceRecord, Kind, State, Store};
use tokio::sync::watch;

use crate::config::DaemonConfig;
use crate::error::{ApiError, ApiResult};
use crate::events::EventBus;
use crate::locks::ObjectLocks;

/// Everything the handlers and the instance manager share.
#[derive(Debug)]
pub struct AppState {
    /// How the daemon was started.
    pub config: DaemonConfig,
    store: Mutex<Store>,
    /// State changes for `/v1/events`.
    pub events: EventBus,
    /// Operations on one object run one at a time.
    pub locks: ObjectLocks,
    /// Exit notifications per instance id: `Some(code)` once the current run ended.
    pub exits: Mutex<HashMap<String, watch::Sender<Option<i32>>>>,
    /// When the daemon started.
    pub started: Instant,
    /// Requests served (for /metrics).
    pub http_requests: AtomicU64,
    /// Previous CPU samples per instance: (when, CPU nanoseconds).
    pub cpu_samples: Mutex<HashMap<String, (Instant, u64)>>,
    /// The bearer token TCP clients must present.
    pub token: String,
    /// Networks, endpoints, DNS responders.
    pub net: crate::network::Networking,
    /// Apps and their reconcile tasks.
    pub apps: crate::apps::Apps,
    /// Containers the user stopped: their restart policy stays quiet until the next start.
    pub user_stopped: Mutex<std::collections::HashSet<String>>,
    /// Containers being started by an attach: their shim keeps the output for it.
    pub attach_pending: Mutex<std::collections::HashSet<String>>,
}

impl AppState {
    /// Shared state around an open store.
    pub fn new(
        config: DaemonConfig,
        store: Store,
        token: String,
        net: crate::network::Networking,
    ) -> Self {
        AppState {
            config,
            store: Mutex::new(store),
            events: EventBus::default(),
            locks: ObjectLocks::default(),
            exits: Mutex::new(HashMap::new()),
            started: Instant::now(),
            http_requests: AtomicU64::new(0),
            cpu_samples: Mutex::new(HashMap::new()),
            token,
            net,
            apps: crate::apps::Apps::default(),
            user_stopped: Mutex::default(),
            attach_pending: Mutex::default(),
        }
    }

    /// The API's view of a stored instance, with its place on the network.
    pub fn wire(&self, rec: &InstanceRecord) -> Instance {
        let mut inst = to_wire(rec);
        inst.network = self.net.attachment(&rec.id);
        if rec.kind == Kind::Container {
            inst.command = bundle_command(&self.config.container_dir(&rec.id));
        }
        inst
    }

    /// The store, locked for a short synchronous use.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().expect("store mutex poisoned")
    }

    /// Find an instance by name, id or id prefix, or answer 404.
    pub fn find(&self, kind: Kind, key: &str) -> ApiResult<InstanceRecord> {
        self.store().find_instance(Some(kind), key)?.ok_or_else(|| {
            ApiError::NotFound(match kind {
                Kind::Container => {
                    format!("no such container: {key} (see `corral ps -a`)")
                }
                Kind::Vm => format!("no such VM: {key} (see `corral vm ls`)"),
            })
        })
    }

    /// Move `rec` to `state`, store it, and announce `action`.
    pub fn transition(
        &self,
        rec: &mut InstanceRecord,
        state: State,
        action: &str,
    ) -> ApiResult<()> {
        rec.state = state;
        self.store().update_instance(rec)?;
        self.events.emit(rec, action);
        Ok(())
    }

    /// The exit channel of an instance, created on first use.
    pub fn exit_channel(&self, id: &str) -> watch::Sender<Option<i32>> {
        self.exits
            .lock()
            .expect("exits poisoned")
            .entry(id.to_string())
            .or_insert_with(|| watch::channel(None).0)
            .clone()
    }
}

/// The API's name for a stored state.
pub fn wire_state(s: State) -> InstanceState {
    match s {
        State::Creating => InstanceState::Creating,
        State::Created => InstanceState::Created,
        State::Running => InstanceState::Running,
        State::Paused => InstanceState::Paused,
        State::Stopping => InstanceState::Stopping,
        State::Exited => InstanceState::Exited,
        State::Dead => InstanceState::Dead,
        State::Removing => InstanceState::Removing,
    }
}

fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// The API's view of a stored instance.
pub fn to_wire(rec: &InstanceRecord) -> Instance {
    Instance {
        id: rec.id.clone(),
        name: rec.name.clone(),
        kind: match rec.kind {
            Kind::Container => InstanceKind::Container,
            Kind::Vm => InstanceKind::Vm,
        },
        state: wire_state(rec.state),
        reason: rec.reason.clone(),
        created: rfc3339(rec.created_at),
        started: rec.started_at.map(rfc3339),
        finished: rec.finished_at.map(rfc3339),
        exit_code: rec.exit_code,
        supervisor_pid: rec.supervisor_pid,
        restart_count: rec.restart_count,
        spec: rec.spec.clone(),
        network: None,
        command: Vec::new(),
        guest_agent: None,
    }
}

/// The command a container's bundle runs (`process.args` of its `config.json`); empty while
/// the bundle is not written yet.
fn bundle_command(dir: &std::path::Path) -> Vec<String> {
    let Ok(bytes) = std::fs::read(dir.join("config.json")) else {
        return Vec::new();
    };
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|mut v| serde_json::from_value(v["process"]["args"].take()).ok())
        .unwrap_or_default()
}
