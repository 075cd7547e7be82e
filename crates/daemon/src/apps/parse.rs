//! Requests to desired state: Compose files and Kubernetes manifests through the
//! orchestrator's parsers, the checks the daemon adds (images it can run, microVM replicas
//! refused for now), and the merging of Kubernetes objects across applies.

use std::collections::BTreeMap;
use std::path::Path;

use corral_api::{ComposeUpRequest, ManifestText};
use corral_orchestrator::model::{App, Isolation};
use corral_orchestrator::{compose, interp, kube, ManifestError};

use crate::error::{ApiError, ApiResult};

/// A parsed request: the desired state and the parser's warnings, one line each.
#[derive(Debug)]
pub struct Desired {
    /// The app.
    pub app: App,
    /// Warnings as text.
    pub warnings: Vec<String>,
}

fn manifest_err(e: ManifestError) -> ApiError {
    match e {
        ManifestError::Invalid {
            file,
            path,
            line,
            message,
        } => {
            let at = line.map_or(file.clone(), |l| format!("{file}:{l}"));
            let field = if path.is_empty() {
                "files".into()
            } else {
                path
            };
            ApiError::invalid(field, format!("{message} ({at})"))
        }
        e => ApiError::invalid("files", e.to_string()),
    }
}

/// Parse a Compose up request.
pub fn compose(req: &ComposeUpRequest) -> ApiResult<Desired> {
    if req.files.is_empty() {
        return Err(ApiError::invalid(
            "files",
            "at least one Compose file is needed",
        ));
    }
    let mut vars = interp::Vars::new();
    if let Some(text) = &req.env_file {
        for (k, v) in interp::parse_env_file(text) {
            vars.set(k, v);
        }
    }
    for (k, v) in &req.env {
        vars.set(k.clone(), v.clone());
    }
    let files: Vec<compose::ComposeFile> = req
        .files
        .iter()
        .map(|f| compose::ComposeFile {
            name: f.name.clone(),
            text: f.text.clone(),
        })
        .collect();
    let dir_name = if req.dir_name.is_empty() {
        "default"
    } else {
        &req.dir_name
    };
    let parsed =
        compose::parse(&files, req.project.as_deref(), dir_name, &vars).map_err(manifest_err)?;
    let mut app = parsed.app;
    name_built_images(&mut app);
    resolve_binds(&mut app, &req.project_dir)?;
    Ok(Desired {
        app,
        warnings: parsed.warnings.iter().map(|w| w.to_string()).collect(),
    })
}

/// A service with `build:` and no `image:` runs `<project>-<service>`, the tag the CLI
/// builds it under before `app up` (Docker Compose's naming).
fn name_built_images(app: &mut App) {
    let project = app.name.clone();
    for svc in app.services.values_mut() {
        svc.image = svc.run_image(&project);
    }
}

/// Relative bind sources (`./data`) resolve against the project folder.
fn resolve_binds(app: &mut App, project_dir: &str) -> ApiResult<()> {
    for svc in app.services.values_mut() {
        for (i, v) in svc.volumes.iter_mut().enumerate() {
            let Some(src) = v.source.as_mut().filter(|_| v.bind) else {
                continue;
            };
            if !src.starts_with('/') {
                if !project_dir.starts_with('/') {
                    return Err(ApiError::invalid(
                        format!("services.{}.volumes[{i}]", svc.name),
                        format!("relative bind source {src:?} needs the project folder"),
                    ));
                }
                *src = Path::new(project_dir).join(&*src).display().to_string();
            }
        }
    }
    Ok(())
}

/// Refuse what the daemon cannot run yet, naming the service and the key.
pub fn check_runnable(app: &App, root: &Path) -> ApiResult<()> {
    for svc in app.services.values() {
        if svc.isolation == Isolation::Vm {
            let key = match app.source {
                corral_orchestrator::Source::Compose => "x-corral-isolation: vm",
                corral_orchestrator::Source::Kubernetes => "runtimeClassName: corral-vm",
            };
            return Err(ApiError::NotImplemented(format!(
                "service {}: microVM replicas ({key}) need images on the VM path, which does not \
                 run them yet; drop `{key}` to run it as containers — running replicas as microVMs",
                svc.name
            )));
        }
        let Some(image) = &svc.image else {
            return Err(ApiError::invalid(
                format!("services.{}.image", svc.name),
                format!("service {} has neither `image:` nor `build:`", svc.name),
            ));
        };
        crate::containers::rootfs::resolve_image(root, image).map_err(|e| {
            ApiError::invalid(
                format!("services.{}.image", svc.name),
                format!("service {}: {e}", svc.name),
            )
        })?;
    }
    Ok(())
}

