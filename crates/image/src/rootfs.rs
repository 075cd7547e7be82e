//! Root filesystems for containers: each layer extracted once (per blob digest) into a shared
//! read-only directory under `<root>/image-layers/`, whiteouts turned into overlayfs whiteouts;
//! a container's rootfs is an overlay of those lower dirs with its own upper and work dirs.
//!
//! Container dir layout made by `prepare_rootfs`: `upper/`, `work/`, `rootfs/` (mount point).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::image::{Descriptor, Digest};

use crate::digest::sha256_hex;
use crate::extract::{extract, ExtractError, ExtractPolicy, WhiteoutMode};
use crate::layer::{decompress, Compression};
use crate::store::{Image, ImageStore, StoreError};

/// Failures preparing or tearing down a container rootfs.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// The store failed (missing blob, bad media type …).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A layer could not be extracted.
    #[error("layer {layer}: {source}")]
    Extract {
        /// The layer digest.
        layer: String,
        /// Why.
        source: ExtractError,
    },
    /// A directory operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// mount(2) or umount(2) failed.
    #[error("{op} {target}: {errno}")]
    Mount {
        /// "mount overlay" or "umount".
        op: &'static str,
        /// The mount point.
        target: PathBuf,
        /// The error.
        errno: nix::errno::Errno,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RootfsError + '_ {
    move |source| RootfsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The shared directory of extracted layers.
pub fn layers_dir(store: &ImageStore) -> PathBuf {
    store.corral_root().join("image-layers")
}

/// Removes a layer's extracted directory (when its blob is garbage-collected).
pub fn remove_extracted(store: &ImageStore, blob: &Digest) -> Result<(), StoreError> {
    let Some(hex) = sha256_hex(blob) else {
        return Ok(());
    };
    let p = layers_dir(store).join(hex);
    match fs::remove_dir_all(&p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StoreError::Io { path: p, source: e }),
        _ => Ok(()),
    }
}

/// The extracted directory of one layer, extracting it first if needed (once per digest;
/// concurrent callers race on a rename and the loser discards its copy).
pub fn extracted_layer(store: &ImageStore, layer: &Descriptor) -> Result<PathBuf, RootfsError> {
    let hex = sha256_hex(layer.digest())
        .ok_or_else(|| StoreError::BadDigest(layer.digest().to_string()))?;
    let base = layers_dir(store);
    let dest = base.join(hex);
    if dest.is_dir() {
        return Ok(dest);
    }
    fs::create_dir_all(&base).map_err(io_err(&base))?;
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempdir_in(&base)
        .map_err(io_err(&base))?;
    let compression = Compression::from_media_type(layer.media_type())?;
    let blob = store.open_blob(layer.digest())?;
    let reader =
        decompress(io::BufReader::new(blob), compression).map_err(|e| RootfsError::Extract {
            layer: layer.digest().to_string(),
            source: ExtractError::Read(e),
        })?;
    let policy = ExtractPolicy {
        whiteouts: WhiteoutMode::Overlay,
        ..ExtractPolicy::default()
    };
    extract(reader, tmp.path(), &policy).map_err(|source| RootfsError::Extract {
        layer: layer.digest().to_string(),
        source,
    })?;
    let tmp_path = tmp.keep();
    fs::set_permissions(
        &tmp_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .map_err(io_err(&tmp_path))?;
    if let Err(e) = fs::rename(&tmp_path, &dest) {
        let _ = fs::remove_dir_all(&tmp_path);
        if !dest.is_dir() {
            return Err(RootfsError::Io {
                path: dest,
                source: e,
            });
        }
    }
    Ok(dest)
}

/// How to mount a container's root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    /// Lower dirs, topmost first (as overlayfs wants them).
    pub lowerdirs: Vec<PathBuf>,
    /// The container's writable layer.
    pub upperdir: PathBuf,
    /// overlayfs's work dir (same file system as upper).
    pub workdir: PathBuf,
    /// Where the merged tree is mounted.
    pub target: PathBuf,
}

impl MountSpec {
    /// The overlay mount data string.
    pub fn options(&self) -> String {
        let lower: Vec<String> = self
            .lowerdirs
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            self.upperdir.display(),
            self.workdir.display()
        )
    }

    /// Mounts the overlay on `target`.
    pub fn mount(&self) -> Result<(), RootfsError> {
        mount(
            Some("overlay"),
            &self.target,
            Some("overlay"),
            MsFlags::empty(),
            Some(self.options().as_str()),
        )
        .map_err(|errno| RootfsError::Mount {
            op: "mount overlay",
            target: self.target.clone(),
            errno,
        })
    }
}

/// Extracts the image's layers (once) and makes `upper/`, `work/` and `rootfs/` under
/// `container_dir`. The caller mounts with `MountSpec::mount` (or passes the spec on).
pub fn prepare_rootfs(
    store: &ImageStore,
    image: &Image,
    container_dir: &Path,
) -> Result<MountSpec, RootfsError> {
    let mut lowerdirs = Vec::new();
    for l in image.manifest.layers().iter().rev() {
        lowerdirs.push(extracted_layer(store, l)?);
    }
    if lowerdirs.is_empty() {
        let empty = layers_dir(store).join("empty");
        fs::create_dir_all(&empty).map_err(io_err(&empty))?;
        lowerdirs.push(empty);
    }
    let spec = MountSpec {
        lowerdirs,
        upperdir: container_dir.join("upper"),
        workdir: container_dir.join("work"),
        target: container_dir.join("rootfs"),
    };
    for d in [&spec.upperdir, &spec.workdir, &spec.target] {
        fs::create_dir_all(d).map_err(io_err(d))?;
    }
    Ok(spec)
}

/// Unmounts `container_dir/rootfs` if mounted and removes upper, work and the mount point.
pub fn cleanup_rootfs(container_dir: &Path) -> Result<(), RootfsError> {
    let target = container_dir.join("rootfs");
    match umount2(&target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(errno) => {
            return Err(RootfsError::Mount {
                op: "umount",
                target,
                errno,
            })
        }
    }
    for d in ["rootfs", "upper", "work"] {
        let p = container_dir.join(d);
        match fs::remove_dir_all(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(RootfsError::Io { path: p, source: e })
            }
            _ => {}
        }
    }
    Ok(())
}
