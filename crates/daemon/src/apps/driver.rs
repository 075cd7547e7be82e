//! The orchestrator's [`Driver`] over the daemon's own container service: replicas are
//! containers labelled with their app, service, ordinal and revision; health comes from the
//! replica's probers and in-flight counts from its balancers.
//!
//! The reconcile step runs on a blocking thread (the `Driver` trait is synchronous, as the
//! reconciler is a pure state machine), and each container operation is driven on the
//! daemon's runtime from there.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use corral_orchestrator::model::{App, ProbeAction};
use corral_orchestrator::reconcile::{Driver, DriverError, Instance, InstanceSpec, InstanceState};
use corral_store::State;

use super::balancer::Balancers;
use super::probes::{ProbeSet, Prober};
use super::replicas::{self, Replica};
use crate::state::AppState;

/// How long a restarting replica gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// The driver of one app's reconcile step.
pub struct ContainerDriver<'a> {
    /// The daemon.
    pub state: &'a Arc<AppState>,
    /// The daemon's runtime, to drive container operations from the blocking thread.
    pub rt: tokio::runtime::Handle,
    /// The desired state (for probes).
    pub app: &'a App,
    /// The app's entry points.
    pub lbs: &'a mut Balancers,
    /// Probers by replica name.
    pub probers: &'a mut HashMap<String, Prober>,
    /// Addresses of the replicas seen by the last `list`.
    pub ips: HashMap<String, IpAddr>,
    /// Names of the replicas seen by the last `list`.
    pub seen: HashSet<String>,
}

fn derr(action: &'static str, target: &str, e: impl std::fmt::Display) -> DriverError {
    DriverError {
        action,
        target: target.to_string(),
        message: e.to_string(),
    }
}

/// The reconciler's view of a container's state. A container left `created` by a failed
/// start counts as exited, so the restart policy (and its backoff) applies.
pub fn instance_state(r: &Replica) -> Option<InstanceState> {
    Some(match r.rec.state {
        State::Creating => InstanceState::Starting,
        State::Running | State::Paused | State::Stopping => InstanceState::Running,
        State::Exited => InstanceState::Exited {
            code: r.rec.exit_code.unwrap_or(255),
        },
        State::Created | State::Dead => InstanceState::Exited { code: 255 },
        State::Removing => return None,
    })
}

/// The address of a replica on its container network.
pub fn replica_ip(state: &AppState, r: &Replica) -> Option<IpAddr> {
    state.net.attachment(&r.rec.id)?.ip.parse().ok()
}

fn probe_set(app: &App, service: &str, has_ip: bool) -> ProbeSet {
    let Some(spec) = app.services.get(service) else {
        return ProbeSet {
            readiness: None,
            liveness: None,
        };
    };
    // With no readiness probe, a replica with ports is ready once its first port accepts
    // connections: the balancer never sends it traffic it cannot take.
    let implicit = match (&spec.readiness, spec.ports.first(), has_ip) {
        (None, Some(p), true) => {
            let mut probe =
                corral_orchestrator::model::Probe::new(ProbeAction::TcpSocket { port: p.target });
            probe.interval = Duration::from_secs(1);
            probe.timeout = Duration::from_millis(500);
            Some(probe)
        }
        _ => None,
    };
    ProbeSet {
        readiness: spec.readiness.clone().or(implicit),
        liveness: spec.liveness.clone(),
    }
}

/// Observe an app's replicas. With `manage`, probers are started for new runs and dropped
/// for ended ones; without, the current probers are only read.
pub fn observe(
    state: &Arc<AppState>,
    rt: &tokio::runtime::Handle,
    app: &App,
    lbs: &mut Balancers,
    probers: &mut HashMap<String, Prober>,
    manage: bool,
) -> Result<Vec<(Instance, Replica, Option<IpAddr>)>, DriverError> {
    let list = replicas::list(state, &app.name).map_err(|e| derr("list", &app.name, e))?;
    let mut out = Vec::new();
    for r in list {
        let Some(st) = instance_state(&r) else {
            continue;
        };
        let ip = replica_ip(state, &r);
        let name = r.rec.name.clone();
        let run = (r.rec.id.clone(), r.rec.started_at);
        if manage {
            if st == InstanceState::Running {
                if probers.get(&name).is_none_or(|p| p.run != run) {
                    let set = probe_set(app, &r.service, ip.is_some());
                    let p = Prober::spawn(rt, state.clone(), run.clone(), ip, set);
                    probers.insert(name.clone(), p);
                }
            } else {
                probers.remove(&name);
            }
        }
        let prober = probers.get(&name).filter(|p| p.run == run);
        let inst = Instance {
            name: name.clone(),
            service: r.service.clone(),
            ordinal: r.ordinal,
            revision: r.revision.clone(),
            ready: prober.is_some_and(|p| p.is_ready()),
            live: prober.is_none_or(|p| p.is_live()),
            started_at: r.rec.started_at.unwrap_or(r.rec.created_at).max(0) as u64,
            stopped_by_user: false,
            in_flight: ip.map_or(0, |ip| lbs.in_flight(&r.service, ip)),
            state: st,
        };
        out.push((inst, r, ip));
    }
    Ok(out)
}

impl Driver for ContainerDriver<'_> {
    fn list(&mut self, app: &str) -> Result<Vec<Instance>, DriverError> {
        debug_assert_eq!(app, self.app.name);
        let seen = observe(self.state, &self.rt, self.app, self.lbs, self.probers, true)?;
        self.ips = seen
            .iter()
            .filter_map(|(i, _, ip)| ip.map(|ip| (i.name.clone(), ip)))
            .collect();
        self.seen = seen.iter().map(|(i, _, _)| i.name.clone()).collect();
        Ok(seen.into_iter().map(|(i, _, _)| i).collect())
    }

    fn create(&mut self, spec: &InstanceSpec) -> Result<(), DriverError> {
        let mut req = replicas::container_spec(&self.state.config.root, spec)
            .map_err(|e| derr("create", &spec.name, e))?;
        req.network = Some(super::networks::network_of(self.app, &spec.spec));
        tracing::info!(app = %spec.app, replica = %spec.name, revision = %spec.revision, "creating replica");
        self.rt
            .block_on(crate::containers::run(self.state, req, true))
            .map(|_| ())
            .map_err(|e| derr("create", &spec.name, e))
    }

    fn restart(&mut self, name: &str) -> Result<(), DriverError> {
        tracing::info!(replica = %name, "restarting replica");
        self.probers.remove(name);
        let state = self.state;
        self.rt
            .block_on(async {
                crate::containers::stop(state, name, STOP_GRACE).await?;
                crate::containers::start(state, name).await
            })
            .map(|_| ())
            .map_err(|e| derr("restart", name, e))
    }

    fn remove(&mut self, name: &str) -> Result<(), DriverError> {
        tracing::info!(replica = %name, "removing replica");
        self.probers.remove(name);
        match self
            .rt
            .block_on(crate::containers::remove(self.state, name, true))
        {
            Ok(()) | Err(crate::error::ApiError::NotFound(_)) => {}
            Err(e) => return Err(derr("remove", name, e)),
        }
        replicas::forget_files(&self.state.config.root, &self.app.name, name);
        Ok(())
    }

    fn set_backends(
        &mut self,
        _app: &str,
        service: &str,
        instances: &[String],
    ) -> Result<(), DriverError> {
        let ips: Vec<IpAddr> = instances
            .iter()
            .filter_map(|n| self.ips.get(n).copied())
            .collect();
        tracing::info!(service, backends = ?ips, "balancer backends");
        self.lbs.set_backends(service, &ips);
        Ok(())
    }
}