/// One applied Kubernetes object: the file it came from and its YAML.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct StoredObject {
    /// The file it was applied from.
    pub file: String,
    /// The document.
    pub text: String,
}

/// Applied objects by `Kind/name`.
pub type Objects = BTreeMap<String, StoredObject>;

/// kubectl's name for an object kind (`deployment.apps`).
fn kubectl_kind(kind: &str) -> String {
    match kind {
        "Deployment" => "deployment.apps".into(),
        other => other.to_ascii_lowercase(),
    }
}

/// `Kind/name` → (kubectl's `kind/name`, the object) of each document in `files`.
fn split_objects(files: &[ManifestText]) -> ApiResult<Vec<(String, String, StoredObject)>> {
    let mut out = Vec::new();
    for f in files {
        for de in serde_yaml::Deserializer::from_str(&f.text) {
            let value: serde_yaml::Value = serde::Deserialize::deserialize(de)
                .map_err(|e| ApiError::invalid("files", format!("{}: {e}", f.name)))?;
            if value.is_null() {
                continue;
            }
            let kind = value.get("kind").and_then(|v| v.as_str()).unwrap_or("");
            let name = value
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(|v| v.as_str())
                .unwrap_or("");
            let text = serde_yaml::to_string(&value)
                .map_err(|e| ApiError::internal("re-encoding a manifest", e))?;
            out.push((
                format!("{kind}/{name}"),
                format!("{}/{name}", kubectl_kind(kind)),
                StoredObject {
                    file: f.name.clone(),
                    text,
                },
            ));
        }
    }
    Ok(out)
}

fn parse_objects(objects: &Objects) -> Result<kube::Parsed, ManifestError> {
    let files: Vec<kube::ManifestFile> = objects
        .values()
        .map(|o| kube::ManifestFile {
            name: o.file.clone(),
            text: o.text.clone(),
        })
        .collect();
    kube::parse(&files)
}

/// The result of a Kubernetes apply or delete.
#[derive(Debug)]
pub struct KubeOutcome {
    /// The namespace (the app's name).
    pub namespace: String,
    /// The objects now applied.
    pub objects: Objects,
    /// The desired state, or None when no object is left.
    pub desired: Option<Desired>,
    /// kubectl-style lines: `deployment.apps/chat created`.
    pub changes: Vec<String>,
}

/// Merge `files` into the namespace's applied objects (`current`, looked up by namespace).
pub fn kube_apply(
    files: &[ManifestText],
    current: impl FnOnce(&str) -> ApiResult<Objects>,
) -> ApiResult<KubeOutcome> {
    let incoming = kube::parse(&to_manifest_files(files)).map_err(manifest_err)?;
    let namespace = incoming.app.name.clone();
    let mut objects = current(&namespace)?;
    let mut changes = Vec::new();
    for (key, shown, obj) in split_objects(files)? {
        let what = match objects.get(&key) {
            None => "created",
            Some(old) if old.text == obj.text => "unchanged",
            Some(_) => "configured",
        };
        changes.push(format!("{shown} {what}"));
        objects.insert(key, obj);
    }
    let merged = parse_objects(&objects).map_err(manifest_err)?;
    Ok(KubeOutcome {
        namespace,
        desired: Some(Desired {
            app: merged.app,
            warnings: incoming.warnings.iter().map(|w| w.to_string()).collect(),
        }),
        objects,
        changes,
    })
}

/// Remove the objects `files` name from the namespace's applied objects.
pub fn kube_delete(
    files: &[ManifestText],
    current: impl FnOnce(&str) -> ApiResult<Objects>,
) -> ApiResult<KubeOutcome> {
    let incoming = kube::parse(&to_manifest_files(files)).map_err(manifest_err)?;
    let namespace = incoming.app.name.clone();
    let mut objects = current(&namespace)?;
    let mut changes = Vec::new();
    for (key, shown, _) in split_objects(files)? {
        let (kind, name) = shown.split_once('/').unwrap_or((&shown, ""));
        if objects.remove(&key).is_some() {
            changes.push(format!("{kind} \"{name}\" deleted"));
        } else {
            return Err(ApiError::NotFound(format!(
                "{kind} \"{name}\" not found in namespace {namespace}"
            )));
        }
    }
    let desired = if !objects.is_empty() {
        let merged = parse_objects(&objects).map_err(manifest_err)?;
        Some(Desired {
            app: merged.app,
            warnings: Vec::new(),
        })
    } else {
        None
    };
    Ok(KubeOutcome {
        namespace,
        objects,
        desired,
        changes,
    })
}

