//! Multiply/divide, shifts and rotates, bit tests and bit scans.

use iced_x86::{Instruction, Mnemonic as M, OpKind, Register};

use crate::alu::{self, Shift};
use crate::cpu::Cpu;
use crate::error::Stop;
use crate::operand::{mask, sext};
use crate::state::flags::{self, CF, OF, ZF};
use crate::state::reg;

impl Cpu {
    pub(crate) fn muldiv(&mut self, ins: &Instruction) -> Result<(), Stop> {
        let m = ins.mnemonic();
        if m == M::Imul && ins.op_count() >= 2 {
            // Two and three operand forms: truncated result in the destination.
            let s = self.op_size(ins, 0);
            let (a, b) = if ins.op_count() == 3 {
                (self.read_op(ins, 1, s)?, ins.immediate(2) & mask(s))
            } else {
                (self.read_op(ins, 0, s)?, self.read_op(ins, 1, s)?)
            };
            let (lo, _, f) = alu::imul(a, b, s);
            self.write_op(ins, 0, s, lo)?;
            self.set_flags(f, flags::STATUS);
            return Ok(());
        }
        let s = self.op_size(ins, 0);
        let src = self.read_op(ins, 0, s)?;
        let g = self.state.gpr;
        let (acc_lo, acc_hi) = if s == 1 {
            (g[reg::RAX] & 0xff, (g[reg::RAX] >> 8) & 0xff)
        } else {
            (g[reg::RAX] & mask(s), g[reg::RDX] & mask(s))
        };
        let (lo, hi) = match m {
            M::Mul | M::Imul => {
                let (lo, hi, f) = if m == M::Mul {
                    alu::mul(acc_lo, src, s)
                } else {
                    alu::imul(acc_lo, src, s)
                };
                self.set_flags(f, flags::STATUS);
                (lo, hi)
            }
            M::Div => alu::div(acc_hi, acc_lo, src, s)?,
            _ => alu::idiv(acc_hi, acc_lo, src, s)?,
        };
        if s == 1 {
            self.set_reg(Register::AX, lo | (hi << 8));
        } else {
            let (ra, rd) = match s {
                2 => (Register::AX, Register::DX),
                4 => (Register::EAX, Register::EDX),
                _ => (Register::RAX, Register::RDX),
            };
            self.set_reg(ra, lo);
            self.set_reg(rd, hi);
        }
        Ok(())
    }

    pub(crate) fn shift_op(&mut self, ins: &Instruction) -> Result<(), Stop> {
        let s = self.op_size(ins, 0);
        let count = if ins.op_count() < 2 {
            1
        } else {
            (self.read_op(ins, 1, 1)? & 0xff) as u32
        };
        let count = count & if s == 8 { 63 } else { 31 };
        let op = match ins.mnemonic() {
            M::Rol => Shift::Rol,
            M::Ror => Shift::Ror,
            M::Rcl => Shift::Rcl,
            M::Rcr => Shift::Rcr,
            M::Shl | M::Sal => Shift::Shl,
            M::Shr => Shift::Shr,
            _ => Shift::Sar,
        };
        let v = self.read_op(ins, 0, s)?;
        if let Some((r, f)) = alu::shift(op, v, count, s, self.state.rflags) {
            self.write_op(ins, 0, s, r)?;
            let which = match op {
                Shift::Rol | Shift::Ror | Shift::Rcl | Shift::Rcr => CF | OF,
                _ => flags::STATUS,
            };
            self.set_flags(f, which);
        } else if s == 4 && ins.op_kind(0) == OpKind::Register {
            // A zero count still writes (zero-extends) a 32-bit register.
            self.write_op(ins, 0, s, v)?;
        }
        Ok(())
    }

