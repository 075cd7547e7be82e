//! Initial vCPU state for each boot protocol: GDT, identity page tables, registers, MSRs, FPU
//! and LAPIC. Written once here, applied through the backend-neutral [`Vcpu`] trait.

use corral_devices::GuestMem;
use vm_memory::{Bytes, GuestAddress};

use super::layout::{BOOT_STACK, GDT_ADDR, IDT_ADDR, PML4_ADDR, PVH_INFO_ADDR, ZERO_PAGE_ADDR};
use super::BootError;
use crate::hypervisor::{
    DescriptorTable, FpuState, HypervisorError, Msr, Regs, Segment, SpecialRegs, Vcpu,
};

/// How the guest is entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryMode {
    /// Linux's 64-bit boot protocol: long mode, paging on (identity map of the first GiB),
    /// RSI = boot_params.
    Linux64 {
        /// Entry point (guest-physical = virtual).
        entry: u64,
    },
    /// PVH: 32-bit protected mode, paging off, EBX = hvm_start_info.
    Pvh {
        /// Entry point from the PVH ELF note.
        entry: u64,
    },
}

const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// Boot GDT selectors.
pub const CODE_SELECTOR: u16 = 0x10;
/// Data selector.
pub const DATA_SELECTOR: u16 = 0x18;
/// TSS selector.
pub const TSS_SELECTOR: u16 = 0x20;

/// A GDT descriptor from flags (the 0xcf9b form: G/DB/L/AVL in the high nibble), base, limit.
fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((u64::from(base) & 0xff00_0000) << 32)
        | ((u64::from(flags) & 0xf0ff) << 40)
        | ((u64::from(limit) & 0x000f_0000) << 32)
        | ((u64::from(base) & 0x00ff_ffff) << 16)
        | (u64::from(limit) & 0x0000_ffff)
}

fn segment_from(entry: u64, selector: u16) -> Segment {
    let flags = (entry >> 40) & 0xf0ff;
    let g = (flags >> 15) & 1 == 1;
    let raw_limit = ((entry >> 32) & 0xf_0000) as u32 | (entry & 0xffff) as u32;
    Segment {
        base: ((entry >> 16) & 0xff_ffff) | ((entry >> 32) & 0xff00_0000),
        limit: if g {
            (raw_limit << 12) | 0xfff
        } else {
            raw_limit
        },
        selector,
        type_: (flags & 0xf) as u8,
        present: (flags >> 7) & 1 == 1,
        dpl: ((flags >> 5) & 3) as u8,
        db: (flags >> 14) & 1 == 1,
        s: (flags >> 4) & 1 == 1,
        l: (flags >> 13) & 1 == 1,
        g,
        avl: (flags >> 12) & 1 == 1,
        unusable: false,
    }
}

fn gdt(mode: EntryMode) -> [u64; 5] {
    let code = match mode {
        EntryMode::Linux64 { .. } => gdt_entry(0xa09b, 0, 0xfffff),
        EntryMode::Pvh { .. } => gdt_entry(0xc09b, 0, 0xfffff),
    };
    [
        0,
        0,
        code,
        gdt_entry(0xc093, 0, 0xfffff),
        gdt_entry(0x808b, 0, 0xfffff),
    ]
}

/// Write the GDT, an empty IDT and (for the 64-bit entry) the identity page tables.
pub fn write_tables(mem: &GuestMem, mode: EntryMode) -> Result<(), BootError> {
    let err = |what| {
        move |e: vm_memory::GuestMemoryError| BootError::Memory {
            what,
            message: e.to_string(),
        }
    };
    for (i, entry) in gdt(mode).iter().enumerate() {
        mem.write_obj(*entry, GuestAddress(GDT_ADDR + 8 * i as u64))
            .map_err(err("GDT"))?;
    }
    mem.write_obj(0u64, GuestAddress(IDT_ADDR))
        .map_err(err("IDT"))?;
    if let EntryMode::Linux64 { .. } = mode {
        let pdpt = PML4_ADDR + 0x1000;
        let pd = PML4_ADDR + 0x2000;
        mem.write_obj(pdpt | 0x03, GuestAddress(PML4_ADDR))
            .map_err(err("page tables"))?;
        mem.write_obj(pd | 0x03, GuestAddress(pdpt))
            .map_err(err("page tables"))?;
        for i in 0..512u64 {
            // 2 MiB pages: present, writable, page size.
            mem.write_obj((i << 21) | 0x83, GuestAddress(pd + i * 8))
                .map_err(err("page tables"))?;
        }
    }
    Ok(())
}

