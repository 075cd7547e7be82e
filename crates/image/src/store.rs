//! The content-addressed image store: an OCI image layout under `<root>/images`.
//!
//! Layout (OCI image-layout 1.0.0): `oci-layout`, `index.json` (one manifest descriptor per
//! tag, the tag in the `org.opencontainers.image.ref.name` annotation as `name:tag`) and
//! `blobs/sha256/<hex>`. Blobs are written to `ingest/` first, hashed on the way in, fsynced and
//! renamed into place only when their digest (and size, when known) matches, so a bad or
//! truncated blob never appears. `index.json` is rewritten the same way, under an exclusive
//! `flock` on `index.lock`, so concurrent writers never lose each other's tags.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use oci_spec::image::{Descriptor, Digest, ImageConfiguration, ImageIndex, ImageManifest};

use crate::digest::{sha256_hex, HashingReader};
pub use crate::manifest::{
    annotations, empty_index, is_index, parse_manifest, pick_platform, ref_name, select_manifest,
    split_name_tag, DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST,
};

/// The annotation holding a tag in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Failures of the image store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file or directory of the store could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Content did not hash to the digest it was announced with.
    #[error("blob digest mismatch: expected {expected}, got {actual} ({size} bytes)")]
    DigestMismatch {
        /// The announced digest.
        expected: String,
        /// The digest of what arrived.
        actual: String,
        /// How many bytes arrived.
        size: u64,
    },
    /// Content was shorter or longer than announced (e.g. a truncated download).
    #[error("blob {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The blob.
        digest: String,
        /// The announced size.
        expected: u64,
        /// The size that arrived.
        actual: u64,
    },
    /// A digest that is not `sha256:<64 hex>`.
    #[error("unsupported digest {0:?} (only sha256 is supported)")]
    BadDigest(String),
    /// A blob the store does not have.
    #[error("blob {0} is not in the store")]
    MissingBlob(String),
    /// No image has this name, tag or ID.
    #[error("no such image: {0}")]
    NoSuchImage(String),
    /// A short ID that matches more than one image.
    #[error("image ID prefix {0} is ambiguous")]
    Ambiguous(String),
    /// JSON that does not parse as what it should be.
    #[error("{what}: {source}")]
    Json {
        /// What was being parsed.
        what: String,
        /// The parser's complaint.
        source: serde_json::Error,
    },
    /// A media type the store does not handle.
    #[error("unsupported media type {0:?}")]
    UnsupportedMediaType(String),
    /// Removing an image that a container uses.
    #[error("image {image} is in use by {holder} (use --force to remove it anyway)")]
    InUse {
        /// The image.
        image: String,
        /// The container (or other holder) that uses it.
        holder: String,
    },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The on-disk OCI image layout plus corral's side directories.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
    layout: PathBuf,
}

/// One tagged image resolved from the store.
#[derive(Debug, Clone)]
pub struct Image {
    /// `name:tag` when the image was found by or has a tag.
    pub name: Option<String>,
    /// The manifest's descriptor (digest, size, media type).
    pub manifest_desc: Descriptor,
    /// The parsed manifest.
    pub manifest: ImageManifest,
    /// The parsed config.
    pub config: ImageConfiguration,
}

impl Image {
    /// The image ID: the config digest, as Docker shows it.
    pub fn id(&self) -> &Digest {
        self.manifest.config().digest()
    }

    /// Total size of the (compressed) layers plus config.
    pub fn size(&self) -> u64 {
        self.manifest.config().size() + self.manifest.layers().iter().map(|l| l.size()).sum::<u64>()
    }
}

/// A summary line of `image ls`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageSummary {
    /// Repository part of the tag.
    pub repository: String,
    /// Tag part.
    pub tag: String,
    /// Config digest.
    pub id: String,
    /// Manifest digest.
    pub digest: String,
    /// RFC 3339 creation time from the config, if any.
    pub created: Option<String>,
    /// Bytes of config and layers.
    pub size: u64,
}

