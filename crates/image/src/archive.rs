//! `image save`, `image load` and `image export`.
//!
//! Formats: docker-archive (what `docker save` writes: `manifest.json`, `<config>.json`,
//! `<id>/layer.tar` uncompressed) and OCI archive (a tar of an OCI image layout). `load` reads
//! either, verifying every blob against its digest; on any error the blobs it added are removed
//! and no tag changes. `export` flattens an image's layers (whiteouts applied) into one tar.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, Write};
use std::path::Path;

use oci_spec::image::{Descriptor, Digest, ImageIndex, MediaType};

use crate::commit::LayerRef;
use crate::digest::{parse_sha256, sha256_hex};
use crate::extract::{extract, ExtractError, ExtractPolicy, WhiteoutMode};
use crate::layer::{decompress, Compression};
use crate::store::{parse_manifest, ref_name, Image, ImageStore, StoreError, REF_NAME};

/// Archive formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// `docker save` format.
    Docker,
    /// An OCI image layout in a tar.
    Oci,
}

impl std::str::FromStr for ArchiveFormat {
    type Err = ArchiveError;
    fn from_str(s: &str) -> Result<Self, ArchiveError> {
        match s {
            "docker" | "docker-archive" => Ok(ArchiveFormat::Docker),
            "oci" | "oci-archive" => Ok(ArchiveFormat::Oci),
            other => Err(ArchiveError::Invalid(format!(
                "unknown archive format {other:?} (docker or oci)"
            ))),
        }
    }
}

/// Failures of save, load and export.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading or writing the archive failed.
    #[error("archive I/O: {0}")]
    Io(#[from] io::Error),
    /// The archive's content is not what its format requires.
    #[error("invalid archive: {0}")]
    Invalid(String),
    /// Flattening layers failed.
    #[error("layer {layer}: {source}")]
    Extract {
        /// The layer digest.
        layer: String,
        /// Why.
        source: ExtractError,
    },
}

/// Writes `images` (tags or IDs) to `out` in `format`.
pub fn save(
    store: &ImageStore,
    images: &[Image],
    format: ArchiveFormat,
    out: impl Write,
) -> Result<(), ArchiveError> {
    let mut tar = tar::Builder::new(out);
    match format {
        ArchiveFormat::Oci => save_oci(store, images, &mut tar)?,
        ArchiveFormat::Docker => save_docker(store, images, &mut tar)?,
    }
    tar.into_inner()?.flush()?;
    Ok(())
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, path: &str, bytes: &[u8]) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(bytes.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, path, bytes)
}

fn append_file<W: Write>(tar: &mut tar::Builder<W>, path: &str, f: &mut File) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(f.metadata()?.len());
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, path, f)
}

