//! The reconciler against a fake driver and a fake clock.

use std::collections::BTreeMap;

use super::*;
use crate::model::*;

/// Replicas in memory; `settle` plays the runtime (Starting → Running, readiness by flag).
#[derive(Default)]
struct Fake {
    insts: BTreeMap<String, (String, Instance)>,
    backends: BTreeMap<String, Vec<String>>,
    created: Vec<String>,
    removed: Vec<String>,
    restarted: Vec<String>,
    /// New replicas become ready when they start (else a test flips them).
    auto_ready: bool,
    now: Millis,
}

impl Driver for Fake {
    fn list(&mut self, app: &str) -> Result<Vec<Instance>, DriverError> {
        Ok(self
            .insts
            .values()
            .filter(|(a, _)| a == app)
            .map(|(_, i)| i.clone())
            .collect())
    }
    fn create(&mut self, spec: &InstanceSpec) -> Result<(), DriverError> {
        assert!(
            !self.insts.contains_key(&spec.name),
            "{} created twice",
            spec.name
        );
        self.created.push(spec.name.clone());
        self.insts.insert(
            spec.name.clone(),
            (
                spec.app.clone(),
                Instance {
                    name: spec.name.clone(),
                    service: spec.service.clone(),
                    ordinal: spec.ordinal,
                    revision: spec.revision.clone(),
                    state: InstanceState::Starting,
                    ready: false,
                    live: true,
                    started_at: self.now,
                    stopped_by_user: false,
                    in_flight: 0,
                },
            ),
        );
        Ok(())
    }
    fn restart(&mut self, name: &str) -> Result<(), DriverError> {
        self.restarted.push(name.to_string());
        let (_, i) = self
            .insts
            .get_mut(name)
            .expect("restart of a known replica");
        i.state = InstanceState::Starting;
        i.ready = false;
        i.live = true;
        i.started_at = self.now;
        Ok(())
    }
    fn remove(&mut self, name: &str) -> Result<(), DriverError> {
        for list in self.backends.values() {
            assert!(
                !list.contains(&name.to_string()),
                "{name} removed while still a backend"
            );
        }
        self.removed.push(name.to_string());
        self.insts.remove(name).expect("remove of a known replica");
        Ok(())
    }
    fn set_backends(
        &mut self,
        _app: &str,
        service: &str,
        instances: &[String],
    ) -> Result<(), DriverError> {
        self.backends
            .insert(service.to_string(), instances.to_vec());
        Ok(())
    }
}

impl Fake {
    fn new() -> Self {
        Fake {
            auto_ready: true,
            ..Default::default()
        }
    }
    fn settle(&mut self) {
        for (_, i) in self.insts.values_mut() {
            if i.state == InstanceState::Starting {
                i.state = InstanceState::Running;
                i.ready = self.auto_ready;
            }
        }
    }
    fn inst(&mut self, name: &str) -> &mut Instance {
        &mut self.insts.get_mut(name).unwrap().1
    }
    fn names(&self) -> Vec<String> {
        self.insts.keys().cloned().collect()
    }
}

fn app(replicas: u32, restart: RestartPolicy) -> App {
    let mut a = App::new("shop", Source::Compose);
    a.services.insert(
        "web".into(),
        ServiceSpec {
            name: "web".into(),
            image: Some("web:1".into()),
            replicas,
            restart,
            update: UpdateStrategy::RollingUpdate {
                max_surge: Quantity::Count(1),
                max_unavailable: Quantity::Count(0),
            },
            ..Default::default()
        },
    );
    a
}

/// Steps until nothing changes (at most 50 steps), settling the runtime between steps.
fn converge(rec: &mut Reconciler, a: &App, d: &mut Fake) {
    for _ in 0..50 {
        let acts = run_once(rec, a, d, d.now).unwrap();
        d.settle();
        if acts.is_empty() {
            return;
        }
    }
    panic!("did not converge");
}

