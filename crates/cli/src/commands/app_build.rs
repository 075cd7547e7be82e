//! Images of Compose services with `build:`: built on the client before `app up`, as
//! `docker compose up` does, tagged with the service's `image:` or `<project>-<service>`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use corral_orchestrator::compose;

use super::image::BuildArgs;
use crate::cli::GlobalArgs;

/// Builds every service image that has `build:` and is missing (all of them with `always`).
pub fn build_services(
    files: &[PathBuf],
    project: Option<&str>,
    always: bool,
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    let cwd = std::env::current_dir().context("finding the current folder")?;
    let parsed = compose::load(files, &cwd, project)?;
    let project_dir = files
        .first()
        .and_then(|f| f.parent())
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(&cwd)
        .to_path_buf();
    let store = super::image::local::store(global)?;
    for svc in parsed.app.services.values() {
        let (Some(build), Some(tag)) = (&svc.build, svc.run_image(&parsed.app.name)) else {
            continue;
        };
        if !always && store.resolve(&tag).is_ok() {
            continue;
        }
        eprintln!("Building {} for service {}", tag, svc.name);
        let context = resolve(&project_dir, &build.context);
        BuildArgs {
            tags: vec![tag.clone()],
            file: build.dockerfile.as_deref().map(|f| resolve(&context, f)),
            build_args: build.args.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            target: None,
            no_cache: false,
            network: "none".into(),
            context,
        }
        .run(global)
        .with_context(|| format!("service {}: building {tag}", svc.name))?;
    }
    Ok(())
}

fn resolve(base: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}