fn save_oci<W: Write>(
    store: &ImageStore,
    images: &[Image],
    tar: &mut tar::Builder<W>,
) -> Result<(), ArchiveError> {
    append_bytes(tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let mut index: ImageIndex = crate::store::empty_index();
    let mut entries = Vec::new();
    let mut done = std::collections::HashSet::new();
    for img in images {
        let mut d = img.manifest_desc.clone();
        if let Some(n) = &img.name {
            d.set_annotations(Some(crate::store::annotations(&[(REF_NAME, n)])));
        }
        entries.push(d);
        let mut blobs = vec![img.manifest_desc.digest().clone(), img.id().clone()];
        blobs.extend(img.manifest.layers().iter().map(|l| l.digest().clone()));
        for b in blobs {
            if done.insert(b.clone()) {
                let hex = sha256_hex(&b)
                    .expect("store digests are sha256")
                    .to_string();
                append_file(
                    tar,
                    &format!("blobs/sha256/{hex}"),
                    &mut store.open_blob(&b)?,
                )?;
            }
        }
    }
    index.set_manifests(entries);
    append_bytes(
        tar,
        "index.json",
        &serde_json::to_vec(&index).expect("index serializes"),
    )?;
    Ok(())
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn save_docker<W: Write>(
    store: &ImageStore,
    images: &[Image],
    tar: &mut tar::Builder<W>,
) -> Result<(), ArchiveError> {
    let mut manifest = Vec::new();
    let mut done = std::collections::HashSet::new();
    for img in images {
        let id_hex = sha256_hex(img.id()).expect("sha256").to_string();
        let config_name = format!("{id_hex}.json");
        if done.insert(config_name.clone()) {
            append_bytes(tar, &config_name, &store.read_blob(img.id())?)?;
        }
        let mut layers = Vec::new();
        for (l, diff) in img
            .manifest
            .layers()
            .iter()
            .zip(img.config.rootfs().diff_ids())
        {
            let diff_hex = diff.strip_prefix("sha256:").unwrap_or(diff).to_string();
            let name = format!("{diff_hex}/layer.tar");
            if done.insert(name.clone()) {
                let mut tmp = tempfile::tempfile()?;
                let c = Compression::from_media_type(l.media_type())?;
                io::copy(
                    &mut decompress(BufReader::new(store.open_blob(l.digest())?), c)?,
                    &mut tmp,
                )?;
                tmp.rewind()?;
                append_file(tar, &name, &mut tmp)?;
            }
            layers.push(name);
        }
        manifest.push(DockerManifestEntry {
            config: config_name,
            repo_tags: img.name.clone().map(|n| vec![n]),
            layers,
        });
    }
    append_bytes(
        tar,
        "manifest.json",
        &serde_json::to_vec(&manifest).expect("serializes"),
    )?;
    Ok(())
}

/// Reads a docker-archive or OCI archive and tags what it holds. Returns the tags loaded.
pub fn load(store: &ImageStore, input: impl Read) -> Result<Vec<String>, ArchiveError> {
    let before: std::collections::HashSet<Digest> = store.blobs()?.into_iter().collect();
    let r = load_inner(store, input);
    if r.is_err() {
        for b in store.blobs().unwrap_or_default() {
            if !before.contains(&b) {
                let _ = store.remove_blob(&b);
            }
        }
    }
    r
}

fn load_inner(store: &ImageStore, input: impl Read) -> Result<Vec<String>, ArchiveError> {
    let plain = crate::layer::decompress_sniffed(input)?;
    let mut ar = tar::Archive::new(plain);
    let mut small: HashMap<String, Vec<u8>> = HashMap::new();
    let mut files: HashMap<String, (Digest, u64)> = HashMap::new();
    for e in ar.entries()? {
        let mut e = e?;
        if e.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = String::from_utf8_lossy(&e.path_bytes())
            .trim_start_matches("./")
            .to_string();
        if let Some(hex) = path.strip_prefix("blobs/sha256/") {
            let d = parse_sha256(&format!("sha256:{hex}"))
                .ok_or_else(|| ArchiveError::Invalid(format!("bad blob name {path}")))?;
            let size = e.size();
            store.put_blob(&mut e, Some(&d), Some(size))?;
            files.insert(path, (d, size));
        } else if path.ends_with(".json") || path == "oci-layout" || path == "repositories" {
            if e.size() > 16 << 20 {
                return Err(ArchiveError::Invalid(format!(
                    "{path} is larger than 16 MiB"
                )));
            }
            let mut v = Vec::new();
            e.read_to_end(&mut v)?;
            small.insert(path, v);
        } else if path.ends_with(".tar") {
            let (d, size) = store.put_blob(&mut e, None, None)?;
            files.insert(path, (d, size));
        }
    }
    if let Some(m) = small.get("manifest.json") {
        load_docker(store, m, &small, &files)
    } else if let Some(i) = small.get("index.json") {
        load_oci(store, i)
    } else {
        Err(ArchiveError::Invalid(
            "neither manifest.json (docker) nor index.json (OCI) found".into(),
        ))
    }
}

fn load_docker(
    store: &ImageStore,
    manifest: &[u8],
    small: &HashMap<String, Vec<u8>>,
    files: &HashMap<String, (Digest, u64)>,
) -> Result<Vec<String>, ArchiveError> {
    let entries: Vec<DockerManifestEntry> = serde_json::from_slice(manifest)
        .map_err(|e| ArchiveError::Invalid(format!("manifest.json: {e}")))?;
    let mut tags = Vec::new();
    for m in entries {
        let config = match small.get(&m.config) {
            Some(c) => c.clone(),
            None => {
                let (d, _) = files
                    .get(&m.config)
                    .ok_or_else(|| ArchiveError::Invalid(format!("missing {}", m.config)))?;
                store.read_blob(d)?
            }
        };
        let cfg: oci_spec::image::ImageConfiguration = serde_json::from_slice(&config)
            .map_err(|e| ArchiveError::Invalid(format!("{}: {e}", m.config)))?;
        let mut layers = Vec::new();
        for (i, l) in m.layers.iter().enumerate() {
            let (d, size) = files
                .get(l)
                .ok_or_else(|| ArchiveError::Invalid(format!("missing layer {l}")))?;
            let diff = cfg
                .rootfs()
                .diff_ids()
                .get(i)
                .cloned()
                .unwrap_or_else(|| d.to_string());
            let media = sniff_blob(store, d)?;
            if media == Compression::None && diff != d.to_string() {
                return Err(ArchiveError::Invalid(format!(
                    "layer {l} does not match diff_id {diff}"
                )));
            }
            layers.push(LayerRef {
                descriptor: Descriptor::new(media.media_type(), *size, d.clone()),
                diff_id: diff,
            });
        }
        let names = m.repo_tags.unwrap_or_default();
        let img =
            crate::commit::commit_raw(store, &config, &layers, names.first().map(String::as_str))?;
        for n in names.iter().skip(1) {
            store.set_tag(n, &img.manifest_desc)?;
        }
        tags.extend(names);
    }
    Ok(tags)
}

fn sniff_blob(store: &ImageStore, d: &Digest) -> Result<Compression, ArchiveError> {
    let mut head = [0u8; 4];
    let mut f = store.open_blob(d)?;
    let n = f.read(&mut head)?;
    Ok(Compression::sniff(&head[..n]))
}

fn load_oci(store: &ImageStore, index: &[u8]) -> Result<Vec<String>, ArchiveError> {
    let index: ImageIndex = serde_json::from_slice(index)
        .map_err(|e| ArchiveError::Invalid(format!("index.json: {e}")))?;
    let mut tags = Vec::new();
    for d in index.manifests() {
        let desc = crate::store::select_manifest(store, d)?;
        let bytes = store.read_blob(desc.digest())?;
        let m = parse_manifest(&bytes, desc.digest().as_ref())?;
        for b in std::iter::once(m.config()).chain(m.layers()) {
            if !store.has_blob(b.digest()) {
                return Err(ArchiveError::Invalid(format!(
                    "blob {} is missing",
                    b.digest()
                )));
            }
        }
        if let Some(n) = ref_name(d) {
            let name = if n.contains(':') || n.contains('/') {
                n.to_string()
            } else {
                format!("{n}:latest")
            };
            store.set_tag(&name, &desc)?;
            tags.push(name);
        }
    }
    Ok(tags)
}

/// Applies the image's layers, in order and with whiteouts, into `dir` (an empty directory).
pub fn flatten_into(
    store: &ImageStore,
    image: &Image,
    dir: &Path,
    policy: &ExtractPolicy,
) -> Result<(), ArchiveError> {
    let policy = ExtractPolicy {
        whiteouts: WhiteoutMode::Apply,
        ..policy.clone()
    };
    for l in image.manifest.layers() {
        let c = Compression::from_media_type(l.media_type())?;
        let r = decompress(BufReader::new(store.open_blob(l.digest())?), c)?;
        extract(r, dir, &policy).map_err(|source| ArchiveError::Extract {
            layer: l.digest().to_string(),
            source,
        })?;
    }
    Ok(())
}

/// Writes the directory tree `dir` as a tar (owners, modes, symlinks and devices kept).
pub fn tar_dir(dir: &Path, out: impl Write) -> Result<(), ArchiveError> {
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    tar.mode(tar::HeaderMode::Complete);
    let mut names: BTreeMap<String, std::path::PathBuf> = BTreeMap::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        names.insert(e.file_name().to_string_lossy().into_owned(), e.path());
    }
    for (name, path) in names {
        if std::fs::symlink_metadata(&path)?.is_dir() {
            tar.append_dir_all(&name, &path)?;
        } else {
            tar.append_path_with_name(&path, &name)?;
        }
    }
    tar.into_inner()?.flush()?;
    Ok(())
}

/// `image export`: the flattened root filesystem of `image` as a tar.
pub fn export(store: &ImageStore, image: &Image, out: impl Write) -> Result<(), ArchiveError> {
    let tmp = tempfile::Builder::new()
        .prefix(".export-")
        .tempdir_in(store.layout_dir().join("ingest"))?;
    let policy = ExtractPolicy {
        devices: crate::extract::DevicePolicy::Create,
        ..ExtractPolicy::default()
    };
    flatten_into(store, image, tmp.path(), &policy)?;
    tar_dir(tmp.path(), out)
}

/// The OCI media type string of a descriptor (used by callers printing manifests).
pub fn media_type_str(m: &MediaType) -> String {
    m.to_string()
}