impl ImageStore {
    /// Opens (creating if needed) the store under the corral root dir.
    pub fn open(corral_root: &Path) -> Result<ImageStore, StoreError> {
        let layout = corral_root.join("images");
        for d in [layout.join("blobs/sha256"), layout.join("ingest")] {
            fs::create_dir_all(&d).map_err(io_err(&d))?;
        }
        let marker = layout.join("oci-layout");
        if !marker.exists() {
            atomic_write(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = layout.join("index.json");
        if !index.exists() {
            let empty = empty_index();
            atomic_write(
                &index,
                &serde_json::to_vec(&empty).expect("index serializes"),
            )?;
        }
        Ok(ImageStore {
            root: corral_root.to_path_buf(),
            layout,
        })
    }

    /// The corral root dir this store lives under.
    pub fn corral_root(&self) -> &Path {
        &self.root
    }

    /// The OCI layout directory.
    pub fn layout_dir(&self) -> &Path {
        &self.layout
    }

    /// Where a blob lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> Result<PathBuf, StoreError> {
        let hex = sha256_hex(digest).ok_or_else(|| StoreError::BadDigest(digest.to_string()))?;
        Ok(self.layout.join("blobs/sha256").join(hex))
    }

    /// Whether the store holds this blob.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).map(|p| p.exists()).unwrap_or(false)
    }

