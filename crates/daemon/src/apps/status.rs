//! An app's status as the API shows it: services with desired/ready/up-to-date counts,
//! replicas with kubectl's status words (CrashLoopBackOff included), entry points.

use std::sync::Arc;

use corral_api::{AppStatus, ReplicaStatus, ServiceStatus};
use corral_orchestrator::model::WorkloadKind;
use corral_orchestrator::reconcile::{revision, Status};

use super::driver::observe;
use super::AppHandle;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Build the status of `h` (on a blocking thread: it waits for a running step).
pub fn build(state: &Arc<AppState>, h: &AppHandle) -> ApiResult<AppStatus> {
    let rec = state
        .store()
        .get_app(&h.name)?
        .ok_or_else(|| super::not_found(&h.name))?;
    let mut guard = h.runtime();
    let rt = &mut *guard;
    let app = rt.app.clone().ok_or_else(|| super::not_found(&h.name))?;
    let handle = tokio::runtime::Handle::current();
    let seen = observe(state, &handle, &app, &mut rt.lbs, &mut rt.probers, false)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut replicas = Vec::new();
    for (inst, r, ip) in &seen {
        let st = rt.rec.status(inst);
        replicas.push(ReplicaStatus {
            name: inst.name.clone(),
            service: inst.service.clone(),
            id: r.rec.id.clone(),
            status: st.to_string(),
            ready: st == Status::Ready && rt.rec.backends(&inst.service).contains(&inst.name),
            restarts: rt.rec.restart_count(&inst.name),
            ip: ip.map(|i| i.to_string()),
            started: r.rec.started_at.map(rfc3339),
            created: rfc3339(r.rec.created_at),
            revision: inst.revision.clone(),
            exit_code: r.rec.exit_code,
        });
    }
    let endpoints = rt.lbs.status();
    let services = app
        .services
        .values()
        .map(|svc| {
            let rev = revision(svc);
            let mine: Vec<&ReplicaStatus> =
                replicas.iter().filter(|r| r.service == svc.name).collect();
            ServiceStatus {
                name: svc.name.clone(),
                kind: match svc.kind {
                    WorkloadKind::Compose => "compose",
                    WorkloadKind::Deployment => "deployment",
                    WorkloadKind::Pod => "pod",
                }
                .into(),
                image: svc.image.clone().unwrap_or_default(),
                desired: svc.replicas,
                up_to_date: mine.iter().filter(|r| r.revision == rev).count() as u32,
                ready: mine.iter().filter(|r| r.ready).count() as u32,
                current: mine.len() as u32,
                ports: endpoints
                    .iter()
                    .filter(|e| e.service == svc.name)
                    .map(|e| {
                        format!(
                            "{}->{}/tcp",
                            e.listen.clone().unwrap_or_else(|| "?".into()),
                            e.target
                        )
                    })
                    .collect(),
                lb: if svc.lb.is_empty() {
                    "round_robin".into()
                } else {
                    svc.lb.clone()
                },
            }
        })
        .collect();
    Ok(AppStatus {
        name: app.name.clone(),
        source: rec.source,
        created: rfc3339(rec.created_at),
        updated: rfc3339(rec.updated_at),
        services,
        replicas,
        endpoints,
        error: rt.last_error.clone(),
    })
}
