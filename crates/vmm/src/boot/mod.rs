//! Boot setup shared by every backend: load the kernel (ELF vmlinux with or without a PVH note,
//! or bzImage), the initrd and the command line, write the memory map, boot_params or PVH start
//! info, the MP table, the GDT and page tables, and set each vCPU's initial state.

pub mod cpu;
pub mod cpuid;
pub mod layout;
pub mod mptable;
pub mod params;

use std::fs::File;
use std::path::{Path, PathBuf};

use corral_devices::GuestMem;
use linux_loader::loader::{BzImage, Elf, KernelLoader, PvhBootCapability};
use serde::{Deserialize, Serialize};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion, ReadVolatile};

pub use cpu::EntryMode;
use layout::{CMDLINE_ADDR, CMDLINE_MAX, HIGH_MEMORY, MPTABLE_ADDR};
use params::InitrdPlace;

/// Errors setting up the boot.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The kernel file cannot be opened.
    #[error("kernel {path}: {source}")]
    KernelOpen {
        /// The path given.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The kernel is neither a loadable ELF nor a bzImage.
    #[error("kernel {path} is not a bootable x86-64 ELF vmlinux or bzImage ({elf}; {bzimage})")]
    KernelFormat {
        /// The path given.
        path: PathBuf,
        /// Why the ELF loader refused it.
        elf: String,
        /// Why the bzImage loader refused it.
        bzimage: String,
    },
    /// The initrd cannot be read.
    #[error("initrd {path}: {source}")]
    InitrdOpen {
        /// The path given.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The initrd does not fit in guest memory above the kernel.
    #[error("initrd {path} ({size} bytes) does not fit in guest memory ({room} bytes free above the kernel)")]
    InitrdTooLarge {
        /// The path given.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// Room available.
        room: u64,
    },
    /// The command line is too long.
    #[error("kernel command line is {len} bytes; at most {max} fit")]
    CmdlineTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Writing a boot structure into guest memory failed.
    #[error("writing the {what} into guest memory: {message}")]
    Memory {
        /// Which structure.
        what: &'static str,
        /// vm-memory's error.
        message: String,
    },
    /// An inconsistent layout.
    #[error("boot layout: {0}")]
    Layout(String),
    /// The requested protocol is not available for this kernel.
    #[error("kernel {path} has no PVH entry note, but the PVH boot protocol was requested")]
    NoPvhEntry {
        /// The path given.
        path: PathBuf,
    },
}

/// Which entry protocol to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootProtocol {
    /// PVH when the ELF has a PVH note and the backend can start in 32-bit mode, else the
    /// Linux 64-bit entry.
    #[default]
    Auto,
    /// Linux's 64-bit boot protocol (boot_params).
    Linux64,
    /// PVH (32-bit protected mode, hvm_start_info).
    Pvh,
}

/// What to boot.
#[derive(Debug, Clone)]
pub struct BootSpec<'a> {
    /// Kernel image.
    pub kernel: &'a Path,
    /// Optional initrd.
    pub initrd: Option<&'a Path>,
    /// Complete command line (devices already appended).
    pub cmdline: &'a str,
    /// Number of vCPUs.
    pub cpus: u8,
    /// Requested protocol.
    pub protocol: BootProtocol,
    /// Whether the backend can start a vCPU in 32-bit protected mode (the software CPU starts
    /// in long mode only).
    pub backend_supports_pvh: bool,
}

/// The result of loading: how to enter the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootInfo {
    /// Entry protocol and address.
    pub mode: EntryMode,
    /// End of the loaded kernel image.
    pub kernel_end: u64,
}

