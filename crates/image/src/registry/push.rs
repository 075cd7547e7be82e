//! `image push`: blobs the registry lacks are mounted from another repository of the same
//! registry when possible, else uploaded in one PUT (small) or in PATCH chunks (large); then
//! the manifest, byte for byte as stored, so its digest does not change.

use std::io::{Read, Seek, SeekFrom};

use oci_spec::image::{Descriptor, Digest};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use reqwest::StatusCode;

use super::client::expect;
use super::pull::locate;
use super::{Client, ClientOptions, RegistryError, TransferProgress};
use crate::reference::ImageRef;
use crate::store::ImageStore;

/// Pushes local image `local` to `dest` (REGISTRY/NAME[:TAG]); returns the manifest digest.
pub fn push(
    store: &ImageStore,
    local: &str,
    dest: &str,
    opts: ClientOptions,
    progress: &dyn TransferProgress,
) -> Result<Digest, RegistryError> {
    let img = store.resolve(local)?;
    let r = ImageRef::parse(dest).map_err(|e| RegistryError::Invalid(e.to_string()))?;
    let (registry, repo) = locate(&r);
    let mut opts = opts;
    if opts.credentials.is_none() {
        opts.credentials = super::load_credentials(store.corral_root(), &registry)?;
    }
    let c = Client::new(&registry, &repo, opts)?;
    // A repository of the same registry that may already hold the blobs (the image's own name).
    let mount_from = img
        .name
        .as_deref()
        .and_then(|n| ImageRef::parse(n).ok())
        .map(|lr| locate(&lr))
        .filter(|(reg, rp)| *reg == registry && *rp != repo)
        .map(|(_, rp)| rp);
    let blobs: Vec<&Descriptor> = std::iter::once(img.manifest.config())
        .chain(img.manifest.layers())
        .collect();
    for b in blobs {
        push_blob(&c, store, b, mount_from.as_deref(), progress)?;
    }
    let bytes = store.read_blob(img.manifest_desc.digest())?;
    let reference = r
        .digest
        .clone()
        .or(r.tag.clone())
        .unwrap_or_else(|| "latest".into());
    let url = c.url(&format!("manifests/{reference}"));
    let mt = img.manifest_desc.media_type().to_string();
    let resp = c.send("PUT", &url, "pull,push", &|h| {
        h.put(&url)
            .header(CONTENT_TYPE, mt.as_str())
            .body(bytes.clone())
    })?;
    expect(resp, &[StatusCode::CREATED, StatusCode::OK], "PUT", &url)?;
    Ok(img.manifest_desc.digest().clone())
}

fn push_blob(
    c: &Client,
    store: &ImageStore,
    b: &Descriptor,
    mount_from: Option<&str>,
    progress: &dyn TransferProgress,
) -> Result<(), RegistryError> {
    let bar = progress.start(b.digest().as_ref(), b.size());
    let head = c.url(&format!("blobs/{}", b.digest()));
    let r = c.send("HEAD", &head, "pull,push", &|h| h.head(&head))?;
    if r.status() == StatusCode::OK {
        bar.finish("Layer already exists");
        return Ok(());
    }
    let uploads = c.url("blobs/uploads/");
    let start_url = match mount_from {
        Some(from) => format!("{uploads}?mount={}&from={from}", b.digest()),
        None => uploads.clone(),
    };
    let r = c.send("POST", &start_url, "pull,push", &|h| {
        h.post(&start_url).header(CONTENT_LENGTH, 0)
    })?;
    if r.status() == StatusCode::CREATED {
        bar.finish("Mounted");
        return Ok(());
    }
    let r = expect(r, &[StatusCode::ACCEPTED], "POST", &start_url)?;
    let mut location = location_of(c, &r, &start_url)?;
    let path = store.blob_path(b.digest())?;
    let io_err = |e: std::io::Error| RegistryError::Io {
        path: path.clone(),
        source: e,
    };
    let size = b.size();
    if size <= c.opts.chunk_size {
        let url = with_digest(&location, b.digest());
        let bytes = std::fs::read(&path).map_err(io_err)?;
        let r = c.send("PUT", &url, "pull,push", &|h| {
            h.put(&url)
                .header(CONTENT_TYPE, "application/octet-stream")
                .body(bytes.clone())
        })?;
        expect(r, &[StatusCode::CREATED], "PUT", &url)?;
        bar.advance(size);
    } else {
        let mut f = std::fs::File::open(&path).map_err(io_err)?;
        let mut offset = 0u64;
        while offset < size {
            let len = c.opts.chunk_size.min(size - offset);
            let mut chunk = vec![0u8; len as usize];
            f.seek(SeekFrom::Start(offset)).map_err(io_err)?;
            f.read_exact(&mut chunk).map_err(io_err)?;
            let range = format!("{}-{}", offset, offset + len - 1);
            let url = location.clone();
            let r = c.send("PATCH", &url, "pull,push", &|h| {
                h.patch(&url)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_RANGE, range.as_str())
                    .body(chunk.clone())
            })?;
            let r = expect(r, &[StatusCode::ACCEPTED], "PATCH", &url)?;
            location = location_of(c, &r, &url)?;
            offset += len;
            bar.advance(len);
        }
        let url = with_digest(&location, b.digest());
        let r = c.send("PUT", &url, "pull,push", &|h| {
            h.put(&url).header(CONTENT_LENGTH, 0)
        })?;
        expect(r, &[StatusCode::CREATED], "PUT", &url)?;
    }
    bar.finish("Pushed");
    Ok(())
}

fn location_of(
    c: &Client,
    r: &reqwest::blocking::Response,
    url: &str,
) -> Result<String, RegistryError> {
    let loc = r
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            RegistryError::Invalid(format!("{url}: upload response without Location"))
        })?;
    Ok(c.absolute(loc))
}

fn with_digest(location: &str, d: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={d}")
}