#[test]
fn creates_replicas_and_backends_follow_readiness() {
    let a = app(3, RestartPolicy::Always);
    let mut d = Fake::new();
    d.auto_ready = false;
    let mut rec = Reconciler::default();
    let acts = run_once(&mut rec, &a, &mut d, 0).unwrap();
    assert_eq!(
        acts.iter()
            .filter(|a| matches!(a, Action::Create(_)))
            .count(),
        3
    );
    assert_eq!(d.names(), vec!["shop-web-1", "shop-web-2", "shop-web-3"]);
    d.settle();
    run_once(&mut rec, &a, &mut d, 1).unwrap();
    assert_eq!(d.backends["web"], Vec::<String>::new());
    d.inst("shop-web-2").ready = true;
    run_once(&mut rec, &a, &mut d, 2).unwrap();
    assert_eq!(d.backends["web"], vec!["shop-web-2"]);
    assert_eq!(
        rec.status(&d.insts["shop-web-1"].1.clone()),
        Status::NotReady
    );
    assert_eq!(rec.status(&d.insts["shop-web-2"].1.clone()), Status::Ready);
    // Nothing more to do once converged.
    assert!(rec.plan(&a, &d.list("shop").unwrap(), 3).is_empty());
}

#[test]
fn crashes_restart_with_exponential_backoff_shown_as_crashloop() {
    let a = app(1, RestartPolicy::Always);
    let mut d = Fake::new();
    let cfg = ReconcileConfig {
        backoff_base: 1000,
        backoff_max: 4000,
        backoff_reset_after: 60_000,
        drain_timeout: 5000,
    };
    let mut rec = Reconciler::new(cfg);
    converge(&mut rec, &a, &mut d);
    let name = "shop-web-1".to_string();
    let mut restart_times = Vec::new();
    for t in 1..20_000u64 {
        d.now = t;
        if d.inst(&name).state == InstanceState::Running {
            // The process crashes right after each start.
            d.inst(&name).state = InstanceState::Exited { code: 1 };
            d.inst(&name).ready = false;
        }
        let acts = run_once(&mut rec, &a, &mut d, t).unwrap();
        if acts.contains(&Action::Restart { name: name.clone() }) {
            restart_times.push(t);
        } else if d.inst(&name).state != InstanceState::Starting {
            assert_eq!(
                rec.status(&d.insts[&name].1.clone()),
                Status::CrashLoopBackOff,
                "t={t}"
            );
        }
        d.settle();
        if restart_times.len() == 5 {
            break;
        }
    }
    let gaps: Vec<u64> = restart_times.windows(2).map(|w| w[1] - w[0]).collect();
    // First restart at once, then 1 s, 2 s, 4 s, capped at 4 s (plus the step to crash again).
    assert_eq!(restart_times[0], 1);
    assert_eq!(gaps, vec![1001, 2001, 4001, 4001], "{restart_times:?}");
    assert_eq!(rec.restart_count(&name), 5);
    // Traffic never went to the crashing replica while it was down.
    assert!(d.backends["web"].is_empty());
}

#[test]
fn a_long_healthy_run_resets_the_backoff_not_the_count() {
    let a = app(1, RestartPolicy::Always);
    let mut d = Fake::new();
    let mut rec = Reconciler::new(ReconcileConfig {
        backoff_base: 1000,
        backoff_max: 8000,
        backoff_reset_after: 10_000,
        drain_timeout: 1,
    });
    converge(&mut rec, &a, &mut d);
    d.inst("shop-web-1").state = InstanceState::Exited { code: 2 };
    run_once(&mut rec, &a, &mut d, 5).unwrap();
    d.settle();
    assert_eq!(rec.restart_count("shop-web-1"), 1);
    assert_eq!(rec.restart_memory()["shop-web-1"].backoff, 1);
    d.now = 20_000;
    run_once(&mut rec, &a, &mut d, 20_000).unwrap();
    // kubectl's RESTARTS keeps counting; the next crash restarts at once again.
    assert_eq!(rec.restart_count("shop-web-1"), 1);
    assert_eq!(rec.restart_memory()["shop-web-1"].backoff, 0);
    d.inst("shop-web-1").state = InstanceState::Exited { code: 2 };
    let acts = run_once(&mut rec, &a, &mut d, 20_001).unwrap();
    assert!(acts.contains(&Action::Restart {
        name: "shop-web-1".into()
    }));
    assert_eq!(rec.restart_count("shop-web-1"), 2);
}