    pub(crate) fn shxd(&mut self, ins: &Instruction) -> Result<(), Stop> {
        let s = self.op_size(ins, 0);
        let count = (self.read_op(ins, 2, 1)? as u32) & if s == 8 { 63 } else { 31 };
        let d = self.read_op(ins, 0, s)?;
        let src = self.read_op(ins, 1, s)?;
        if let Some((r, f)) = alu::double_shift(ins.mnemonic() == M::Shld, d, src, count, s) {
            self.write_op(ins, 0, s, r)?;
            self.set_flags(f, flags::STATUS);
        } else if s == 4 && ins.op_kind(0) == OpKind::Register {
            self.write_op(ins, 0, s, d)?;
        }
        Ok(())
    }

    pub(crate) fn bit_test(&mut self, ins: &Instruction) -> Result<(), Stop> {
        let s = self.op_size(ins, 0);
        let bits = (s * 8) as u64;
        let (mut addr, off) = if ins.op_kind(1) == OpKind::Register {
            (None, self.reg(ins.op_register(1)))
        } else {
            (None, ins.immediate(1) & (bits - 1))
        };
        let bit;
        if ins.op_kind(0) == OpKind::Memory {
            let base = self.ea(ins);
            if ins.op_kind(1) == OpKind::Register {
                // A register bit offset is signed and may address beyond the operand.
                let so = sext(off, s) as i64;
                let word = so.div_euclid(bits as i64);
                addr = Some(base.wrapping_add((word * s as i64) as u64));
                bit = so.rem_euclid(bits as i64) as u64;
            } else {
                addr = Some(base);
                bit = off;
            }
        } else {
            bit = off & (bits - 1);
        }
        let m = ins.mnemonic();
        let apply = |v: u64| -> u64 {
            match m {
                M::Bts => v | (1 << bit),
                M::Btr => v & !(1 << bit),
                M::Btc => v ^ (1 << bit),
                _ => v,
            }
        };
        let old = match addr {
            Some(a) if m != M::Bt && ins.has_lock_prefix() => {
                self.atomic_rmw(a, s, |v| Some(apply(v)))?
            }
            Some(a) => {
                let v = self.read_mem(a, s)?;
                if m != M::Bt {
                    self.write_mem(a, s, apply(v))?;
                }
                v
            }
            None => {
                let v = self.read_op(ins, 0, s)?;
                if m != M::Bt {
                    self.write_op(ins, 0, s, apply(v))?;
                }
                v
            }
        };
        self.set_flags(if (old >> bit) & 1 != 0 { CF } else { 0 }, CF);
        Ok(())
    }

    pub(crate) fn bit_scan(&mut self, ins: &Instruction) -> Result<(), Stop> {
        let s = self.op_size(ins, 0);
        let v = self.read_op(ins, 1, s)? & mask(s);
        match ins.mnemonic() {
            // TZCNT/LZCNT are BSF/BSR with a REP prefix on CPUs without BMI1/ABM, which is
            // what we advertise; keep the BSF/BSR semantics so guests probing them work.
            M::Bsf | M::Tzcnt => {
                if v == 0 {
                    self.set_flags(ZF, ZF);
                    if s == 4 {
                        let cur = self.read_op(ins, 0, 4)?;
                        self.write_op(ins, 0, 4, cur)?;
                    }
                } else {
                    self.write_op(ins, 0, s, v.trailing_zeros() as u64)?;
                    self.set_flags(0, ZF);
                }
            }
            M::Bsr | M::Lzcnt => {
                if v == 0 {
                    self.set_flags(ZF, ZF);
                    if s == 4 {
                        let cur = self.read_op(ins, 0, 4)?;
                        self.write_op(ins, 0, 4, cur)?;
                    }
                } else {
                    self.write_op(ins, 0, s, 63 - v.leading_zeros() as u64)?;
                    self.set_flags(0, ZF);
                }
            }
            _ => {
                let c = v.count_ones() as u64;
                self.write_op(ins, 0, s, c)?;
                self.set_flags(if v == 0 { ZF } else { 0 }, flags::STATUS);
            }
        }
        Ok(())
    }
}
