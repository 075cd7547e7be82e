//! Layer diff: an overlayfs upper directory becomes a layer tar. 0/0 character devices are
//! whiteouts (`.wh.NAME`), directories marked `trusted.overlay.opaque=y` get `.wh..wh..opq`.

use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// Writes the upper dir `upper` as a layer tar to `out`.
pub fn diff_upper(upper: &Path, out: impl Write) -> io::Result<()> {
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    walk(&mut tar, upper, Path::new(""))?;
    tar.into_inner()?.flush()
}

fn is_opaque(dir: &Path) -> bool {
    let Ok(path) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut buf = [0u8; 4];
    // SAFETY: `path` is NUL-terminated, the name is a C string literal, `buf` is a live buffer
    // of the length passed.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    n == 1 && buf[0] == b'y'
}

fn walk<W: Write>(tar: &mut tar::Builder<W>, base: &Path, rel: &Path) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(base.join(rel))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = rel.join(e.file_name());
        let path = e.path();
        let meta = fs::symlink_metadata(&path)?;
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            let wh = rel.join(format!(".wh.{}", e.file_name().to_string_lossy()));
            let mut h = tar::Header::new_gnu();
            h.set_size(0);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut h, wh, io::empty())?;
            continue;
        }
        tar.append_path_with_name(&path, &name)?;
        if ft.is_dir() {
            if is_opaque(&path) {
                let mut h = tar::Header::new_gnu();
                h.set_size(0);
                h.set_mode(0o644);
                h.set_entry_type(tar::EntryType::Regular);
                tar.append_data(&mut h, name.join(".wh..wh..opq"), io::empty())?;
            }
            walk(tar, base, &name)?;
        }
    }
    Ok(())
}
