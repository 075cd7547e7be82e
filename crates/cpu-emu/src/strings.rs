//! String instructions (MOVS, CMPS, STOS, LODS, SCAS, INS, OUTS) with REP/REPE/REPNE.
//! A REP loop runs in the interpreter; each iteration commits, so a fault or an exit in
//! the middle leaves RCX/RSI/RDI as hardware would and the instruction resumes.

use iced_x86::{Instruction, Mnemonic as M};

use crate::alu;
use crate::cpu::Cpu;
use crate::error::{Exit, Stop};
use crate::rep_bulk::Bulk;
use crate::state::flags::{self, ZF};
use crate::state::reg;

/// Iterations after which a long REP yields to check for interrupts.
const REP_CHUNK: u64 = 1 << 16;

impl Cpu {
    pub(crate) fn string_op(&mut self, ins: &Instruction) -> Result<(), Stop> {
        let m = ins.mnemonic();
        let size = match m {
            M::Movsb | M::Cmpsb | M::Stosb | M::Lodsb | M::Scasb | M::Insb | M::Outsb => 1,
            M::Movsw | M::Cmpsw | M::Stosw | M::Lodsw | M::Scasw | M::Insw | M::Outsw => 2,
            M::Movsd | M::Cmpsd | M::Stosd | M::Lodsd | M::Scasd | M::Insd | M::Outsd => 4,
            _ => 8,
        };
        let rep = ins.has_rep_prefix() || ins.has_repne_prefix();
        let a32 = (0..ins.op_count()).any(|i| {
            matches!(
                ins.op_kind(i),
                iced_x86::OpKind::MemorySegESI | iced_x86::OpKind::MemoryESEDI
            )
        });
        let amask = if a32 { 0xffff_ffffu64 } else { u64::MAX };
        let step = if self.flag(flags::DF) {
            (size as u64).wrapping_neg()
        } else {
            size as u64
        };
        let compares = matches!(
            m,
            M::Cmpsb | M::Cmpsw | M::Cmpsd | M::Cmpsq | M::Scasb | M::Scasw | M::Scasd | M::Scasq
        );
        let mut done = 0u64;
        // REP MOVS/STOS forwards with 64-bit addresses run in page runs (see rep_bulk),
        // falling back to one element at a time where a run cannot be done in bulk.
        let bulk = rep
            && !a32
            && step == size as u64
            && matches!(
                m,
                M::Movsb
                    | M::Movsw
                    | M::Movsd
                    | M::Movsq
                    | M::Stosb
                    | M::Stosw
                    | M::Stosd
                    | M::Stosq
            );
        let copy = matches!(m, M::Movsb | M::Movsw | M::Movsd | M::Movsq);
        loop {
            if bulk {
                let (left, n) = self.rep_bulk(ins, size, copy, REP_CHUNK - done)?;
                done += n;
                if left == Bulk::Done {
                    if self.state.gpr[reg::RCX] != 0 {
                        // Yielding after a code write: resume at this instruction.
                        self.next_rip = ins.ip();
                    }
                    if self.code_written {
                        self.end_block = true;
                    }
                    return Ok(());
                }
            }
            if rep {
                if self.state.gpr[reg::RCX] & amask == 0 {
                    break;
                }
                if done == REP_CHUNK {
                    // Resume later at this same instruction.
                    self.next_rip = ins.ip();
                    self.end_block = true;
                    return Ok(());
                }
            }
            let si = self.state.gpr[reg::RSI] & amask;
            let di = self.state.gpr[reg::RDI] & amask;
            let src = self.seg_adjust(ins, si);
            let mut adv_si = false;
            let mut adv_di = false;
            match m {
                M::Movsb | M::Movsw | M::Movsd | M::Movsq => {
                    let v = self.read_mem(src, size)?;
                    self.write_mem(di, size, v)?;
                    adv_si = true;
                    adv_di = true;
                }
                M::Stosb | M::Stosw | M::Stosd | M::Stosq => {
                    let v = self.state.gpr[reg::RAX];
                    self.write_mem(di, size, v)?;
                    adv_di = true;
                }
                M::Lodsb | M::Lodsw | M::Lodsd | M::Lodsq => {
                    let v = self.read_mem(src, size)?;
                    self.set_reg(acc_reg(size), v);
                    adv_si = true;
                }
                M::Cmpsb | M::Cmpsw | M::Cmpsd | M::Cmpsq => {
                    let a = self.read_mem(src, size)?;
                    let b = self.read_mem(di, size)?;
                    let (_, f) = alu::sub(a, b, 0, size);
                    self.set_flags(f, flags::STATUS);
                    adv_si = true;
                    adv_di = true;
                }
                M::Scasb | M::Scasw | M::Scasd | M::Scasq => {
                    let b = self.read_mem(di, size)?;
                    let (_, f) = alu::sub(self.state.gpr[reg::RAX], b, 0, size);
                    self.set_flags(f, flags::STATUS);
                    adv_di = true;
                }
                M::Outsb | M::Outsw | M::Outsd => {
                    let v = self.read_mem(src, size)?;
                    self.check_io(self.state.gpr[reg::RDX] as u16, size)?;
                    self.pending_exit = Some(Exit::IoOut {
                        port: self.state.gpr[reg::RDX] as u16,
                        size: size as u8,
                        data: v as u32,
                    });
                    adv_si = true;
                }
                _ => {
                    // INS: read the port (an exit, then a restart with the value), store it.
                    let v = self.port_in(self.state.gpr[reg::RDX] as u16, size)?;
                    if let Err(e) = self.write_mem(di, size, v as u64) {
                        self.read_reply = None;
                        return Err(e);
                    }
                    adv_di = true;
                }
            }
            if adv_si {
                self.state.gpr[reg::RSI] =
                    (si.wrapping_add(step) & amask) | (self.state.gpr[reg::RSI] & !amask);
            }
            if adv_di {
                self.state.gpr[reg::RDI] =
                    (di.wrapping_add(step) & amask) | (self.state.gpr[reg::RDI] & !amask);
            }
            if !rep {
                break;
            }
            let rcx = (self.state.gpr[reg::RCX] & amask).wrapping_sub(1) & amask;
            self.state.gpr[reg::RCX] = rcx | (self.state.gpr[reg::RCX] & !amask);
            done += 1;
            if compares {
                let zf = self.flag(ZF);
                if (ins.has_repe_prefix() && !zf) || (ins.has_repne_prefix() && zf) {
                    break;
                }
            }
            if self.pending_exit.is_some() || self.code_written {
                // One MMIO/port write per exit, and re-decode if we wrote code: resume the
                // REP at this instruction.
                if rcx != 0 {
                    self.next_rip = ins.ip();
                }
                self.end_block = true;
                return Ok(());
            }
        }
        Ok(())
    }
}

/// AL/AX/EAX/RAX.
pub(crate) fn acc_reg(size: usize) -> iced_x86::Register {
    match size {
        1 => iced_x86::Register::AL,
        2 => iced_x86::Register::AX,
        4 => iced_x86::Register::EAX,
        _ => iced_x86::Register::RAX,
    }
}
