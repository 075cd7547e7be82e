//! `image to-disk`: an ext4 root disk for a microVM from an image. The layers are flattened
//! (whiteouts applied, owners, modes and device nodes kept) into a scratch directory, and
//! `mkfs.ext4 -d` (e2fsprogs) builds the file system from it into a file of the chosen size.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::archive::{flatten_into, ArchiveError};
use crate::extract::{DevicePolicy, ExtractPolicy};
use crate::store::{Image, ImageStore};

/// Failures of `image to-disk`.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// Flattening the image failed.
    #[error(transparent)]
    Flatten(#[from] ArchiveError),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The requested size cannot hold the content.
    #[error("--size {requested} bytes is too small: the image needs at least {needed} bytes")]
    TooSmall {
        /// Requested size.
        requested: u64,
        /// Minimum size.
        needed: u64,
    },
    /// mkfs.ext4 is missing or failed.
    #[error("mkfs.ext4: {0}")]
    Mkfs(String),
}

/// Parses sizes like `512M`, `2G`, `1048576`.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mul) = match s.char_indices().last()? {
        (i, 'K' | 'k') => (&s[..i], 1u64 << 10),
        (i, 'M' | 'm') => (&s[..i], 1 << 20),
        (i, 'G' | 'g') => (&s[..i], 1 << 30),
        (i, 'T' | 't') => (&s[..i], 1 << 40),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mul)
}

fn usage(dir: &Path) -> std::io::Result<(u64, u64)> {
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let m = e.path().symlink_metadata()?;
            inodes += 1;
            bytes += m.len().div_ceil(4096) * 4096;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Ok((bytes, inodes))
}

/// Writes an ext4 image of `image` to `out`; returns its size in bytes.
pub fn to_disk(
    store: &ImageStore,
    image: &Image,
    out: &Path,
    size: Option<u64>,
) -> Result<u64, DiskError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| DiskError::Io { path: p, source }
    };
    let ingest = store.layout_dir().join("ingest");
    let tree = tempfile::Builder::new()
        .prefix(".disk-")
        .tempdir_in(&ingest)
        .map_err(io(&ingest))?;
    let policy = ExtractPolicy {
        devices: DevicePolicy::Create,
        ..ExtractPolicy::default()
    };
    flatten_into(store, image, tree.path(), &policy)?;
    let (bytes, inodes) = usage(tree.path()).map_err(io(tree.path()))?;
    // Content, inode tables (256 B each, plus slack), the journal and 20% headroom.
    let needed = bytes + inodes * 512 + (16 << 20);
    let size = match size {
        Some(s) if s < needed => {
            return Err(DiskError::TooSmall {
                requested: s,
                needed,
            })
        }
        Some(s) => s,
        None => (needed + needed / 5 + (32 << 20)).div_ceil(1 << 20) * (1 << 20),
    };
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".to-disk-")
        .tempfile_in(dir)
        .map_err(io(dir))?;
    tmp.as_file().set_len(size).map_err(io(tmp.path()))?;
    let output = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "corral-root", "-d"])
        .arg(tree.path())
        .arg(tmp.path())
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .output()
        .map_err(|e| DiskError::Mkfs(format!("cannot run it ({e}); install e2fsprogs")))?;
    if !output.status.success() {
        return Err(DiskError::Mkfs(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ));
    }
    tmp.persist(out).map_err(|e| DiskError::Io {
        path: out.to_path_buf(),
        source: e.error,
    })?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_parse() {
        assert_eq!(super::parse_size("512M"), Some(512 << 20));
        assert_eq!(super::parse_size("2G"), Some(2 << 30));
        assert_eq!(super::parse_size("4096"), Some(4096));
        assert_eq!(super::parse_size("x"), None);
    }
}
