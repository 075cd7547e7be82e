//! Why the software CPU stopped: exits the VMM handles, and errors that end the VM.

use std::fmt;

use crate::state::CpuState;

/// A reason to leave the interpreter that the VMM must handle before running again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// IN from a port: answer with [`crate::Cpu::complete_read`], then run again.
    IoIn {
        /// Port number.
        port: u16,
        /// Access size in bytes (1, 2 or 4).
        size: u8,
    },
    /// OUT to a port; the instruction has retired.
    IoOut {
        /// Port number.
        port: u16,
        /// Access size in bytes.
        size: u8,
        /// Value written (low `size` bytes).
        data: u32,
    },
    /// A read of guest-physical memory that is not RAM: answer with
    /// [`crate::Cpu::complete_read`], then run again.
    MmioRead {
        /// Guest-physical address.
        gpa: u64,
        /// Access size in bytes (1..=8).
        size: u8,
    },
    /// A write to guest-physical memory that is not RAM; the instruction has retired.
    MmioWrite {
        /// Guest-physical address.
        gpa: u64,
        /// Access size in bytes (1..=8).
        size: u8,
        /// Value written (low `size` bytes, little endian).
        data: u64,
    },
    /// HLT: wait for an interrupt (IF=1) or end the VM (IF=0), then run again.
    Hlt,
    /// A triple fault: the machine is dead (Linux's reboot path).
    Shutdown,
    /// The run was asked to stop (instruction budget spent or a kick from another thread).
    Interrupted,
}

/// A fault raised while executing an instruction: delivered through the IDT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// Exception vector.
    pub vector: u8,
    /// Error code pushed for vectors that have one.
    pub error_code: Option<u32>,
}

/// Exception vectors.
pub mod vector {
    /// Divide error.
    pub const DE: u8 = 0;
    /// Debug.
    pub const DB: u8 = 1;
    /// Breakpoint.
    pub const BP: u8 = 3;
    /// Overflow.
    pub const OF: u8 = 4;
    /// Invalid opcode.
    pub const UD: u8 = 6;
    /// Device not available.
    pub const NM: u8 = 7;
    /// Double fault.
    pub const DF: u8 = 8;
    /// Invalid TSS.
    pub const TS: u8 = 10;
    /// Segment not present.
    pub const NP: u8 = 11;
    /// Stack fault.
    pub const SS: u8 = 12;
    /// General protection.
    pub const GP: u8 = 13;
    /// Page fault.
    pub const PF: u8 = 14;
    /// x87 floating-point error.
    pub const MF: u8 = 16;
    /// Alignment check.
    pub const AC: u8 = 17;
    /// SIMD floating-point exception.
    pub const XM: u8 = 19;
}

impl Fault {
    /// #GP(code).
    pub fn gp(code: u32) -> Self {
        Fault {
            vector: vector::GP,
            error_code: Some(code),
        }
    }
    /// #UD.
    pub fn ud() -> Self {
        Fault {
            vector: vector::UD,
            error_code: None,
        }
    }
    /// #DE.
    pub fn de() -> Self {
        Fault {
            vector: vector::DE,
            error_code: None,
        }
    }
    /// #NM.
    pub fn nm() -> Self {
        Fault {
            vector: vector::NM,
            error_code: None,
        }
    }
    /// #SS(code).
    pub fn ss(code: u32) -> Self {
        Fault {
            vector: vector::SS,
            error_code: Some(code),
        }
    }
    /// #NP(code).
    pub fn np(code: u32) -> Self {
        Fault {
            vector: vector::NP,
            error_code: Some(code),
        }
    }
}

/// What the interpreter knew when it gave up: enough to find the bug from a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Guest RIP of the instruction.
    pub rip: u64,
    /// Its bytes (empty when they could not be fetched).
    pub bytes: Vec<u8>,
    /// Its decoding in Intel syntax.
    pub decoded: String,
    /// The registers at that point.
    pub state: Box<CpuState>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.state;
        write!(f, "rip={:#x} bytes=[", self.rip)?;
        for (i, b) in self.bytes.iter().enumerate() {
            write!(f, "{}{:02x}", if i > 0 { " " } else { "" }, b)?;
        }
        writeln!(f, "] {:?}", self.decoded)?;
        const NAMES: [&str; 16] = [
            "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11",
            "r12", "r13", "r14", "r15",
        ];
        for (i, n) in NAMES.iter().enumerate() {
            write!(
                f,
                "{n}={:#018x}{}",
                s.gpr[i],
                if i % 4 == 3 { "\n" } else { " " }
            )?;
        }
        write!(
            f,
            "rflags={:#x} cs={:#x} ss={:#x} cr0={:#x} cr2={:#x} cr3={:#x} cr4={:#x} efer={:#x}",
            s.rflags, s.seg[1].selector, s.seg[2].selector, s.cr0, s.cr2, s.cr3, s.cr4, s.efer
        )
    }
}

/// Errors that stop the VM: the interpreter cannot go on without corrupting the guest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EmuError {
    /// An instruction the software CPU does not implement.
    #[error("unsupported instruction: {0}")]
    Unsupported(Report),
    /// The guest left 64-bit mode (a 32-bit or 16-bit code segment).
    #[error(
        "only 64-bit long mode is supported (16/32-bit code runs only on an application \
         processor's start-up path after INIT/SIPI); the guest left 64-bit mode: {0}"
    )]
    NotLongMode(Report),
    /// The interpreter found its own state inconsistent.
    #[error("internal inconsistency ({what}): {report}")]
    Internal {
        /// What was inconsistent.
        what: String,
        /// Where.
        report: Report,
    },
    /// The instruction at RIP could not be decoded.
    #[error("undecodable instruction: {0}")]
    Decode(Report),
    /// A completion was given for an exit that was not pending.
    #[error("complete_read called with no pending read exit")]
    NoPendingRead,
}

/// How executing one instruction ended early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// Raise an exception in the guest.
    Fault(Fault),
    /// Leave to the VMM; the instruction restarts (reads) or has retired (writes).
    Exit(Exit),
    /// The instruction is not implemented.
    Unsupported,
    /// The guest asked for something outside long mode.
    NotLongMode,
    /// Interpreter bug.
    Internal(String),
}

impl From<Fault> for Stop {
    fn from(f: Fault) -> Self {
        Stop::Fault(f)
    }
}
