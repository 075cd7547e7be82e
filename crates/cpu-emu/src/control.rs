//! The stack and near control flow: PUSH/POP, PUSHF/POPF, ENTER/LEAVE, JMP/CALL/RET,
//! LOOP and JRCXZ. Far transfers live with the system instructions.

use iced_x86::{Instruction, Mnemonic as M, OpKind, Register};

use crate::cpu::Cpu;
use crate::error::Stop;
use crate::state::flags;
use crate::state::reg;

impl Cpu {
    /// Pushes `size` bytes.
    pub(crate) fn push(&mut self, v: u64, size: usize) -> Result<(), Stop> {
        let sp = self.state.gpr[reg::RSP].wrapping_sub(size as u64);
        self.write_mem(sp, size, v)?;
        self.state.gpr[reg::RSP] = sp;
        Ok(())
    }

    /// Pops `size` bytes.
    pub(crate) fn pop(&mut self, size: usize) -> Result<u64, Stop> {
        let sp = self.state.gpr[reg::RSP];
        let v = self.read_mem(sp, size)?;
        self.state.gpr[reg::RSP] = sp.wrapping_add(size as u64);
        Ok(v)
    }

    /// The RFLAGS value POPF/IRET may load at the current privilege level.
    pub(crate) fn popf_value(&self, new: u64, size: usize) -> u64 {
        let cur = self.state.rflags;
        let mut writable = flags::WRITABLE & !flags::RF;
        let cpl = self.state.cpl() as u64;
        let iopl = (cur & flags::IOPL) >> 12;
        if cpl != 0 {
            writable &= !flags::IOPL;
        }
        if cpl > iopl {
            writable &= !flags::IF;
        }
        if size == 2 {
            writable &= 0xffff;
        }
        (cur & !writable) | (new & writable) | flags::FIXED
    }

