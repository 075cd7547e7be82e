//! Test helpers: a long-mode CPU at CPL0 over identity-mapped RAM, running a code snippet.

use std::sync::Arc;

use corral_devices::GuestMem;
use vm_memory::{Bytes, GuestAddress};

use crate::cpu::{Cpu, CpuIdentity};
use crate::error::Exit;
use crate::phys::CodePages;
use crate::state::{reg, CpuState};

/// RAM size: 4 MiB, identity-mapped with two 2 MiB pages; 4-6 MiB is mapped but not RAM.
pub const RAM: u64 = 4 << 20;
/// Where snippets are loaded and start.
pub const CODE: u64 = 0x1000;
/// The top of the stack.
pub const STACK: u64 = 0x8000;
/// Mapped, but not RAM: accesses leave as MMIO exits.
pub const MMIO: u64 = 0x40_0000;

/// A CPU about to run `code` (which should end in HLT) at [`CODE`].
pub fn cpu_with(code: &[u8]) -> (Cpu, Arc<GuestMem>) {
    let mem = Arc::new(GuestMem::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap());
    mem.write_slice(code, GuestAddress(CODE)).unwrap();
    mem.write_obj(0xb003u64, GuestAddress(0xa000)).unwrap();
    mem.write_obj(0xc003u64, GuestAddress(0xb000)).unwrap();
    for i in 0..3u64 {
        mem.write_obj((i << 21) | 0x83, GuestAddress(0xc000 + i * 8))
            .unwrap();
    }
    let mut cpu = Cpu::new(
        mem.clone(),
        CodePages::new(RAM),
        CpuIdentity { index: 0, count: 1 },
    );
    let mut s = CpuState::long_mode(0xa000);
    s.rip = CODE;
    s.gpr[reg::RSP] = STACK;
    cpu.set_state(s);
    (cpu, mem)
}

/// Runs until HLT, failing on any other exit.
pub fn run_to_hlt(cpu: &mut Cpu) {
    match cpu.run(10_000_000) {
        Ok(Exit::Hlt) => {}
        other => panic!("expected HLT, got {other:?} at {:#x}", cpu.state.rip),
    }
}
