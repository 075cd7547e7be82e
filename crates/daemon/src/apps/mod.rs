//! Apps: Compose projects and Kubernetes namespaces kept at their desired state. Each app has
//! a reconcile task (observe, plan with the orchestrator's reconciler, apply through the
//! container driver) woken by container events, by changes to the app, and by a short tick
//! (probes and restart backoffs have no event); and one balancer per published port.
//!
//! Changes to an app (up, apply, scale, restart, down) and reconcile steps take the app's
//! operation lock, so they never interleave.

mod balancer;
mod driver;
pub mod logs;
mod networks;
pub mod parse;
mod probes;
mod replicas;
mod status;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use corral_api::AppStatus;
use corral_orchestrator::model::App;
use corral_orchestrator::reconcile::{self, ReconcileConfig, Reconciler, RestartState};
use corral_store::AppRecord;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use balancer::Balancers;
use driver::ContainerDriver;
use parse::{Desired, Objects};
use probes::Prober;

/// Between reconcile steps when nothing wakes the task earlier.
const TICK: Duration = Duration::from_millis(250);

/// Overrides the first restart backoff (milliseconds; Kubernetes' 10 s by default), so tests
/// see several CrashLoopBackOff rounds in seconds.
pub const BACKOFF_ENV: &str = "CORRAL_APP_BACKOFF_MS";

/// What one app's reconcile task works with.
#[derive(Debug, Default)]
pub struct AppRuntime {
    app: Option<App>,
    rec: Reconciler,
    lbs: Balancers,
    probers: HashMap<String, Prober>,
    last_error: Option<String>,
    /// The restart memory as last stored.
    saved: BTreeMap<String, RestartState>,
    /// The replicas the last step saw (their events wake the task).
    names: HashSet<String>,
}

impl AppRuntime {
    /// A runtime for app `name` that takes up the restart memory stored for it.
    fn resumed(state: &AppState, name: &str) -> AppRuntime {
        let mut config = ReconcileConfig::default();
        if let Some(ms) = std::env::var(BACKOFF_ENV).ok().and_then(|v| v.parse().ok()) {
            config.backoff_base = ms;
        }
        let mut rec = Reconciler::new(config);
        let saved: BTreeMap<String, RestartState> = match state.store().app_runtime(name) {
            Ok(Some(v)) => serde_json::from_value(v).unwrap_or_else(|e| {
                tracing::warn!(app = %name, error = %e, "stored restart memory does not decode; starting afresh");
                BTreeMap::new()
            }),
            Ok(None) => BTreeMap::new(),
            Err(e) => {
                tracing::warn!(app = %name, error = %e, "cannot read the stored restart memory");
                BTreeMap::new()
            }
        };
        rec.remember_restarts(saved.clone());
        AppRuntime {
            rec,
            saved,
            ..Default::default()
        }
    }
}

/// One app in the daemon.
#[derive(Debug)]
pub struct AppHandle {
    name: String,
    /// Held by every change and every reconcile step.
    op: tokio::sync::Mutex<()>,
    rt: Mutex<AppRuntime>,
    wake: Notify,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl AppHandle {
    fn runtime(&self) -> MutexGuard<'_, AppRuntime> {
        self.rt.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Every app the daemon keeps.
#[derive(Debug, Default)]
pub struct Apps {
    map: Mutex<HashMap<String, Arc<AppHandle>>>,
    /// Serialises creating and removing apps.
    registry: tokio::sync::Mutex<()>,
}

impl Apps {
    fn get(&self, name: &str) -> Option<Arc<AppHandle>> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("no such app: {name} (see `corral app ps`)"))
}

fn source_str(app: &App) -> &'static str {
    match app.source {
        corral_orchestrator::Source::Compose => "compose",
        corral_orchestrator::Source::Kubernetes => "kubernetes",
    }
}

fn store_app(state: &AppState, app: &App, objects: &Objects) -> ApiResult<()> {
    let now = corral_store::now_ms();
    let created_at = state
        .store()
        .get_app(&app.name)?
        .map_or(now, |r| r.created_at);
    state.store().put_app(&AppRecord {
        name: app.name.clone(),
        source: source_str(app).into(),
        model: serde_json::to_value(app).map_err(|e| ApiError::internal("encoding the app", e))?,
        manifests: serde_json::to_value(objects)
            .map_err(|e| ApiError::internal("encoding manifests", e))?,
        created_at,
        updated_at: now,
    })?;
    Ok(())
}

