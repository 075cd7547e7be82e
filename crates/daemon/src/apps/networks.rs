//! An app's networks, made the way Compose makes them: every app has its own `<app>_default`
//! network, plus `<app>_<name>` for each network it declares, so services of different apps
//! neither reach nor resolve each other, and a replica answers to its service's name on its
//! app's network. Networks declared `external` are used by their own name and never created or
//! removed here.

use corral_orchestrator::model::{App, ServiceSpec};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The name of `net` (as the app's files call it) on the host.
fn host_name(app: &App, net: &str) -> String {
    match app.networks.get(net) {
        Some(spec) if spec.external => net.to_owned(),
        _ => format!("{}_{net}", app.name),
    }
}

/// The network a service joins, as the app's files call it.
fn declared(service: &ServiceSpec) -> &str {
    service.networks.first().map_or("default", String::as_str)
}

/// The network a service's replicas join.
pub fn network_of(app: &App, service: &ServiceSpec) -> String {
    host_name(app, declared(service))
}

/// Refuses what corral cannot wire: a service on several networks (a container joins one).
pub fn check(app: &App) -> ApiResult<()> {
    for svc in app.services.values() {
        if svc.networks.len() > 1 {
            return Err(ApiError::invalid(
                format!("services.{}.networks", svc.name),
                format!(
                    "service {} joins {} networks; a corral container joins one network, so \
                     keep one (services on the same network reach each other by name)",
                    svc.name,
                    svc.networks.len()
                ),
            ));
        }
    }
    Ok(())
}

/// The app's own networks (not external ones) its services use.
fn owned(app: &App) -> Vec<String> {
    let mut names: Vec<String> = app
        .services
        .values()
        .map(declared)
        .filter(|n| !app.networks.get(*n).is_some_and(|s| s.external))
        .map(|n| host_name(app, n))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Creates the app's networks that do not exist yet (external ones must exist); returns the
/// ones it created.
pub async fn ensure(state: &AppState, app: &App) -> ApiResult<Vec<String>> {
    for (net, spec) in &app.networks {
        if spec.external && !state.net.exists(net)? {
            return Err(ApiError::invalid(
                format!("networks.{net}"),
                format!("external network {net} does not exist (corral network create {net})"),
            ));
        }
    }
    let mut made = Vec::new();
    for name in owned(app) {
        if state.net.exists(&name)? {
            continue;
        }
        if let Err(e) = state.net.create_network(&name, None).await {
            remove_names(state, &app.name, &made).await;
            return Err(ApiError::invalid(
                "networks",
                format!("creating network {name}: {e}"),
            ));
        }
        tracing::info!(app = %app.name, network = %name, "app network created");
        made.push(name);
    }
    Ok(made)
}

/// Removes the app's own networks (after its replicas are gone).
pub async fn remove(state: &AppState, app: &App) {
    remove_names(state, &app.name, &owned(app)).await;
}

/// Removes the networks `names` of app `app`; one still in use is left with a warning.
pub async fn remove_names(state: &AppState, app: &str, names: &[String]) {
    for name in names {
        match state.net.remove_network(name).await {
            Ok(()) => tracing::info!(app, network = %name, "app network removed"),
            Err(ApiError::NotFound(_)) => {}
            Err(e) => tracing::warn!(app, network = %name, error = %e, "app network left"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_orchestrator::model::NetworkSpec;

    fn app() -> App {
        let mut app = App::new("shop", corral_orchestrator::Source::Compose);
        for (name, nets) in [("web", vec![]), ("db", vec!["back".to_string()])] {
            let s = ServiceSpec {
                name: name.into(),
                networks: nets,
                ..Default::default()
            };
            app.services.insert(name.into(), s);
        }
        app.networks.insert("back".into(), NetworkSpec::default());
        app.networks.insert(
            "shared".into(),
            NetworkSpec {
                external: true,
                ..Default::default()
            },
        );
        app
    }

    #[test]
    fn each_app_gets_its_own_networks_and_external_ones_keep_their_name() {
        let mut app = app();
        assert_eq!(network_of(&app, &app.services["web"]), "shop_default");
        assert_eq!(network_of(&app, &app.services["db"]), "shop_back");
        assert_eq!(owned(&app), ["shop_back", "shop_default"]);
        app.services.get_mut("web").unwrap().networks = vec!["shared".into()];
        assert_eq!(network_of(&app, &app.services["web"]), "shared");
        assert_eq!(owned(&app), ["shop_back"]);
        app.services.get_mut("web").unwrap().networks = vec!["back".into(), "shared".into()];
        let err = check(&app).unwrap_err().to_string();
        assert!(err.contains("services.web.networks"), "{err}");
    }
}
