//! corral's software x86-64 CPU: a second implementation of the vmm's vCPU boundary.
//!
//! An interpreter over instructions decoded by iced-x86 and cached per basic block (keyed by
//! guest-physical address, invalidated when the page is written), running 64-bit long mode
//! (plus the real/protected-mode subset an application processor's start-up trampoline runs
//! after INIT/SIPI): the integer instruction set with exact flags, strings with REP, LOCKed
//! operations as host atomics, 4-level paging with a software TLB, exceptions and interrupts
//! through the IDT, SYSCALL/SYSRET, MSRs, CPUID, and the SSE2/x87 subset Linux and glibc use.
//! Port I/O and MMIO leave [`Cpu::run`] as [`Exit`]s for the VMM's buses.

mod alu;
mod backend;
mod bits;
mod control;
mod cpu;
mod cpuid;
mod decode;
mod error;
mod exec;
mod fastexec;
mod interrupts;
mod ioapic;
mod lapic;
mod lazyflags;
mod legacy;
mod mmu;
mod msr;
mod operand;
mod phys;
mod predecode;
mod profile;
mod rep_bulk;
mod sse;
pub mod state;
mod strings;
mod system;
#[cfg(test)]
mod testutil;
mod vmem;
mod x87;

pub use backend::{EmuHypervisor, EmuVcpu, EmuVm};
pub use cpu::{Cpu, CpuIdentity, InterruptSource};
pub use cpuid::TSC_HZ;
pub use error::{vector, EmuError, Exit, Fault, Report};
pub use phys::{CodePages, PhysMemory, PAGE_SIZE};
pub use state::CpuState;