/// Load everything into `mem` and write every boot structure.
pub fn load(mem: &GuestMem, spec: &BootSpec<'_>) -> Result<BootInfo, BootError> {
    let path = spec.kernel.to_path_buf();
    let mut file = File::open(spec.kernel).map_err(|source| BootError::KernelOpen {
        path: path.clone(),
        source,
    })?;
    let loaded =
        match Elf::load(mem, None, &mut file, Some(GuestAddress(HIGH_MEMORY))) {
            Ok(r) => r,
            Err(elf) => BzImage::load(mem, None, &mut file, Some(GuestAddress(HIGH_MEMORY)))
                .map_err(|bz| BootError::KernelFormat {
                    path: path.clone(),
                    elf: elf.to_string(),
                    bzimage: bz.to_string(),
                })?,
        };
    let pvh_entry = match loaded.pvh_boot_cap {
        PvhBootCapability::PvhEntryPresent(a) => Some(a.0),
        _ => None,
    };
    let mode = match (spec.protocol, pvh_entry) {
        (BootProtocol::Pvh, None) => return Err(BootError::NoPvhEntry { path }),
        (BootProtocol::Pvh, Some(entry)) => EntryMode::Pvh { entry },
        (BootProtocol::Auto, Some(entry)) if spec.backend_supports_pvh => EntryMode::Pvh { entry },
        _ => EntryMode::Linux64 {
            entry: linux64_entry(&loaded),
        },
    };

    if spec.cmdline.len() >= CMDLINE_MAX {
        return Err(BootError::CmdlineTooLong {
            len: spec.cmdline.len(),
            max: CMDLINE_MAX - 1,
        });
    }
    let mut bytes = spec.cmdline.as_bytes().to_vec();
    bytes.push(0);
    mem.write_slice(&bytes, GuestAddress(CMDLINE_ADDR))
        .map_err(|e| BootError::Memory {
            what: "command line",
            message: e.to_string(),
        })?;

    let initrd = match spec.initrd {
        Some(p) => Some(load_initrd(mem, p, loaded.kernel_end)?),
        None => None,
    };
    match mode {
        EntryMode::Linux64 { .. } => {
            params::write_boot_params(mem, loaded.setup_header, spec.cmdline.len(), initrd)?
        }
        EntryMode::Pvh { .. } => params::write_pvh_info(mem, initrd)?,
    }
    mptable::write(mem, MPTABLE_ADDR, spec.cpus)?;
    cpu::write_tables(mem, mode)?;
    Ok(BootInfo {
        mode,
        kernel_end: loaded.kernel_end,
    })
}

/// The 64-bit entry: an ELF's entry point, or a bzImage's protected-mode code + 0x200
/// (startup_64).
fn linux64_entry(r: &linux_loader::loader::KernelLoaderResult) -> u64 {
    match r.setup_header {
        // bzImage: the 64-bit entry is 0x200 past the start of the protected-mode kernel.
        Some(h) if h.header == 0x5372_6448 && r.kernel_load.0 != 0 && h.code32_start != 0 => {
            r.kernel_load.0 + 0x200
        }
        _ => r.kernel_load.0,
    }
}

/// Place the initrd at the top of the first RAM region (below 4 GiB), page aligned.
fn load_initrd(mem: &GuestMem, path: &Path, kernel_end: u64) -> Result<InitrdPlace, BootError> {
    let mut file = File::open(path).map_err(|source| BootError::InitrdOpen {
        path: path.to_path_buf(),
        source,
    })?;
    let size = file
        .metadata()
        .map_err(|source| BootError::InitrdOpen {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    let top = mem
        .iter()
        .next()
        .map(|r| r.start_addr().0 + r.len())
        .unwrap_or(0);
    let room = top.saturating_sub(kernel_end.next_multiple_of(4096));
    if size > room {
        return Err(BootError::InitrdTooLarge {
            path: path.to_path_buf(),
            size,
            room,
        });
    }
    let addr = (top - size) & !0xfff;
    let mut slice = mem
        .get_slice(GuestAddress(addr), size as usize)
        .map_err(|e| BootError::Memory {
            what: "initrd",
            message: e.to_string(),
        })?;
    file.read_exact_volatile(&mut slice)
        .map_err(|e| BootError::InitrdOpen {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?;
    Ok(InitrdPlace { addr, size })
}
