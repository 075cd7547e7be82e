//! Raw (and sparse) image files.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::{DiskError, DiskImage};

/// A raw image file.
#[derive(Debug)]
pub struct RawDisk {
    file: File,
    path: PathBuf,
    size: u64,
    read_only: bool,
}

impl RawDisk {
    /// Open `path`, read-only or read-write.
    pub fn open(path: &Path, read_only: bool) -> Result<Self, DiskError> {
        let open_err = |source| DiskError::Open {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(open_err)?;
        let size = file.metadata().map_err(open_err)?.len();
        Ok(RawDisk {
            file,
            path: path.to_path_buf(),
            size,
            read_only,
        })
    }

    fn io(&self, op: &'static str, offset: u64) -> impl FnOnce(std::io::Error) -> DiskError + '_ {
        move |source| DiskError::Io {
            path: self.path.clone(),
            op,
            offset,
            source,
        }
    }
}

impl DiskImage for RawDisk {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DiskError> {
        let mut done = 0;
        while done < buf.len() {
            let n = self
                .file
                .read_at(&mut buf[done..], offset + done as u64)
                .map_err(self.io("read", offset))?;
            if n == 0 {
                buf[done..].fill(0);
                break;
            }
            done += n;
        }
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), DiskError> {
        if self.read_only {
            return Err(DiskError::ReadOnly {
                path: self.path.clone(),
            });
        }
        self.file
            .write_all_at(buf, offset)
            .map_err(self.io("write", offset))
    }

    fn flush(&self) -> Result<(), DiskError> {
        if self.read_only {
            return Ok(());
        }
        self.file.sync_data().map_err(self.io("flush", 0))
    }

    fn discard(&self, offset: u64, len: u64) -> Result<(), DiskError> {
        if self.read_only {
            return Err(DiskError::ReadOnly {
                path: self.path.clone(),
            });
        }
        // SAFETY: fallocate on our own open descriptor with plain integer arguments.
        let rc = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset as libc::off_t,
                len as libc::off_t,
            )
        };
        if rc != 0 {
            return Err(self.io("discard", offset)(std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn read_write_flush_discard_on_a_sparse_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.img");
        File::create(&path).unwrap().set_len(1 << 20).unwrap();
        let d = RawDisk::open(&path, false).unwrap();
        assert_eq!(d.size(), 1 << 20);
        d.write_at(&[0xab; 65536], 4096).unwrap();
        d.flush().unwrap();
        let mut b = [0u8; 4];
        d.read_at(&mut b, 4096).unwrap();
        assert_eq!(b, [0xab; 4]);
        let before = std::fs::metadata(&path).unwrap().blocks();
        d.discard(4096, 65536).unwrap();
        d.read_at(&mut b, 8192).unwrap();
        assert_eq!(b, [0; 4]);
        assert!(
            std::fs::metadata(&path).unwrap().blocks() < before,
            "hole punched"
        );
        // Reading past the end gives zeros, not an error.
        let mut tail = [1u8; 8];
        d.read_at(&mut tail, (1 << 20) - 4).unwrap();
        assert_eq!(tail, [0; 8]);
    }

    #[test]
    fn read_only_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ro.img");
        std::fs::write(&path, [7u8; 512]).unwrap();
        let d = RawDisk::open(&path, true).unwrap();
        assert!(matches!(
            d.write_at(&[1], 0),
            Err(DiskError::ReadOnly { .. })
        ));
        assert!(d.discard(0, 512).is_err());
        assert!(matches!(
            RawDisk::open(&dir.path().join("missing"), true),
            Err(DiskError::Open { .. })
        ));
    }
}
