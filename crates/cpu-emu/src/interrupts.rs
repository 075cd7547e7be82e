//! Exceptions and interrupts through the 64-bit IDT (error codes, IST stacks from the TSS,
//! privilege changes), double and triple faults, IRETQ, SYSCALL/SYSRET, and descriptor
//! loading for segment registers and far transfers.

use iced_x86::Register;

use crate::cpu::Cpu;
use crate::error::{vector, EmuError, Exit, Fault, Stop};
use crate::mmu::acc;
use crate::state::{cr, flags, reg, Seg, Segment};

/// How an event reached the CPU: it decides DPL checks and which RIP is pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    /// A fault: RIP of the faulting instruction.
    Fault,
    /// INT n / INT3 / INTO: gate DPL is checked, RIP after the instruction.
    Software,
    /// External interrupt.
    External,
}

impl Cpu {
    /// Delivers a fault raised by an instruction, escalating to #DF and triple fault.
    pub(crate) fn deliver_fault(&mut self, f: Fault) -> Result<Option<Exit>, EmuError> {
        self.deliver_with_escalation(f.vector, f.error_code, EventKind::Fault, self.state.rip)
    }

    /// Delivers an external interrupt vector.
    pub(crate) fn deliver_external(&mut self, v: u8) -> Result<Option<Exit>, EmuError> {
        self.deliver_with_escalation(v, None, EventKind::External, self.state.rip)
    }

    fn deliver_with_escalation(
        &mut self,
        v: u8,
        code: Option<u32>,
        kind: EventKind,
        rip: u64,
    ) -> Result<Option<Exit>, EmuError> {
        // The pushed RFLAGS must be exact.
        self.flags_sync();
        match self.deliver(v, code, kind, rip) {
            Ok(()) => Ok(None),
            Err(Stop::Fault(second)) => {
                let contributory = |x: u8| matches!(x, 0 | 10 | 11 | 12 | 13);
                let df = v == vector::DF
                    || (contributory(v) && contributory(second.vector))
                    || (v == vector::PF
                        && (contributory(second.vector) || second.vector == vector::PF));
                if v == vector::DF {
                    tracing::warn!(rip = format_args!("{:#x}", self.state.rip), "triple fault");
                    return Ok(Some(Exit::Shutdown));
                }
                if df {
                    return self.deliver_with_escalation(
                        vector::DF,
                        Some(0),
                        EventKind::Fault,
                        rip,
                    );
                }
                self.deliver_with_escalation(
                    second.vector,
                    second.error_code,
                    EventKind::Fault,
                    rip,
                )
            }
            Err(Stop::Exit(e)) => Err(EmuError::Internal {
                what: format!("exit {e:?} while delivering vector {v}"),
                report: self.report(),
            }),
            Err(Stop::NotLongMode) => Err(EmuError::NotLongMode(self.report())),
            Err(Stop::Unsupported) => Err(EmuError::Unsupported(self.report())),
            Err(Stop::Internal(what)) => Err(EmuError::Internal {
                what,
                report: self.report(),
            }),
        }
    }

    /// Supervisor-mode read (implicit system accesses ignore CPL).
    pub(crate) fn sys_read(&mut self, va: u64, size: usize) -> Result<u64, Stop> {
        self.read_acc(va, size, acc::READ)
    }

    fn sys_write(&mut self, va: u64, size: usize, v: u64) -> Result<(), Stop> {
        self.write_acc(va, size, v, acc::READ)
    }

