//! Architectural state of one x86-64 CPU: registers, segments, control registers and MSRs.

/// RFLAGS bits.
pub mod flags {
    /// Carry.
    pub const CF: u64 = 1 << 0;
    /// Always one.
    pub const FIXED: u64 = 1 << 1;
    /// Parity of the low byte.
    pub const PF: u64 = 1 << 2;
    /// Auxiliary carry (bit 3 to 4).
    pub const AF: u64 = 1 << 4;
    /// Zero.
    pub const ZF: u64 = 1 << 6;
    /// Sign.
    pub const SF: u64 = 1 << 7;
    /// Single-step trap.
    pub const TF: u64 = 1 << 8;
    /// Interrupts enabled.
    pub const IF: u64 = 1 << 9;
    /// String direction.
    pub const DF: u64 = 1 << 10;
    /// Overflow.
    pub const OF: u64 = 1 << 11;
    /// I/O privilege level (two bits).
    pub const IOPL: u64 = 3 << 12;
    /// Nested task.
    pub const NT: u64 = 1 << 14;
    /// Resume.
    pub const RF: u64 = 1 << 16;
    /// Virtual-8086 mode.
    pub const VM: u64 = 1 << 17;
    /// Alignment check.
    pub const AC: u64 = 1 << 18;
    /// Virtual interrupt flag.
    pub const VIF: u64 = 1 << 19;
    /// Virtual interrupt pending.
    pub const VIP: u64 = 1 << 20;
    /// CPUID available.
    pub const ID: u64 = 1 << 21;
    /// The six arithmetic status flags.
    pub const STATUS: u64 = CF | PF | AF | ZF | SF | OF;
    /// Every bit software may change with POPF at CPL0.
    pub const WRITABLE: u64 = STATUS | TF | IF | DF | IOPL | NT | AC | ID | RF;
}

/// Control register bits the CPU acts on.
pub mod cr {
    /// CR0: protected mode.
    pub const CR0_PE: u64 = 1 << 0;
    /// CR0: monitor coprocessor.
    pub const CR0_MP: u64 = 1 << 1;
    /// CR0: x87 emulation (FPU instructions fault).
    pub const CR0_EM: u64 = 1 << 2;
    /// CR0: task switched (lazy FPU).
    pub const CR0_TS: u64 = 1 << 3;
    /// CR0: extension type, always one.
    pub const CR0_ET: u64 = 1 << 4;
    /// CR0: numeric error reporting.
    pub const CR0_NE: u64 = 1 << 5;
    /// CR0: supervisor write protection.
    pub const CR0_WP: u64 = 1 << 16;
    /// CR0: alignment mask.
    pub const CR0_AM: u64 = 1 << 18;
    /// CR0: paging.
    pub const CR0_PG: u64 = 1 << 31;
    /// CR4: page size extensions.
    pub const CR4_PSE: u64 = 1 << 4;
    /// CR4: physical address extension.
    pub const CR4_PAE: u64 = 1 << 5;
    /// CR4: global pages.
    pub const CR4_PGE: u64 = 1 << 7;
    /// CR4: OS supports FXSAVE/FXRSTOR.
    pub const CR4_OSFXSR: u64 = 1 << 9;
    /// CR4: OS handles SIMD exceptions.
    pub const CR4_OSXMMEXCPT: u64 = 1 << 10;
    /// EFER: SYSCALL enable.
    pub const EFER_SCE: u64 = 1 << 0;
    /// EFER: long mode enable.
    pub const EFER_LME: u64 = 1 << 8;
    /// EFER: long mode active.
    pub const EFER_LMA: u64 = 1 << 10;
    /// EFER: no-execute enable.
    pub const EFER_NXE: u64 = 1 << 11;
}

/// A segment register with its hidden descriptor cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Segment {
    /// Visible selector.
    pub selector: u16,
    /// Base address (used for FS and GS in long mode).
    pub base: u64,
    /// Limit in bytes.
    pub limit: u32,
    /// Descriptor attributes: type(4) S(1) DPL(2) P(1) AVL(1) L(1) DB(1) G(1), in the KVM layout.
    pub attr: u16,
}

