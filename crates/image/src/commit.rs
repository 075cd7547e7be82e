//! Writing new layers and images into the store: a layer writer (tar in, compressed blob out,
//! both digests computed on the way) and `commit_image` (config + manifest + tag).

use std::io::{self, Write};

use oci_spec::image::{
    Arch, Descriptor, Digest, History, HistoryBuilder, ImageConfiguration, ImageManifestBuilder,
    MediaType, Os,
};

use crate::digest::HashingWriter;
use crate::layer::Compression;
use crate::store::{Image, ImageStore, StoreError};

/// A layer in the store with its uncompressed digest.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LayerRef {
    /// The blob descriptor (compressed digest, size, media type).
    pub descriptor: Descriptor,
    /// The digest of the uncompressed tar (the config's diff_id).
    pub diff_id: String,
}

type Inner = HashingWriter<zstd::stream::write::Encoder<'static, HashingWriter<std::fs::File>>>;

/// Streams an uncompressed tar into a zstd-compressed layer blob.
pub struct LayerWriter<'s> {
    store: &'s ImageStore,
    tmp: tempfile::NamedTempFile,
    inner: Inner,
}

impl<'s> LayerWriter<'s> {
    /// Starts a new layer blob in the store's ingest dir.
    pub fn new(store: &'s ImageStore) -> Result<LayerWriter<'s>, StoreError> {
        let tmp = store.temp_file()?;
        let file = tmp.reopen().map_err(crate::store::io_err(tmp.path()))?;
        let enc = zstd::stream::write::Encoder::new(HashingWriter::new(file), 3)
            .map_err(crate::store::io_err(tmp.path()))?;
        Ok(LayerWriter {
            store,
            tmp,
            inner: HashingWriter::new(enc),
        })
    }

    /// Finishes compression and moves the blob into place.
    pub fn finish(self) -> Result<LayerRef, StoreError> {
        let path = self.tmp.path().to_path_buf();
        let (diff_id, _, enc) = self.inner.finish();
        let hw = enc.finish().map_err(crate::store::io_err(&path))?;
        let (digest, size, mut file) = hw.finish();
        file.flush().map_err(crate::store::io_err(&path))?;
        self.store
            .commit_temp(self.tmp, &digest, size, None, None)?;
        Ok(LayerRef {
            descriptor: Descriptor::new(Compression::Zstd.media_type(), size, digest),
            diff_id: diff_id.to_string(),
        })
    }
}

impl Write for LayerWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The current time as RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// A history entry for a config.
pub fn history(created_by: &str, empty_layer: bool, created: &str) -> History {
    let mut b = HistoryBuilder::default();
    b = b
        .created(created.to_string())
        .created_by(created_by.to_string());
    if empty_layer {
        b = b.empty_layer(true);
    }
    b.build().expect("history fields are all optional")
}

/// A fresh linux/amd64 config with no layers.
pub fn base_config() -> ImageConfiguration {
    let mut c = ImageConfiguration::default();
    c.set_architecture(Arch::Amd64);
    c.set_os(Os::Linux);
    c.set_created(Some(now_rfc3339()));
    c.set_history(Some(Vec::new()));
    c
}

/// Writes the config and an OCI manifest over `layers`, tags it `name` (if any), and loads it.
pub fn commit_image(
    store: &ImageStore,
    mut config: ImageConfiguration,
    layers: &[LayerRef],
    name: Option<&str>,
) -> Result<Image, StoreError> {
    let mut rootfs = config.rootfs().clone();
    rootfs.set_typ("layers".to_string());
    rootfs.set_diff_ids(layers.iter().map(|l| l.diff_id.clone()).collect());
    config.set_rootfs(rootfs);
    // Through a Value so map keys (labels, exposed ports) come out sorted: the same config
    // always has the same bytes, hence the same image ID.
    let value = serde_json::to_value(&config).expect("config serializes");
    let cbytes = serde_json::to_vec(&value).expect("config serializes");
    commit_raw(store, &cbytes, layers, name)
}

/// Writes config bytes as given (e.g. a Docker config from an archive) and a manifest over them.
pub fn commit_raw(
    store: &ImageStore,
    cbytes: &[u8],
    layers: &[LayerRef],
    name: Option<&str>,
) -> Result<Image, StoreError> {
    let cdigest = store.put_blob_bytes(cbytes, None)?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(Descriptor::new(
            MediaType::ImageConfig,
            cbytes.len() as u64,
            cdigest,
        ))
        .layers(
            layers
                .iter()
                .map(|l| l.descriptor.clone())
                .collect::<Vec<_>>(),
        )
        .build()
        .expect("manifest fields are set");
    let mbytes = serde_json::to_vec(&manifest).expect("manifest serializes");
    let mdigest: Digest = store.put_blob_bytes(&mbytes, None)?;
    let desc = Descriptor::new(MediaType::ImageManifest, mbytes.len() as u64, mdigest);
    if let Some(n) = name {
        store.set_tag(n, &desc)?;
    }
    store.load(name.map(str::to_string), &desc)
}
