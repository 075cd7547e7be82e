//! The build cache: `<root>/image-cache/build/<key>.json`, one file per build step, holding the
//! image state after that step (layers and config). The key is the sha256 of the parent
//! state's key, the instruction after argument expansion, and the digest of its inputs (files
//! copied, build args in scope), so an unchanged step is found without doing any work.

use std::fs;
use std::path::PathBuf;

use oci_spec::image::{Digest, ImageConfiguration};

use crate::commit::LayerRef;
use crate::store::{io_err, ImageStore, StoreError};

/// The state of an image under construction (what a cache entry holds).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CacheEntry {
    /// Layers so far.
    pub layers: Vec<LayerRef>,
    /// Config so far.
    pub config: ImageConfiguration,
}

/// The on-disk build cache.
#[derive(Debug, Clone)]
pub struct BuildCache {
    dir: PathBuf,
}

impl BuildCache {
    /// Opens the cache beside the store.
    pub fn open(store: &ImageStore) -> Result<BuildCache, StoreError> {
        let dir = store.corral_root().join("image-cache/build");
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(BuildCache { dir })
    }

    /// The entry for `key`, if present and its layer blobs still exist.
    pub fn get(&self, store: &ImageStore, key: &str) -> Option<CacheEntry> {
        let bytes = fs::read(self.dir.join(format!("{key}.json"))).ok()?;
        let e: CacheEntry = serde_json::from_slice(&bytes).ok()?;
        e.layers
            .iter()
            .all(|l| store.has_blob(l.descriptor.digest()))
            .then_some(e)
    }

    /// Records the state after a step.
    pub fn put(&self, key: &str, entry: &CacheEntry) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(entry).expect("cache entry serializes");
        crate::store::atomic_write(&self.dir.join(format!("{key}.json")), &bytes)
    }

    /// Every layer digest the cache references (kept by `prune`).
    pub fn roots(&self) -> Result<Vec<Digest>, StoreError> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir)
            .map_err(io_err(&self.dir))?
            .flatten()
        {
            if let Ok(bytes) = fs::read(e.path()) {
                if let Ok(entry) = serde_json::from_slice::<CacheEntry>(&bytes) {
                    out.extend(
                        entry
                            .layers
                            .into_iter()
                            .map(|l| l.descriptor.digest().clone()),
                    );
                }
            }
        }
        Ok(out)
    }

    /// Forgets every entry.
    pub fn clear(&self) -> Result<(), StoreError> {
        fs::remove_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))
    }
}

/// The blobs `prune` must keep for the build cache; with `drop`, the cache is cleared first.
pub fn build_cache_roots(store: &ImageStore, drop: bool) -> Result<Vec<Digest>, StoreError> {
    let cache = BuildCache::open(store)?;
    if drop {
        cache.clear()?;
    }
    cache.roots()
}
