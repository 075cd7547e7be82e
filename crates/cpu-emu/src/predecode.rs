//! Pre-decoded forms of the most frequent instructions, built once per block so running
//! them does not ask iced-x86 for operand kinds, registers, sizes and address parts again
//! on every execution: register slots, operand sizes, immediates, branch targets and the
//! parts of the memory operand, in a compact enum. Everything else (and every form with an
//! odd detail: LOCK, segment or control registers, 16/32-bit branches) stays [`Op::Generic`]
//! and runs through the full interpreter, which is also the reference the fast forms are
//! tested against (see `fastexec`).

use iced_x86::{Code, ConditionCode, Instruction, Mnemonic as M, OpKind, Register};

use crate::alu::Shift;
use crate::operand::{gpr_slot, mask};

/// A general register operand: its slot in `CpuState::gpr`, width in bytes, and whether it
/// is AH/CH/DH/BH (bits 8-15 of the slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gpr {
    pub idx: u8,
    pub size: u8,
    pub hi: bool,
}

/// Slot value meaning "no register" in [`Mem`].
pub(crate) const NO_REG: u8 = 0xff;

/// The parts of a memory operand's linear address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Mem {
    /// Displacement, or the absolute address of a RIP-relative operand.
    pub disp: u64,
    /// Base register slot or [`NO_REG`].
    pub base: u8,
    /// Index register slot or [`NO_REG`].
    pub index: u8,
    /// Index scale (1, 2, 4, 8).
    pub scale: u8,
    /// 32-bit address size: the sum wraps at 4 GiB.
    pub a32: bool,
    /// Segment base to add: 0 none, 1 FS, 2 GS.
    pub seg: u8,
}

/// A source operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Src {
    /// A general register.
    Reg(Gpr),
    /// The memory operand.
    Mem,
    /// An immediate, already sign-extended and masked to the operand size.
    Imm(u64),
}

/// A destination operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dst {
    /// A general register.
    Reg(Gpr),
    /// The memory operand.
    Mem,
}

/// The two-operand arithmetic and logic group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alu {
    Add,
    Or,
    Adc,
    Sbb,
    And,
    Sub,
    Xor,
    Cmp,
    Test,
}

/// The count of a shift or rotate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Count {
    /// An immediate (1 for the one-bit forms).
    Imm(u8),
    /// CL.
    Cl,
}

/// A pre-decoded instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Run by the full interpreter.
    Generic,
    /// No architectural effect (NOP, PAUSE, ENDBR64, LFENCE, SFENCE, PREFETCH).
    Nop,
    /// MOV between general registers, memory and immediates.
    Mov { dst: Dst, src: Src, size: u8 },
    /// MOVZX (`sign` false) or MOVSX/MOVSXD (`sign` true) from `ssize` bytes.
    Extend {
        dst: Gpr,
        src: Src,
        ssize: u8,
        sign: bool,
    },
    /// LEA.
    Lea { dst: Gpr },
    /// ADD, OR, ADC, SBB, AND, SUB, XOR, CMP, TEST.
    Alu {
        op: Alu,
        dst: Dst,
        src: Src,
        size: u8,
    },
    /// INC or DEC without LOCK.
    IncDec { dec: bool, dst: Dst, size: u8 },
    /// PUSH of a general register, memory or an immediate.
    Push { src: Src, size: u8 },
    /// POP into a general register.
    Pop { dst: Gpr, size: u8 },
    /// Jcc with a 64-bit target.
    Jcc { cc: ConditionCode, target: u64 },
    /// JMP rel with a 64-bit target.
    Jmp { target: u64 },
    /// CALL rel with a 64-bit target.
    Call { target: u64 },
    /// RET without an immediate, 64-bit.
    Ret,
    /// CMOVcc.
    Cmov {
        cc: ConditionCode,
        dst: Gpr,
        src: Src,
        size: u8,
    },
    /// SETcc.
    Setcc { cc: ConditionCode, dst: Dst },
    /// NEG (`neg` true) or NOT without LOCK.
    NegNot { neg: bool, dst: Dst, size: u8 },
    /// ROL, ROR, RCL, RCR, SHL/SAL, SHR, SAR.
    Shift {
        op: Shift,
        dst: Dst,
        count: Count,
        size: u8,
    },
}

