//! The application-processor start-up path outside 64-bit mode: the reset state INIT leaves,
//! real mode at the STARTUP IPI's page, and the 16-bit real-mode, 32-bit protected-mode and
//! compatibility-mode subset Linux's trampoline (arch/x86/realmode/rm/trampoline_64.S and
//! verify_cpu.S) runs on its way to long mode. Nothing else reaches this code: a vCPU only
//! leaves 64-bit mode through INIT, and once it is back in 64-bit mode a 16/32-bit code
//! segment is refused as before. Instructions are decoded one at a time with the bitness of
//! CS and never cached; anything outside the subset stops the VM with a report.

use iced_x86::{Code, Decoder, DecoderOptions, Instruction, Mnemonic as M, OpKind, Register};

use crate::control::seg_index;
use crate::cpu::Cpu;
use crate::error::{Fault, Stop};
use crate::state::{cr, flags, reg, CpuState, Seg, Segment};

/// CR0 after reset and INIT: caches disabled, extension type set.
const CR0_RESET: u64 = 0x6000_0010;
/// EDX after reset: the processor signature (family 6, as CPUID leaf 1 reports).
const RESET_SIGNATURE: u64 = 0x0003_06a9;
/// Real-mode data segment attributes: present, writable, accessed.
const REAL_DATA: u16 = 0x93;
/// Real-mode code segment attributes: present, readable, accessed.
const REAL_CODE: u16 = 0x9b;

