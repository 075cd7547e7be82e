//! The memory map and boot information a kernel reads: Linux `boot_params` (zero page) and the
//! PVH `hvm_start_info`, both from one e820 list.

use corral_devices::GuestMem;
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use linux_loader::loader::elf::start_info::{hvm_memmap_table_entry, hvm_start_info};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use super::layout::{
    BASE_MEMORY_END, CMDLINE_ADDR, HIGH_MEMORY, PVH_INFO_ADDR, PVH_MEMMAP_ADDR, ZERO_PAGE_ADDR,
};
use super::BootError;

/// e820 usable RAM.
pub const E820_RAM: u32 = 1;
/// e820 reserved.
pub const E820_RESERVED: u32 = 2;

/// One memory-map entry: (start, size, type).
pub type E820Entry = (u64, u64, u32);

/// The memory map of `mem`: base memory, the reserved EBDA/BIOS hole, then RAM regions.
pub fn e820(mem: &GuestMem) -> Vec<E820Entry> {
    let mut map = vec![
        (0, BASE_MEMORY_END, E820_RAM),
        (
            BASE_MEMORY_END,
            HIGH_MEMORY - BASE_MEMORY_END,
            E820_RESERVED,
        ),
    ];
    for r in mem.iter() {
        let start = r.start_addr().0.max(HIGH_MEMORY);
        let end = r.start_addr().0 + r.len();
        if end > start {
            map.push((start, end - start, E820_RAM));
        }
    }
    map
}

/// An initrd already in guest memory.
#[derive(Debug, Clone, Copy)]
pub struct InitrdPlace {
    /// Guest-physical address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
}

fn mem_err(what: &'static str) -> impl Fn(vm_memory::GuestMemoryError) -> BootError {
    move |e| BootError::Memory {
        what,
        message: e.to_string(),
    }
}

/// Write Linux `boot_params` at the zero page.
pub fn write_boot_params(
    mem: &GuestMem,
    header: Option<setup_header>,
    cmdline_len: usize,
    initrd: Option<InitrdPlace>,
) -> Result<(), BootError> {
    let mut params = boot_params::default();
    if let Some(h) = header {
        params.hdr = h;
    }
    params.hdr.type_of_loader = 0xff;
    params.hdr.boot_flag = 0xaa55;
    params.hdr.header = 0x5372_6448; // "HdrS"
    params.hdr.cmd_line_ptr = CMDLINE_ADDR as u32;
    params.hdr.cmdline_size = cmdline_len as u32;
    params.hdr.kernel_alignment = 0x0100_0000;
    if let Some(i) = initrd {
        params.hdr.ramdisk_image = i.addr as u32;
        params.hdr.ramdisk_size = i.size as u32;
    }
    let map = e820(mem);
    if map.len() > params.e820_table.len() {
        return Err(BootError::Layout("too many e820 entries".into()));
    }
    for (slot, (addr, size, type_)) in params.e820_table.iter_mut().zip(&map) {
        *slot = boot_e820_entry {
            addr: *addr,
            size: *size,
            r#type: *type_,
        };
    }
    params.e820_entries = map.len() as u8;
    mem.write_obj(params, GuestAddress(ZERO_PAGE_ADDR))
        .map_err(mem_err("boot_params"))
}

/// `hvm_start_info` module entry for the initrd.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct ModEntry {
    paddr: u64,
    size: u64,
    cmdline_paddr: u64,
    reserved: u64,
}
// SAFETY: plain integers, no padding, any bit pattern is valid.
unsafe impl ByteValued for ModEntry {}

/// Write the PVH start info, memory map and initrd module list.
pub fn write_pvh_info(mem: &GuestMem, initrd: Option<InitrdPlace>) -> Result<(), BootError> {
    let map = e820(mem);
    let mut addr = PVH_MEMMAP_ADDR;
    for (start, size, type_) in &map {
        let e = hvm_memmap_table_entry {
            addr: *start,
            size: *size,
            type_: *type_,
            reserved: 0,
        };
        mem.write_obj(e, GuestAddress(addr))
            .map_err(mem_err("PVH memory map"))?;
        addr += std::mem::size_of::<hvm_memmap_table_entry>() as u64;
    }
    let mut info = hvm_start_info {
        magic: 0x336e_c578,
        version: 1,
        cmdline_paddr: CMDLINE_ADDR,
        memmap_paddr: PVH_MEMMAP_ADDR,
        memmap_entries: map.len() as u32,
        ..Default::default()
    };
    if let Some(i) = initrd {
        let m = ModEntry {
            paddr: i.addr,
            size: i.size,
            ..Default::default()
        };
        mem.write_obj(m, GuestAddress(addr))
            .map_err(mem_err("PVH module list"))?;
        info.nr_modules = 1;
        info.modlist_paddr = addr;
    }
    mem.write_obj(info, GuestAddress(PVH_INFO_ADDR))
        .map_err(mem_err("PVH start info"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e820_reserves_the_bios_hole_and_lists_ram() {
        let mem = crate::memory::create_guest_memory(64 << 20).unwrap();
        let map = e820(&mem);
        assert_eq!(map[0], (0, BASE_MEMORY_END, E820_RAM));
        assert_eq!(map[1].2, E820_RESERVED);
        assert_eq!(map[2], (HIGH_MEMORY, (64 << 20) - HIGH_MEMORY, E820_RAM));
    }

    #[test]
    fn boot_params_carry_cmdline_initrd_and_map() {
        let mem = crate::memory::create_guest_memory(64 << 20).unwrap();
        let initrd = InitrdPlace {
            addr: 0x300_0000,
            size: 4096,
        };
        write_boot_params(&mem, None, 12, Some(initrd)).unwrap();
        let p: boot_params = mem.read_obj(GuestAddress(ZERO_PAGE_ADDR)).unwrap();
        assert_eq!(p.e820_entries, 3);
        assert_eq!({ p.hdr.cmd_line_ptr }, CMDLINE_ADDR as u32);
        assert_eq!({ p.hdr.ramdisk_image }, 0x300_0000);
        assert_eq!({ p.hdr.boot_flag }, 0xaa55);
    }

    #[test]
    fn pvh_info_has_magic_and_module() {
        let mem = crate::memory::create_guest_memory(64 << 20).unwrap();
        write_pvh_info(
            &mem,
            Some(InitrdPlace {
                addr: 0x200_0000,
                size: 10,
            }),
        )
        .unwrap();
        let info: hvm_start_info = mem.read_obj(GuestAddress(PVH_INFO_ADDR)).unwrap();
        assert_eq!(info.magic, 0x336e_c578);
        assert_eq!(info.memmap_entries, 3);
        assert_eq!(info.nr_modules, 1);
        let m: ModEntry = mem.read_obj(GuestAddress(info.modlist_paddr)).unwrap();
        assert_eq!(m.paddr, 0x200_0000);
    }
}
