//! Computing the next actions from desired and observed state.

use std::collections::{BTreeSet, HashSet};

use super::*;
use crate::model::{App, DependencyCondition, RestartPolicy, UpdateStrategy};

/// Timing of restarts and drains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReconcileConfig {
    /// The first restart backoff; it doubles with each restart (Kubernetes: 10 s).
    pub backoff_base: Millis,
    /// The longest backoff (Kubernetes: 5 min).
    pub backoff_max: Millis,
    /// A replica that ran this long has its restart count reset (Kubernetes: 10 min).
    pub backoff_reset_after: Millis,
    /// A draining replica is removed after this even with requests in flight.
    pub drain_timeout: Millis,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        ReconcileConfig {
            backoff_base: 10_000,
            backoff_max: 300_000,
            backoff_reset_after: 600_000,
            drain_timeout: 30_000,
        }
    }
}

impl ReconcileConfig {
    /// The wait before the next restart after `count` restarts in a row: none for the
    /// first, then doubling.
    pub fn backoff(&self, count: u32) -> Millis {
        if count == 0 {
            return 0;
        }
        let shift = (count - 1).min(30);
        self.backoff_base
            .saturating_mul(1 << shift)
            .min(self.backoff_max)
    }
}

fn wants_restart(policy: RestartPolicy, inst: &Instance, code: i32, count: u32) -> bool {
    match policy {
        RestartPolicy::No => false,
        RestartPolicy::Always => true,
        RestartPolicy::UnlessStopped => !inst.stopped_by_user,
        RestartPolicy::OnFailure { max_retries } => {
            code != 0 && max_retries.is_none_or(|m| count < m)
        }
    }
}

impl Reconciler {
    /// The actions that move `observed` toward `app`, at time `now`. Call it again after they
    /// were applied and the replicas observed anew.
    pub fn plan(&mut self, app: &App, observed: &[Instance], now: Millis) -> Vec<Action> {
        let mut actions = Vec::new();
        let live_names: HashSet<&str> = observed.iter().map(|i| i.name.as_str()).collect();
        self.restarts.retain(|n, _| live_names.contains(n.as_str()));
        self.draining.retain(|n, _| live_names.contains(n.as_str()));

        // Finish drains: out of the balancer already, and idle or out of time.
        for inst in observed {
            if let Some(d) = self.draining.get(&inst.name) {
                if inst.in_flight == 0 || now.saturating_sub(d.since) >= self.config.drain_timeout {
                    actions.push(Action::Remove {
                        name: inst.name.clone(),
                    });
                }
            }
        }

        // Replicas of services no longer desired leave.
        for inst in observed {
            if !app.services.contains_key(&inst.service) {
                self.start_drain(inst, now);
            }
        }

        for spec in app.start_order() {
            let insts: Vec<&Instance> =
                observed.iter().filter(|i| i.service == spec.name).collect();
            self.restarts_for(spec, &insts, now, &mut actions);
            if self.dependencies_met(app, spec, observed) {
                self.replicas_for(app, spec, &insts, now, &mut actions);
            }
        }

        // Backend sets: running, ready, live replicas that are not leaving.
        let mut services: BTreeSet<String> = app.services.keys().cloned().collect();
        services.extend(self.backends.keys().cloned());
        for service in services {
            let mut ready: Vec<String> = observed
                .iter()
                .filter(|i| {
                    i.service == service && i.state == InstanceState::Running && i.ready && i.live
                })
                .filter(|i| !self.draining.contains_key(&i.name))
                .filter(|i| {
                    !actions
                        .iter()
                        .any(|a| matches!(a, Action::Restart { name } if *name == i.name))
                })
                .map(|i| i.name.clone())
                .collect();
            ready.sort();
            if self.backends.get(&service) != Some(&ready) {
                if ready.is_empty() && !app.services.contains_key(&service) {
                    self.backends.remove(&service);
                } else {
                    self.backends.insert(service.clone(), ready.clone());
                }
                actions.push(Action::SetBackends {
                    service,
                    instances: ready,
                });
            }
        }
        // Backend changes go first so a restart or removal never meets traffic.
        actions.sort_by_key(|a| match a {
            Action::SetBackends { .. } => 0,
            Action::Remove { .. } => 1,
            Action::Restart { .. } => 2,
            Action::Create(_) => 3,
        });
        actions
    }

    fn start_drain(&mut self, inst: &Instance, now: Millis) {
        self.draining
            .entry(inst.name.clone())
            .or_insert(Draining { since: now });
    }