impl Segment {
    /// The descriptor privilege level.
    pub fn dpl(&self) -> u8 {
        ((self.attr >> 5) & 3) as u8
    }
    /// The 64-bit code flag.
    pub fn long(&self) -> bool {
        self.attr & (1 << 9) != 0
    }
    /// The default-size flag.
    pub fn db(&self) -> bool {
        self.attr & (1 << 10) != 0
    }
    /// A flat 64-bit ring-0 code segment.
    pub fn code64(selector: u16) -> Self {
        Segment {
            selector,
            base: 0,
            limit: 0xffff_ffff,
            attr: 0xb | (1 << 4) | (1 << 7) | (1 << 9) | (1 << 11),
        }
    }
    /// A flat writable data segment.
    pub fn data(selector: u16) -> Self {
        Segment {
            selector,
            base: 0,
            limit: 0xffff_ffff,
            attr: 0x3 | (1 << 4) | (1 << 7) | (1 << 10) | (1 << 11),
        }
    }
}

/// A descriptor table register (GDTR, IDTR).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DescriptorTable {
    /// Linear base address.
    pub base: u64,
    /// Limit in bytes (size - 1).
    pub limit: u16,
}

/// Segment register indexes, in the encoding order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg {
    /// ES.
    Es = 0,
    /// CS.
    Cs = 1,
    /// SS.
    Ss = 2,
    /// DS.
    Ds = 3,
    /// FS.
    Fs = 4,
    /// GS.
    Gs = 5,
}

/// General purpose register indexes.
pub mod reg {
    /// RAX.
    pub const RAX: usize = 0;
    /// RCX.
    pub const RCX: usize = 1;
    /// RDX.
    pub const RDX: usize = 2;
    /// RBX.
    pub const RBX: usize = 3;
    /// RSP.
    pub const RSP: usize = 4;
    /// RBP.
    pub const RBP: usize = 5;
    /// RSI.
    pub const RSI: usize = 6;
    /// RDI.
    pub const RDI: usize = 7;
    /// R11 (SYSCALL saves RFLAGS there).
    pub const R11: usize = 11;
}

/// x87 and SSE state, laid out as the FXSAVE image needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FpuState {
    /// x87 control word.
    pub fcw: u16,
    /// x87 status word.
    pub fsw: u16,
    /// Abridged tag word (one bit per register, as FXSAVE stores it).
    pub ftw: u8,
    /// Last x87 opcode.
    pub fop: u16,
    /// The eight 80-bit x87/MMX registers, each in 16 bytes.
    pub st: [[u8; 16]; 8],
    /// The sixteen XMM registers.
    pub xmm: [u128; 16],
    /// SSE control and status.
    pub mxcsr: u32,
}

impl Default for FpuState {
    fn default() -> Self {
        FpuState {
            fcw: 0x37f,
            fsw: 0,
            ftw: 0,
            fop: 0,
            st: [[0; 16]; 8],
            xmm: [0; 16],
            mxcsr: 0x1f80,
        }
    }
}

/// Model-specific registers the CPU keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Msrs {
    /// IA32_STAR: SYSCALL/SYSRET selectors.
    pub star: u64,
    /// IA32_LSTAR: 64-bit SYSCALL target.
    pub lstar: u64,
    /// IA32_CSTAR: compatibility-mode SYSCALL target.
    pub cstar: u64,
    /// IA32_FMASK: RFLAGS bits cleared by SYSCALL.
    pub sfmask: u64,
    /// IA32_KERNEL_GS_BASE: swapped with GS.base by SWAPGS.
    pub kernel_gs_base: u64,
    /// IA32_SYSENTER_CS/ESP/EIP (kept, unused in long mode).
    pub sysenter: [u64; 3],
    /// IA32_PAT.
    pub pat: u64,
    /// IA32_APIC_BASE.
    pub apic_base: u64,
    /// IA32_TSC_DEADLINE.
    pub tsc_deadline: u64,
    /// IA32_MISC_ENABLE.
    pub misc_enable: u64,
    /// IA32_TSC_AUX (RDTSCP).
    pub tsc_aux: u64,
    /// IA32_TSC adjustment: guest TSC = host clock + offset.
    pub tsc_offset: i64,
    /// IA32_TSC_ADJUST: the sum of the software's changes to the TSC (writes to IA32_TSC or
    /// to this MSR), which Linux compares across CPUs instead of watching the TSC.
    pub tsc_adjust: i64,
}

