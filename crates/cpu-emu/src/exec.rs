//! Instruction dispatch: one match over the mnemonic, handing each group to its module.
//! Integer data movement and arithmetic live here.

use iced_x86::{ConditionCode, Instruction, Mnemonic as M, OpKind};

use crate::alu;
use crate::cpu::Cpu;
use crate::error::Stop;
use crate::operand::{mask, sext};
use crate::state::flags::{self, AF, CF, OF, PF, SF, ZF};
use crate::state::reg;

impl Cpu {
    /// Replaces the flags in `which` with those of `f`.
    #[inline]
    pub(crate) fn set_flags(&mut self, f: u64, which: u64) {
        self.state.rflags = (self.state.rflags & !which) | (f & which);
    }

    #[inline]
    pub(crate) fn flag(&self, f: u64) -> bool {
        self.state.rflags & f != 0
    }

    /// Evaluates a condition code against RFLAGS.
    #[inline]
    pub(crate) fn cond(&self, cc: ConditionCode) -> bool {
        let f = self.state.rflags;
        let (cf, zf, sf, of, pf) = (
            f & CF != 0,
            f & ZF != 0,
            f & SF != 0,
            f & OF != 0,
            f & PF != 0,
        );
        match cc {
            ConditionCode::None => true,
            ConditionCode::o => of,
            ConditionCode::no => !of,
            ConditionCode::b => cf,
            ConditionCode::ae => !cf,
            ConditionCode::e => zf,
            ConditionCode::ne => !zf,
            ConditionCode::be => cf || zf,
            ConditionCode::a => !cf && !zf,
            ConditionCode::s => sf,
            ConditionCode::ns => !sf,
            ConditionCode::p => pf,
            ConditionCode::np => !pf,
            ConditionCode::l => sf != of,
            ConditionCode::ge => sf == of,
            ConditionCode::le => zf || sf != of,
            ConditionCode::g => !zf && sf == of,
        }
    }