/// An instruction's pre-decoded form and memory operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pre {
    /// What to do.
    pub op: Op,
    /// The memory operand, when an operand is [`Src::Mem`] / [`Dst::Mem`] (or LEA's).
    pub mem: Mem,
}

fn gpr(r: Register) -> Option<Gpr> {
    if !r.is_gpr() {
        return None;
    }
    let (idx, hi) = gpr_slot(r);
    Some(Gpr {
        idx: idx as u8,
        size: r.size() as u8,
        hi,
    })
}

fn mem_of(ins: &Instruction) -> Option<Mem> {
    if ins.is_ip_rel_memory_operand() {
        return Some(Mem {
            disp: ins.ip_rel_memory_address(),
            base: NO_REG,
            index: NO_REG,
            scale: 1,
            a32: false,
            seg: seg_of(ins.segment_prefix())?,
        });
    }
    let slot = |r: Register| -> Option<(u8, bool)> {
        if r == Register::None {
            return Some((NO_REG, false));
        }
        if !(r.is_gpr64() || r.is_gpr32()) {
            return None;
        }
        Some((r.full_register().number() as u8, r.is_gpr32()))
    };
    let (base, b32) = slot(ins.memory_base())?;
    let (index, x32) = slot(ins.memory_index())?;
    Some(Mem {
        disp: ins.memory_displacement64(),
        base,
        index,
        scale: ins.memory_index_scale() as u8,
        a32: b32 || x32,
        seg: seg_of(ins.segment_prefix())?,
    })
}

/// FS/GS prefixes add a base; the others have none in 64-bit mode.
fn seg_of(r: Register) -> Option<u8> {
    Some(match r {
        Register::FS => 1,
        Register::GS => 2,
        Register::None | Register::ES | Register::CS | Register::SS | Register::DS => 0,
        _ => return None,
    })
}

/// Size of operand `i` (as `Cpu::op_size`).
fn op_size(ins: &Instruction, i: u32) -> u8 {
    (match ins.op_kind(i) {
        OpKind::Register => ins.op_register(i).size(),
        OpKind::Memory => ins.memory_size().size(),
        OpKind::Immediate8 => 1,
        OpKind::Immediate16 | OpKind::Immediate8to16 => 2,
        OpKind::Immediate32 | OpKind::Immediate8to32 => 4,
        _ => 8,
    }) as u8
}

fn is_imm(k: OpKind) -> bool {
    matches!(
        k,
        OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64
    )
}

fn src_of(ins: &Instruction, i: u32, size: u8) -> Option<Src> {
    match ins.op_kind(i) {
        OpKind::Register => gpr(ins.op_register(i)).map(Src::Reg),
        OpKind::Memory => Some(Src::Mem),
        k if is_imm(k) => Some(Src::Imm(ins.immediate(i) & mask(size as usize))),
        _ => None,
    }
}

fn dst_of(ins: &Instruction, i: u32) -> Option<Dst> {
    match ins.op_kind(i) {
        OpKind::Register => gpr(ins.op_register(i)).map(Dst::Reg),
        OpKind::Memory => Some(Dst::Mem),
        _ => None,
    }
}

fn dst_gpr(ins: &Instruction, i: u32) -> Option<Gpr> {
    match ins.op_kind(i) {
        OpKind::Register => gpr(ins.op_register(i)),
        _ => None,
    }
}

fn alu_of(m: M) -> Option<Alu> {
    Some(match m {
        M::Add => Alu::Add,
        M::Or => Alu::Or,
        M::Adc => Alu::Adc,
        M::Sbb => Alu::Sbb,
        M::And => Alu::And,
        M::Sub => Alu::Sub,
        M::Xor => Alu::Xor,
        M::Cmp => Alu::Cmp,
        M::Test => Alu::Test,
        _ => return None,
    })
}

fn shift_of(m: M) -> Shift {
    match m {
        M::Rol => Shift::Rol,
        M::Ror => Shift::Ror,
        M::Rcl => Shift::Rcl,
        M::Rcr => Shift::Rcr,
        M::Shl | M::Sal => Shift::Shl,
        M::Shr => Shift::Shr,
        _ => Shift::Sar,
    }
}

/// A shift's count operand: absent (the one-bit forms), an immediate or CL.
fn count_of(ins: &Instruction) -> Option<Count> {
    if ins.op_count() < 2 {
        return Some(Count::Imm(1));
    }
    match ins.op_kind(1) {
        OpKind::Register if ins.op_register(1) == Register::CL => Some(Count::Cl),
        k if is_imm(k) => Some(Count::Imm(ins.immediate(1) as u8)),
        _ => None,
    }
}

