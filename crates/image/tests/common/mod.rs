//! Helpers shared by the image crate's integration tests: crafted tarballs.

#![allow(dead_code)]

use tar::{EntryType, Header};

/// One crafted tar entry: raw name bytes (no sanitising), kind, link target, data, mode.
pub struct Raw<'a> {
    pub name: &'a [u8],
    pub kind: EntryType,
    pub link: &'a [u8],
    pub data: &'a [u8],
    pub mode: u32,
}

/// A regular file entry.
pub fn file<'a>(name: &'a str, data: &'a [u8]) -> Raw<'a> {
    Raw {
        name: name.as_bytes(),
        kind: EntryType::Regular,
        link: b"",
        data,
        mode: 0o644,
    }
}

/// A directory entry.
pub fn dir(name: &str) -> Raw<'_> {
    Raw {
        name: name.as_bytes(),
        kind: EntryType::Directory,
        link: b"",
        data: b"",
        mode: 0o755,
    }
}

/// A symlink entry.
pub fn symlink<'a>(name: &'a str, target: &'a str) -> Raw<'a> {
    Raw {
        name: name.as_bytes(),
        kind: EntryType::Symlink,
        link: target.as_bytes(),
        data: b"",
        mode: 0o777,
    }
}

/// A hardlink entry.
pub fn hardlink<'a>(name: &'a str, target: &'a str) -> Raw<'a> {
    Raw {
        name: name.as_bytes(),
        kind: EntryType::Link,
        link: target.as_bytes(),
        data: b"",
        mode: 0o644,
    }
}

/// Builds an uncompressed tar from raw entries, bypassing the tar crate's path checks.
pub fn tarball(entries: &[Raw]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = Header::new_old();
        {
            let old = h.as_old_mut();
            old.name[..e.name.len()].copy_from_slice(e.name);
            old.linkname[..e.link.len()].copy_from_slice(e.link);
        }
        h.set_entry_type(e.kind);
        h.set_size(e.data.len() as u64);
        h.set_mode(e.mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(e.data);
        let pad = (512 - e.data.len() % 512) % 512;
        out.extend(std::iter::repeat_n(0u8, pad));
    }
    out.extend(std::iter::repeat_n(0u8, 1024));
    out
}

/// A fresh temp dir with a unique, area-prefixed name.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("image-test-{}-", std::process::id()))
        .tempdir()
        .expect("temp dir")
}