    /// Executes one instruction. On success `next_rip` holds the next RIP.
    pub(crate) fn exec(&mut self, ins: &Instruction) -> Result<(), Stop> {
        match ins.mnemonic() {
            M::Add | M::Or | M::Adc | M::Sbb | M::And | M::Sub | M::Xor | M::Cmp | M::Test => {
                self.binop(ins)
            }
            M::Inc | M::Dec | M::Neg | M::Not => self.unop(ins),
            M::Mov => self.mov(ins),
            M::Movzx => {
                let v = self.read_op(ins, 1, self.op_size(ins, 1))?;
                self.write_op(ins, 0, self.op_size(ins, 0), v)
            }
            M::Movsx | M::Movsxd => {
                let s = self.op_size(ins, 1);
                let v = sext(self.read_op(ins, 1, s)?, s);
                self.write_op(ins, 0, self.op_size(ins, 0), v)
            }
            M::Lea => {
                // LEA computes without segment bases; FS/GS overrides are ignored by hardware.
                let mut a = self.ea_no_seg(ins);
                a &= mask(self.op_size(ins, 0));
                self.write_op(ins, 0, self.op_size(ins, 0), a)
            }
            M::Xchg => self.xchg(ins),
            M::Cmpxchg => self.cmpxchg(ins),
            M::Xadd => self.xadd(ins),
            M::Cmpxchg8b | M::Cmpxchg16b => self.cmpxchg_wide(ins),
            M::Bswap => {
                let s = self.op_size(ins, 0);
                let v = self.read_op(ins, 0, s)?;
                let r = if s == 8 {
                    v.swap_bytes()
                } else {
                    (v as u32).swap_bytes() as u64
                };
                self.write_op(ins, 0, s, r)
            }
            M::Cmova
            | M::Cmovae
            | M::Cmovb
            | M::Cmovbe
            | M::Cmove
            | M::Cmovg
            | M::Cmovge
            | M::Cmovl
            | M::Cmovle
            | M::Cmovne
            | M::Cmovno
            | M::Cmovnp
            | M::Cmovns
            | M::Cmovo
            | M::Cmovp
            | M::Cmovs => {
                let s = self.op_size(ins, 0);
                let v = self.read_op(ins, 1, s)?;
                if self.cond(ins.condition_code()) {
                    self.write_op(ins, 0, s, v)
                } else {
                    // A 32-bit CMOV zero-extends its destination even when false.
                    if s == 4 {
                        let cur = self.read_op(ins, 0, 4)?;
                        self.write_op(ins, 0, 4, cur)?;
                    }
                    Ok(())
                }
            }
            M::Seta
            | M::Setae
            | M::Setb
            | M::Setbe
            | M::Sete
            | M::Setg
            | M::Setge
            | M::Setl
            | M::Setle
            | M::Setne
            | M::Setno
            | M::Setnp
            | M::Setns
            | M::Seto
            | M::Setp
            | M::Sets => {
                let v = self.cond(ins.condition_code()) as u64;
                self.write_op(ins, 0, 1, v)
            }
            M::Cbw => self.ext_acc(1),
            M::Cwde => self.ext_acc(2),
            M::Cdqe => self.ext_acc(4),
            M::Cwd => self.ext_dx(2),
            M::Cdq => self.ext_dx(4),
            M::Cqo => self.ext_dx(8),
            M::Clc => self.flag_op(CF, 0),
            M::Stc => self.flag_op(CF, CF),
            M::Cmc => self.flag_op(CF, self.state.rflags ^ CF),
            M::Cld => self.flag_op(flags::DF, 0),
            M::Std => self.flag_op(flags::DF, flags::DF),
            M::Lahf => {
                let ah = (self.state.rflags & 0xd5) | 2;
                self.state.gpr[reg::RAX] = (self.state.gpr[reg::RAX] & !0xff00) | (ah << 8);
                Ok(())
            }
            M::Sahf => {
                let ah = (self.state.gpr[reg::RAX] >> 8) & 0xd5;
                self.set_flags(ah, SF | ZF | AF | PF | CF);
                Ok(())
            }
            M::Mul | M::Imul | M::Div | M::Idiv => self.muldiv(ins),
            M::Rol | M::Ror | M::Rcl | M::Rcr | M::Shl | M::Sal | M::Shr | M::Sar => {
                self.shift_op(ins)
            }
            M::Shld | M::Shrd => self.shxd(ins),
            M::Bt | M::Bts | M::Btr | M::Btc => self.bit_test(ins),
            M::Bsf | M::Bsr | M::Tzcnt | M::Lzcnt | M::Popcnt => self.bit_scan(ins),
            M::Xlatb => {
                let a = self.state.gpr[reg::RBX].wrapping_add(self.state.gpr[reg::RAX] & 0xff);
                let a = self.seg_adjust(ins, a);
                let v = self.read_mem(a, 1)?;
                self.state.gpr[reg::RAX] = (self.state.gpr[reg::RAX] & !0xff) | v;
                Ok(())
            }
            M::Nop
            | M::Pause
            | M::Lfence
            | M::Mfence
            | M::Sfence
            | M::Prefetchnta
            | M::Prefetcht0
            | M::Prefetcht1
            | M::Prefetcht2
            | M::Prefetchw
            | M::Endbr64
            | M::Endbr32 => {
                if ins.mnemonic() == M::Mfence {
                    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
                }
                Ok(())
            }
            M::Clflush | M::Clflushopt => {
                // Touch the line so a bad address faults as on hardware.
                let a = self.ea(ins);
                self.read_mem(a, 1).map(|_| ())
            }
            M::Push
            | M::Pop
            | M::Pushfq
            | M::Popfq
            | M::Enter
            | M::Leave
            | M::Jmp
            | M::Call
            | M::Ret
            | M::Loop
            | M::Loope
            | M::Loopne
            | M::Jrcxz
            | M::Jecxz => self.control(ins),
            M::Ja
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
            | M::Js => {
                if self.cond(ins.condition_code()) {
                    self.next_rip = ins.near_branch_target();
                }
                Ok(())
            }
            M::Movsb
            | M::Movsw
            | M::Movsd
            | M::Movsq
            | M::Cmpsb
            | M::Cmpsw
            | M::Cmpsd
            | M::Cmpsq
            | M::Stosb
            | M::Stosw
            | M::Stosd
            | M::Stosq
            | M::Lodsb
            | M::Lodsw
            | M::Lodsd
            | M::Lodsq
            | M::Scasb
            | M::Scasw
            | M::Scasd
            | M::Scasq
            | M::Insb
            | M::Insw
            | M::Insd
            | M::Outsb
            | M::Outsw
            | M::Outsd
                if is_string(ins) =>
            {
                self.string_op(ins)
            }
            _ => self.exec_system(ins),
        }
    }

    /// The memory operand's address without the FS/GS base (LEA).
    fn ea_no_seg(&self, ins: &Instruction) -> u64 {
        let a = self.ea(ins);
        match ins.memory_segment() {
            iced_x86::Register::FS => {
                a.wrapping_sub(self.state.seg[crate::state::Seg::Fs as usize].base)
            }
            iced_x86::Register::GS => {
                a.wrapping_sub(self.state.seg[crate::state::Seg::Gs as usize].base)
            }
            _ => a,
        }
    }

    /// Adds the FS/GS base for an implicit-address instruction with a segment override.
    pub(crate) fn seg_adjust(&self, ins: &Instruction, a: u64) -> u64 {
        match ins.segment_prefix() {
            iced_x86::Register::FS => {
                a.wrapping_add(self.state.seg[crate::state::Seg::Fs as usize].base)
            }
            iced_x86::Register::GS => {
                a.wrapping_add(self.state.seg[crate::state::Seg::Gs as usize].base)
            }
            _ => a,
        }
    }

