//! CPUID: a curated x86-64 baseline (SSE2, FXSR, CX16, POPCNT, NX, 1 GiB pages, RDTSCP,
//! TSC-deadline LAPIC timer, invariant TSC with IA32_TSC_ADJUST, fast REP MOVSB/STOSB), no
//! AVX/XSAVE, with the topology of the VM's vCPUs and the TSC
//! frequency announced through leaf 0x15 so the guest need not calibrate.

use crate::cpu::Cpu;

/// TSC frequency the guest sees: RDTSC counts host monotonic nanoseconds.
pub const TSC_HZ: u32 = 1_000_000_000;

const VENDOR: &[u8; 12] = b"GenuineIntel";
const BRAND: &[u8; 48] = b"corral software x86-64 CPU\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

// Leaf 1 EDX.
const FPU: u32 = 1 << 0;
const DE: u32 = 1 << 2;
const PSE: u32 = 1 << 3;
const TSC: u32 = 1 << 4;
const MSR: u32 = 1 << 5;
const PAE: u32 = 1 << 6;
const CX8: u32 = 1 << 8;
const APIC: u32 = 1 << 9;
const SEP: u32 = 1 << 11;
const PGE: u32 = 1 << 13;
const CMOV: u32 = 1 << 15;
const PAT: u32 = 1 << 16;
const CLFSH: u32 = 1 << 19;
const MMX: u32 = 1 << 23;
const FXSR: u32 = 1 << 24;
const SSE: u32 = 1 << 25;
const SSE2: u32 = 1 << 26;
const HTT: u32 = 1 << 28;
// Leaf 1 ECX.
const CX16: u32 = 1 << 13;
const POPCNT: u32 = 1 << 23;
const TSC_DEADLINE: u32 = 1 << 24;
const HYPERVISOR: u32 = 1 << 31;
// Leaf 7 EBX.
const TSC_ADJUST_MSR: u32 = 1 << 1;
const ERMS: u32 = 1 << 9;
// Leaf 7 EDX.
const FSRM: u32 = 1 << 4;
// Leaf 7 subleaf 1 EAX.
const FSRS: u32 = 1 << 11;
// Leaf 0x80000001.
const LAHF_LM: u32 = 1 << 0;
const SYSCALL: u32 = 1 << 11;
const NX: u32 = 1 << 20;
const PDPE1GB: u32 = 1 << 26;
const RDTSCP: u32 = 1 << 27;
const LM: u32 = 1 << 29;

fn words(b: &[u8]) -> [u32; 4] {
    let mut w = [0u32; 4];
    for (i, c) in b.chunks(4).enumerate().take(4) {
        w[i] = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    w
}

impl Cpu {
    /// CPUID leaf `leaf`, subleaf `sub`: (EAX, EBX, ECX, EDX).
    pub fn cpuid(&self, leaf: u32, sub: u32) -> (u32, u32, u32, u32) {
        let id = self.identity;
        let v = words(VENDOR);
        match leaf {
            0 => (0x15, v[0], v[2], v[1]),
            1 => {
                // Family 6, model 0x3a-ish stepping 9; CLFLUSH line 64 bytes.
                let eax = 0x0003_06a9;
                let logical = id.count.next_power_of_two().min(255);
                let ebx = (8 << 8) | (logical << 16) | (id.index << 24);
                let ecx = CX16 | POPCNT | TSC_DEADLINE | HYPERVISOR | 1; // SSE3 is bit 0
                let edx = FPU
                    | DE
                    | PSE
                    | TSC
                    | MSR
                    | PAE
                    | CX8
                    | APIC
                    | SEP
                    | PGE
                    | CMOV
                    | PAT
                    | CLFSH
                    | MMX
                    | FXSR
                    | SSE
                    | SSE2
                    | if id.count > 1 { HTT } else { 0 };
                (eax, ebx, ecx & !1, edx)
            }
            // Deterministic cache parameters: one unified L1, cores per package in EAX.
            4 if sub == 0 => {
                let cores = id.count.next_power_of_two().min(64) - 1;
                (
                    (cores << 26) | (1 << 8) | (1 << 5) | 3,
                    63 | (7 << 22),
                    63,
                    0,
                )
            }
            // Structured extended features: IA32_TSC_ADJUST (with the invariant TSC it lets
            // Linux trust the TSC without a clocksource watchdog), and fast REP MOVSB/STOSB
            // (ERMS, FSRM, FSRS in subleaf 1), so the guest's memcpy, memset and clear_page
            // are single REP instructions, which this CPU runs in page-sized bulk (rep_bulk)
            // instead of loops of stores it must interpret one by one.
            7 if sub == 0 => (1, TSC_ADJUST_MSR | ERMS, 0, FSRM),
            7 if sub == 1 => (FSRS, 0, 0, 0),
            0xb => {
                // x2APIC topology: one thread per core, `count` cores.
                let shift_smt = 0;
                let cores_shift = 32 - (id.count.max(1) - 1).leading_zeros();
                match sub {
                    0 => (shift_smt, 1, 0x100, id.index),
                    1 => (cores_shift, id.count, 0x201, id.index),
                    _ => (0, 0, sub, id.index),
                }
            }
            0x15 => (1, 1, TSC_HZ, 0),
            0x16 => (TSC_HZ / 1_000_000, TSC_HZ / 1_000_000, 100, 0),
            0x8000_0000 => (0x8000_0008, 0, 0, 0),
            0x8000_0001 => (0, 0, LAHF_LM, SYSCALL | NX | PDPE1GB | RDTSCP | LM),
            0x8000_0002..=0x8000_0004 => {
                let i = (leaf - 0x8000_0002) as usize;
                let w = words(&BRAND[i * 16..i * 16 + 16]);
                (w[0], w[1], w[2], w[3])
            }
            0x8000_0006 => (0, 0, 0x0040_6040, 0),
            0x8000_0007 => (0, 0, 0, 1 << 8), // invariant TSC
            0x8000_0008 => (0x3028, 0, 0, 0), // 40-bit physical, 48-bit linear
            _ => (0, 0, 0, 0),
        }
    }
}
