//! `image import`: a plain root filesystem tarball (plain, gzip or zstd) becomes a one-layer
//! image. The tarball is read once: its entries are checked (no `..`, readable to the end) while
//! the same bytes are compressed into the layer blob.

use std::io::{self, Read, Write};

use crate::commit::{base_config, commit_image, history, LayerWriter};
use crate::extract::{sanitize, ExtractError};
use crate::store::{Image, ImageStore, StoreError};

/// Failures of `image import`.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The tarball is not a valid root filesystem archive.
    #[error("invalid root filesystem tarball: {0}")]
    Archive(#[from] ExtractError),
    /// The store refused it.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A reader that copies everything it reads into a writer.
pub(crate) struct TeeReader<R, W> {
    pub(crate) inner: R,
    pub(crate) sink: W,
}

impl<R: Read, W: Write> Read for TeeReader<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sink.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Reads a tar stream to its end, checking every entry path, while writing the bytes to `sink`.
pub fn copy_checked_tar<R: Read, W: Write>(reader: R, sink: W) -> Result<u64, ExtractError> {
    let mut ar = tar::Archive::new(TeeReader {
        inner: reader,
        sink,
    });
    let mut n = 0;
    for e in ar.entries().map_err(ExtractError::Read)? {
        let e = e.map_err(ExtractError::Read)?;
        sanitize(&e.path_bytes())?;
        n += 1;
    }
    let mut rest = ar.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(ExtractError::Read)?;
    Ok(n)
}

/// Imports a root filesystem tarball as image `name` with an optional default command.
pub fn import_rootfs(
    store: &ImageStore,
    reader: impl Read,
    name: &str,
    cmd: Option<Vec<String>>,
) -> Result<Image, ImportError> {
    let plain = crate::layer::decompress_sniffed(reader).map_err(ExtractError::Read)?;
    let mut lw = LayerWriter::new(store)?;
    copy_checked_tar(plain, &mut lw)?;
    let layer = lw.finish()?;
    let mut config = base_config();
    let created = config.created().clone().unwrap_or_default();
    config.set_history(Some(vec![history("corral image import", false, &created)]));
    let mut c = oci_spec::image::Config::default();
    c.set_env(Some(vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
    ]));
    c.set_cmd(cmd.or_else(|| Some(vec!["/bin/sh".to_string()])));
    config.set_config(Some(c));
    Ok(commit_image(store, config, &[layer], Some(name))?)
}