/// The pre-decoded form of a 64-bit-mode instruction.
pub(crate) fn predecode(ins: &Instruction) -> Pre {
    let has_mem = (0..ins.op_count()).any(|i| ins.op_kind(i) == OpKind::Memory);
    let mem = if has_mem {
        mem_of(ins)
    } else {
        Some(Mem::default())
    };
    let op = match mem {
        Some(_) if !ins.has_lock_prefix() => op_of(ins).unwrap_or(Op::Generic),
        _ => Op::Generic,
    };
    Pre {
        op,
        mem: mem.unwrap_or_default(),
    }
}

fn op_of(ins: &Instruction) -> Option<Op> {
    let m = ins.mnemonic();
    if let Some(op) = alu_of(m) {
        let size = op_size(ins, 0);
        return Some(Op::Alu {
            op,
            dst: dst_of(ins, 0)?,
            src: src_of(ins, 1, size)?,
            size,
        });
    }
    let cc = ins.condition_code();
    Some(match m {
        M::Mov => {
            let size = op_size(ins, 0);
            Op::Mov {
                dst: dst_of(ins, 0)?,
                src: src_of(ins, 1, size)?,
                size,
            }
        }
        M::Movzx | M::Movsx | M::Movsxd => {
            let ssize = op_size(ins, 1);
            Op::Extend {
                dst: dst_gpr(ins, 0)?,
                src: src_of(ins, 1, ssize)?,
                ssize,
                sign: m != M::Movzx,
            }
        }
        M::Lea => Op::Lea {
            dst: dst_gpr(ins, 0)?,
        },
        M::Inc | M::Dec => Op::IncDec {
            dec: m == M::Dec,
            dst: dst_of(ins, 0)?,
            size: op_size(ins, 0),
        },
        M::Push => {
            let size = match ins.op_kind(0) {
                OpKind::Register => ins.op_register(0).size().max(2),
                OpKind::Memory => ins.memory_size().size(),
                OpKind::Immediate16 => 2,
                _ => ins.stack_pointer_increment().unsigned_abs() as usize,
            } as u8;
            let src = match ins.op_kind(0) {
                OpKind::Register | OpKind::Memory => src_of(ins, 0, size)?,
                // The immediate is pushed sign-extended to the push size, unmasked.
                _ => Src::Imm(ins.immediate(0)),
            };
            Op::Push { src, size }
        }
        M::Pop => Op::Pop {
            dst: dst_gpr(ins, 0)?,
            size: ins.stack_pointer_increment() as u8,
        },
        M::Jmp if ins.op_kind(0) == OpKind::NearBranch64 => Op::Jmp {
            target: ins.near_branch_target(),
        },
        M::Call if ins.op_kind(0) == OpKind::NearBranch64 => Op::Call {
            target: ins.near_branch_target(),
        },
        M::Ret if ins.code() == Code::Retnq => Op::Ret,
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
        | M::Js
            if ins.op_kind(0) == OpKind::NearBranch64 =>
        {
            Op::Jcc {
                cc,
                target: ins.near_branch_target(),
            }
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
            let size = op_size(ins, 0);
            Op::Cmov {
                cc,
                dst: dst_gpr(ins, 0)?,
                src: src_of(ins, 1, size)?,
                size,
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
        | M::Sets => Op::Setcc {
            cc,
            dst: dst_of(ins, 0)?,
        },
        M::Neg | M::Not => Op::NegNot {
            neg: m == M::Neg,
            dst: dst_of(ins, 0)?,
            size: op_size(ins, 0),
        },
        M::Rol | M::Ror | M::Rcl | M::Rcr | M::Shl | M::Sal | M::Shr | M::Sar => Op::Shift {
            op: shift_of(m),
            dst: dst_of(ins, 0)?,
            count: count_of(ins)?,
            size: op_size(ins, 0),
        },
        M::Nop
        | M::Pause
        | M::Lfence
        | M::Sfence
        | M::Prefetchnta
        | M::Prefetcht0
        | M::Prefetcht1
        | M::Prefetcht2
        | M::Prefetchw
        | M::Endbr64 => Op::Nop,
        _ => return None,
    })
}