    /// Delivers one event through the IDT; `rip` is what gets pushed.
    pub(crate) fn deliver(
        &mut self,
        v: u8,
        code: Option<u32>,
        kind: EventKind,
        rip: u64,
    ) -> Result<(), Stop> {
        if self.state.efer & cr::EFER_LMA == 0 {
            return Err(Stop::NotLongMode);
        }
        let idt = self.state.idtr;
        let off = v as u64 * 16;
        let ext = if kind == EventKind::Software { 0 } else { 1 };
        if off + 15 > idt.limit as u64 {
            return Err(Fault::gp(v as u32 * 8 + 2 + ext).into());
        }
        let lo = self.sys_read(idt.base + off, 8)?;
        let hi = self.sys_read(idt.base + off + 8, 8)?;
        let gate_type = (lo >> 40) & 0xf;
        let dpl = ((lo >> 45) & 3) as u8;
        let present = lo & (1 << 47) != 0;
        if gate_type != 0xe && gate_type != 0xf {
            return Err(Fault::gp(v as u32 * 8 + 2 + ext).into());
        }
        let cpl = self.state.cpl();
        if kind == EventKind::Software && dpl < cpl {
            return Err(Fault::gp(v as u32 * 8 + 2).into());
        }
        if !present {
            return Err(Fault::np(v as u32 * 8 + 2 + ext).into());
        }
        let target = (lo & 0xffff) | ((lo >> 32) & 0xffff_0000) | (hi << 32);
        let sel = ((lo >> 16) & 0xffff) as u16;
        let ist = (lo >> 32) & 7;
        let cs = self.read_code_descriptor(sel)?;
        let new_cpl = cs.dpl();
        if new_cpl > cpl {
            return Err(Fault::gp(sel as u32 & !3).into());
        }
        let old_ss = self.state.seg[Seg::Ss as usize].selector as u64;
        let old_rsp = self.state.gpr[reg::RSP];
        let mut rsp = if ist != 0 {
            self.sys_read(self.state.tr.base + 0x24 + (ist - 1) * 8, 8)?
        } else if new_cpl < cpl {
            self.sys_read(self.state.tr.base + 4 + new_cpl as u64 * 8, 8)?
        } else {
            old_rsp
        };
        rsp &= !0xf;
        let old_flags = self.state.rflags;
        let old_cs = self.state.seg[Seg::Cs as usize].selector as u64;
        let mut frame = [old_ss, old_rsp, old_flags, old_cs, rip, 0];
        let n = if let Some(c) = code {
            frame[5] = c as u64;
            6
        } else {
            5
        };
        // Writes happen with the new privilege (supervisor).
        for (i, val) in frame[..n].iter().enumerate() {
            self.sys_write(rsp.wrapping_sub(8 * (i as u64 + 1)), 8, *val)?;
        }
        rsp = rsp.wrapping_sub(8 * n as u64);
        if new_cpl < cpl {
            self.state.seg[Seg::Ss as usize] = Segment {
                selector: new_cpl as u16,
                base: 0,
                limit: 0,
                attr: 1 << 12, // unusable
            };
        }
        let mut cs = cs;
        cs.selector = (sel & !3) | new_cpl as u16;
        self.state.seg[Seg::Cs as usize] = cs;
        self.state.gpr[reg::RSP] = rsp;
        self.state.rflags &= !(flags::TF | flags::NT | flags::RF | flags::VM);
        if gate_type == 0xe {
            self.state.rflags &= !flags::IF;
        }
        self.state.rip = target;
        self.end_block = true;
        Ok(())
    }

    /// Reads a descriptor (8 bytes) for `sel` from the GDT or LDT.
    pub(crate) fn read_descriptor(&mut self, sel: u16) -> Result<u64, Stop> {
        let (base, limit) = if sel & 4 != 0 {
            (self.state.ldtr.base, self.state.ldtr.limit as u64)
        } else {
            (self.state.gdtr.base, self.state.gdtr.limit as u64)
        };
        let idx = (sel & !7) as u64;
        if idx + 7 > limit {
            return Err(Fault::gp(sel as u32 & !3).into());
        }
        self.sys_read(base + idx, 8)
    }

    /// A segment cache entry from a descriptor.
    pub(crate) fn segment_from(sel: u16, d: u64) -> Segment {
        let base = ((d >> 16) & 0xff_ffff) | (((d >> 56) & 0xff) << 24);
        let mut limit = ((d & 0xffff) | ((d >> 32) & 0xf_0000)) as u32;
        let attr = ((d >> 40) & 0xff) as u16 | ((((d >> 52) & 0xf) as u16) << 8);
        if attr & (1 << 11) != 0 {
            limit = (limit << 12) | 0xfff;
        }
        Segment {
            selector: sel,
            base,
            limit,
            attr,
        }
    }

    /// Loads and checks a 64-bit code segment descriptor.
    pub(crate) fn read_code_descriptor(&mut self, sel: u16) -> Result<Segment, Stop> {
        if sel & !3 == 0 {
            return Err(Fault::gp(0).into());
        }
        let d = self.read_descriptor(sel)?;
        let seg = Self::segment_from(sel, d);
        if seg.attr & 0x18 != 0x18 {
            return Err(Fault::gp(sel as u32 & !3).into());
        }
        if seg.attr & 0x80 == 0 {
            return Err(Fault::np(sel as u32 & !3).into());
        }
        if !seg.long() {
            return Err(Stop::NotLongMode);
        }
        Ok(seg)
    }

