//! RDMSR/WRMSR: the MSRs a Linux guest touches. Unknown MSRs raise #GP, as on hardware, so
//! the guest's safe accessors see them missing.

use crate::cpu::Cpu;
use crate::error::{Fault, Stop};
use crate::state::{cr, Seg};

/// MSR numbers.
pub mod index {
    /// IA32_TSC.
    pub const TSC: u32 = 0x10;
    /// IA32_APIC_BASE.
    pub const APIC_BASE: u32 = 0x1b;
    /// IA32_FEATURE_CONTROL.
    pub const FEATURE_CONTROL: u32 = 0x3a;
    /// IA32_TSC_ADJUST.
    pub const TSC_ADJUST: u32 = 0x3b;
    /// IA32_BIOS_SIGN_ID (microcode revision).
    pub const BIOS_SIGN_ID: u32 = 0x8b;
    /// IA32_MTRRCAP.
    pub const MTRRCAP: u32 = 0xfe;
    /// IA32_SYSENTER_CS.
    pub const SYSENTER_CS: u32 = 0x174;
    /// IA32_MCG_CAP.
    pub const MCG_CAP: u32 = 0x179;
    /// IA32_MCG_STATUS.
    pub const MCG_STATUS: u32 = 0x17a;
    /// IA32_MISC_ENABLE.
    pub const MISC_ENABLE: u32 = 0x1a0;
    /// IA32_MTRR_DEF_TYPE.
    pub const MTRR_DEF_TYPE: u32 = 0x2ff;
    /// IA32_PAT.
    pub const PAT: u32 = 0x277;
    /// IA32_TSC_DEADLINE.
    pub const TSC_DEADLINE: u32 = 0x6e0;
    /// IA32_EFER.
    pub const EFER: u32 = 0xc000_0080;
    /// IA32_STAR.
    pub const STAR: u32 = 0xc000_0081;
    /// IA32_LSTAR.
    pub const LSTAR: u32 = 0xc000_0082;
    /// IA32_CSTAR.
    pub const CSTAR: u32 = 0xc000_0083;
    /// IA32_FMASK.
    pub const SFMASK: u32 = 0xc000_0084;
    /// IA32_FS_BASE.
    pub const FS_BASE: u32 = 0xc000_0100;
    /// IA32_GS_BASE.
    pub const GS_BASE: u32 = 0xc000_0101;
    /// IA32_KERNEL_GS_BASE.
    pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
    /// IA32_TSC_AUX.
    pub const TSC_AUX: u32 = 0xc000_0103;
}

impl Cpu {
    /// Reads an MSR without side effects (for the VMM), `None` when unknown.
    pub fn peek_msr(&self, msr: u32) -> Option<u64> {
        use index::*;
        let m = &self.state.msrs;
        Some(match msr {
            TSC => self.tsc(),
            APIC_BASE => m.apic_base,
            TSC_ADJUST => m.tsc_adjust as u64,
            0x174..=0x176 => m.sysenter[(msr - SYSENTER_CS) as usize],
            MISC_ENABLE => m.misc_enable,
            PAT => m.pat,
            TSC_DEADLINE => m.tsc_deadline,
            EFER => self.state.efer,
            STAR => m.star,
            LSTAR => m.lstar,
            CSTAR => m.cstar,
            SFMASK => m.sfmask,
            FS_BASE => self.state.seg[Seg::Fs as usize].base,
            GS_BASE => self.state.seg[Seg::Gs as usize].base,
            KERNEL_GS_BASE => m.kernel_gs_base,
            TSC_AUX => m.tsc_aux,
            _ => return None,
        })
    }

