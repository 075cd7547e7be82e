//! Finding a usable guest kernel: `CORRAL_GUEST_KERNEL`, then the kernels folder under the root
//! dir that the setup step fills.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The file names looked for in the kernels folder, in order.
pub const KERNEL_NAMES: &[&str] = &["vmlinux", "bzImage"];

/// What kind of bootable image a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    /// An ELF64 x86-64 executable (uncompressed vmlinux).
    ElfX86_64,
    /// A bzImage with the Linux boot protocol header.
    BzImage,
}

/// Where each candidate was and what it was.
#[derive(Debug, Clone)]
pub struct KernelSearch {
    /// Every path looked at, in order.
    pub looked: Vec<PathBuf>,
    /// The first usable one.
    pub found: Option<(PathBuf, KernelFormat)>,
}

/// Look for a kernel: the explicit path first, then `<kernels>/vmlinux`, `<kernels>/bzImage`.
pub fn find(explicit: Option<&Path>, kernels_dir: &Path) -> KernelSearch {
    let candidates: Vec<PathBuf> = explicit
        .map(Path::to_path_buf)
        .into_iter()
        .chain(KERNEL_NAMES.iter().map(|n| kernels_dir.join(n)))
        .collect();
    let found = candidates
        .iter()
        .find_map(|p| format_of(p).map(|f| (p.clone(), f)));
    KernelSearch {
        looked: candidates,
        found,
    }
}

/// The kernel format of `path`, or `None` when it is missing or neither ELF64 x86-64 nor bzImage.
pub fn format_of(path: &Path) -> Option<KernelFormat> {
    let mut file = File::open(path).ok()?;
    let mut head = [0u8; 20];
    file.read_exact(&mut head).ok()?;
    const EM_X86_64: u16 = 62;
    if &head[..4] == b"\x7fELF"
        && head[4] == 2
        && u16::from_le_bytes([head[18], head[19]]) == EM_X86_64
    {
        return Some(KernelFormat::ElfX86_64);
    }
    let mut magic = [0u8; 4];
    file.seek(SeekFrom::Start(0x202)).ok()?;
    file.read_exact(&mut magic).ok()?;
    (&magic == b"HdrS").then_some(KernelFormat::BzImage)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf64_x86() -> Vec<u8> {
        let mut v = vec![0u8; 64];
        v[..4].copy_from_slice(b"\x7fELF");
        v[4] = 2;
        v[18] = 62;
        v
    }

    #[test]
    fn explicit_path_wins_and_formats_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let kernels = dir.path().join("kernels");
        std::fs::create_dir_all(&kernels).unwrap();
        std::fs::write(kernels.join("vmlinux"), elf64_x86()).unwrap();
        let junk = dir.path().join("junk");
        std::fs::write(&junk, vec![1u8; 4096]).unwrap();

        let search = find(Some(&junk), &kernels);
        assert_eq!(search.looked.len(), 3);
        assert_eq!(
            search.found,
            Some((kernels.join("vmlinux"), KernelFormat::ElfX86_64))
        );

        let mut bz = vec![0u8; 0x400];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        std::fs::write(&junk, bz).unwrap();
        assert_eq!(
            find(Some(&junk), &kernels).found.unwrap().1,
            KernelFormat::BzImage
        );
    }

    #[test]
    fn nothing_found_reports_where_it_looked() {
        let dir = tempfile::tempdir().unwrap();
        let search = find(None, dir.path());
        assert!(search.found.is_none());
        assert_eq!(
            search.looked,
            vec![dir.path().join("vmlinux"), dir.path().join("bzImage")]
        );
    }
}