fn to_manifest_files(files: &[ManifestText]) -> Vec<kube::ManifestFile> {
    files
        .iter()
        .map(|f| kube::ManifestFile {
            name: f.name.clone(),
            text: f.text.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPLOY: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: chat, labels: {app: chat}}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: chat}}\n  template:\n    metadata: {labels: {app: chat}}\n    spec:\n      containers:\n      - {name: chat, image: busybox, ports: [{containerPort: 8080}]}\n";
    const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: chat}\nspec:\n  ports: [{port: 9890, targetPort: 8080}]\n  selector: {app: chat}\n";

    fn file(name: &str, text: &str) -> ManifestText {
        ManifestText {
            name: name.into(),
            text: text.into(),
        }
    }

    #[test]
    fn applies_merge_across_calls_and_deletes_remove_objects() {
        let first = kube_apply(&[file("d.yml", DEPLOY)], |_| Ok(Objects::new())).unwrap();
        assert_eq!(first.namespace, "default");
        assert_eq!(first.changes, ["deployment.apps/chat created"]);
        let app = &first.desired.as_ref().unwrap().app;
        assert_eq!(app.services["chat"].replicas, 2);
        assert!(app.exposures.is_empty());

        let objects = first.objects.clone();
        let second = kube_apply(&[file("s.yml", SERVICE)], |_| Ok(objects)).unwrap();
        assert_eq!(second.changes, ["service/chat created"]);
        let app = &second.desired.as_ref().unwrap().app;
        assert_eq!(app.services["chat"].replicas, 2, "the Deployment stays");
        assert_eq!(app.exposures["chat"].ports[0].published, Some(9890));

        let objects = second.objects.clone();
        let again = kube_apply(&[file("s.yml", SERVICE)], |_| Ok(objects)).unwrap();
        assert_eq!(again.changes, ["service/chat unchanged"]);

        let objects = again.objects.clone();
        let del = kube_delete(&[file("d.yml", DEPLOY)], |_| Ok(objects)).unwrap();
        assert_eq!(del.changes, ["deployment.apps \"chat\" deleted"]);
        let left = &del.desired.as_ref().unwrap().app;
        assert!(
            left.services.is_empty(),
            "the Service stays, selecting nothing"
        );
        assert_eq!(del.objects.len(), 1);
        let objects = del.objects.clone();
        let last = kube_delete(&[file("s.yml", SERVICE)], |_| Ok(objects)).unwrap();
        assert!(last.desired.is_none(), "nothing left: the app goes");
    }

    #[test]
    fn deleting_an_unknown_object_names_it() {
        let e = kube_delete(&[file("d.yml", DEPLOY)], |_| Ok(Objects::new())).unwrap_err();
        assert!(
            e.to_string().contains("deployment.apps \"chat\" not found"),
            "{e}"
        );
    }

    #[test]
    fn microvm_replicas_are_refused_with_the_key() {
        let req = ComposeUpRequest {
            files: vec![file(
                "compose.yaml",
                "services:\n  web:\n    image: busybox\n    x-corral-isolation: vm\n",
            )],
            dir_name: "proj".into(),
            ..Default::default()
        };
        let d = compose(&req).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let e = check_runnable(&d.app, dir.path()).unwrap_err();
        assert!(
            matches!(&e, ApiError::NotImplemented(m) if m.contains("web") && m.contains("x-corral-isolation: vm")),
            "{e}"
        );
    }

    #[test]
    fn relative_binds_resolve_against_the_project_folder() {
        let req = ComposeUpRequest {
            files: vec![file(
                "compose.yaml",
                "services:\n  web:\n    image: busybox\n    volumes: ['./data:/data']\n",
            )],
            dir_name: "proj".into(),
            project_dir: "/srv/proj".into(),
            ..Default::default()
        };
        let d = compose(&req).unwrap();
        assert_eq!(d.app.name, "proj");
        let v = &d.app.services["web"].volumes[0];
        assert!(v.bind);
        assert_eq!(v.source.as_deref(), Some("/srv/proj/./data"));
    }
}
