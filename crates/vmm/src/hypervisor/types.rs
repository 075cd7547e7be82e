//! Backend-neutral CPU state: general and special registers, segments, MSRs, CPUID entries,
//! LAPIC and FPU state. Plain data with serde, so snapshots and the control socket can carry
//! them; each backend converts to and from its own representation.

use serde::{Deserialize, Serialize};

/// General-purpose registers, RIP and RFLAGS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Regs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rsp: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
}

/// A segment register with its hidden descriptor cache, as KVM and the SDM describe it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Linear base address.
    pub base: u64,
    /// Limit in bytes (already scaled by the granularity bit).
    pub limit: u32,
    /// Selector.
    pub selector: u16,
    /// Descriptor type (4 bits).
    pub type_: u8,
    /// Present.
    pub present: bool,
    /// Descriptor privilege level.
    pub dpl: u8,
    /// Default operation size (1 = 32-bit).
    pub db: bool,
    /// Code/data (true) or system (false) descriptor.
    pub s: bool,
    /// 64-bit code segment.
    pub l: bool,
    /// Granularity (limit in 4 KiB units in the descriptor).
    pub g: bool,
    /// Available for software.
    pub avl: bool,
    /// The register holds no usable segment (a null selector).
    pub unusable: bool,
}

/// GDTR or IDTR.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescriptorTable {
    /// Linear base address.
    pub base: u64,
    /// Limit in bytes.
    pub limit: u16,
}

/// Segment, control and system-table registers, EFER and the APIC base MSR.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct SpecialRegs {
    pub cs: Segment,
    pub ds: Segment,
    pub es: Segment,
    pub fs: Segment,
    pub gs: Segment,
    pub ss: Segment,
    /// Task register.
    pub tr: Segment,
    /// Local descriptor table register.
    pub ldt: Segment,
    pub gdt: DescriptorTable,
    pub idt: DescriptorTable,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    /// Task-priority register as CR8.
    pub cr8: u64,
    pub efer: u64,
    /// IA32_APIC_BASE.
    pub apic_base: u64,
}

/// x87/SSE state in the FXSAVE layout's terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FpuState {
    /// x87 control word.
    pub fcw: u16,
    /// x87 status word.
    pub fsw: u16,
    /// Abridged tag word.
    pub ftwx: u8,
    /// Last opcode.
    pub last_opcode: u16,
    /// Last instruction pointer.
    pub last_ip: u64,
    /// Last data pointer.
    pub last_dp: u64,
    /// ST0..ST7 / MM0..MM7, 80 bits each in 16-byte slots.
    pub fpr: [[u8; 16]; 8],
    /// XMM0..XMM15.
    pub xmm: [[u8; 16]; 16],
    /// MXCSR.
    pub mxcsr: u32,
}

/// One model-specific register.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Msr {
    /// MSR number (ECX of RDMSR/WRMSR).
    pub index: u32,
    /// Value.
    pub data: u64,
}

/// One CPUID leaf/subleaf and the registers it returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuidEntry {
    /// EAX input (leaf).
    pub function: u32,
    /// ECX input (subleaf), meaningful when `index_significant`.
    pub index: u32,
    /// Whether the subleaf selects a different answer.
    pub index_significant: bool,
    #[allow(missing_docs)]
    pub eax: u32,
    #[allow(missing_docs)]
    pub ebx: u32,
    #[allow(missing_docs)]
    pub ecx: u32,
    #[allow(missing_docs)]
    pub edx: u32,
}

/// Size of the local APIC register page image.
pub const LAPIC_REGS_SIZE: usize = 1024;

/// The local APIC register page (offsets as in the SDM: 0x20 ID, 0x80 TPR, 0xF0 SVR,
/// 0x350/0x360 LVT LINT0/1, …; each 32-bit register at a 16-byte stride), the format KVM's
/// `kvm_lapic_state` uses, so both backends share boot-time LAPIC setup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LapicState {
    /// The first 1024 bytes of the APIC register page.
    pub regs: Vec<u8>,
}

impl Default for LapicState {
    fn default() -> Self {
        LapicState {
            regs: vec![0; LAPIC_REGS_SIZE],
        }
    }
}

impl LapicState {
    /// Read the 32-bit register at `offset` (e.g. 0x350 for LVT LINT0).
    pub fn reg(&self, offset: usize) -> u32 {
        let b = &self.regs[offset..offset + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Write the 32-bit register at `offset`.
    pub fn set_reg(&mut self, offset: usize, value: u32) {
        self.regs[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lapic_registers_are_little_endian_words() {
        let mut l = LapicState::default();
        l.set_reg(0x350, 0x0000_0700);
        assert_eq!(l.regs[0x351], 0x07);
        assert_eq!(l.reg(0x350), 0x700);
        assert_eq!(l.reg(0x360), 0);
    }
}