    /// Opens a blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, StoreError> {
        let p = self.blob_path(digest)?;
        File::open(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::MissingBlob(digest.to_string()),
            _ => StoreError::Io { path: p, source: e },
        })
    }

    /// Reads a whole (small) blob.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let mut v = Vec::new();
        let p = self.blob_path(digest)?;
        self.open_blob(digest)?
            .read_to_end(&mut v)
            .map_err(io_err(&p))?;
        Ok(v)
    }

    /// A fresh temp file in the ingest dir (same filesystem as the blobs).
    pub fn temp_file(&self) -> Result<tempfile::NamedTempFile, StoreError> {
        let dir = self.layout.join("ingest");
        tempfile::NamedTempFile::new_in(&dir).map_err(io_err(&dir))
    }

    /// Stores bytes as a blob, verifying them against `expected` when given.
    pub fn put_blob_bytes(
        &self,
        bytes: &[u8],
        expected: Option<&Digest>,
    ) -> Result<Digest, StoreError> {
        let size = expected.map(|_| bytes.len() as u64);
        Ok(self.put_blob(bytes, expected, size)?.0)
    }

    /// Streams a blob in, hashing it; it lands only if digest and size match.
    pub fn put_blob(
        &self,
        reader: impl Read,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<(Digest, u64), StoreError> {
        if let Some(d) = expected {
            if sha256_hex(d).is_none() {
                return Err(StoreError::BadDigest(d.to_string()));
            }
        }
        let mut tmp = self.temp_file()?;
        let tmp_path = tmp.path().to_path_buf();
        let mut hr = HashingReader::new(reader);
        io::copy(&mut hr, tmp.as_file_mut()).map_err(io_err(&tmp_path))?;
        let (digest, size) = hr.finish();
        self.commit_temp(tmp, &digest, size, expected, expected_size)?;
        Ok((digest, size))
    }

    /// Moves a fully written temp file into place after checking its digest and size.
    pub fn commit_temp(
        &self,
        tmp: tempfile::NamedTempFile,
        actual: &Digest,
        size: u64,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<(), StoreError> {
        if let Some(e) = expected {
            if e != actual {
                return Err(StoreError::DigestMismatch {
                    expected: e.to_string(),
                    actual: actual.to_string(),
                    size,
                });
            }
        }
        if let Some(es) = expected_size {
            if es != size {
                return Err(StoreError::SizeMismatch {
                    digest: actual.to_string(),
                    expected: es,
                    actual: size,
                });
            }
        }
        let dest = self.blob_path(actual)?;
        if dest.exists() {
            return Ok(());
        }
        tmp.as_file().sync_all().map_err(io_err(tmp.path()))?;
        tmp.persist(&dest).map_err(|e| StoreError::Io {
            path: dest.clone(),
            source: e.error,
        })?;
        sync_dir(dest.parent().expect("blob has a parent"))
    }

    /// Hashes a file already in the ingest dir (e.g. a resumed download) and commits it.
    pub fn commit_file(
        &self,
        path: &Path,
        expected: &Digest,
        expected_size: Option<u64>,
    ) -> Result<u64, StoreError> {
        let f = File::open(path).map_err(io_err(path))?;
        let mut hr = HashingReader::new(f);
        io::copy(&mut hr, &mut io::sink()).map_err(io_err(path))?;
        let (actual, size) = hr.finish();
        let check = (|| {
            if &actual != expected {
                return Err(StoreError::DigestMismatch {
                    expected: expected.to_string(),
                    actual: actual.to_string(),
                    size,
                });
            }
            if let Some(es) = expected_size.filter(|es| *es != size) {
                return Err(StoreError::SizeMismatch {
                    digest: actual.to_string(),
                    expected: es,
                    actual: size,
                });
            }
            Ok(())
        })();
        if let Err(e) = check {
            let _ = fs::remove_file(path);
            return Err(e);
        }
        let f = File::open(path).map_err(io_err(path))?;
        f.sync_all().map_err(io_err(path))?;
        let dest = self.blob_path(expected)?;
        fs::rename(path, &dest).map_err(io_err(&dest))?;
        sync_dir(dest.parent().expect("blob has a parent"))?;
        Ok(size)
    }

    /// Removes a blob (no check for references; see `prune`).
    pub fn remove_blob(&self, digest: &Digest) -> Result<(), StoreError> {
        let p = self.blob_path(digest)?;
        match fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(StoreError::Io { path: p, source: e })
            }
            _ => Ok(()),
        }
    }

    /// All blob digests present.
    pub fn blobs(&self) -> Result<Vec<Digest>, StoreError> {
        let dir = self.layout.join("blobs/sha256");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let e = e.map_err(io_err(&dir))?;
            if let Some(d) = e
                .file_name()
                .to_str()
                .and_then(|n| crate::digest::parse_sha256(&format!("sha256:{n}")))
            {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Reads `index.json`.
    pub fn index(&self) -> Result<ImageIndex, StoreError> {
        let p = self.layout.join("index.json");
        let bytes = fs::read(&p).map_err(io_err(&p))?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            what: p.display().to_string(),
            source,
        })
    }

    /// Read-modify-write of `index.json` under the store lock.
    pub fn update_index<T>(
        &self,
        f: impl FnOnce(&mut Vec<Descriptor>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let lock_path = self.layout.join("index.lock");
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        let _lock =
            Flock::lock(lock_file, FlockArg::LockExclusive).map_err(|(_, e)| StoreError::Io {
                path: lock_path.clone(),
                source: e.into(),
            })?;
        let mut index = self.index()?;
        let mut manifests = index.manifests().clone();
        let out = f(&mut manifests)?;
        index.set_manifests(manifests);
        let p = self.layout.join("index.json");
        atomic_write(
            &p,
            &serde_json::to_vec_pretty(&index).expect("index serializes"),
        )?;
        Ok(out)
    }

    /// Points `name` (`name:tag`) at a manifest, replacing what it named before.
    pub fn set_tag(&self, name: &str, manifest: &Descriptor) -> Result<(), StoreError> {
        let mut desc = manifest.clone();
        let mut ann = desc.annotations().clone().unwrap_or_default();
        ann.insert(REF_NAME.to_string(), name.to_string());
        desc.set_annotations(Some(ann));
        desc.set_platform(None);
        self.update_index(|m| {
            m.retain(|d| ref_name(d) != Some(name));
            m.push(desc);
            Ok(())
        })
    }

    /// Removes one tag; returns whether it existed.
    pub fn remove_tag(&self, name: &str) -> Result<bool, StoreError> {
        self.update_index(|m| {
            let before = m.len();
            m.retain(|d| ref_name(d) != Some(name));
            Ok(m.len() != before)
        })
    }

    /// Loads an image by its manifest descriptor.
    pub fn load(&self, name: Option<String>, desc: &Descriptor) -> Result<Image, StoreError> {
        let bytes = self.read_blob(desc.digest())?;
        let manifest = parse_manifest(&bytes, desc.digest().as_ref())?;
        let cbytes = self.read_blob(manifest.config().digest())?;
        let config: ImageConfiguration =
            serde_json::from_slice(&cbytes).map_err(|source| StoreError::Json {
                what: format!("image config {}", manifest.config().digest()),
                source,
            })?;
        Ok(Image {
            name,
            manifest_desc: desc.clone(),
            manifest,
            config,
        })
    }

    /// Finds an image by `name[:tag]`, full or short image ID, or manifest digest.
    pub fn resolve(&self, reference: &str) -> Result<Image, StoreError> {
        let index = self.index()?;
        let entries = index.manifests();
        if let Ok(r) = crate::reference::ImageRef::parse(reference) {
            if r.digest.is_none() {
                let want = format!("{}:{}", r.name(), r.reference());
                if let Some(d) = entries.iter().find(|d| ref_name(d) == Some(want.as_str())) {
                    return self.load(Some(want), d);
                }
            }
        }
        let needle = reference.strip_prefix("sha256:").unwrap_or(reference);
        if needle.len() >= 4 && needle.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut found: Vec<Image> = Vec::new();
            for d in entries {
                let img = self.load(ref_name(d).map(str::to_string), d)?;
                let id_hex = sha256_hex(img.id()).unwrap_or_default();
                let man_hex = sha256_hex(d.digest()).unwrap_or_default();
                if (id_hex.starts_with(needle) || man_hex.starts_with(needle))
                    && !found.iter().any(|f| f.id() == img.id())
                {
                    found.push(img);
                }
            }
            match found.len() {
                0 => {}
                1 => return Ok(found.pop().expect("one")),
                _ => return Err(StoreError::Ambiguous(reference.to_string())),
            }
        }
        Err(StoreError::NoSuchImage(reference.to_string()))
    }

    /// Every tagged image, as `image ls` shows them.
    pub fn list(&self) -> Result<Vec<ImageSummary>, StoreError> {
        let mut out = Vec::new();
        for d in self.index()?.manifests() {
            let name = ref_name(d).unwrap_or("<none>:<none>").to_string();
            let img = self.load(Some(name.clone()), d)?;
            let (repo, tag) = split_name_tag(&name);
            out.push(ImageSummary {
                repository: repo,
                tag,
                id: img.id().to_string(),
                digest: d.digest().to_string(),
                created: img.config.created().clone(),
                size: img.size(),
            });
        }
        out.sort_by(|a, b| (&a.repository, &a.tag).cmp(&(&b.repository, &b.tag)));
        Ok(out)
    }

    /// Names (`name:tag`) pointing at the manifest with this digest.
    pub fn tags_of(&self, manifest: &Digest) -> Result<Vec<String>, StoreError> {
        Ok(self
            .index()?
            .manifests()
            .iter()
            .filter(|d| d.digest() == manifest)
            .filter_map(|d| ref_name(d).map(str::to_string))
            .collect())
    }
}

/// Writes a file atomically: temp file beside it, fsync, rename, fsync the directory.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err(dir))?;
    tmp.write_all(bytes).map_err(io_err(path))?;
    tmp.as_file().sync_all().map_err(io_err(path))?;
    tmp.persist(path).map_err(|e| StoreError::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}
