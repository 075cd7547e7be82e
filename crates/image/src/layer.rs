//! Layer blobs: compression by media type or magic bytes, and decompressing readers.

use std::io::{self, BufRead, BufReader, Read};

use oci_spec::image::MediaType;

use crate::store::{StoreError, DOCKER_LAYER_GZIP};

/// Docker's uncompressed layer media type.
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (flate2).
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// The compression a layer media type announces; unknown types are an error.
    pub fn from_media_type(mt: &MediaType) -> Result<Compression, StoreError> {
        match mt {
            MediaType::ImageLayer | MediaType::ImageLayerNonDistributable => Ok(Compression::None),
            MediaType::ImageLayerGzip | MediaType::ImageLayerNonDistributableGzip => {
                Ok(Compression::Gzip)
            }
            MediaType::ImageLayerZstd | MediaType::ImageLayerNonDistributableZstd => {
                Ok(Compression::Zstd)
            }
            MediaType::Other(s) if s == DOCKER_LAYER_GZIP => Ok(Compression::Gzip),
            MediaType::Other(s) if s == DOCKER_LAYER_TAR => Ok(Compression::None),
            MediaType::Other(s)
                if s == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" =>
            {
                Ok(Compression::Gzip)
            }
            other => Err(StoreError::UnsupportedMediaType(other.to_string())),
        }
    }

    /// The OCI media type for a layer with this compression.
    pub fn media_type(self) -> MediaType {
        match self {
            Compression::None => MediaType::ImageLayer,
            Compression::Gzip => MediaType::ImageLayerGzip,
            Compression::Zstd => MediaType::ImageLayerZstd,
        }
    }

    /// Guesses from the first bytes of a stream.
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// A reader yielding the uncompressed bytes of `inner`.
pub fn decompress<'a, R: Read + 'a>(
    inner: R,
    compression: Compression,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        Compression::None => Box::new(inner),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(inner)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(inner)?),
    })
}

/// A reader yielding uncompressed bytes, the compression sniffed from the stream itself.
pub fn decompress_sniffed<'a, R: Read + 'a>(inner: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut br = BufReader::with_capacity(64 * 1024, inner);
    let c = Compression::sniff(br.fill_buf()?);
    decompress(br, c)
}
