//! The OpenAPI 3 document, generated from the handlers' annotations and the API types.

use utoipa::OpenApi;

use super::{apps, containers, networks, system, tty, vms};

/// The API description served at `/v1/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(title = "corral", description = "The corral daemon's REST API"),
    paths(
        system::info,
        system::instances,
        system::inventory,
        system::events,
        system::metrics,
        system::openapi,
        containers::list,
        containers::create,
        containers::inspect,
        containers::remove,
        containers::start,
        containers::stop,
        containers::kill,
        containers::wait,
        containers::exec,
        containers::logs,
        containers::top,
        containers::stats,
        tty::attach,
        tty::resize,
        tty::create_exec,
        tty::start_exec,
        tty::attach_exec,
        tty::resize_exec,
        tty::inspect_exec,
        tty::vm_console,
        networks::list,
        networks::create,
        networks::inspect,
        networks::remove,
        networks::prune,
        networks::tap,
        vms::list,
        vms::create,
        vms::inspect,
        vms::remove,
        vms::edit,
        vms::start,
        vms::shutdown,
        vms::exec,
        vms::off,
        vms::pause,
        vms::resume,
        apps::list,
        apps::up,
        apps::inspect,
        apps::down,
        apps::scale,
        apps::restart,
        apps::logs,
        apps::kube_apply,
        apps::kube_delete,
    )
)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_lists_every_route_and_error_schema() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/v1/info",
            "/v1/events",
            "/metrics",
            "/v1/containers",
            "/v1/containers/{id}",
            "/v1/containers/{id}/logs",
            "/v1/vms/{name}/pause",
            "/v1/vms/{name}/exec",
            "/v1/inventory",
            "/v1/networks",
            "/v1/networks/{name}",
            "/v1/apps",
            "/v1/apps/{name}/scale",
            "/v1/apps/{name}/logs",
            "/v1/kube/apply",
            "/v1/containers/{id}/attach",
            "/v1/execs/{exec}/start",
            "/v1/execs/{exec}/attach",
        ] {
            assert!(
                paths.contains_key(p),
                "{p} missing from the OpenAPI document"
            );
        }
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for s in [
            "ErrorBody",
            "ContainerSpec",
            "Instance",
            "InventoryRow",
            "VmSpec",
            "Network",
            "NetworkAttachment",
            "AppStatus",
            "ComposeUpRequest",
            "KubeRequest",
            "TtySize",
            "ExecSession",
            "GuestAgent",
            "VmExecRequest",
            "VmExecResponse",
            "AppLogLine",
        ] {
            assert!(schemas.contains_key(s), "schema {s} missing");
        }
    }
}