/// A reconciler that takes up stored restart memory (the daemon after a restart) keeps the
/// count and the CrashLoopBackOff deadline, instead of restarting at once from zero.
#[test]
fn restart_memory_carries_count_and_backoff_to_a_new_reconciler() {
    let a = app(1, RestartPolicy::Always);
    let mut d = Fake::new();
    let cfg = ReconcileConfig {
        backoff_base: 1000,
        backoff_max: 60_000,
        backoff_reset_after: 600_000,
        drain_timeout: 1,
    };
    let mut rec = Reconciler::new(cfg);
    converge(&mut rec, &a, &mut d);
    let name = "shop-web-1".to_string();
    // Crash, restart at once; crash, restart after 1 s; crash: now waiting 2 s.
    let mut t = 10;
    while rec.restart_count(&name) < 2 || d.inst(&name).state == InstanceState::Starting {
        if d.inst(&name).state == InstanceState::Running {
            d.inst(&name).state = InstanceState::Exited { code: 1 };
        }
        run_once(&mut rec, &a, &mut d, t).unwrap();
        d.settle();
        t += 1;
    }
    d.inst(&name).state = InstanceState::Exited { code: 1 };
    run_once(&mut rec, &a, &mut d, t).unwrap();
    let crashed_at = t;
    assert_eq!(
        rec.status(&d.insts[&name].1.clone()),
        Status::CrashLoopBackOff
    );
    let stored = serde_json::to_string(rec.restart_memory()).unwrap();

    let mut again = Reconciler::new(cfg);
    again.remember_restarts(serde_json::from_str(&stored).unwrap());
    assert_eq!(again.restart_count(&name), 2);
    assert_eq!(
        again.status(&d.insts[&name].1.clone()),
        Status::CrashLoopBackOff
    );
    let acts = run_once(&mut again, &a, &mut d, crashed_at + 1999).unwrap();
    assert!(
        !acts.iter().any(|a| matches!(a, Action::Restart { .. })),
        "restarted before its backoff: {acts:?}"
    );
    let acts = run_once(&mut again, &a, &mut d, crashed_at + 2000).unwrap();
    assert!(acts.contains(&Action::Restart { name: name.clone() }));
    assert_eq!(again.restart_count(&name), 3);
    // A replica that is gone is forgotten at the next step.
    let mut fresh = Reconciler::new(cfg);
    let mut mem = again.restart_memory().clone();
    mem.insert("shop-web-9".into(), RestartState::default());
    fresh.remember_restarts(mem);
    run_once(&mut fresh, &a, &mut d, crashed_at + 3000).unwrap();
    assert!(!fresh.restart_memory().contains_key("shop-web-9"));
}

/// A Deployment's pods are named `<deployment>-<pod-template-hash>-<suffix>`; a rolling
/// update (a new template) gives them a new hash, a scale-up the same one.
#[test]
fn deployment_pods_get_kubectl_names_that_change_with_the_template() {
    let mut a = app(2, RestartPolicy::Always);
    a.source = Source::Kubernetes;
    a.services.get_mut("web").unwrap().kind = WorkloadKind::Deployment;
    let mut d = Fake::new();
    let mut rec = Reconciler::default();
    converge(&mut rec, &a, &mut d);
    let hash_of = |n: &str| n.rsplit_once('-').unwrap().0.to_string();
    let first = d.names();
    assert_eq!(first.len(), 2);
    let want = format!("web-{}", pod_template_hash(&revision(&a.services["web"])));
    for n in &first {
        assert_eq!(hash_of(n), want, "{n}");
        assert_eq!(n.rsplit_once('-').unwrap().1.len(), 5, "{n}");
    }
    a.services.get_mut("web").unwrap().replicas = 3;
    converge(&mut rec, &a, &mut d);
    assert!(d.names().iter().all(|n| hash_of(n) == want));
    a.services.get_mut("web").unwrap().image = Some("web:2".into());
    converge(&mut rec, &a, &mut d);
    let after = d.names();
    assert_eq!(after.len(), 3);
    for n in &after {
        assert!(!first.contains(n));
        assert_ne!(hash_of(n), want, "{n} kept the old template's hash");
        assert!(n.starts_with("web-"), "{n}");
    }
}

