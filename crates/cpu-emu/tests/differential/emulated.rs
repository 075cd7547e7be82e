//! Runs test cases in the software CPU at CPL3, with page tables, a GDT, TSS and an IDT
//! whose handlers HLT, so a fault shows up as the handler's vector.

use std::sync::Arc;

use corral_cpu_emu::state::{Seg, Segment};
use corral_cpu_emu::{vector, CodePages, Cpu, CpuIdentity, CpuState, Exit};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::case::{Case, Outcome, CODE, DATA, HARNESS, PAGE};
use super::native::harness;

const PML4: u64 = 0x1000;
const PDPT: u64 = 0x2000;
const PD: u64 = 0x3000;
const GDT: u64 = 0x4000;
const IDT: u64 = 0x5000;
const TSS: u64 = 0x6000;
const KSTACK: u64 = 0x9000;
const HANDLERS: u64 = 0x10000;
const PT_LOW: u64 = 0xa000;
const PT_HIGH: u64 = 0xb000;

/// A machine to run cases on.
pub struct Machine {
    mem: Arc<GuestMemoryMmap>,
    code: Arc<CodePages>,
    cpu: Cpu,
}

fn gdt_entry(access: u8, flags: u8) -> u64 {
    0xffff | (0xf << 48) | ((access as u64) << 40) | ((flags as u64) << 52)
}

impl Machine {
    pub fn new() -> Self {
        let mem = Arc::new(
            GuestMemoryMmap::<()>::from_ranges(&[
                (GuestAddress(0), 2 << 20),
                (GuestAddress(CODE), 4 << 20),
            ])
            .unwrap(),
        );
        let w = |a: u64, v: u64| mem.write_obj(v, GuestAddress(a)).unwrap();
        // Low 2 MiB: supervisor only (system tables, handlers). The code, data and harness
        // pages: user 4 KiB pages, exactly the three pages the native runner maps.
        w(PML4, PDPT | 7);
        w(PDPT, PD | 7);
        w(PD, 0x83);
        w(PD + (CODE >> 21) * 8, PT_LOW | 7);
        w(PD + (HARNESS >> 21) * 8, PT_HIGH | 7);
        w(PT_LOW + ((CODE >> 12) & 511) * 8, CODE | 7);
        w(PT_LOW + ((DATA >> 12) & 511) * 8, DATA | 7);
        w(PT_HIGH + ((HARNESS >> 12) & 511) * 8, HARNESS | 7);
        // null, -, kernel code (0x10), kernel data (0x18), -, user data (0x2b), user code (0x33), -, TSS (0x40)
        w(GDT + 0x10, gdt_entry(0x9b, 0xa));
        w(GDT + 0x18, gdt_entry(0x93, 0xc));
        w(GDT + 0x28, gdt_entry(0xf3, 0xc));
        w(GDT + 0x30, gdt_entry(0xfb, 0xa));
        w(
            GDT + 0x40,
            0x67 | ((TSS & 0xff_ffff) << 16) | (0x89u64 << 40),
        );
        w(TSS + 4, KSTACK);
        for v in 0..256u64 {
            let h = HANDLERS + v * 16;
            let dpl = if v == 3 || v == 4 { 3 } else { 0 };
            let lo = (h & 0xffff)
                | (0x10 << 16)
                | ((0x8e | (dpl << 5)) << 40)
                | ((h >> 16) & 0xffff) << 48;
            w(IDT + v * 16, lo);
            w(IDT + v * 16 + 8, h >> 32);
            mem.write_obj(0xf4u8, GuestAddress(h)).unwrap();
        }
        let code = CodePages::new(CODE + (4 << 20));
        let cpu = Cpu::new(
            mem.clone(),
            code.clone(),
            CpuIdentity { index: 0, count: 1 },
        );
        Machine { mem, code, cpu }
    }

    /// Runs one case; `Err` carries the emulator's own error (unsupported instruction...).
    pub fn run(&mut self, case: &Case) -> Result<Outcome, String> {
        let (code, start, end, _) = harness(&case.code);
        self.mem.write_slice(&code, GuestAddress(CODE)).unwrap();
        self.code.note_dma(CODE, PAGE);
        self.mem
            .write_slice(&case.data, GuestAddress(DATA))
            .unwrap();
        let mut s = CpuState::long_mode(PML4);
        s.gdtr.base = GDT;
        s.gdtr.limit = 0x4f;
        s.idtr.base = IDT;
        s.idtr.limit = 0xfff;
        s.tr = Segment {
            selector: 0x40,
            base: TSS,
            limit: 0x67,
            attr: 0x8b,
        };
        let mut cs = Segment::code64(0x33);
        cs.attr |= 3 << 5;
        let mut ds = Segment::data(0x2b);
        ds.attr |= 3 << 5;
        s.seg[Seg::Cs as usize] = cs;
        for i in [Seg::Ss, Seg::Ds, Seg::Es] {
            s.seg[i as usize] = ds;
        }
        s.seg[Seg::Fs as usize] = Segment::default();
        s.seg[Seg::Gs as usize] = Segment::default();
        s.gpr = case.gpr;
        s.rflags = case.rflags | 0x200;
        s.fpu.xmm = case.xmm;
        s.rip = CODE + start as u64;
        self.cpu.set_state(s);
        let stop = CODE + end as u64;
        let mut signal = 0;
        for _ in 0..10_000 {
            if self.cpu.state.rip == stop {
                break;
            }
            match self.cpu.run(1).map_err(|e| e.to_string())? {
                Exit::Interrupted => {}
                Exit::Hlt => {
                    let v = (self.cpu.state.rip - 1 - HANDLERS) / 16;
                    signal = match v as u8 {
                        vector::DE => libc::SIGFPE,
                        vector::UD => libc::SIGILL,
                        vector::BP | vector::DB => libc::SIGTRAP,
                        vector::AC => libc::SIGBUS,
                        _ => libc::SIGSEGV,
                    } as u32;
                    break;
                }
                other => return Err(format!("unexpected exit {other:?}")),
            }
        }
        if signal == 0 && self.cpu.state.rip != stop {
            return Err(format!(
                "did not reach the end of the snippet (rip {:#x})",
                self.cpu.state.rip
            ));
        }
        let mut data = vec![0u8; PAGE as usize];
        self.mem.read_slice(&mut data, GuestAddress(DATA)).unwrap();
        let st = &self.cpu.state;
        Ok(Outcome {
            signal,
            gpr: st.gpr,
            rflags: st.rflags & !0x10000,
            xmm: st.fpu.xmm,
            data,
        })
    }
}

/// Register names for reports.
pub const NAMES: [&str; 16] = [
    "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15",
];