/// Create or change an app to `desired` (with its applied Kubernetes objects). The ports are
/// bound before anything is stored, so a taken port changes nothing.
pub async fn put(state: &Arc<AppState>, desired: &Desired, objects: &Objects) -> ApiResult<()> {
    let app = &desired.app;
    parse::check_runnable(app, &state.config.root)?;
    if !crate::ids::valid_name(&app.name) {
        return Err(ApiError::invalid(
            "project",
            format!("{:?} is not a valid app name", app.name),
        ));
    }
    if let Some(existing) = state.store().get_app(&app.name)? {
        if existing.source != source_str(app) {
            return Err(ApiError::Conflict(format!(
                "an app named {} already exists from {} files",
                app.name, existing.source
            )));
        }
    }
    networks::check(app)?;
    let plans = balancer::plans(app)?;
    let _reg = state.apps.registry.lock().await;
    let made = networks::ensure(state, app).await?;
    let (h, fresh) = match state.apps.get(&app.name) {
        Some(h) => (h, false),
        None => (
            Arc::new(AppHandle {
                name: app.name.clone(),
                op: tokio::sync::Mutex::new(()),
                rt: Mutex::new(AppRuntime::resumed(state, &app.name)),
                wake: Notify::new(),
                task: Mutex::new(None),
            }),
            true,
        ),
    };
    let applied: ApiResult<()> = async {
        let _op = h.op.lock().await;
        let mut lbs = std::mem::take(&mut h.runtime().lbs);
        let synced = lbs.sync(&plans).await;
        h.runtime().lbs = lbs;
        let gone = synced?;
        for g in gone {
            g.shutdown().await;
        }
        store_app(state, app, objects)?;
        h.runtime().app = Some(app.clone());
        Ok(())
    }
    .await;
    if let Err(e) = applied {
        networks::remove_names(state, &app.name, &made).await;
        return Err(e);
    }
    if fresh {
        state
            .apps
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(app.name.clone(), h.clone());
        let task = tokio::spawn(run_loop(state.clone(), h.clone()));
        *h.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    }
    h.wake.notify_one();
    Ok(())
}

/// Bring the stored apps back after a daemon start.
pub async fn resume(state: &Arc<AppState>) {
    let records = match state.store().list_apps() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the stored apps");
            return;
        }
    };
    for r in records {
        let app: App = match serde_json::from_value(r.model.clone()) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(app = %r.name, error = %e, "stored app does not decode; left alone");
                continue;
            }
        };
        let objects: Objects = serde_json::from_value(r.manifests.clone()).unwrap_or_default();
        let desired = Desired {
            app,
            warnings: Vec::new(),
        };
        if let Err(e) = put(state, &desired, &objects).await {
            tracing::error!(app = %r.name, error = %e, "cannot resume app");
        }
    }
}

async fn run_loop(state: Arc<AppState>, h: Arc<AppHandle>) {
    let mut events = state.events.subscribe();
    let prefix = format!("{}-", h.name);
    loop {
        {
            let _op = h.op.lock().await;
            let (s, hh) = (state.clone(), h.clone());
            if let Err(e) = tokio::task::spawn_blocking(move || step(&s, &hh)).await {
                tracing::error!(app = %h.name, error = %e, "reconcile step panicked");
            }
        }
        let deadline = tokio::time::sleep(TICK);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = h.wake.notified() => break,
                _ = &mut deadline => break,
                ev = events.recv() => match ev {
                    Ok(ev) if ev.name.starts_with(&prefix)
                        || h.runtime().names.contains(&ev.name) => break,
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                    Err(_) => {}
                },
            }
        }
    }
}

/// One reconcile step of `h` (on a blocking thread).
fn step(state: &Arc<AppState>, h: &AppHandle) {
    let mut guard = h.runtime();
    let rt = &mut *guard;
    let Some(app) = rt.app.clone() else {
        return;
    };
    let mut d = ContainerDriver {
        state,
        rt: tokio::runtime::Handle::current(),
        app: &app,
        lbs: &mut rt.lbs,
        probers: &mut rt.probers,
        ips: HashMap::new(),
        seen: HashSet::new(),
    };
    let now = corral_store::now_ms().max(0) as u64;
    let result = reconcile::run_once(&mut rt.rec, &app, &mut d, now);
    rt.names = d.seen.drain().collect();
    if rt.rec.restart_memory() != &rt.saved {
        let memory = rt.rec.restart_memory().clone();
        match serde_json::to_value(&memory) {
            Ok(v) => match state.store().set_app_runtime(&app.name, &v) {
                Ok(()) => rt.saved = memory,
                Err(e) => tracing::warn!(app = %app.name, error = %e, "storing restart memory"),
            },
            Err(e) => tracing::warn!(app = %app.name, error = %e, "encoding restart memory"),
        }
    }
    match result {
        Ok(actions) => {
            if !actions.is_empty() {
                tracing::debug!(app = %app.name, ?actions, "reconciled");
            }
            rt.last_error = None;
        }
        Err(e) => {
            if rt.last_error.as_deref() != Some(&e.to_string()) {
                tracing::warn!(app = %app.name, error = %e, "reconcile step failed");
            }
            rt.last_error = Some(e.to_string());
        }
    }
}

