//! Replicas as containers: the container request made from a service spec (labelled with the
//! app, service, ordinal and revision), finding an app's containers by those labels, and the
//! files and named volumes an app's replicas mount.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use corral_api::ContainerSpec;
use corral_orchestrator::reconcile::InstanceSpec;
use corral_store::{InstanceRecord, Kind};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The label naming a replica's app.
pub const LABEL_APP: &str = "corral.app";
/// The label naming a replica's service.
pub const LABEL_SERVICE: &str = "corral.service";
/// The label holding a replica's ordinal.
pub const LABEL_REPLICA: &str = "corral.replica";
/// The label holding the spec revision a replica runs.
pub const LABEL_REVISION: &str = "corral.revision";

/// A container the app made, with what its labels say.
#[derive(Debug, Clone)]
pub struct Replica {
    /// The container.
    pub rec: InstanceRecord,
    /// Its service.
    pub service: String,
    /// Its ordinal.
    pub ordinal: u32,
    /// Its revision.
    pub revision: String,
}

/// The containers labelled with `app`, by name.
pub fn list(state: &AppState, app: &str) -> ApiResult<Vec<Replica>> {
    let mut out = Vec::new();
    for rec in state.store().list_instances(Some(Kind::Container))? {
        let spec = crate::containers::spec_of(&rec);
        if spec.labels.get(LABEL_APP).map(String::as_str) != Some(app) {
            continue;
        }
        let label = |k: &str| spec.labels.get(k).cloned().unwrap_or_default();
        out.push(Replica {
            service: label(LABEL_SERVICE),
            ordinal: label(LABEL_REPLICA).parse().unwrap_or(0),
            revision: label(LABEL_REVISION),
            rec,
        });
    }
    out.sort_by(|a, b| a.rec.name.cmp(&b.rec.name));
    Ok(out)
}

/// Where an app keeps the files (ConfigMap and Secret contents) its replicas mount.
pub fn files_dir(root: &Path, app: &str) -> PathBuf {
    root.join("apps").join(app)
}

/// The host folder of an app's named volume.
pub fn volume_dir(root: &Path, app: &str, volume: &str) -> PathBuf {
    root.join("volumes").join(format!("{app}_{volume}"))
}

fn io_err(what: &Path) -> impl FnOnce(std::io::Error) -> ApiError + '_ {
    move |e| ApiError::internal(format!("writing {}", what.display()), e)
}

/// The container request for one replica.
pub fn container_spec(root: &Path, inst: &InstanceSpec) -> ApiResult<ContainerSpec> {
    let s = &inst.spec;
    let image = s
        .image
        .clone()
        .ok_or_else(|| ApiError::invalid(format!("services.{}.image", s.name), "no image"))?;
    let mut volumes = Vec::new();
    for v in &s.volumes {
        let ro = if v.read_only { ":ro" } else { "" };
        let source = match (&v.source, v.bind) {
            (Some(src), true) => PathBuf::from(src),
            (Some(name), false) => {
                let dir = volume_dir(root, &inst.app, name);
                std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
                dir
            }
            // An anonymous volume: a folder of this replica's own.
            (None, _) => {
                let dir = files_dir(root, &inst.app)
                    .join("anon")
                    .join(&inst.name)
                    .join(v.target.trim_start_matches('/').replace('/', "_"));
                std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
                dir
            }
        };
        volumes.push(format!("{}:{}{ro}", source.display(), v.target));
    }
    for (i, f) in s.files.iter().enumerate() {
        let dir = files_dir(root, &inst.app).join("files").join(&inst.name);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let path = dir.join(i.to_string());
        std::fs::write(&path, &f.content).map_err(io_err(&path))?;
        let mode = if f.secret { 0o400 } else { 0o444 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(io_err(&path))?;
        volumes.push(format!("{}:{}:ro", path.display(), f.path));
    }
    let mut labels: BTreeMap<String, String> = s
        .labels
        .iter()
        .filter(|(k, _)| !k.starts_with("corral."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(LABEL_APP.into(), inst.app.clone());
    labels.insert(LABEL_SERVICE.into(), inst.service.clone());
    labels.insert(LABEL_REPLICA.into(), inst.ordinal.to_string());
    labels.insert(LABEL_REVISION.into(), inst.revision.clone());
    Ok(ContainerSpec {
        name: Some(inst.name.clone()),
        image,
        entrypoint: s.entrypoint.clone(),
        command: s.command.clone().unwrap_or_default(),
        env: s.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        workdir: s.working_dir.clone(),
        user: s.user.clone(),
        volumes,
        memory_bytes: s.resources.memory_bytes,
        cpus: s.resources.cpus,
        pids_limit: s.resources.pids.map(|p| p as i64),
        // The reconciler applies the restart policy (with backoff), not the container.
        restart: Some("no".into()),
        // On its app's network, the replica answers to its service's name (Compose's DNS).
        aliases: vec![inst.service.clone()],
        labels,
        // Compose's `tty`/`stdin_open`, Kubernetes' `tty`/`stdin`: `corral attach` joins them.
        tty: s.tty,
        interactive: s.stdin_open,
        ..Default::default()
    })
}

/// Remove what a replica had on the host beside its container (its files).
pub fn forget_files(root: &Path, app: &str, replica: &str) {
    let base = files_dir(root, app);
    for d in [
        base.join("files").join(replica),
        base.join("anon").join(replica),
    ] {
        if let Err(e) = std::fs::remove_dir_all(&d) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %d.display(), error = %e, "removing replica files");
            }
        }
    }
}