    /// MOV/POP to a data segment register (ES, SS, DS, FS, GS).
    pub(crate) fn load_segment(&mut self, r: Register, sel: u16) -> Result<(), Stop> {
        let idx = crate::control::seg_index(r);
        if r == Register::CS {
            return Err(Fault::ud().into());
        }
        let cpl = self.state.cpl() as u16;
        let seg = if sel & !3 == 0 {
            if r == Register::SS && cpl == 3 {
                return Err(Fault::gp(0).into());
            }
            Segment {
                selector: sel,
                base: 0,
                limit: 0,
                attr: 1 << 12,
            }
        } else {
            let d = self.read_descriptor(sel)?;
            let s = Self::segment_from(sel, d);
            if s.attr & 0x80 == 0 {
                return Err(if r == Register::SS {
                    Fault::ss(sel as u32 & !3)
                } else {
                    Fault::np(sel as u32 & !3)
                }
                .into());
            }
            // Mark accessed as hardware does.
            if s.attr & 1 == 0 {
                let (base, _) = (self.state.gdtr.base, 0);
                let va = base + (sel & !7) as u64;
                self.sys_write(va + 5, 1, ((s.attr | 1) & 0xff) as u64)?;
            }
            s
        };
        let mut seg = seg;
        // In 64-bit mode the FS/GS base comes from the descriptor's low 32 bits and the other
        // bases are ignored.
        if idx != Seg::Fs as usize && idx != Seg::Gs as usize {
            seg.base = 0;
        }
        self.state.seg[idx] = seg;
        if r == Register::SS {
            self.int_shadow = true;
        }
        Ok(())
    }

    /// IRETQ (and IRETD/IRET with the smaller frame, treated the same in 64-bit mode).
    pub(crate) fn iretq(&mut self, size: usize) -> Result<(), Stop> {
        let sp = self.state.gpr[reg::RSP];
        let rip = self.read_mem(sp, size)?;
        let cs_sel = self.read_mem(sp + size as u64, size)? as u16;
        let fl = self.read_mem(sp + 2 * size as u64, size)?;
        let rsp = self.read_mem(sp + 3 * size as u64, size)?;
        let ss_sel = self.read_mem(sp + 4 * size as u64, size)? as u16;
        let cpl = self.state.cpl();
        let new_cpl = (cs_sel & 3) as u8;
        if new_cpl < cpl {
            return Err(Fault::gp(cs_sel as u32 & !3).into());
        }
        let cs = self.read_code_descriptor(cs_sel)?;
        let new_flags = self.popf_value(fl, 8);
        // IOPL/IF may be changed if the *old* CPL allowed it (popf_value uses current CPL).
        self.state.rflags = new_flags;
        self.state.seg[Seg::Cs as usize] = cs;
        if ss_sel & !3 == 0 {
            self.state.seg[Seg::Ss as usize] = Segment {
                selector: ss_sel,
                base: 0,
                limit: 0,
                attr: 1 << 12,
            };
        } else {
            let d = self.read_descriptor(ss_sel)?;
            let mut s = Self::segment_from(ss_sel, d);
            s.base = 0;
            self.state.seg[Seg::Ss as usize] = s;
        }
        if new_cpl > cpl {
            // Data segments not accessible at the new CPL become null.
            for i in [Seg::Es, Seg::Ds, Seg::Fs, Seg::Gs] {
                let s = &mut self.state.seg[i as usize];
                let conforming_code = s.attr & 0x1c == 0x1c;
                if s.selector & !3 != 0 && s.dpl() < new_cpl && !conforming_code {
                    s.selector = 0;
                    s.attr = 1 << 12;
                }
            }
        }
        self.state.gpr[reg::RSP] = rsp;
        self.next_rip = rip;
        self.end_block = true;
        Ok(())
    }

    /// SYSCALL.
    pub(crate) fn syscall(&mut self) -> Result<(), Stop> {
        if self.state.efer & cr::EFER_SCE == 0 {
            return Err(Fault::ud().into());
        }
        let star = self.state.msrs.star;
        let sel = ((star >> 32) & 0xfffc) as u16;
        self.state.gpr[reg::RCX] = self.next_rip;
        self.state.gpr[reg::R11] = self.state.rflags & !flags::RF;
        self.state.rflags &= !(self.state.msrs.sfmask | flags::RF);
        self.state.rflags |= flags::FIXED;
        self.state.seg[Seg::Cs as usize] = Segment::code64(sel);
        self.state.seg[Seg::Ss as usize] = Segment::data(sel + 8);
        self.next_rip = self.state.msrs.lstar;
        self.end_block = true;
        Ok(())
    }