    fn flag_op(&mut self, which: u64, v: u64) -> Result<(), Stop> {
        self.set_flags(v, which);
        Ok(())
    }

    fn ext_acc(&mut self, from: usize) -> Result<(), Stop> {
        let rax = self.state.gpr[reg::RAX];
        let v = sext(rax, from) & mask(from * 2);
        self.state.gpr[reg::RAX] = match from * 2 {
            2 => (rax & !0xffff) | v,
            4 => v,
            _ => v,
        };
        Ok(())
    }

    fn ext_dx(&mut self, size: usize) -> Result<(), Stop> {
        let sign = (self.state.gpr[reg::RAX] >> (size * 8 - 1)) & 1;
        let v = if sign != 0 { mask(size) } else { 0 };
        let rdx = self.state.gpr[reg::RDX];
        self.state.gpr[reg::RDX] = match size {
            2 => (rdx & !0xffff) | v,
            _ => v,
        };
        Ok(())
    }

    fn mov(&mut self, ins: &Instruction) -> Result<(), Stop> {
        let k0 = ins.op_kind(0);
        let k1 = ins.op_kind(1);
        if k0 == OpKind::Register && !ins.op_register(0).is_gpr()
            || k1 == OpKind::Register && !ins.op_register(1).is_gpr()
        {
            return self.mov_special(ins);
        }
        let s = self.op_size(ins, 0);
        let v = if k1 == OpKind::Immediate32to64 {
            ins.immediate(1)
        } else {
            self.read_op(ins, 1, s)?
        };
        self.write_op(ins, 0, s, v)
    }

    fn binop(&mut self, ins: &Instruction) -> Result<(), Stop> {
        let s = self.op_size(ins, 0);
        let b = match ins.op_kind(1) {
            OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64 => ins.immediate(1) & mask(s),
            _ => self.read_op(ins, 1, s)?,
        };
        let m = ins.mnemonic();
        let cf = self.state.rflags & CF;
        let compute = |a: u64| -> (u64, u64) {
            match m {
                M::Add => alu::add(a, b, 0, s),
                M::Adc => alu::add(a, b, cf, s),
                M::Sub | M::Cmp => alu::sub(a, b, 0, s),
                M::Sbb => alu::sub(a, b, cf, s),
                M::And | M::Test => {
                    let r = a & b;
                    (r, alu::logic(r, s))
                }
                M::Or => {
                    let r = (a | b) & mask(s);
                    (r, alu::logic(r, s))
                }
                _ => {
                    let r = (a ^ b) & mask(s);
                    (r, alu::logic(r, s))
                }
            }
        };
        let writes = !matches!(m, M::Cmp | M::Test);
        if writes && ins.has_lock_prefix() && ins.op_kind(0) == OpKind::Memory {
            let a = self.ea(ins);
            let old = self.atomic_rmw(a, s, |old| Some(compute(old).0))?;
            let (_, f) = compute(old);
            self.set_flags(f, flags::STATUS);
            return Ok(());
        }
        let a = self.read_op(ins, 0, s)?;
        let (r, f) = compute(a);
        if writes {
            self.write_op(ins, 0, s, r)?;
        }
        self.set_flags(f, flags::STATUS);
        Ok(())
    }

    fn unop(&mut self, ins: &Instruction) -> Result<(), Stop> {
        let s = self.op_size(ins, 0);
        let m = ins.mnemonic();
        let compute = |a: u64| -> (u64, u64) {
            match m {
                M::Inc => alu::add(a, 1, 0, s),
                M::Dec => alu::sub(a, 1, 0, s),
                M::Neg => alu::sub(0, a, 0, s),
                _ => (!a & mask(s), 0),
            }
        };
        let r_flags = if ins.has_lock_prefix() && ins.op_kind(0) == OpKind::Memory {
            let a = self.ea(ins);
            let old = self.atomic_rmw(a, s, |old| Some(compute(old).0))?;
            compute(old).1
        } else {
            let a = self.read_op(ins, 0, s)?;
            let (r, f) = compute(a);
            self.write_op(ins, 0, s, r)?;
            f
        };
        match m {
            M::Inc | M::Dec => self.set_flags(r_flags, flags::STATUS & !CF),
            M::Neg => self.set_flags(r_flags, flags::STATUS),
            _ => {}
        }
        Ok(())
    }