#[test]
fn no_and_on_failure_policies() {
    for (policy, code, restarts) in [
        (RestartPolicy::No, 1, false),
        (RestartPolicy::OnFailure { max_retries: None }, 0, false),
        (RestartPolicy::OnFailure { max_retries: None }, 3, true),
        (
            RestartPolicy::OnFailure {
                max_retries: Some(0),
            },
            3,
            false,
        ),
        (RestartPolicy::UnlessStopped, 0, true),
    ] {
        let a = app(1, policy);
        let mut d = Fake::new();
        let mut rec = Reconciler::default();
        converge(&mut rec, &a, &mut d);
        d.inst("shop-web-1").state = InstanceState::Exited { code };
        let acts = run_once(&mut rec, &a, &mut d, 10).unwrap();
        assert_eq!(
            acts.contains(&Action::Restart {
                name: "shop-web-1".into()
            }),
            restarts,
            "{policy:?} exit {code}"
        );
        // An exited replica still counts: no replacement is created.
        assert!(
            !acts.iter().any(|a| matches!(a, Action::Create(_))),
            "{policy:?}"
        );
        if !restarts {
            let want = if code == 0 {
                Status::Completed
            } else {
                Status::Error
            };
            assert_eq!(rec.status(&d.insts["shop-web-1"].1.clone()), want);
        }
    }
    // unless-stopped leaves a replica the user stopped alone.
    let a = app(1, RestartPolicy::UnlessStopped);
    let mut d = Fake::new();
    let mut rec = Reconciler::default();
    converge(&mut rec, &a, &mut d);
    d.inst("shop-web-1").state = InstanceState::Exited { code: 137 };
    d.inst("shop-web-1").stopped_by_user = true;
    assert!(run_once(&mut rec, &a, &mut d, 10)
        .unwrap()
        .iter()
        .all(|a| !matches!(a, Action::Restart { .. })));
}

#[test]
fn liveness_failure_restarts_and_leaves_the_balancer_first() {
    let a = app(2, RestartPolicy::Always);
    let mut d = Fake::new();
    let mut rec = Reconciler::default();
    converge(&mut rec, &a, &mut d);
    assert_eq!(d.backends["web"].len(), 2);
    d.inst("shop-web-2").live = false;
    let acts = run_once(&mut rec, &a, &mut d, 100).unwrap();
    assert_eq!(
        acts[0],
        Action::SetBackends {
            service: "web".into(),
            instances: vec!["shop-web-1".into()]
        }
    );
    assert_eq!(
        acts[1],
        Action::Restart {
            name: "shop-web-2".into()
        }
    );
    d.settle();
    converge(&mut rec, &a, &mut d);
    assert_eq!(d.backends["web"].len(), 2);
}