/// Remove everything an app made (replicas, balancers, its files; named volumes with
/// `volumes`) and forget it.
pub async fn down(state: &Arc<AppState>, name: &str, volumes: bool) -> ApiResult<()> {
    let _reg = state.apps.registry.lock().await;
    let h = match state.apps.get(name) {
        Some(h) => h,
        None => orphan_handle(state, name)?,
    };
    let _op = h.op.lock().await;
    if let Some(t) = h.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
        t.abort();
    }
    let (s, hh) = (state.clone(), h.clone());
    let app = h.runtime().app.clone();
    let removed = tokio::task::spawn_blocking(move || {
        let mut guard = hh.runtime();
        let rt = &mut *guard;
        let app = rt
            .app
            .clone()
            .unwrap_or_else(|| App::new(hh.name.clone(), corral_orchestrator::Source::Compose));
        let services: Vec<String> = app.services.keys().cloned().collect();
        let mut d = ContainerDriver {
            state: &s,
            rt: tokio::runtime::Handle::current(),
            app: &app,
            lbs: &mut rt.lbs,
            probers: &mut rt.probers,
            ips: HashMap::new(),
            seen: HashSet::new(),
        };
        rt.rec.down(&app.name, &services, &mut d)
    })
    .await
    .map_err(|e| ApiError::internal("app down", e))?
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    tracing::info!(app = %name, replicas = removed.len(), "app down");
    if let Some(app) = &app {
        networks::remove(state, app).await;
    }
    let handles = h.runtime().lbs.take_all();
    for lb in handles {
        lb.shutdown().await;
    }
    h.runtime().probers.clear();
    let files = replicas::files_dir(&state.config.root, name);
    if let Err(e) = std::fs::remove_dir_all(&files) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %files.display(), error = %e, "removing app files");
        }
    }
    if volumes {
        for (vol, spec) in app.iter().flat_map(|a| a.volumes.iter()) {
            if spec.external {
                continue;
            }
            let dir = replicas::volume_dir(&state.config.root, name, vol);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(ApiError::internal(format!("removing {}", dir.display()), e));
                }
            }
        }
    }
    match state.store().delete_app(name) {
        Ok(()) | Err(corral_store::StoreError::AppNotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    state
        .apps
        .map
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(name);
    Ok(())
}

/// A handle for an app the daemon does not run (its resume failed, e.g. a port was taken,
/// or only its labelled containers are left), so `down` can still remove what it made.
fn orphan_handle(state: &AppState, name: &str) -> ApiResult<Arc<AppHandle>> {
    let app = match state.store().get_app(name)? {
        Some(r) => serde_json::from_value::<App>(r.model).ok(),
        None => None,
    };
    if app.is_none() && replicas::list(state, name)?.is_empty() {
        return Err(not_found(name));
    }
    Ok(Arc::new(AppHandle {
        name: name.to_string(),
        op: tokio::sync::Mutex::new(()),
        rt: Mutex::new(AppRuntime {
            app,
            ..Default::default()
        }),
        wake: Notify::new(),
        task: Mutex::new(None),
    }))
}

/// Set replica counts.
pub async fn scale(
    state: &Arc<AppState>,
    name: &str,
    counts: &std::collections::BTreeMap<String, u32>,
) -> ApiResult<()> {
    let h = state.apps.get(name).ok_or_else(|| not_found(name))?;
    let _op = h.op.lock().await;
    let mut app = h.runtime().app.clone().ok_or_else(|| not_found(name))?;
    for (svc, n) in counts {
        let spec = app.services.get_mut(svc).ok_or_else(|| {
            ApiError::invalid(
                format!("replicas.{svc}"),
                format!("app {name} has no service {svc}"),
            )
        })?;
        spec.replicas = *n;
    }
    let objects = stored_objects(state, name)?;
    store_app(state, &app, &objects)?;
    h.runtime().app = Some(app);
    h.wake.notify_one();
    Ok(())
}

/// Restart every replica of an app, one after the other.
pub async fn restart(state: &Arc<AppState>, name: &str) -> ApiResult<()> {
    let h = state.apps.get(name).ok_or_else(|| not_found(name))?;
    let _op = h.op.lock().await;
    let list = replicas::list(state, name)?;
    for r in list {
        h.runtime().probers.remove(&r.rec.name);
        crate::containers::stop(state, &r.rec.id, Duration::from_secs(3)).await?;
        crate::containers::start(state, &r.rec.id).await?;
    }
    h.wake.notify_one();
    Ok(())
}

/// The applied Kubernetes objects of an app (empty for Compose apps and unknown names).
pub fn stored_objects(state: &AppState, name: &str) -> ApiResult<Objects> {
    Ok(match state.store().get_app(name)? {
        Some(r) => serde_json::from_value(r.manifests).unwrap_or_default(),
        None => Objects::new(),
    })
}

/// One app's status.
pub async fn status(state: &Arc<AppState>, name: &str) -> ApiResult<AppStatus> {
    let h = state.apps.get(name).ok_or_else(|| not_found(name))?;
    let s = state.clone();
    tokio::task::spawn_blocking(move || status::build(&s, &h))
        .await
        .map_err(|e| ApiError::internal("app status", e))?
}

/// Every app's status.
pub async fn list(state: &Arc<AppState>) -> ApiResult<Vec<AppStatus>> {
    let mut out = Vec::new();
    for name in state.apps.names() {
        match status(state, &name).await {
            Ok(s) => out.push(s),
            Err(ApiError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}
