//! The boundary to the daemon: what the reconciler needs from whoever runs replicas and the
//! balancer, and the loop step that uses it.

use super::{Action, Instance, InstanceSpec, Millis, Reconciler};
use crate::model::App;

/// Why a driver call failed.
#[derive(Debug, thiserror::Error)]
#[error("{action} {target}: {message}")]
pub struct DriverError {
    /// The call (`create`, `remove`, …).
    pub action: &'static str,
    /// The replica or service.
    pub target: String,
    /// What went wrong.
    pub message: String,
}

/// What the reconciler needs from the daemon: replicas (containers or microVMs) labelled with
/// their app, and the balancer's backend sets. Health (readiness, liveness) and in-flight
/// counts come back in [`Instance`].
pub trait Driver {
    /// The replicas of `app` (only those it made: labelled with the app's name).
    fn list(&mut self, app: &str) -> Result<Vec<Instance>, DriverError>;
    /// Creates and starts a replica.
    fn create(&mut self, spec: &InstanceSpec) -> Result<(), DriverError>;
    /// Restarts a replica's process.
    fn restart(&mut self, name: &str) -> Result<(), DriverError>;
    /// Stops and deletes a replica.
    fn remove(&mut self, name: &str) -> Result<(), DriverError>;
    /// Sets the replicas a service's balancer sends new traffic to.
    fn set_backends(
        &mut self,
        app: &str,
        service: &str,
        instances: &[String],
    ) -> Result<(), DriverError>;
}

/// One reconcile step: observe, plan, apply. Returns the actions applied; the first failing
/// action stops the step (the next step re-plans from what is then observed).
pub fn run_once<D: Driver>(
    rec: &mut Reconciler,
    app: &App,
    driver: &mut D,
    now: Millis,
) -> Result<Vec<Action>, DriverError> {
    let observed = driver.list(&app.name)?;
    let actions = rec.plan(app, &observed, now);
    for a in &actions {
        match a {
            Action::Create(spec) => driver.create(spec)?,
            Action::Restart { name } => driver.restart(name)?,
            Action::Remove { name } => driver.remove(name)?,
            Action::SetBackends { service, instances } => {
                driver.set_backends(&app.name, service, instances)?
            }
        }
    }
    Ok(actions)
}

impl Reconciler {
    /// `app down`: takes every replica of the app out of its balancer, then removes it. Only
    /// what `list` reports for this app is touched.
    pub fn down<D: Driver>(
        &mut self,
        app: &str,
        services: &[String],
        driver: &mut D,
    ) -> Result<Vec<String>, DriverError> {
        let observed = driver.list(app)?;
        let mut names: Vec<String> = services.to_vec();
        names.extend(observed.iter().map(|i| i.service.clone()));
        names.sort();
        names.dedup();
        for s in &names {
            driver.set_backends(app, s, &[])?;
        }
        let mut removed = Vec::new();
        for inst in observed {
            driver.remove(&inst.name)?;
            removed.push(inst.name);
        }
        self.backends.clear();
        self.draining.clear();
        self.restarts.clear();
        Ok(removed)
    }
}