    /// SYSRET (64-bit form).
    pub(crate) fn sysret(&mut self) -> Result<(), Stop> {
        if self.state.efer & cr::EFER_SCE == 0 {
            return Err(Fault::ud().into());
        }
        if self.state.cpl() != 0 {
            return Err(Fault::gp(0).into());
        }
        let rcx = self.state.gpr[reg::RCX];
        if !crate::mmu::canonical(rcx) {
            return Err(Fault::gp(0).into());
        }
        let base = ((self.state.msrs.star >> 48) & 0xffff) as u16;
        let mut cs = Segment::code64((base + 16) | 3);
        cs.attr |= 3 << 5;
        let mut ss = Segment::data((base + 8) | 3);
        ss.attr |= 3 << 5;
        self.state.seg[Seg::Cs as usize] = cs;
        self.state.seg[Seg::Ss as usize] = ss;
        self.state.rflags =
            (self.state.gpr[reg::R11] & (flags::WRITABLE | 0x3f_7fd7) & !(flags::RF | flags::VM))
                | flags::FIXED;
        self.next_rip = rcx;
        self.end_block = true;
        Ok(())
    }

    /// RETF/LRETQ: pops RIP and CS (same or outer privilege).
    pub(crate) fn far_return(&mut self, size: usize, imm: u64) -> Result<(), Stop> {
        let sp = self.state.gpr[reg::RSP];
        let rip = self.read_mem(sp, size)?;
        let sel = self.read_mem(sp + size as u64, size)? as u16;
        let cpl = self.state.cpl();
        if ((sel & 3) as u8) < cpl {
            return Err(Fault::gp(sel as u32 & !3).into());
        }
        let cs = self.read_code_descriptor(sel)?;
        let mut new_sp = sp + 2 * size as u64 + imm;
        if ((sel & 3) as u8) > cpl {
            let rsp = self.read_mem(new_sp, size)?;
            let ss = self.read_mem(new_sp + size as u64, size)? as u16;
            new_sp = rsp;
            self.load_segment(Register::SS, ss)?;
        }
        self.state.seg[Seg::Cs as usize] = cs;
        self.state.gpr[reg::RSP] = new_sp;
        self.next_rip = rip;
        self.end_block = true;
        Ok(())
    }
}

impl Cpu {
    /// Reads a far pointer operand (offset then selector) of `size`-byte offset.
    fn far_pointer(&mut self, ins: &iced_x86::Instruction) -> Result<(u64, u16), Stop> {
        if ins.op_kind(0) != iced_x86::OpKind::Memory {
            return Err(Stop::NotLongMode);
        }
        let size = ins.memory_size().size() - 2;
        let a = self.ea(ins);
        let off = self.read_mem(a, size)?;
        let sel = self.read_mem(a + size as u64, 2)? as u16;
        Ok((off, sel))
    }

    /// JMP FAR m16:64 to a code segment of the same privilege.
    pub(crate) fn far_jump(&mut self, ins: &iced_x86::Instruction) -> Result<(), Stop> {
        let (off, sel) = self.far_pointer(ins)?;
        let cs = self.read_code_descriptor(sel)?;
        if cs.dpl() != self.state.cpl() {
            return Err(Fault::gp(sel as u32 & !3).into());
        }
        let mut cs = cs;
        cs.selector = (sel & !3) | self.state.cpl() as u16;
        self.state.seg[Seg::Cs as usize] = cs;
        self.next_rip = off;
        self.end_block = true;
        Ok(())
    }

    /// CALL FAR m16:64 to a code segment of the same privilege.
    pub(crate) fn far_call(&mut self, ins: &iced_x86::Instruction) -> Result<(), Stop> {
        let (off, sel) = self.far_pointer(ins)?;
        let cs = self.read_code_descriptor(sel)?;
        if cs.dpl() != self.state.cpl() {
            return Err(Fault::gp(sel as u32 & !3).into());
        }
        let size = ins.memory_size().size() - 2;
        let old_cs = self.state.seg[Seg::Cs as usize].selector as u64;
        let sp = self.state.gpr[reg::RSP];
        self.write_mem(sp.wrapping_sub(size as u64), size, old_cs)?;
        self.write_mem(sp.wrapping_sub(2 * size as u64), size, ins.next_ip())?;
        self.state.gpr[reg::RSP] = sp.wrapping_sub(2 * size as u64);
        let mut cs = cs;
        cs.selector = (sel & !3) | self.state.cpl() as u16;
        self.state.seg[Seg::Cs as usize] = cs;
        self.next_rip = off;
        self.end_block = true;
        Ok(())
    }
}