    fn xchg(&mut self, ins: &Instruction) -> Result<(), Stop> {
        let s = self.op_size(ins, 0);
        if ins.op_kind(0) == OpKind::Memory || ins.op_kind(1) == OpKind::Memory {
            // XCHG with memory is always locked.
            let (mi, ri) = if ins.op_kind(0) == OpKind::Memory {
                (0, 1)
            } else {
                (1, 0)
            };
            let _ = mi;
            let r = ins.op_register(ri);
            let v = self.reg(r);
            let a = self.ea(ins);
            let old = self.atomic_rmw(a, s, |_| Some(v))?;
            self.set_reg(r, old);
            return Ok(());
        }
        let a = self.read_op(ins, 0, s)?;
        let b = self.read_op(ins, 1, s)?;
        self.write_op(ins, 0, s, b)?;
        self.write_op(ins, 1, s, a)
    }

    fn cmpxchg(&mut self, ins: &Instruction) -> Result<(), Stop> {
        let s = self.op_size(ins, 0);
        let acc = self.state.gpr[reg::RAX] & mask(s);
        let src = self.reg(ins.op_register(1));
        let old = if ins.op_kind(0) == OpKind::Memory {
            let a = self.ea(ins);
            if ins.has_lock_prefix() {
                self.atomic_rmw(a, s, |old| if old == acc { Some(src) } else { None })?
            } else {
                let old = self.read_mem(a, s)?;
                // Hardware always writes the destination (the old value when unequal).
                self.write_mem(a, s, if old == acc { src } else { old })?;
                old
            }
        } else {
            let old = self.read_op(ins, 0, s)?;
            if old == acc {
                self.write_op(ins, 0, s, src)?;
            }
            old
        };
        let (_, f) = alu::sub(acc, old, 0, s);
        self.set_flags(f, flags::STATUS);
        if old != acc {
            let r = match s {
                1 => iced_x86::Register::AL,
                2 => iced_x86::Register::AX,
                4 => iced_x86::Register::EAX,
                _ => iced_x86::Register::RAX,
            };
            self.set_reg(r, old);
        }
        Ok(())
    }

    fn xadd(&mut self, ins: &Instruction) -> Result<(), Stop> {
        let s = self.op_size(ins, 0);
        let src_reg = ins.op_register(1);
        let src = self.reg(src_reg);
        let old = if ins.op_kind(0) == OpKind::Memory {
            let a = self.ea(ins);
            if ins.has_lock_prefix() {
                self.atomic_rmw(a, s, |old| Some(old.wrapping_add(src) & mask(s)))?
            } else {
                let old = self.read_mem(a, s)?;
                self.write_mem(a, s, old.wrapping_add(src))?;
                old
            }
        } else {
            let old = self.read_op(ins, 0, s)?;
            self.set_reg(src_reg, old);
            self.write_op(ins, 0, s, old.wrapping_add(src) & mask(s))?;
            let (_, f) = alu::add(old, src, 0, s);
            self.set_flags(f, flags::STATUS);
            return Ok(());
        };
        let (_, f) = alu::add(old, src, 0, s);
        self.set_reg(src_reg, old);
        self.set_flags(f, flags::STATUS);
        Ok(())
    }

    fn cmpxchg_wide(&mut self, ins: &Instruction) -> Result<(), Stop> {
        let a = self.ea(ins);
        let g = &self.state.gpr;
        if ins.mnemonic() == M::Cmpxchg8b {
            let expect = (g[reg::RDX] & 0xffff_ffff) << 32 | (g[reg::RAX] & 0xffff_ffff);
            let new = (g[reg::RCX] & 0xffff_ffff) << 32 | (g[reg::RBX] & 0xffff_ffff);
            let old = self.atomic_rmw(a, 8, |old| if old == expect { Some(new) } else { None })?;
            if old == expect {
                self.set_flags(ZF, ZF);
            } else {
                self.set_flags(0, ZF);
                self.state.gpr[reg::RAX] = old & 0xffff_ffff;
                self.state.gpr[reg::RDX] = old >> 32;
            }
            return Ok(());
        }
        if a & 15 != 0 {
            return Err(crate::error::Fault::gp(0).into());
        }
        let expect = (g[reg::RDX] as u128) << 64 | g[reg::RAX] as u128;
        let new = (g[reg::RCX] as u128) << 64 | g[reg::RBX] as u128;
        let old = self.atomic_rmw128(a, expect, new)?;
        if old == expect {
            self.set_flags(ZF, ZF);
        } else {
            self.set_flags(0, ZF);
            self.state.gpr[reg::RAX] = old as u64;
            self.state.gpr[reg::RDX] = (old >> 64) as u64;
        }
        Ok(())
    }
}

/// Whether a string-mnemonic instruction is the string form (not SSE MOVSD/CMPSD).
fn is_string(ins: &Instruction) -> bool {
    (0..ins.op_count())
        .all(|i| !matches!(ins.op_kind(i), OpKind::Register if ins.op_register(i).is_xmm()))
}
