//! `image pull`: manifest (index → linux/amd64), config and layers into the store. Layers are
//! downloaded into `ingest/partial-<hex>` and resumed with a Range request if a previous pull
//! was interrupted; each is verified against its digest before it lands.

use std::fs::OpenOptions;
use std::io::{self, Write};

use oci_spec::image::{Descriptor, MediaType};
use reqwest::header::{ACCEPT, CONTENT_TYPE, RANGE};
use reqwest::StatusCode;

use super::client::expect;
use super::{Client, ClientOptions, RegistryError, TransferProgress};
use crate::digest::{sha256_digest, sha256_hex};
use crate::reference::ImageRef;
use crate::store::{
    is_index, parse_manifest, pick_platform, Image, ImageStore, DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
};

const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// The registry host and repository path for a reference (Docker Hub conventions for names
/// without a registry).
pub fn locate(r: &ImageRef) -> (String, String) {
    match &r.registry {
        Some(reg) if reg != "docker.io" => (reg.clone(), r.repository.clone()),
        _ => {
            let repo = if r.repository.contains('/') {
                r.repository.clone()
            } else {
                format!("library/{}", r.repository)
            };
            ("registry-1.docker.io".to_string(), repo)
        }
    }
}

fn fetch_manifest(c: &Client, reference: &str) -> Result<(Vec<u8>, MediaType), RegistryError> {
    let url = c.url(&format!("manifests/{reference}"));
    let r = c.send("GET", &url, "pull", &|h| {
        h.get(&url).header(ACCEPT, ACCEPT_MANIFESTS)
    })?;
    let r = expect(r, &[StatusCode::OK], "GET", &url)?;
    let ct = r
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let bytes = r
        .bytes()
        .map_err(|e| RegistryError::Http {
            url: url.clone(),
            source: e,
        })?
        .to_vec();
    if bytes.len() > 4 << 20 {
        return Err(RegistryError::Invalid(format!(
            "{url}: manifest larger than 4 MiB"
        )));
    }
    if let Some(d) = crate::digest::parse_sha256(reference) {
        let actual = sha256_digest(&bytes);
        if actual != d {
            return Err(crate::store::StoreError::DigestMismatch {
                expected: d.to_string(),
                actual: actual.to_string(),
                size: bytes.len() as u64,
            }
            .into());
        }
    }
    let mt = if ct.is_empty() || ct == "application/json" {
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| RegistryError::Invalid(format!("{url}: {e}")))?;
        v.get("mediaType")
            .and_then(|m| m.as_str())
            .unwrap_or("application/vnd.oci.image.manifest.v1+json")
            .to_string()
    } else {
        ct
    };
    Ok((bytes, MediaType::from(mt.as_str())))
}

/// Pulls `reference` into the store and tags it `name:tag` as written.
pub fn pull(
    store: &ImageStore,
    reference: &str,
    opts: ClientOptions,
    progress: &dyn TransferProgress,
) -> Result<Image, RegistryError> {
    let r = ImageRef::parse(reference).map_err(|e| RegistryError::Invalid(e.to_string()))?;
    let (registry, repo) = locate(&r);
    let mut opts = opts;
    if opts.credentials.is_none() {
        opts.credentials = super::load_credentials(store.corral_root(), &registry)?;
    }
    let c = Client::new(&registry, &repo, opts)?;
    let (mut bytes, mut mt) = fetch_manifest(&c, r.reference())?;
    if is_index(&mt) {
        let d = pick_platform(&bytes, reference)?;
        store.put_blob_bytes(&bytes, None)?;
        (bytes, mt) = fetch_manifest(&c, d.digest().as_ref())?;
    }
    if !(matches!(mt, MediaType::ImageManifest) || mt == MediaType::Other(DOCKER_MANIFEST.into())) {
        let _ = DOCKER_MANIFEST_LIST;
        return Err(crate::store::StoreError::UnsupportedMediaType(mt.to_string()).into());
    }
    let digest = sha256_digest(&bytes);
    let manifest = parse_manifest(&bytes, reference)?;
    let blobs: Vec<Descriptor> = std::iter::once(manifest.config().clone())
        .chain(manifest.layers().iter().cloned())
        .collect();
    let todo: Vec<&Descriptor> = blobs
        .iter()
        .filter(|b| !store.has_blob(b.digest()))
        .collect();
    for b in blobs.iter().filter(|b| store.has_blob(b.digest())) {
        progress
            .start(b.digest().as_ref(), b.size())
            .finish("Already exists");
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Result<(), RegistryError>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..c.opts.parallel.max(1))
            .map(|_| {
                s.spawn(|| -> Result<(), RegistryError> {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let Some(b) = todo.get(i) else { return Ok(()) };
                        fetch_blob(&c, store, b, progress)?;
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join().unwrap_or_else(|_| {
                    Err(RegistryError::Invalid("download thread panicked".into()))
                })
            })
            .collect()
    });
    for res in results {
        res?;
    }
    store.put_blob_bytes(&bytes, Some(&digest))?;
    let desc = Descriptor::new(mt, bytes.len() as u64, digest);
    let name = r.tag.as_ref().map(|t| format!("{}:{t}", r.name()));
    if let Some(n) = &name {
        store.set_tag(n, &desc)?;
    }
    Ok(store.load(name, &desc)?)
}

fn fetch_blob(
    c: &Client,
    store: &ImageStore,
    b: &Descriptor,
    progress: &dyn TransferProgress,
) -> Result<(), RegistryError> {
    let hex = sha256_hex(b.digest())
        .ok_or_else(|| crate::store::StoreError::BadDigest(b.digest().to_string()))?;
    let partial = store
        .layout_dir()
        .join("ingest")
        .join(format!("partial-{hex}"));
    let have = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    let bar = progress.start(b.digest().as_ref(), b.size());
    let url = c.url(&format!("blobs/{}", b.digest()));
    let resume = have > 0 && have < b.size();
    let r = c.send("GET", &url, "pull", &|h| {
        let rb = h.get(&url);
        if resume {
            rb.header(RANGE, format!("bytes={have}-"))
        } else {
            rb
        }
    })?;
    let mut r = expect(
        r,
        &[StatusCode::OK, StatusCode::PARTIAL_CONTENT],
        "GET",
        &url,
    )?;
    let append = r.status() == StatusCode::PARTIAL_CONTENT;
    let io_err = |e: io::Error| RegistryError::Io {
        path: partial.clone(),
        source: e,
    };
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(&partial)
        .map_err(io_err)?;
    if append {
        bar.advance(have);
    }
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = io::Read::read(&mut r, &mut buf).map_err(io_err)?;
        if n == 0 {
            break;
        }
        f.write_all(&buf[..n]).map_err(io_err)?;
        bar.advance(n as u64);
    }
    drop(f);
    store.commit_file(&partial, b.digest(), Some(b.size()))?;
    bar.finish("Pull complete");
    Ok(())
}