    /// Reads an MSR, #GP for unknown ones.
    pub fn rdmsr(&mut self, msr: u32) -> Result<u64, Stop> {
        use index::*;
        let m = &self.state.msrs;
        Ok(match msr {
            TSC => self.tsc(),
            APIC_BASE => m.apic_base,
            FEATURE_CONTROL => 1, // locked, VMX off
            TSC_ADJUST => m.tsc_adjust as u64,
            BIOS_SIGN_ID => 0,
            MTRRCAP | MTRR_DEF_TYPE | MCG_CAP | MCG_STATUS => 0,
            0x174..=0x176 => m.sysenter[(msr - SYSENTER_CS) as usize],
            MISC_ENABLE => m.misc_enable,
            PAT => m.pat,
            TSC_DEADLINE => m.tsc_deadline,
            EFER => self.state.efer,
            STAR => m.star,
            LSTAR => m.lstar,
            CSTAR => m.cstar,
            SFMASK => m.sfmask,
            FS_BASE => self.state.seg[Seg::Fs as usize].base,
            GS_BASE => self.state.seg[Seg::Gs as usize].base,
            KERNEL_GS_BASE => m.kernel_gs_base,
            TSC_AUX => m.tsc_aux,
            _ => {
                tracing::debug!(
                    msr = format_args!("{msr:#x}"),
                    "rdmsr of an unknown MSR: #GP"
                );
                return Err(Fault::gp(0).into());
            }
        })
    }

    /// Writes an MSR, #GP for unknown ones or reserved bits.
    pub fn wrmsr(&mut self, msr: u32, v: u64) -> Result<(), Stop> {
        use index::*;
        let canonical = crate::mmu::canonical(v);
        match msr {
            TSC => {
                // Moving the TSC moves IA32_TSC_ADJUST by the same amount.
                let delta = v.wrapping_sub(self.tsc()) as i64;
                let m = &mut self.state.msrs;
                m.tsc_offset = m.tsc_offset.wrapping_add(delta);
                m.tsc_adjust = m.tsc_adjust.wrapping_add(delta);
            }
            TSC_ADJUST => {
                let m = &mut self.state.msrs;
                m.tsc_offset = m
                    .tsc_offset
                    .wrapping_add((v as i64).wrapping_sub(m.tsc_adjust));
                m.tsc_adjust = v as i64;
            }
            APIC_BASE => self.state.msrs.apic_base = v,
            BIOS_SIGN_ID | MTRR_DEF_TYPE | MCG_STATUS => {}
            0x174..=0x176 => self.state.msrs.sysenter[(msr - SYSENTER_CS) as usize] = v,
            MISC_ENABLE => self.state.msrs.misc_enable = v,
            PAT => self.state.msrs.pat = v,
            TSC_DEADLINE => self.state.msrs.tsc_deadline = v,
            EFER => {
                let allowed = cr::EFER_SCE | cr::EFER_LME | cr::EFER_LMA | cr::EFER_NXE;
                if v & !allowed != 0 {
                    return Err(Fault::gp(0).into());
                }
                // LMA is read-only and stays set in long mode.
                self.state.efer = (v & !cr::EFER_LMA) | (self.state.efer & cr::EFER_LMA);
                self.tlb.flush();
            }
            STAR => self.state.msrs.star = v,
            LSTAR | CSTAR if !canonical => return Err(Fault::gp(0).into()),
            LSTAR => self.state.msrs.lstar = v,
            CSTAR => self.state.msrs.cstar = v,
            SFMASK => self.state.msrs.sfmask = v & 0xffff_ffff,
            FS_BASE | GS_BASE | KERNEL_GS_BASE if !canonical => return Err(Fault::gp(0).into()),
            FS_BASE => self.state.seg[Seg::Fs as usize].base = v,
            GS_BASE => self.state.seg[Seg::Gs as usize].base = v,
            KERNEL_GS_BASE => self.state.msrs.kernel_gs_base = v,
            TSC_AUX => self.state.msrs.tsc_aux = v & 0xffff_ffff,
            _ => {
                tracing::debug!(
                    msr = format_args!("{msr:#x}"),
                    "wrmsr of an unknown MSR: #GP"
                );
                return Err(Fault::gp(0).into());
            }
        }
        Ok(())
    }
}
