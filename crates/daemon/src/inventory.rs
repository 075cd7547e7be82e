//! The inventory: live figures per instance from cgroups (containers), /proc (VMMs) and the
//! guest agent (its heartbeat and the guest's memory, through the VM monitor).

use std::time::Instant;

use corral_api::{InventoryRow, VmSpec};
use corral_store::{InstanceRecord, Kind};

use crate::containers::cgroup;
use crate::state::{wire_state, AppState};

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// CPU percent (of one CPU) since the previous sample of `id`; None on the first sample.
fn cpu_percent(state: &AppState, id: &str, cpu_ns: Option<u64>) -> Option<f64> {
    let now_ns = cpu_ns?;
    let mut samples = state.cpu_samples.lock().expect("samples");
    let now = Instant::now();
    let prev = samples.insert(id.to_string(), (now, now_ns));
    let (then, then_ns) = prev?;
    let wall = now.duration_since(then).as_nanos() as f64;
    (wall > 0.0)
        .then(|| (now_ns.saturating_sub(then_ns) as f64 / wall * 100.0 * 10.0).round() / 10.0)
}

/// The live row of one instance.
pub fn row(state: &AppState, rec: &InstanceRecord) -> InventoryRow {
    let running = rec.state.has_supervisor();
    let uptime_secs = running
        .then(|| {
            rec.started_at
                .map(|s| ((corral_store::now_ms() - s).max(0) / 1000) as u64)
        })
        .flatten();
    let mut heartbeat = None;
    let (cpu, demand, assigned, pids) = match rec.kind {
        _ if !running => (None, None, None, None),
        Kind::Container => {
            let demand = cgroup::memory_usage(&rec.id);
            let assigned = cgroup::memory_limit(&rec.id).or_else(cgroup::host_memory);
            let cpu = cpu_percent(state, &rec.id, cgroup::cpu_ns(&rec.id));
            (
                cpu,
                demand,
                assigned,
                Some(cgroup::pids(&rec.id).len() as u64),
            )
        }
        Kind::Vm => {
            let pid = rec.supervisor_pid.unwrap_or(0);
            let spec: VmSpec = serde_json::from_value(rec.spec.clone()).unwrap_or_default();
            // With a guest agent the guest says what it uses; else the monitor's resident set.
            let paused = rec.state == corral_store::State::Paused;
            let agent = crate::vms::agent::query(&state.config.vm_socket(&rec.name));
            heartbeat = agent.as_ref().and_then(|a| a.heartbeat(paused));
            let demand = agent
                .and_then(|a| a.mem_used(paused))
                .or_else(|| crate::proc::rss_bytes(pid));
            let assigned = spec.memory_mib.map(|m| m << 20);
            let cpu = cpu_percent(state, &rec.id, crate::proc::cpu_ns(pid));
            (cpu, demand, assigned, None)
        }
    };
    let pressure = match (demand, assigned) {
        (Some(d), Some(a)) if a > 0 => Some((d as f64 / a as f64 * 1000.0).round() / 10.0),
        _ => None,
    };
    InventoryRow {
        id: rec.id.clone(),
        name: rec.name.clone(),
        kind: match rec.kind {
            Kind::Container => corral_api::InstanceKind::Container,
            Kind::Vm => corral_api::InstanceKind::Vm,
        },
        state: wire_state(rec.state),
        host: hostname(),
        cpu_percent: cpu,
        memory_demand: demand,
        memory_assigned: assigned,
        memory_pressure: pressure,
        uptime_secs,
        heartbeat,
        pids,
    }
}
