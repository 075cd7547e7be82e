//! Recovery at start-up: finish or undo every journaled operation a crash interrupted, then
//! reattach to every live supervisor and mark the instances whose supervisor died.

use std::sync::Arc;
use std::time::Duration;

use corral_store::{InstanceRecord, Kind, Op, State};

use crate::containers;
use crate::state::AppState;
use crate::vms;

/// Run recovery; errors are logged per object and never stop the daemon.
pub async fn recover(state: &Arc<AppState>) {
    let pending = match state.store().journal_pending() {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "reading the journal");
            return;
        }
    };
    for entry in pending {
        let Ok(rec) = state.store().get_instance(&entry.instance_id) else {
            let _ = state.store().journal_commit(entry.id);
            continue;
        };
        tracing::warn!(id = %rec.id, name = %rec.name, op = %entry.op, step = %entry.step,
            "recovering an interrupted operation");
        match (entry.op, rec.kind) {
            (Op::Create, _) if rec.state == State::Creating => undo_create(state, &rec).await,
            (Op::Remove, _) => undo_create(state, &rec).await,
            (Op::Stop, Kind::Container) => {
                let mut rec = rec;
                containers::reattach(state, &mut rec);
                if rec.state.has_supervisor() {
                    let state2 = state.clone();
                    let id = rec.id.clone();
                    // Finish the stop the crash interrupted.
                    tokio::spawn(async move {
                        let _ = containers::stop(&state2, &id, Duration::from_secs(10)).await;
                    });
                }
            }
            _ => {}
        }
        let _ = state.store().journal_commit(entry.id);
    }
    let all = match state.store().list_instances(None) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "listing instances");
            return;
        }
    };
    for mut rec in all {
        match rec.kind {
            Kind::Container => {
                if rec.state.has_supervisor() || rec.state == State::Created {
                    containers::reattach(state, &mut rec);
                }
            }
            Kind::Vm => vms::reattach(state, &mut rec),
        }
    }
}

/// Remove every trace of a half-created or half-removed instance.
async fn undo_create(state: &Arc<AppState>, rec: &InstanceRecord) {
    match rec.kind {
        Kind::Container => containers::teardown(state, rec).await,
        Kind::Vm => vms::teardown(state, rec).await,
    }
    if let Err(e) = state.store().delete_instance(&rec.id) {
        tracing::error!(id = %rec.id, error = %e, "deleting the row");
    }
    state.events.emit(rec, "destroy");
}