/// The whole architectural state of one CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuState {
    /// RAX..R15.
    pub gpr: [u64; 16],
    /// Instruction pointer.
    pub rip: u64,
    /// Flags.
    pub rflags: u64,
    /// ES, CS, SS, DS, FS, GS.
    pub seg: [Segment; 6],
    /// Task register.
    pub tr: Segment,
    /// Local descriptor table register.
    pub ldtr: Segment,
    /// Global descriptor table register.
    pub gdtr: DescriptorTable,
    /// Interrupt descriptor table register.
    pub idtr: DescriptorTable,
    /// CR0.
    pub cr0: u64,
    /// CR2 (last page-fault address).
    pub cr2: u64,
    /// CR3 (page table root).
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// CR8 (task priority).
    pub cr8: u64,
    /// Extended feature enables.
    pub efer: u64,
    /// Debug registers DR0-DR7 (stored, breakpoints not implemented).
    pub dr: [u64; 8],
    /// MSRs.
    pub msrs: Msrs,
    /// x87/SSE.
    pub fpu: FpuState,
}

impl Default for CpuState {
    fn default() -> Self {
        CpuState {
            gpr: [0; 16],
            rip: 0,
            rflags: flags::FIXED,
            seg: [Segment::default(); 6],
            tr: Segment::default(),
            ldtr: Segment::default(),
            gdtr: DescriptorTable::default(),
            idtr: DescriptorTable::default(),
            cr0: cr::CR0_ET,
            cr2: 0,
            cr3: 0,
            cr4: 0,
            cr8: 0,
            efer: 0,
            dr: [0, 0, 0, 0, 0, 0, 0xffff0ff0, 0x400],
            msrs: Msrs {
                pat: 0x0007_0406_0007_0406,
                apic_base: 0xfee0_0000 | (1 << 11) | (1 << 8),
                misc_enable: 1,
                ..Msrs::default()
            },
            fpu: FpuState::default(),
        }
    }
}

impl CpuState {
    /// A CPU already in 64-bit long mode with flat segments, paging rooted at `cr3`.
    pub fn long_mode(cr3: u64) -> Self {
        let mut s = CpuState {
            cr0: cr::CR0_PE | cr::CR0_ET | cr::CR0_NE | cr::CR0_WP | cr::CR0_PG | cr::CR0_MP,
            cr3,
            cr4: cr::CR4_PAE | cr::CR4_OSFXSR | cr::CR4_OSXMMEXCPT,
            efer: cr::EFER_LME | cr::EFER_LMA | cr::EFER_NXE | cr::EFER_SCE,
            ..CpuState::default()
        };
        s.seg[Seg::Cs as usize] = Segment::code64(0x10);
        for i in [Seg::Es, Seg::Ss, Seg::Ds, Seg::Fs, Seg::Gs] {
            s.seg[i as usize] = Segment::data(0x18);
        }
        s.tr = Segment {
            selector: 0x20,
            base: 0,
            limit: 0x67,
            attr: 0xb | (1 << 7),
        };
        s
    }

    /// The current privilege level.
    pub fn cpl(&self) -> u8 {
        (self.seg[Seg::Cs as usize].selector & 3) as u8
    }

    /// Whether paging is on.
    pub fn paging(&self) -> bool {
        self.cr0 & cr::CR0_PG != 0
    }
}
