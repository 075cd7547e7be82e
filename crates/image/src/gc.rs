//! Removing images and collecting garbage: `image rm` (with the "in use" check) and
//! `image prune`.
//!
//! In-use references: whoever runs a container from an image (the daemon) writes a file
//! `<root>/image-refs/<holder>` whose content is the image ID (config digest). `image rm`
//! refuses an image whose ID appears in any such file unless forced.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::image::Digest;

use crate::store::{io_err, ref_name, ImageStore, StoreError};

/// The directory of in-use reference files.
pub fn refs_dir(corral_root: &Path) -> PathBuf {
    corral_root.join("image-refs")
}

/// Records that `holder` (e.g. a container ID) uses image `id`.
pub fn mark_in_use(corral_root: &Path, holder: &str, id: &Digest) -> Result<(), StoreError> {
    let dir = refs_dir(corral_root);
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    crate::store::atomic_write(&dir.join(holder), id.to_string().as_bytes())
}

/// Drops `holder`'s in-use record.
pub fn release(corral_root: &Path, holder: &str) -> Result<(), StoreError> {
    let p = refs_dir(corral_root).join(holder);
    match fs::remove_file(&p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(StoreError::Io { path: p, source: e })
        }
        _ => Ok(()),
    }
}

/// The holder using image `id`, if any.
pub fn user_of(corral_root: &Path, id: &Digest) -> Option<String> {
    let dir = refs_dir(corral_root);
    let want = id.to_string();
    fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        let c = fs::read_to_string(e.path()).ok()?;
        (c.trim() == want).then(|| e.file_name().to_string_lossy().into_owned())
    })
}

/// What `remove_image` did.
#[derive(Debug, Default)]
pub struct Removed {
    /// Tags removed.
    pub untagged: Vec<String>,
    /// Image ID when its last tag went.
    pub deleted: Option<String>,
}

/// Removes a tag (or, given an ID, every tag of that image). Blobs go at the next prune.
pub fn remove_image(
    store: &ImageStore,
    reference: &str,
    force: bool,
) -> Result<Removed, StoreError> {
    let img = store.resolve(reference)?;
    let id = img.id().clone();
    let by_name = img.name.as_deref().filter(|n| {
        crate::reference::ImageRef::parse(reference)
            .is_ok_and(|r| format!("{}:{}", r.name(), r.reference()) == *n)
    });
    let same_id: Vec<(String, Digest)> = store
        .index()?
        .manifests()
        .iter()
        .filter_map(|d| {
            let n = ref_name(d)?.to_string();
            let l = store.load(Some(n.clone()), d).ok()?;
            (l.id() == &id).then(|| (n, d.digest().clone()))
        })
        .collect();
    let targets: Vec<String> = match by_name {
        Some(n) => vec![n.to_string()],
        None => same_id.iter().map(|(n, _)| n.clone()).collect(),
    };
    let last = targets.len() >= same_id.len();
    if last && !force {
        if let Some(holder) = user_of(store.corral_root(), &id) {
            return Err(StoreError::InUse {
                image: reference.to_string(),
                holder,
            });
        }
    }
    let mut out = Removed::default();
    for t in targets {
        if store.remove_tag(&t)? {
            out.untagged.push(t);
        }
    }
    if last {
        out.deleted = Some(id.to_string());
    }
    Ok(out)
}

/// What `prune` freed.
#[derive(Debug, Default)]
pub struct PruneReport {
    /// Blobs deleted.
    pub blobs: Vec<String>,
    /// Bytes freed.
    pub bytes: u64,
}

/// Deletes every blob not reachable from `index.json` or from `extra_roots` (e.g. the build
/// cache), and the extracted layer directories of deleted layers.
pub fn prune(store: &ImageStore, extra_roots: &[Digest]) -> Result<PruneReport, StoreError> {
    let mut keep: HashSet<Digest> = extra_roots.iter().cloned().collect();
    for d in store.index()?.manifests() {
        keep.insert(d.digest().clone());
        if let Ok(bytes) = store.read_blob(d.digest()) {
            if let Ok(m) = crate::store::parse_manifest(&bytes, d.digest().as_ref()) {
                keep.insert(m.config().digest().clone());
                keep.extend(m.layers().iter().map(|l| l.digest().clone()));
            }
        }
    }
    let mut report = PruneReport::default();
    for b in store.blobs()? {
        if keep.contains(&b) {
            continue;
        }
        let p = store.blob_path(&b)?;
        report.bytes += fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        store.remove_blob(&b)?;
        crate::rootfs::remove_extracted(store, &b)?;
        report.blobs.push(b.to_string());
    }
    Ok(report)
}