/// The instruction pointer's width for a code size.
fn ip_mask(bits: u32) -> u64 {
    match bits {
        16 => 0xffff,
        32 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

fn real_segment(selector: u16, attr: u16) -> Segment {
    Segment {
        selector,
        base: (selector as u64) << 4,
        limit: 0xffff,
        attr,
    }
}

impl Cpu {
    /// INIT: the processor state after an INIT signal (real mode, paging off, no long mode);
    /// MSRs other than EFER and the TSC deadline survive, as on hardware. The CPU does not
    /// run until [`Cpu::start_up`].
    pub fn init_reset(&mut self) {
        let mut msrs = self.state.msrs;
        msrs.tsc_deadline = 0;
        let mut s = CpuState {
            msrs,
            cr0: CR0_RESET,
            rip: 0xfff0,
            ..CpuState::default()
        };
        for i in 0..6 {
            s.seg[i] = real_segment(0, REAL_DATA);
        }
        s.seg[Seg::Cs as usize] = Segment {
            selector: 0xf000,
            base: 0xffff_0000,
            limit: 0xffff,
            attr: REAL_CODE,
        };
        s.gdtr.limit = 0xffff;
        s.idtr.limit = 0xffff;
        s.ldtr.limit = 0xffff;
        s.ldtr.attr = 0x82;
        s.tr.limit = 0xffff;
        s.tr.attr = 0x8b;
        s.gpr[reg::RDX] = RESET_SIGNATURE;
        self.set_state(s);
        self.int_shadow = false;
        self.legacy = true;
    }

    /// STARTUP IPI: real mode at `vector` × 4 KiB (CS = vector << 8, IP = 0).
    pub fn start_up(&mut self, vector: u8) {
        self.state.seg[Seg::Cs as usize] = real_segment((vector as u16) << 8, REAL_CODE);
        self.state.rip = 0;
        self.legacy = true;
    }

    /// Whether the CPU executes outside 64-bit mode (the start-up path).
    pub fn in_startup_path(&self) -> bool {
        self.legacy
    }

    /// The code size CS selects: 16 (real mode or a 16-bit segment), 32 or 64.
    pub(crate) fn code_bits(&self) -> u32 {
        let cs = &self.state.seg[Seg::Cs as usize];
        if self.state.cr0 & cr::CR0_PE == 0 {
            16
        } else if self.state.efer & cr::EFER_LMA != 0 && cs.long() {
            64
        } else if cs.db() {
            32
        } else {
            16
        }
    }

    /// The linear address of code at `ip` (CS base added outside 64-bit mode).
    pub(crate) fn code_linear(&self, ip: u64) -> u64 {
        if self.legacy {
            self.state.seg[Seg::Cs as usize].base.wrapping_add(ip) & 0xffff_ffff
        } else {
            ip
        }
    }

    /// Executes one instruction outside 64-bit mode.
    pub(crate) fn step_legacy(&mut self) -> Result<(), Stop> {
        let bits = self.code_bits();
        if bits == 64 {
            self.legacy = false;
            return Ok(());
        }
        let ins = self.decode_legacy(bits)?;
        self.next_rip = ins.next_ip() & ip_mask(bits);
        let shadow = std::mem::take(&mut self.int_shadow);
        match self.exec_legacy(&ins) {
            Ok(()) => {
                // A far jump may have changed the code size: the new one sizes the new IP.
                self.state.rip = self.next_rip & ip_mask(self.code_bits());
                self.instret += 1;
            }
            Err(stop) => {
                if matches!(stop, Stop::Exit(_)) {
                    self.int_shadow = shadow;
                }
                return Err(stop);
            }
        }
        self.legacy = self.code_bits() != 64;
        Ok(())
    }

    fn decode_legacy(&mut self, bits: u32) -> Result<Instruction, Stop> {
        let rip = self.state.rip;
        let mut bytes = [0u8; 15];
        let mut n = 0;
        let mut fetch_error = None;
        while n < bytes.len() {
            let va = self.code_linear(rip.wrapping_add(n as u64));
            match self.fetch_bytes(va, &mut bytes[n..n + 1]) {
                Ok(()) => n += 1,
                Err(e) => {
                    fetch_error = Some(e);
                    break;
                }
            }
        }
        if n == 0 {
            return Err(fetch_error.unwrap_or(Stop::Unsupported));
        }
        let mut dec = Decoder::with_ip(bits, &bytes[..n], rip, DecoderOptions::NONE);
        let ins = dec.decode();
        if ins.is_invalid() {
            return Err(match fetch_error {
                Some(e) if n < bytes.len() => e,
                _ => Stop::Unsupported,
            });
        }
        Ok(ins)
    }

    /// The linear address of the memory operand outside 64-bit mode: 16- or 32-bit offset
    /// plus the segment base.
    pub(crate) fn legacy_ea(&self, ins: &Instruction) -> u64 {
        let off = self.legacy_offset(ins);
        let seg = seg_index(ins.memory_segment());
        self.state.seg[seg].base.wrapping_add(off) & 0xffff_ffff
    }

    fn legacy_offset(&self, ins: &Instruction) -> u64 {
        let b = ins.memory_base();
        let x = ins.memory_index();
        let mut off = ins.memory_displacement64();
        if b != Register::None {
            off = off.wrapping_add(self.reg(b));
        }
        if x != Register::None {
            off = off.wrapping_add(self.reg(x).wrapping_mul(ins.memory_index_scale() as u64));
        }
        let a16 = b.is_gpr16()
            || x.is_gpr16()
            || (b == Register::None && x == Register::None && ins.memory_displ_size() == 2);
        off & if a16 { 0xffff } else { 0xffff_ffff }
    }

    fn stack_mask(&self) -> u64 {
        if self.state.seg[Seg::Ss as usize].db() {
            0xffff_ffff
        } else {
            0xffff
        }
    }

    fn legacy_push(&mut self, v: u64, size: usize) -> Result<(), Stop> {
        let m = self.stack_mask();
        let rsp = self.state.gpr[reg::RSP];
        let sp = rsp.wrapping_sub(size as u64) & m;
        let lin = self.state.seg[Seg::Ss as usize].base.wrapping_add(sp) & 0xffff_ffff;
        self.write_mem(lin, size, v)?;
        self.state.gpr[reg::RSP] = (rsp & !m) | sp;
        Ok(())
    }

    fn legacy_pop(&mut self, size: usize) -> Result<u64, Stop> {
        let m = self.stack_mask();
        let rsp = self.state.gpr[reg::RSP];
        let sp = rsp & m;
        let lin = self.state.seg[Seg::Ss as usize].base.wrapping_add(sp) & 0xffff_ffff;
        let v = self.read_mem(lin, size)?;
        self.state.gpr[reg::RSP] = (rsp & !m) | (sp.wrapping_add(size as u64) & m);
        Ok(v)
    }

    /// MOV/POP to a data segment register: the selector shifted in real mode, the
    /// descriptor (base kept) in protected mode.
    fn legacy_load_segment(&mut self, r: Register, sel: u16) -> Result<(), Stop> {
        if r == Register::CS {
            return Err(Fault::ud().into());
        }
        let idx = seg_index(r);
        if self.state.cr0 & cr::CR0_PE == 0 {
            let s = &mut self.state.seg[idx];
            s.selector = sel;
            s.base = (sel as u64) << 4;
        } else if sel & !3 == 0 {
            if r == Register::SS {
                return Err(Fault::gp(0).into());
            }
            self.state.seg[idx] = Segment {
                selector: sel,
                attr: 1 << 12,
                ..Segment::default()
            };
        } else {
            let d = self.read_descriptor(sel)?;
            let s = Self::segment_from(sel, d);
            if s.attr & 0x80 == 0 {
                return Err(Fault::np(sel as u32 & !3).into());
            }
            self.state.seg[idx] = s;
        }
        if r == Register::SS {
            self.int_shadow = true;
        }
        Ok(())
    }

    /// A far JMP: real-mode CS, or a code descriptor from the GDT in protected mode (a
    /// 64-bit one switches to 64-bit mode when long mode is active).
    fn legacy_far_jump(&mut self, sel: u16, off: u64) -> Result<(), Stop> {
        if self.state.cr0 & cr::CR0_PE == 0 {
            self.state.seg[Seg::Cs as usize] = real_segment(sel, REAL_CODE);
        } else {
            if sel & !3 == 0 {
                return Err(Fault::gp(0).into());
            }
            let d = self.read_descriptor(sel)?;
            let mut cs = Self::segment_from(sel, d);
            if cs.attr & 0x18 != 0x18 {
                return Err(Fault::gp(sel as u32 & !3).into());
            }
            if cs.attr & 0x80 == 0 {
                return Err(Fault::np(sel as u32 & !3).into());
            }
            cs.selector = sel & !3;
            self.state.seg[Seg::Cs as usize] = cs;
        }
        self.next_rip = off;
        self.end_block = true;
        Ok(())
    }

    /// CR0 writes turn long mode on (PG with EFER.LME and CR4.PAE).
    fn legacy_write_cr0(&mut self, ins: &Instruction) -> Result<(), Stop> {
        let v = self.reg(ins.op_register(1));
        if v & cr::CR0_PG != 0 && v & cr::CR0_PE == 0 {
            return Err(Fault::gp(0).into());
        }
        let long = v & cr::CR0_PG != 0 && self.state.efer & cr::EFER_LME != 0;
        if long && self.state.cr4 & cr::CR4_PAE == 0 {
            return Err(Fault::gp(0).into());
        }
        self.exec(ins)?;
        if long {
            self.state.efer |= cr::EFER_LMA;
        }
        Ok(())
    }

    fn exec_legacy(&mut self, ins: &Instruction) -> Result<(), Stop> {
        let spi = ins.stack_pointer_increment().unsigned_abs() as usize;
        match ins.mnemonic() {
            M::Call => {
                let size = spi;
                let target = match ins.op_kind(0) {
                    OpKind::NearBranch16 | OpKind::NearBranch32 => ins.near_branch_target(),
                    OpKind::Register | OpKind::Memory => self.read_op(ins, 0, size)?,
                    _ => return Err(Stop::Unsupported),
                };
                self.legacy_push(ins.next_ip(), size)?;
                self.next_rip = target;
                Ok(())
            }
            M::Ret => {
                let imm = if ins.op_count() == 1 {
                    ins.immediate(0)
                } else {
                    0
                };
                let ip = self.legacy_pop(spi - imm as usize)?;
                let m = self.stack_mask();
                let rsp = self.state.gpr[reg::RSP];
                self.state.gpr[reg::RSP] = (rsp & !m) | (rsp.wrapping_add(imm) & m);
                self.next_rip = ip;
                Ok(())
            }
            M::Jmp => match ins.op_kind(0) {
                OpKind::NearBranch16 | OpKind::NearBranch32 => {
                    self.next_rip = ins.near_branch_target();
                    Ok(())
                }
                OpKind::FarBranch16 => {
                    self.legacy_far_jump(ins.far_branch_selector(), ins.far_branch16() as u64)
                }
                OpKind::FarBranch32 => {
                    self.legacy_far_jump(ins.far_branch_selector(), ins.far_branch32() as u64)
                }
                OpKind::Memory if matches!(ins.code(), Code::Jmp_m1616 | Code::Jmp_m1632) => {
                    let size = ins.memory_size().size() - 2;
                    let a = self.legacy_ea(ins);
                    let off = self.read_mem(a, size)?;
                    let sel = self.read_mem((a + size as u64) & 0xffff_ffff, 2)? as u16;
                    self.legacy_far_jump(sel, off)
                }
                OpKind::Register | OpKind::Memory => {
                    let s = self.op_size(ins, 0);
                    self.next_rip = self.read_op(ins, 0, s)?;
                    Ok(())
                }
                _ => Err(Stop::Unsupported),
            },
            M::Push => {
                let v = match ins.op_kind(0) {
                    OpKind::Register if ins.op_register(0).is_segment_register() => {
                        self.state.seg[seg_index(ins.op_register(0))].selector as u64
                    }
                    OpKind::Register | OpKind::Memory => self.read_op(ins, 0, spi)?,
                    _ => ins.immediate(0),
                };
                self.legacy_push(v, spi)
            }
            M::Pop => {
                let v = self.legacy_pop(spi)?;
                match ins.op_kind(0) {
                    OpKind::Register if ins.op_register(0).is_segment_register() => {
                        self.legacy_load_segment(ins.op_register(0), v as u16)
                    }
                    OpKind::Register => {
                        self.set_reg(ins.op_register(0), v);
                        Ok(())
                    }
                    _ => {
                        let a = self.legacy_ea(ins);
                        self.write_mem(a, spi, v)
                    }
                }
            }
            M::Pushf | M::Pushfd => {
                let v = self.state.rflags & !(flags::VM | flags::RF);
                self.legacy_push(v, spi)
            }
            M::Popf | M::Popfd => {
                let v = self.legacy_pop(spi)?;
                self.state.rflags = self.popf_value(v, spi);
                Ok(())
            }
            M::Mov
                if ins.op_kind(0) == OpKind::Register
                    && ins.op_register(0).is_segment_register() =>
            {
                let sel = self.read_op(ins, 1, 2)? as u16;
                self.legacy_load_segment(ins.op_register(0), sel)
            }
            M::Mov if ins.op_kind(0) == OpKind::Register && ins.op_register(0) == Register::CR0 => {
                self.legacy_write_cr0(ins)
            }
            M::Lgdt | M::Lidt => {
                let a = self.legacy_ea(ins);
                let limit = self.read_mem(a, 2)? as u16;
                let mut base = self.read_mem((a + 2) & 0xffff_ffff, 4)?;
                if matches!(ins.code(), Code::Lgdt_m1632_16 | Code::Lidt_m1632_16) {
                    base &= 0x00ff_ffff;
                }
                let t = if ins.mnemonic() == M::Lgdt {
                    &mut self.state.gdtr
                } else {
                    &mut self.state.idtr
                };
                t.base = base;
                t.limit = limit;
                Ok(())
            }
            M::Lea => {
                let s = self.op_size(ins, 0);
                let off = self.legacy_offset(ins);
                self.write_op(ins, 0, s, off)
            }
            m if allowed_as_is(m) => self.exec(ins),
            _ => Err(Stop::Unsupported),
        }
    }
}

/// Instructions whose 64-bit implementation is also right outside 64-bit mode (operands go
/// through [`Cpu::ea`], which adds segment bases there).
fn allowed_as_is(m: M) -> bool {
    matches!(
        m,
        M::Add
            | M::Or
            | M::Adc
            | M::Sbb
            | M::And
            | M::Sub
            | M::Xor
            | M::Cmp
            | M::Test
            | M::Inc
            | M::Dec
            | M::Neg
            | M::Not
            | M::Mov
            | M::Movzx
            | M::Movsx
            | M::Xchg
            | M::Cmpxchg
            | M::Xadd
            | M::Bswap
            | M::Cbw
            | M::Cwde
            | M::Cwd
            | M::Cdq
            | M::Clc
            | M::Stc
            | M::Cmc
            | M::Cld
            | M::Std
            | M::Lahf
            | M::Sahf
            | M::Mul
            | M::Imul
            | M::Div
            | M::Idiv
            | M::Rol
            | M::Ror
            | M::Rcl
            | M::Rcr
            | M::Shl
            | M::Sal
            | M::Shr
            | M::Sar
            | M::Bt
            | M::Bts
            | M::Btr
            | M::Btc
            | M::Bsf
            | M::Bsr
            | M::Nop
            | M::Pause
            | M::Lfence
            | M::Mfence
            | M::Sfence
            | M::Ja
            | M::Jae
            | M::Jb
            | M::Jbe
            | M::Je
            | M::Jg
            | M::Jge
            | M::Jl
            | M::Jle
            | M::Jne
            | M::Jno
            | M::Jnp
            | M::Jns
            | M::Jo
            | M::Jp
            | M::Js
            | M::In
            | M::Out
            | M::Hlt
            | M::Cli
            | M::Sti
            | M::Cpuid
            | M::Rdtsc
            | M::Rdmsr
            | M::Wrmsr
            | M::Wbinvd
            | M::Invd
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use corral_devices::GuestMem;
    use vm_memory::{Bytes, GuestAddress};

    use super::*;
    use crate::cpu::CpuIdentity;
    use crate::error::{EmuError, Exit};
    use crate::phys::CodePages;

    /// Real mode at 0x8000 (SIPI vector 8): segment loads, a 16-bit stack with CALL, PUSH,
    /// POP and RET, LGDTL, CR0.PE and a 32-bit far jump; in protected mode a data segment
    /// and a load, PAE, CR3, EFER.LME by WRMSR, CR0.PG and a far jump to a 64-bit segment,
    /// where HLT stops. (Assembled with GNU as from the trampoline's instruction forms.)
    const PROGRAM: &[u8] = &[
        0xfa, 0x8c, 0xc8, 0x8e, 0xd8, 0x8e, 0xd0, 0x66, 0xbc, 0x00, 0x10, 0x00, 0x00, 0xe8, 0x17,
        0x00, 0x66, 0x0f, 0x01, 0x16, 0x98, 0x00, 0x66, 0xb8, 0x11, 0x00, 0x00, 0x00, 0x0f, 0x22,
        0xc0, 0x66, 0xea, 0x2c, 0x80, 0x00, 0x00, 0x08, 0x00, 0x68, 0x34, 0x12, 0x5b, 0xc3, 0xb8,
        0x18, 0x00, 0x00, 0x00, 0x8e, 0xd8, 0x8e, 0xd0, 0x8b, 0x35, 0x00, 0x90, 0x00, 0x00, 0xb8,
        0x20, 0x00, 0x00, 0x00, 0x0f, 0x22, 0xe0, 0xb8, 0x00, 0xa0, 0x00, 0x00, 0x0f, 0x22, 0xd8,
        0xb9, 0x80, 0x00, 0x00, 0xc0, 0x0f, 0x32, 0x0f, 0xba, 0xe8, 0x08, 0x0f, 0x30, 0xb8, 0x11,
        0x00, 0x00, 0x80, 0x0f, 0x22, 0xc0, 0xea, 0x67, 0x80, 0x00, 0x00, 0x10, 0x00, 0x48, 0xbf,
        0x89, 0x67, 0x45, 0x23, 0x01, 0x00, 0x00, 0x00, 0xf4, 0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x9b, 0xcf,
        0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x9b, 0xaf, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x93,
        0xcf, 0x00, 0x1f, 0x00, 0x78, 0x80, 0x00, 0x00,
    ];

    fn cpu_with(code: &[u8]) -> Cpu {
        let mem = GuestMem::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
        mem.write_slice(code, GuestAddress(0x8000)).unwrap();
        mem.write_obj(0xcafe_f00du32, GuestAddress(0x9000)).unwrap();
        // Identity map of the first 2 MiB: PML4 -> PDPT -> one 2 MiB page.
        mem.write_obj(0xb003u64, GuestAddress(0xa000)).unwrap();
        mem.write_obj(0xc003u64, GuestAddress(0xb000)).unwrap();
        mem.write_obj(0x83u64, GuestAddress(0xc000)).unwrap();
        let mut cpu = Cpu::new(
            Arc::new(mem),
            CodePages::new(2 << 20),
            CpuIdentity { index: 1, count: 2 },
        );
        cpu.init_reset();
        cpu.start_up(8);
        cpu
    }

    #[test]
    fn sipi_real_mode_to_long_mode() {
        let mut cpu = cpu_with(PROGRAM);
        assert!(cpu.in_startup_path());
        assert_eq!(cpu.state.seg[Seg::Cs as usize].base, 0x8000);
        assert_eq!(cpu.run(1000).unwrap(), Exit::Hlt);
        let s = &cpu.state;
        assert_eq!(s.gpr[reg::RBX] & 0xffff, 0x1234, "16-bit push/pop");
        assert_eq!(s.gpr[reg::RSP] & 0xffff, 0x1000, "call/ret balanced");
        assert_eq!(s.gpr[reg::RSI], 0xcafe_f00d, "32-bit load");
        assert_eq!(s.gpr[reg::RDI], 0x1_2345_6789, "64-bit code ran");
        assert_eq!(s.seg[Seg::Cs as usize].selector, 0x10);
        assert_ne!(s.efer & cr::EFER_LMA, 0);
        assert!(!cpu.in_startup_path());
    }

    #[test]
    fn instructions_outside_the_subset_stop_with_a_report() {
        // REP MOVSB in real mode is not on the trampoline's path.
        let mut cpu = cpu_with(&[0xf3, 0xa4]);
        match cpu.run(10) {
            Err(EmuError::Unsupported(r)) => assert!(r.decoded.contains("movsb"), "{r}"),
            other => panic!("expected an unsupported-instruction stop, got {other:?}"),
        }
    }
}