    fn restarts_for(
        &mut self,
        spec: &ServiceSpec,
        insts: &[&Instance],
        now: Millis,
        actions: &mut Vec<Action>,
    ) {
        for inst in insts {
            if self.draining.contains_key(&inst.name) {
                continue;
            }
            let st = self.restarts.entry(inst.name.clone()).or_default();
            match inst.state {
                InstanceState::Exited { code } => {
                    if !wants_restart(spec.restart, inst, code, st.count) {
                        st.restart_at = None;
                        continue;
                    }
                    let at = *st
                        .restart_at
                        .get_or_insert(now + self.config.backoff(st.backoff));
                    if now >= at {
                        st.count += 1;
                        st.backoff += 1;
                        st.restart_at = None;
                        actions.push(Action::Restart {
                            name: inst.name.clone(),
                        });
                    }
                }
                InstanceState::Running => {
                    st.restart_at = None;
                    // A long healthy run forgives earlier crashes (the count stays).
                    if now.saturating_sub(inst.started_at) >= self.config.backoff_reset_after {
                        st.backoff = 0;
                    }
                    if !inst.live {
                        st.count += 1;
                        actions.push(Action::Restart {
                            name: inst.name.clone(),
                        });
                    }
                }
                InstanceState::Starting => {}
            }
        }
    }

    fn dependencies_met(&self, app: &App, spec: &ServiceSpec, observed: &[Instance]) -> bool {
        spec.depends_on.iter().all(|d| {
            if !app.services.contains_key(&d.service) {
                return true;
            }
            let mut deps = observed.iter().filter(|i| i.service == d.service);
            match d.condition {
                DependencyCondition::ServiceStarted => {
                    deps.any(|i| i.state == InstanceState::Running)
                }
                DependencyCondition::ServiceHealthy => {
                    deps.any(|i| i.state == InstanceState::Running && i.ready)
                }
                DependencyCondition::ServiceCompletedSuccessfully => {
                    deps.any(|i| i.state == InstanceState::Exited { code: 0 })
                }
            }
        })
    }

    fn replicas_for(
        &mut self,
        app: &App,
        spec: &ServiceSpec,
        insts: &[&Instance],
        now: Millis,
        actions: &mut Vec<Action>,
    ) {
        let rev = revision(spec);
        let want = spec.replicas;
        let staying: Vec<&Instance> = insts
            .iter()
            .copied()
            .filter(|i| !self.draining.contains_key(&i.name))
            .collect();
        let current: Vec<&Instance> = staying
            .iter()
            .copied()
            .filter(|i| i.revision == rev)
            .collect();
        let old: Vec<&Instance> = staying
            .iter()
            .copied()
            .filter(|i| i.revision != rev)
            .collect();
        let is_ready = |i: &Instance| i.state == InstanceState::Running && i.ready && i.live;
        let mut to_create = 0u32;
        let mut to_remove: Vec<&Instance> = Vec::new();

        let recreate_pending = matches!(spec.update, UpdateStrategy::Recreate)
            && insts.iter().any(|i| i.revision != rev);
        if recreate_pending {
            // Recreate: every old replica leaves (and is gone) before a new one starts.
            to_remove.extend(old.iter().copied());
        } else if old.is_empty() {
            let have = current.len() as u32;
            if have < want {
                to_create = want - have;
            } else if have > want {
                to_remove.extend(
                    scale_down_order(&current)
                        .into_iter()
                        .take((have - want) as usize),
                );
            }
        } else {
            match rolling_bounds(&spec.update, want) {
                None => to_remove.extend(old.iter().copied()),
                Some((surge, unavailable)) => {
                    let total = (current.len() + old.len()) as u32;
                    let room = (want + surge).saturating_sub(total);
                    to_create = room.min(want.saturating_sub(current.len() as u32));
                    // Old replicas that serve nothing leave at once.
                    let (old_ready, old_unready): (Vec<&Instance>, Vec<&Instance>) =
                        old.iter().copied().partition(|i| is_ready(i));
                    to_remove.extend(old_unready);
                    let mut ready_total = current.iter().filter(|i| is_ready(i)).count() as u32
                        + old_ready.len() as u32;
                    let min_available = want.saturating_sub(unavailable);
                    // Ready old replicas leave only while enough others stay ready.
                    for inst in scale_down_order(&old_ready) {
                        if ready_total > min_available {
                            to_remove.push(inst);
                            ready_total -= 1;
                        }
                    }
                    if current.len() as u32 > want {
                        to_remove.extend(
                            scale_down_order(&current)
                                .into_iter()
                                .take(current.len() - want as usize),
                        );
                    }
                }
            }
        }

        for inst in to_remove {
            self.start_drain(inst, now);
        }
        let mut used: HashSet<u32> = insts.iter().map(|i| i.ordinal).collect();
        let mut ordinal = FIRST_ORDINAL;
        for _ in 0..to_create {
            while used.contains(&ordinal) {
                ordinal += 1;
            }
            used.insert(ordinal);
            actions.push(Action::Create(Box::new(InstanceSpec {
                app: app.name.clone(),
                name: self
                    .namer
                    .name(&app.name, spec.kind, &spec.name, ordinal, &rev),
                service: spec.name.clone(),
                ordinal,
                revision: rev.clone(),
                spec: spec.clone(),
            })));
        }
    }
}

/// Which replicas go first when scaling down: unready before ready, then highest ordinal.
fn scale_down_order<'a>(insts: &[&'a Instance]) -> Vec<&'a Instance> {
    let mut v = insts.to_vec();
    v.sort_by_key(|i| {
        (
            i.state == InstanceState::Running && i.ready && i.live,
            std::cmp::Reverse(i.ordinal),
        )
    });
    v
}
