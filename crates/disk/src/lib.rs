//! Disk images for corral VMs: raw/sparse files and qcow2 (backing files, copy-on-write).
//!
//! Devices see a [`DiskImage`]; today the raw format backs it ([`RawDisk`]).

pub mod raw;

pub use raw::RawDisk;

/// Errors on disk images.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// Opening the image failed.
    #[error("disk {path}: {source}")]
    Open {
        /// The image path.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An I/O operation failed.
    #[error("disk {path}: {op} at byte {offset}: {source}")]
    Io {
        /// The image path.
        path: std::path::PathBuf,
        /// read, write, flush or discard.
        op: &'static str,
        /// Byte offset.
        offset: u64,
        /// The OS error.
        source: std::io::Error,
    },
    /// A write to a read-only image.
    #[error("disk {path} is read-only")]
    ReadOnly {
        /// The image path.
        path: std::path::PathBuf,
    },
}

/// A block device image as a virtual disk sees it.
pub trait DiskImage: Send {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Whether writes are refused.
    fn read_only(&self) -> bool;
    /// Read `buf.len()` bytes at `offset` (short reads past the end fill zeros).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DiskError>;
    /// Write `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), DiskError>;
    /// Make written data durable.
    fn flush(&self) -> Result<(), DiskError>;
    /// Release `len` bytes at `offset` (they read back as zeros).
    fn discard(&self, offset: u64, len: u64) -> Result<(), DiskError>;
}