#[test]
fn scale_down_drains_before_removing() {
    let mut a = app(3, RestartPolicy::Always);
    let mut d = Fake::new();
    let mut rec = Reconciler::new(ReconcileConfig {
        drain_timeout: 1000,
        ..Default::default()
    });
    converge(&mut rec, &a, &mut d);
    a.services.get_mut("web").unwrap().replicas = 1;
    d.inst("shop-web-3").in_flight = 4;
    let acts = run_once(&mut rec, &a, &mut d, 10).unwrap();
    assert_eq!(
        acts,
        vec![Action::SetBackends {
            service: "web".into(),
            instances: vec!["shop-web-1".into()]
        }]
    );
    assert_eq!(
        rec.status(&d.insts["shop-web-3"].1.clone()),
        Status::Terminating
    );
    // The idle one goes at the next step; the busy one waits for its requests.
    run_once(&mut rec, &a, &mut d, 20).unwrap();
    assert_eq!(d.removed, vec!["shop-web-2"]);
    d.inst("shop-web-3").in_flight = 0;
    run_once(&mut rec, &a, &mut d, 30).unwrap();
    assert_eq!(d.removed, vec!["shop-web-2", "shop-web-3"]);
    // A drain that never finishes ends at the timeout.
    a.services.get_mut("web").unwrap().replicas = 2;
    converge(&mut rec, &a, &mut d);
    a.services.get_mut("web").unwrap().replicas = 1;
    let busy = d.names().into_iter().find(|n| n != "shop-web-1").unwrap();
    d.inst(&busy).in_flight = 1;
    run_once(&mut rec, &a, &mut d, 100).unwrap();
    run_once(&mut rec, &a, &mut d, 500).unwrap();
    assert!(d.insts.contains_key(&busy));
    run_once(&mut rec, &a, &mut d, 1100).unwrap();
    assert!(!d.insts.contains_key(&busy));
}

#[test]
fn rolling_update_keeps_ready_backends_at_every_step() {
    let mut a = app(3, RestartPolicy::Always);
    let mut d = Fake::new();
    d.auto_ready = false;
    let mut rec = Reconciler::default();
    for _ in 0..3 {
        run_once(&mut rec, &a, &mut d, 0).unwrap();
        d.settle();
        for n in d.names() {
            d.inst(&n).ready = true;
        }
    }
    run_once(&mut rec, &a, &mut d, 0).unwrap();
    assert_eq!(d.backends["web"].len(), 3);
    let old_rev = d.insts["shop-web-1"].1.revision.clone();
    a.services.get_mut("web").unwrap().image = Some("web:2".into());
    let new_rev = revision(&a.services["web"]);
    assert_ne!(old_rev, new_rev);
    let mut max_total = 0;
    for step in 1..100u64 {
        run_once(&mut rec, &a, &mut d, step).unwrap();
        // Every backend is ready and there are always 3 of them (maxUnavailable 0).
        let backends = d.backends["web"].clone();
        assert_eq!(backends.len(), 3, "step {step}: {backends:?}");
        for b in &backends {
            assert!(d.insts[b].1.ready);
        }
        max_total = max_total.max(d.insts.len());
        d.settle();
        // New replicas become ready one step after they start.
        for n in d.names() {
            if d.inst(&n).state == InstanceState::Running {
                d.inst(&n).ready = true;
            }
        }
        if d.insts.values().all(|(_, i)| i.revision == new_rev)
            && d.insts.len() == 3
            && d.backends["web"].len() == 3
        {
            let final_backends: Vec<_> = d.backends["web"]
                .iter()
                .map(|b| d.insts[b].1.revision.clone())
                .collect();
            if final_backends.iter().all(|r| *r == new_rev) {
                assert!(max_total <= 4, "surge exceeded: {max_total}");
                assert_eq!(d.removed.len(), 3);
                return;
            }
        }
    }
    panic!("rolling update did not finish: {:?}", d.names());
}

#[test]
fn recreate_removes_old_replicas_before_starting_new_ones() {
    let mut a = app(2, RestartPolicy::Always);
    a.services.get_mut("web").unwrap().update = UpdateStrategy::Recreate;
    let mut d = Fake::new();
    let mut rec = Reconciler::default();
    converge(&mut rec, &a, &mut d);
    a.services.get_mut("web").unwrap().command = Some(vec!["serve".into()]);
    let acts = run_once(&mut rec, &a, &mut d, 1).unwrap();
    assert_eq!(
        acts,
        vec![Action::SetBackends {
            service: "web".into(),
            instances: vec![]
        }]
    );
    let acts = run_once(&mut rec, &a, &mut d, 2).unwrap();
    assert_eq!(
        acts.iter()
            .filter(|a| matches!(a, Action::Remove { .. }))
            .count(),
        2
    );
    assert!(!acts.iter().any(|a| matches!(a, Action::Create(_))));
    converge(&mut rec, &a, &mut d);
    assert_eq!(d.insts.len(), 2);
    let rev = revision(&a.services["web"]);
    assert!(d.insts.values().all(|(_, i)| i.revision == rev));
}

