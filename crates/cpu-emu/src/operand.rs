//! Operands of decoded instructions: general registers of every width, effective addresses
//! (FS/GS bases, RIP-relative, 32-bit address size), immediates and memory.

use iced_x86::{Instruction, OpKind, Register};

use crate::cpu::Cpu;
use crate::error::Stop;
use crate::state::Seg;

/// Mask of the low `size` bytes.
#[inline]
pub fn mask(size: usize) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (size * 8)) - 1
    }
}

/// Sign-extends the low `size` bytes of `v` to 64 bits.
#[inline]
pub fn sext(v: u64, size: usize) -> u64 {
    let sh = 64 - size * 8;
    (((v << sh) as i64) >> sh) as u64
}

/// Index of a general register in `CpuState::gpr`, and whether it is AH/CH/DH/BH.
#[inline]
pub(crate) fn gpr_slot(r: Register) -> (usize, bool) {
    match r {
        Register::AH | Register::CH | Register::DH | Register::BH => (r.number() - 4, true),
        _ => (r.full_register().number(), false),
    }
}

impl Cpu {
    /// Reads a general register, zero-extended.
    #[inline]
    pub(crate) fn reg(&self, r: Register) -> u64 {
        let (i, hi) = gpr_slot(r);
        let v = self.state.gpr[i];
        if hi {
            (v >> 8) & 0xff
        } else {
            v & mask(r.size())
        }
    }

    /// Writes a general register with the x86 rules (32-bit writes zero the upper half,
    /// 8/16-bit writes keep the rest).
    #[inline]
    pub(crate) fn set_reg(&mut self, r: Register, v: u64) {
        let (i, hi) = gpr_slot(r);
        let cur = &mut self.state.gpr[i];
        if hi {
            *cur = (*cur & !0xff00) | ((v & 0xff) << 8);
            return;
        }
        match r.size() {
            8 => *cur = v,
            4 => *cur = v & 0xffff_ffff,
            s => *cur = (*cur & !mask(s)) | (v & mask(s)),
        }
    }

    /// The linear address of the memory operand.
    #[inline]
    pub(crate) fn ea(&self, ins: &Instruction) -> u64 {
        if self.legacy {
            return self.legacy_ea(ins);
        }
        let mut a = if ins.is_ip_rel_memory_operand() {
            ins.ip_rel_memory_address()
        } else {
            let mut a = ins.memory_displacement64();
            let b = ins.memory_base();
            if b != Register::None {
                a = a.wrapping_add(self.reg(b));
            }
            let x = ins.memory_index();
            if x != Register::None {
                a = a.wrapping_add(self.reg(x).wrapping_mul(ins.memory_index_scale() as u64));
            }
            if b.is_gpr32() || x.is_gpr32() {
                a &= 0xffff_ffff;
            }
            a
        };
        match ins.memory_segment() {
            Register::FS => a = a.wrapping_add(self.state.seg[Seg::Fs as usize].base),
            Register::GS => a = a.wrapping_add(self.state.seg[Seg::Gs as usize].base),
            _ => {}
        }
        a
    }

    /// Size in bytes of operand `i`.
    #[inline]
    pub(crate) fn op_size(&self, ins: &Instruction, i: u32) -> usize {
        match ins.op_kind(i) {
            OpKind::Register => ins.op_register(i).size(),
            OpKind::Memory => ins.memory_size().size(),
            OpKind::Immediate8 => 1,
            OpKind::Immediate16 | OpKind::Immediate8to16 => 2,
            OpKind::Immediate32 | OpKind::Immediate8to32 => 4,
            _ => 8,
        }
    }

    /// Reads operand `i` (register, memory or immediate) as `size` bytes.
    #[inline]
    pub(crate) fn read_op(&mut self, ins: &Instruction, i: u32, size: usize) -> Result<u64, Stop> {
        match ins.op_kind(i) {
            OpKind::Register => Ok(self.reg(ins.op_register(i))),
            OpKind::Memory => {
                let a = self.ea(ins);
                self.read_mem(a, size)
            }
            _ => Ok(ins.immediate(i) & mask(size)),
        }
    }

    /// Writes operand `i` (register or memory).
    #[inline]
    pub(crate) fn write_op(
        &mut self,
        ins: &Instruction,
        i: u32,
        size: usize,
        v: u64,
    ) -> Result<(), Stop> {
        match ins.op_kind(i) {
            OpKind::Register => {
                self.set_reg(ins.op_register(i), v);
                Ok(())
            }
            OpKind::Memory => {
                let a = self.ea(ins);
                self.write_mem(a, size, v)
            }
            _ => Err(Stop::Internal(format!("operand {i} is not writable"))),
        }
    }
}
