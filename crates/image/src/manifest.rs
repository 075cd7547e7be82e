//! Manifests and indexes: parsing OCI and Docker schema-2 manifests (media types checked),
//! picking linux/amd64 from an index or manifest list, and the `name:tag` annotations of
//! `index.json` entries.

use std::collections::HashMap;

use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, ImageManifest, MediaType};

use crate::store::{ImageStore, StoreError, REF_NAME};

/// Docker's schema-2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker's manifest list media type.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker's gzip layer media type.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker's image config media type.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// The `name:tag` annotation of an index entry.
pub fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(REF_NAME))
        .map(String::as_str)
}

/// Splits `name:tag` at the tag colon (not a registry port colon).
pub fn split_name_tag(name: &str) -> (String, String) {
    let slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    match name[slash..].rfind(':') {
        Some(i) => (
            name[..slash + i].to_string(),
            name[slash + i + 1..].to_string(),
        ),
        None => (name.to_string(), crate::reference::DEFAULT_TAG.to_string()),
    }
}

/// Parses an OCI or Docker schema-2 image manifest, checking its media types.
pub fn parse_manifest(bytes: &[u8], what: &str) -> Result<ImageManifest, StoreError> {
    let m: ImageManifest = serde_json::from_slice(bytes).map_err(|source| StoreError::Json {
        what: format!("manifest {what}"),
        source,
    })?;
    if let Some(mt) = m.media_type() {
        match mt {
            MediaType::ImageManifest => {}
            MediaType::Other(s) if s == DOCKER_MANIFEST => {}
            other => return Err(StoreError::UnsupportedMediaType(other.to_string())),
        }
    }
    for l in m.layers() {
        crate::layer::Compression::from_media_type(l.media_type())?;
    }
    Ok(m)
}

/// Whether a media type names an image index or manifest list.
pub fn is_index(mt: &MediaType) -> bool {
    match mt {
        MediaType::ImageIndex => true,
        MediaType::Other(s) => s == DOCKER_MANIFEST_LIST,
        _ => false,
    }
}

/// Picks the linux/amd64 manifest from an index in `bytes`.
pub fn pick_platform(bytes: &[u8], what: &str) -> Result<Descriptor, StoreError> {
    let index: ImageIndex = serde_json::from_slice(bytes).map_err(|source| StoreError::Json {
        what: format!("image index {what}"),
        source,
    })?;
    index
        .manifests()
        .iter()
        .find(|d| {
            d.platform().as_ref().is_none_or(|p| {
                *p.architecture() == oci_spec::image::Arch::Amd64
                    && *p.os() == oci_spec::image::Os::Linux
            }) && !is_index(d.media_type())
        })
        .cloned()
        .ok_or_else(|| StoreError::NoSuchImage(format!("{what} has no linux/amd64 manifest")))
}

/// Follows an index descriptor already in the store down to its linux/amd64 manifest.
pub fn select_manifest(store: &ImageStore, d: &Descriptor) -> Result<Descriptor, StoreError> {
    let mut d = d.clone();
    for _ in 0..4 {
        if !is_index(d.media_type()) {
            return Ok(d);
        }
        let bytes = store.read_blob(d.digest())?;
        d = pick_platform(&bytes, d.digest().as_ref())?;
    }
    Err(StoreError::UnsupportedMediaType(
        "image index nested too deeply".into(),
    ))
}

/// An empty OCI index.
pub fn empty_index() -> ImageIndex {
    ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(Vec::<Descriptor>::new())
        .build()
        .expect("an empty index is valid")
}

/// Annotations map helper used by writers of index entries.
pub fn annotations(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
