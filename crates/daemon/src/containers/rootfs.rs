//! Container root filesystems from the image store (`<root>/images`, an OCI layout): the
//! image's layers extracted once into shared read-only lower dirs (`corral-image`'s
//! `image-layers/`), one overlayfs upper per container (`upper/`, `work/`, mounted on `rootfs/`
//! in the container folder).
//!
//! What the image was resolved to is kept in the container folder as `image.json`, so a restart
//! uses the same layers even when the tag has moved since, and the image is marked in use
//! (`<root>/image-refs/<id>`) so `image rm` refuses it while the container exists.

use std::fs;
use std::path::{Path, PathBuf};

use corral_image::{rootfs as img_rootfs, ImageStore, StoreError};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};

/// What the image contributes to a container (its config's Entrypoint, Cmd, Env, WorkingDir,
/// User, ExposedPorts) and where its layers are.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ImageDefaults {
    /// The reference as asked for.
    pub reference: String,
    /// The image ID (config digest).
    pub id: String,
    /// The image's entrypoint.
    pub entrypoint: Vec<String>,
    /// The image's command (arguments to the entrypoint).
    pub cmd: Vec<String>,
    /// The image's environment, `K=V`.
    pub env: Vec<String>,
    /// The image's working directory.
    pub workdir: Option<String>,
    /// The image's user (`name|uid[:group|gid]`).
    pub user: Option<String>,
    /// Ports the image says it listens on (`80/tcp`).
    pub exposed_ports: Vec<String>,
    /// Lower dirs, topmost first.
    pub lowerdirs: Vec<PathBuf>,
}

impl ImageDefaults {
    /// The process arguments: the entrypoint followed by `command` (or the image's command).
    /// An `entrypoint` given replaces the image's and drops its command, as Docker does.
    pub fn args(&self, entrypoint: Option<&[String]>, command: &[String]) -> Vec<String> {
        if let Some(ep) = entrypoint {
            return ep.iter().chain(command).cloned().collect();
        }
        let mut args = self.entrypoint.clone();
        if command.is_empty() {
            args.extend(self.cmd.iter().cloned());
        } else {
            args.extend(command.iter().cloned());
        }
        args
    }
}

fn store_err(reference: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::NoSuchImage(_) => ApiError::NotFound(format!(
            "no such image: {reference} (see `corral image ls`; `corral image pull {reference}` \
             fetches it, `scripts/busybox-image.sh` makes an offline busybox image)"
        )),
        StoreError::Ambiguous(_) => ApiError::invalid("image", e.to_string()),
        other => ApiError::Internal(format!("image {reference}: {other}")),
    }
}

/// Find `reference` (name[:tag], image ID or its prefix) in the image store under `root` and
/// extract its layers (once per layer).
pub fn resolve_image(root: &Path, reference: &str) -> ApiResult<ImageDefaults> {
    let store = ImageStore::open(root).map_err(|e| store_err(reference, e))?;
    let image = store
        .resolve(reference)
        .map_err(|e| store_err(reference, e))?;
    let mut lowerdirs = Vec::new();
    for layer in image.manifest.layers().iter().rev() {
        let dir = img_rootfs::extracted_layer(&store, layer)
            .map_err(|e| ApiError::Internal(format!("image {reference}: {e}")))?;
        lowerdirs.push(dir);
    }
    if lowerdirs.is_empty() {
        let empty = img_rootfs::layers_dir(&store).join("empty");
        fs::create_dir_all(&empty)
            .map_err(|e| ApiError::internal(format!("creating {}", empty.display()), e))?;
        lowerdirs.push(empty);
    }
    let mut out = ImageDefaults {
        reference: reference.to_string(),
        id: image.id().to_string(),
        lowerdirs,
        ..Default::default()
    };
    if let Some(c) = image.config.config() {
        out.entrypoint = c.entrypoint().clone().unwrap_or_default();
        out.cmd = c.cmd().clone().unwrap_or_default();
        out.env = c.env().clone().unwrap_or_default();
        out.workdir = c.working_dir().clone().filter(|w| !w.is_empty());
        out.user = c.user().clone().filter(|u| !u.is_empty());
        out.exposed_ports = c.exposed_ports().clone().unwrap_or_default();
    }
    Ok(out)
}

/// Record `image` in the container folder `dir` and mark it in use by container `id`.
pub fn save(root: &Path, dir: &Path, id: &str, image: &ImageDefaults) -> ApiResult<()> {
    let json = serde_json::to_vec_pretty(image).expect("image defaults serialise");
    crate::shim::write_atomic(&dir.join("image.json"), &json)
        .map_err(|e| ApiError::internal("writing image.json", e))?;
    let digest = image
        .id
        .parse()
        .map_err(|e| ApiError::internal(format!("image id {}", image.id), e))?;
    corral_image::gc::mark_in_use(root, id, &digest)
        .map_err(|e| ApiError::internal("marking the image in use", e))
}

/// The image recorded in the container folder `dir`.
pub fn load(dir: &Path) -> ApiResult<ImageDefaults> {
    let path = dir.join("image.json");
    let bytes = fs::read(&path)
        .map_err(|e| ApiError::internal(format!("reading {}", path.display()), e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::internal(format!("parsing {}", path.display()), e))
}

/// Drop container `id`'s in-use mark on its image.
pub fn release(root: &Path, id: &str) {
    if let Err(e) = corral_image::gc::release(root, id) {
        tracing::warn!(%id, error = %e, "releasing the image");
    }
}

/// Make `upper/`, `work/`, `rootfs/` in `dir` and mount the overlay (idempotent).
pub fn mount_rootfs(dir: &Path, image: &ImageDefaults) -> ApiResult<()> {
    let target = dir.join("rootfs");
    if is_mounted(&target) {
        return Ok(());
    }
    for d in ["upper", "work", "rootfs"] {
        fs::create_dir_all(dir.join(d))
            .map_err(|e| ApiError::internal(format!("creating {}", dir.join(d).display()), e))?;
    }
    if let Some(missing) = image.lowerdirs.iter().find(|p| !p.is_dir()) {
        return Err(ApiError::Conflict(format!(
            "image {} lost its layer {} (was it pruned?)",
            image.reference,
            missing.display()
        )));
    }
    let lower: Vec<String> = image
        .lowerdirs
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        dir.join("upper").display(),
        dir.join("work").display()
    );
    mount(
        Some("overlay"),
        &target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| ApiError::internal(format!("mounting overlay on {}", target.display()), e))
}

/// Unmount `rootfs/` if mounted.
pub fn unmount_rootfs(dir: &Path) -> ApiResult<()> {
    let target = dir.join("rootfs");
    match umount2(&target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(ApiError::internal(
            format!("unmounting {}", target.display()),
            e,
        )),
    }
}

/// Whether `path` is a mount point (listed in /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    corral_net::netns::is_mounted(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entrypoint_and_command() {
        let img = ImageDefaults {
            entrypoint: vec!["/init".into()],
            cmd: vec!["serve".into()],
            ..Default::default()
        };
        assert_eq!(img.args(None, &[]), ["/init", "serve"]);
        assert_eq!(img.args(None, &["x".into()]), ["/init", "x"]);
        let sh = ["/bin/sh".to_string(), "-c".into()];
        assert_eq!(img.args(Some(&sh), &[]), ["/bin/sh", "-c"]);
        assert_eq!(img.args(Some(&sh), &["ls".into()]), ["/bin/sh", "-c", "ls"]);
        assert_eq!(img.args(Some(&[]), &["ls".into()]), ["ls"]);
    }
}