    pub(crate) fn control(&mut self, ins: &Instruction) -> Result<(), Stop> {
        match ins.mnemonic() {
            M::Push => {
                let s = match ins.op_kind(0) {
                    OpKind::Register => ins.op_register(0).size().max(2),
                    OpKind::Memory => ins.memory_size().size(),
                    OpKind::Immediate16 => 2,
                    _ => ins.stack_pointer_increment().unsigned_abs() as usize,
                };
                let v = match ins.op_kind(0) {
                    OpKind::Register if ins.op_register(0).is_segment_register() => {
                        self.state.seg[seg_index(ins.op_register(0))].selector as u64
                    }
                    OpKind::Register | OpKind::Memory => self.read_op(ins, 0, s)?,
                    _ => ins.immediate(0),
                };
                self.push(v, s)
            }
            M::Pop => {
                let s = ins.stack_pointer_increment() as usize;
                let v = self.pop(s)?;
                if ins.op_kind(0) == OpKind::Register && ins.op_register(0).is_segment_register() {
                    if let Err(e) = self.load_segment(ins.op_register(0), v as u16) {
                        self.state.gpr[reg::RSP] = self.state.gpr[reg::RSP].wrapping_sub(s as u64);
                        return Err(e);
                    }
                    return Ok(());
                }
                if ins.op_kind(0) == OpKind::Memory {
                    // The address is computed with the incremented RSP.
                    let a = self.ea(ins);
                    if let Err(e) = self.write_mem(a, s, v) {
                        self.state.gpr[reg::RSP] = self.state.gpr[reg::RSP].wrapping_sub(s as u64);
                        return Err(e);
                    }
                    return Ok(());
                }
                self.set_reg(ins.op_register(0), v);
                Ok(())
            }
            M::Pushfq | M::Pushf => {
                let s = ins.stack_pointer_increment().unsigned_abs() as usize;
                // VM and RF are never pushed.
                let v = self.state.rflags & !(flags::VM | flags::RF);
                self.push(v, s)
            }
            M::Popfq | M::Popf => {
                let s = ins.stack_pointer_increment() as usize;
                let v = self.pop(s)?;
                let before = self.state.rflags;
                self.state.rflags = self.popf_value(v, s);
                if (before ^ self.state.rflags) & (flags::IF | flags::TF) != 0 {
                    self.end_block = true;
                }
                Ok(())
            }
            M::Leave => {
                let s = if ins.code() == iced_x86::Code::Leavew {
                    2
                } else {
                    8
                };
                let bp = self.state.gpr[reg::RBP];
                let v = self.read_mem(bp, s)?;
                self.state.gpr[reg::RSP] = bp.wrapping_add(s as u64);
                self.set_reg(if s == 8 { Register::RBP } else { Register::BP }, v);
                Ok(())
            }
            M::Enter => self.enter(ins),
            M::Jmp => {
                self.next_rip = match ins.op_kind(0) {
                    OpKind::NearBranch64 | OpKind::NearBranch32 | OpKind::NearBranch16 => {
                        ins.near_branch_target()
                    }
                    OpKind::Register | OpKind::Memory => self.read_op(ins, 0, 8)?,
                    _ => return self.far_jump(ins),
                };
                Ok(())
            }
            M::Call => {
                let target = match ins.op_kind(0) {
                    OpKind::NearBranch64 | OpKind::NearBranch32 | OpKind::NearBranch16 => {
                        ins.near_branch_target()
                    }
                    OpKind::Register | OpKind::Memory => self.read_op(ins, 0, 8)?,
                    _ => return self.far_call(ins),
                };
                self.push(ins.next_ip(), 8)?;
                self.next_rip = target;
                Ok(())
            }
            M::Ret => {
                let ip = self.pop(8)?;
                if ins.op_count() == 1 {
                    self.state.gpr[reg::RSP] =
                        self.state.gpr[reg::RSP].wrapping_add(ins.immediate(0));
                }
                self.next_rip = ip;
                Ok(())
            }
            M::Loop | M::Loope | M::Loopne => {
                let rcx = self.state.gpr[reg::RCX].wrapping_sub(1);
                self.state.gpr[reg::RCX] = rcx;
                let zf = self.flag(flags::ZF);
                let take = rcx != 0
                    && match ins.mnemonic() {
                        M::Loope => zf,
                        M::Loopne => !zf,
                        _ => true,
                    };
                if take {
                    self.next_rip = ins.near_branch_target();
                }
                Ok(())
            }
            M::Jrcxz | M::Jecxz => {
                let c = if ins.mnemonic() == M::Jecxz {
                    self.state.gpr[reg::RCX] & 0xffff_ffff
                } else {
                    self.state.gpr[reg::RCX]
                };
                if c == 0 {
                    self.next_rip = ins.near_branch_target();
                }
                Ok(())
            }
            _ => Err(Stop::Unsupported),
        }
    }

    fn enter(&mut self, ins: &Instruction) -> Result<(), Stop> {
        let size = ins.immediate(0) & 0xffff;
        let level = ins.immediate(1) & 31;
        let bp = self.state.gpr[reg::RBP];
        let mut sp = self.state.gpr[reg::RSP].wrapping_sub(8);
        self.write_mem(sp, 8, bp)?;
        let frame = sp;
        let mut cur_bp = bp;
        if level > 0 {
            for _ in 1..level {
                cur_bp = cur_bp.wrapping_sub(8);
                let v = self.read_mem(cur_bp, 8)?;
                sp = sp.wrapping_sub(8);
                self.write_mem(sp, 8, v)?;
            }
            sp = sp.wrapping_sub(8);
            self.write_mem(sp, 8, frame)?;
        }
        // Like hardware, check that the bottom of the new frame is writable before committing.
        let a = self.data_acc(true);
        self.translate(sp.wrapping_sub(size), a)?;
        self.state.gpr[reg::RBP] = frame;
        self.state.gpr[reg::RSP] = sp.wrapping_sub(size);
        Ok(())
    }
}

/// Index into `CpuState::seg` of a segment register.
pub(crate) fn seg_index(r: Register) -> usize {
    match r {
        Register::ES => 0,
        Register::CS => 1,
        Register::SS => 2,
        Register::DS => 3,
        Register::FS => 4,
        _ => 5,
    }
}