#[test]
fn scaling_does_not_change_the_revision() {
    let a = app(1, RestartPolicy::Always);
    let mut b = a.clone();
    b.services.get_mut("web").unwrap().replicas = 5;
    assert_eq!(revision(&a.services["web"]), revision(&b.services["web"]));
    // Publishing a port (a Kubernetes Service next to the Deployment) does not roll replicas.
    b.services.get_mut("web").unwrap().ports.push(PortSpec {
        published: Some(9890),
        target: 8080,
        protocol: Protocol::Tcp,
        host_ip: None,
        name: None,
        app_protocol: None,
    });
    b.services.get_mut("web").unwrap().lb = "least_connections".into();
    assert_eq!(revision(&a.services["web"]), revision(&b.services["web"]));
    b.services.get_mut("web").unwrap().command = Some(vec!["v2".into()]);
    assert_ne!(revision(&a.services["web"]), revision(&b.services["web"]));
}

#[test]
fn dependencies_wait_for_health() {
    let mut a = app(1, RestartPolicy::Always);
    a.services.insert(
        "db".into(),
        ServiceSpec {
            name: "db".into(),
            image: Some("kv".into()),
            replicas: 1,
            ..Default::default()
        },
    );
    a.services.get_mut("web").unwrap().depends_on = vec![Dependency {
        service: "db".into(),
        condition: DependencyCondition::ServiceHealthy,
    }];
    let mut d = Fake::new();
    d.auto_ready = false;
    let mut rec = Reconciler::default();
    run_once(&mut rec, &a, &mut d, 0).unwrap();
    assert_eq!(d.names(), vec!["shop-db-1"]);
    d.settle();
    run_once(&mut rec, &a, &mut d, 1).unwrap();
    assert_eq!(d.names(), vec!["shop-db-1"]);
    d.inst("shop-db-1").ready = true;
    run_once(&mut rec, &a, &mut d, 2).unwrap();
    assert_eq!(d.names(), vec!["shop-db-1", "shop-web-1"]);
}

#[test]
fn removed_services_drain_away_and_down_touches_only_its_app() {
    let mut a = app(2, RestartPolicy::Always);
    a.services.insert(
        "db".into(),
        ServiceSpec {
            name: "db".into(),
            image: Some("kv".into()),
            replicas: 1,
            ..Default::default()
        },
    );
    let mut d = Fake::new();
    let mut rec = Reconciler::default();
    converge(&mut rec, &a, &mut d);
    a.services.remove("db");
    converge(&mut rec, &a, &mut d);
    assert_eq!(d.names(), vec!["shop-web-1", "shop-web-2"]);
    assert_eq!(d.backends["db"], Vec::<String>::new());
    // Another app's replica on the same driver.
    let mut other = app(1, RestartPolicy::Always);
    other.name = "other".into();
    let mut rec2 = Reconciler::default();
    converge(&mut rec2, &other, &mut d);
    let removed = rec.down("shop", &["web".to_string()], &mut d).unwrap();
    assert_eq!(removed, vec!["shop-web-1", "shop-web-2"]);
    assert_eq!(d.names(), vec!["other-web-1"]);
}

#[test]
fn backoff_doubles_and_caps() {
    let c = ReconcileConfig::default();
    assert_eq!(
        (c.backoff(0), c.backoff(1), c.backoff(2), c.backoff(3)),
        (0, 10_000, 20_000, 40_000)
    );
    assert_eq!(c.backoff(10), 300_000);
    assert_eq!(c.backoff(u32::MAX), 300_000);
}