/// Special registers for `mode`.
pub fn sregs(mode: EntryMode, base: &SpecialRegs) -> SpecialRegs {
    let table = gdt(mode);
    let code = segment_from(table[2], CODE_SELECTOR);
    let data = segment_from(table[3], DATA_SELECTOR);
    let tss = segment_from(table[4], TSS_SELECTOR);
    let mut s = *base;
    s.cs = code;
    s.ds = data;
    s.es = data;
    s.fs = data;
    s.gs = data;
    s.ss = data;
    s.tr = tss;
    s.gdt = DescriptorTable {
        base: GDT_ADDR,
        limit: (table.len() * 8 - 1) as u16,
    };
    s.idt = DescriptorTable {
        base: IDT_ADDR,
        limit: 7,
    };
    match mode {
        EntryMode::Linux64 { .. } => {
            s.cr0 = CR0_PE | CR0_ET | CR0_PG;
            s.cr3 = PML4_ADDR;
            s.cr4 = CR4_PAE;
            s.efer = EFER_LME | EFER_LMA;
        }
        EntryMode::Pvh { .. } => {
            s.cr0 = CR0_PE | CR0_ET;
            s.cr3 = 0;
            s.cr4 = 0;
            s.efer = 0;
        }
    }
    s
}

/// General registers for the bootstrap vCPU.
pub fn regs(mode: EntryMode) -> Regs {
    match mode {
        EntryMode::Linux64 { entry } => Regs {
            rip: entry,
            rsp: BOOT_STACK,
            rbp: BOOT_STACK,
            rsi: ZERO_PAGE_ADDR,
            rflags: 0x2,
            ..Default::default()
        },
        EntryMode::Pvh { entry } => Regs {
            rip: entry,
            rbx: PVH_INFO_ADDR,
            rflags: 0x2,
            ..Default::default()
        },
    }
}

/// MSRs at boot: fast strings on, MTRRs enabled with write-back default, syscall MSRs clear.
pub fn boot_msrs() -> Vec<Msr> {
    const IA32_MISC_ENABLE: u32 = 0x1a0;
    const MTRR_DEF_TYPE: u32 = 0x2ff;
    let mut v = vec![
        Msr {
            index: IA32_MISC_ENABLE,
            data: 1,
        },
        Msr {
            index: MTRR_DEF_TYPE,
            data: (1 << 11) | 6,
        },
    ];
    for index in [0x174, 0x175, 0x176, 0xc000_0081, 0xc000_0082, 0xc000_0084] {
        v.push(Msr { index, data: 0 });
    }
    v
}

/// FPU at reset: x87 control word 0x37f, MXCSR 0x1f80.
pub fn boot_fpu() -> FpuState {
    FpuState {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    }
}

/// Configure one vCPU's registers for `mode`. Application processors get the same segment and
/// control state but no entry (they wait for INIT/SIPI in the backend's LAPIC).
pub fn setup_vcpu(vcpu: &mut dyn Vcpu, mode: EntryMode) -> Result<(), HypervisorError> {
    let msrs = boot_msrs();
    if let Err(e) = vcpu.set_msrs(&msrs) {
        tracing::debug!("boot MSRs: {e}");
    }
    vcpu.set_fpu(&boot_fpu())?;
    let base = vcpu.sregs()?;
    vcpu.set_sregs(&sregs(mode, &base))?;
    if vcpu.id() == 0 {
        vcpu.set_regs(&regs(mode))?;
    }
    let mut lapic = vcpu.lapic()?;
    // LINT0 = ExtINT, LINT1 = NMI, as the MP table says.
    const LVT_LINT0: usize = 0x350;
    const LVT_LINT1: usize = 0x360;
    lapic.set_reg(LVT_LINT0, (lapic.reg(LVT_LINT0) & !0x700) | (7 << 8));
    lapic.set_reg(LVT_LINT1, (lapic.reg(LVT_LINT1) & !0x700) | (4 << 8));
    vcpu.set_lapic(&lapic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdt_entries_decode_to_flat_segments() {
        let code64 = segment_from(gdt_entry(0xa09b, 0, 0xfffff), CODE_SELECTOR);
        assert!(code64.l && !code64.db && code64.present && code64.g);
        assert_eq!(code64.limit, 0xffff_ffff);
        assert_eq!(code64.type_, 0xb);
        let code32 = segment_from(gdt_entry(0xc09b, 0, 0xfffff), CODE_SELECTOR);
        assert!(!code32.l && code32.db);
        let data = segment_from(gdt_entry(0xc093, 0, 0xfffff), DATA_SELECTOR);
        assert_eq!(data.type_, 3);
        assert!(data.s);
        let tss = segment_from(gdt_entry(0x808b, 0, 0xfffff), TSS_SELECTOR);
        assert!(!tss.s);
    }

    #[test]
    fn long_mode_registers() {
        let s = sregs(
            EntryMode::Linux64 { entry: 0x100_0000 },
            &SpecialRegs::default(),
        );
        assert_eq!(s.efer & EFER_LMA, EFER_LMA);
        assert_eq!(s.cr3, PML4_ADDR);
        let r = regs(EntryMode::Linux64 { entry: 0x100_0000 });
        assert_eq!((r.rip, r.rsi), (0x100_0000, ZERO_PAGE_ADDR));
        let p = sregs(EntryMode::Pvh { entry: 0x10_0000 }, &SpecialRegs::default());
        assert_eq!(p.cr0 & CR0_PG, 0);
        assert!(p.cs.db);
    }
}
