//! Conversions between the vmm boundary's plain register types and the CPU's state.

use corral_vmm::hypervisor::{
    DescriptorTable as VDt, FpuState as VFpu, Regs, Segment as VSeg, SpecialRegs,
};

use crate::state::{CpuState, DescriptorTable, FpuState, Seg, Segment};

/// The boundary's segment as the CPU's (attributes in the KVM layout).
pub fn seg_in(s: &VSeg) -> Segment {
    let attr = (s.type_ as u16 & 0xf)
        | (s.s as u16) << 4
        | ((s.dpl as u16) & 3) << 5
        | (s.present as u16) << 7
        | (s.avl as u16) << 8
        | (s.l as u16) << 9
        | (s.db as u16) << 10
        | (s.g as u16) << 11
        | (s.unusable as u16) << 12;
    Segment {
        selector: s.selector,
        base: s.base,
        limit: s.limit,
        attr,
    }
}

/// The CPU's segment as the boundary's.
pub fn seg_out(s: &Segment) -> VSeg {
    let a = s.attr;
    VSeg {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: (a & 0xf) as u8,
        s: a & (1 << 4) != 0,
        dpl: ((a >> 5) & 3) as u8,
        present: a & (1 << 7) != 0,
        avl: a & (1 << 8) != 0,
        l: a & (1 << 9) != 0,
        db: a & (1 << 10) != 0,
        g: a & (1 << 11) != 0,
        unusable: a & (1 << 12) != 0,
    }
}

/// General registers out.
pub fn regs_out(s: &CpuState) -> Regs {
    let g = &s.gpr;
    Regs {
        rax: g[0],
        rcx: g[1],
        rdx: g[2],
        rbx: g[3],
        rsp: g[4],
        rbp: g[5],
        rsi: g[6],
        rdi: g[7],
        r8: g[8],
        r9: g[9],
        r10: g[10],
        r11: g[11],
        r12: g[12],
        r13: g[13],
        r14: g[14],
        r15: g[15],
        rip: s.rip,
        rflags: s.rflags,
    }
}

/// General registers in.
pub fn regs_in(s: &mut CpuState, r: &Regs) {
    s.gpr = [
        r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11, r.r12,
        r.r13, r.r14, r.r15,
    ];
    s.rip = r.rip;
    s.rflags = r.rflags | 2;
}

/// Special registers out.
pub fn sregs_out(s: &CpuState) -> SpecialRegs {
    SpecialRegs {
        es: seg_out(&s.seg[Seg::Es as usize]),
        cs: seg_out(&s.seg[Seg::Cs as usize]),
        ss: seg_out(&s.seg[Seg::Ss as usize]),
        ds: seg_out(&s.seg[Seg::Ds as usize]),
        fs: seg_out(&s.seg[Seg::Fs as usize]),
        gs: seg_out(&s.seg[Seg::Gs as usize]),
        tr: seg_out(&s.tr),
        ldt: seg_out(&s.ldtr),
        gdt: VDt {
            base: s.gdtr.base,
            limit: s.gdtr.limit,
        },
        idt: VDt {
            base: s.idtr.base,
            limit: s.idtr.limit,
        },
        cr0: s.cr0,
        cr2: s.cr2,
        cr3: s.cr3,
        cr4: s.cr4,
        cr8: s.cr8,
        efer: s.efer,
        apic_base: s.msrs.apic_base,
    }
}

/// Special registers in.
pub fn sregs_in(s: &mut CpuState, r: &SpecialRegs) {
    s.seg[Seg::Es as usize] = seg_in(&r.es);
    s.seg[Seg::Cs as usize] = seg_in(&r.cs);
    s.seg[Seg::Ss as usize] = seg_in(&r.ss);
    s.seg[Seg::Ds as usize] = seg_in(&r.ds);
    s.seg[Seg::Fs as usize] = seg_in(&r.fs);
    s.seg[Seg::Gs as usize] = seg_in(&r.gs);
    s.tr = seg_in(&r.tr);
    s.ldtr = seg_in(&r.ldt);
    s.gdtr = DescriptorTable {
        base: r.gdt.base,
        limit: r.gdt.limit,
    };
    s.idtr = DescriptorTable {
        base: r.idt.base,
        limit: r.idt.limit,
    };
    s.cr0 = r.cr0;
    s.cr2 = r.cr2;
    s.cr3 = r.cr3;
    s.cr4 = r.cr4;
    s.cr8 = r.cr8;
    s.efer = r.efer;
    if r.apic_base != 0 {
        s.msrs.apic_base = r.apic_base;
    }
}

/// FPU out.
pub fn fpu_out(f: &FpuState) -> VFpu {
    let mut xmm = [[0u8; 16]; 16];
    for (d, s) in xmm.iter_mut().zip(f.xmm.iter()) {
        *d = s.to_le_bytes();
    }
    VFpu {
        fcw: f.fcw,
        fsw: f.fsw,
        ftwx: f.ftw,
        last_opcode: f.fop,
        last_ip: 0,
        last_dp: 0,
        fpr: f.st,
        xmm,
        mxcsr: f.mxcsr,
    }
}

/// FPU in.
pub fn fpu_in(f: &mut FpuState, v: &VFpu) {
    f.fcw = v.fcw;
    f.fsw = v.fsw;
    f.ftw = v.ftwx;
    f.fop = v.last_opcode;
    f.st = v.fpr;
    for (d, s) in f.xmm.iter_mut().zip(v.xmm.iter()) {
        *d = u128::from_le_bytes(*s);
    }
    f.mxcsr = v.mxcsr;
}
