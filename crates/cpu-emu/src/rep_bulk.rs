//! REP MOVS and REP STOS over RAM in runs: as many elements as stay inside the current
//! source and destination pages are moved with one translation per page and a host copy or
//! fill, instead of a translation and a load/store per element. The kernel clears and
//! copies most of its memory this way (clear_page, memset, memcpy). Anything the bulk
//! path cannot do exactly (MMIO, an element straddling pages, overlapping copies whose
//! element-by-element result differs from a block copy) is left to the element loop.

use iced_x86::Instruction;

use crate::cpu::Cpu;
use crate::error::Stop;
use crate::mmu::acc;
use crate::phys::PAGE_SIZE;
use crate::state::reg;

/// What the bulk path left for the element loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bulk {
    /// RCX reached zero, or the instruction yields and resumes later: nothing left to do.
    Done,
    /// The next element needs the element loop (RCX, RSI and RDI are up to date).
    Fallback,
}

/// Elements of `size` bytes from `addr` up to its page's end.
fn room(addr: u64, size: usize) -> u64 {
    (PAGE_SIZE - (addr & (PAGE_SIZE - 1))) / size as u64
}

impl Cpu {
    /// Runs REP MOVS (`copy`) or REP STOS with 64-bit addresses and DF=0, in page runs,
    /// for at most `budget` elements. Commits RCX/RSI/RDI after every run, like the element
    /// loop, so a fault at a later page leaves the architectural state a fault there has.
    pub(crate) fn rep_bulk(
        &mut self,
        ins: &Instruction,
        size: usize,
        copy: bool,
        budget: u64,
    ) -> Result<(Bulk, u64), Stop> {
        let mut done = 0u64;
        let write = self.data_acc(true);
        let read = self.data_acc(false);
        loop {
            let rcx = self.state.gpr[reg::RCX];
            if rcx == 0 {
                return Ok((Bulk::Done, done));
            }
            if done >= budget {
                return Ok((Bulk::Fallback, done));
            }
            let di = self.state.gpr[reg::RDI];
            let si = self.seg_adjust(ins, self.state.gpr[reg::RSI]);
            let mut n = rcx.min(room(di, size)).min(budget - done);
            if copy {
                n = n.min(room(si, size));
            }
            if n == 0 {
                // An element straddles a page boundary.
                return Ok((Bulk::Fallback, done));
            }
            let bytes = n as usize * size;
            // The element loop reads the source before writing the destination: translate
            // in that order so the first fault is the same.
            let src = if copy {
                let t = self.translate(si, read)?;
                if t.host == 0 {
                    return Ok((Bulk::Fallback, done));
                }
                t.host
            } else {
                0
            };
            let dst = self.translate(di, write | acc::WRITE)?;
            if dst.host == 0 {
                return Ok((Bulk::Fallback, done));
            }
            if copy {
                if overlaps_ahead(src, dst.host, bytes) {
                    return Ok((Bulk::Fallback, done));
                }
                // SAFETY: both ranges lie inside mapped RAM pages (each run stays within
                // one page of each side) and the destination does not start inside the
                // source run, so a forward copy equals the element-by-element one.
                unsafe { std::ptr::copy(src as *const u8, dst.host as *mut u8, bytes) };
            } else {
                // SAFETY: the run lies inside one mapped RAM page.
                unsafe { fill(dst.host, size, n as usize, self.state.gpr[reg::RAX]) };
            }
            if self.code.note_write(dst.gpa) {
                self.code_written = true;
            }
            let adv = bytes as u64;
            self.state.gpr[reg::RDI] = di.wrapping_add(adv);
            if copy {
                self.state.gpr[reg::RSI] = self.state.gpr[reg::RSI].wrapping_add(adv);
            }
            self.state.gpr[reg::RCX] = rcx - n;
            done += n;
            if self.code_written {
                // Re-decode before running on: resume at this instruction if work remains.
                return Ok((Bulk::Done, done));
            }
        }
    }
}

/// Whether the destination starts inside the source run, where copying element by element
/// forwards repeats the first bytes (a block copy would not).
fn overlaps_ahead(src: usize, dst: usize, bytes: usize) -> bool {
    dst > src && dst < src + bytes
}

/// Stores the low `size` bytes of `v`, `n` times from `p`.
///
/// # Safety
/// `p..p + size * n` must be writable.
unsafe fn fill(p: usize, size: usize, n: usize, v: u64) {
    // SAFETY: guaranteed by the caller; unaligned stores are valid on every element.
    unsafe {
        match size {
            1 => std::ptr::write_bytes(p as *mut u8, v as u8, n),
            2 => (0..n).for_each(|i| (p as *mut u16).add(i).write_unaligned(v as u16)),
            4 => (0..n).for_each(|i| (p as *mut u32).add(i).write_unaligned(v as u32)),
            _ => (0..n).for_each(|i| (p as *mut u64).add(i).write_unaligned(v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use vm_memory::{Bytes, GuestAddress};

    use crate::error::Exit;
    use crate::state::reg;
    use crate::testutil::{cpu_with, run_to_hlt, CODE, MMIO};

    const REP_STOSQ: &[u8] = &[0xf3, 0x48, 0xab, 0xf4];
    const REP_MOVSB: &[u8] = &[0xf3, 0xa4, 0xf4];
    const REP_MOVSQ: &[u8] = &[0xf3, 0x48, 0xa5, 0xf4];

    #[test]
    fn stos_across_pages_with_a_straddling_element() {
        let (mut cpu, mem) = cpu_with(REP_STOSQ);
        let (start, n) = (0x20ffcu64, 1000u64);
        cpu.state.gpr[reg::RDI] = start;
        cpu.state.gpr[reg::RCX] = n;
        cpu.state.gpr[reg::RAX] = 0x1122_3344_5566_7788;
        run_to_hlt(&mut cpu);
        let mut got = vec![0u8; n as usize * 8 + 16];
        mem.read_slice(&mut got, GuestAddress(start - 8)).unwrap();
        assert_eq!(&got[..8], &[0; 8], "before the run");
        for (i, c) in got[8..8 + n as usize * 8].chunks(8).enumerate() {
            assert_eq!(c, 0x1122_3344_5566_7788u64.to_le_bytes(), "element {i}");
        }
        assert_eq!(&got[8 + n as usize * 8..], &[0; 8], "after the run");
        assert_eq!(cpu.state.gpr[reg::RCX], 0);
        assert_eq!(cpu.state.gpr[reg::RDI], start + n * 8);
    }

    /// The element-by-element result of a forward MOVS of `n` elements of `size`.
    fn reference(mem: &mut [u8], src: usize, dst: usize, n: usize, size: usize) {
        for i in 0..n {
            let e: Vec<u8> = mem[src + i * size..src + (i + 1) * size].to_vec();
            mem[dst + i * size..dst + (i + 1) * size].copy_from_slice(&e);
        }
    }

    fn movs_matches_reference(code: &[u8], size: usize, src: u64, dst: u64, n: u64) {
        let (mut cpu, mem) = cpu_with(code);
        let base = 0x30000u64;
        let mut image: Vec<u8> = (0..0x8000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        mem.write_slice(&image, GuestAddress(base)).unwrap();
        cpu.state.gpr[reg::RSI] = src;
        cpu.state.gpr[reg::RDI] = dst;
        cpu.state.gpr[reg::RCX] = n;
        run_to_hlt(&mut cpu);
        let (s, d) = ((src - base) as usize, (dst - base) as usize);
        reference(&mut image, s, d, n as usize, size);
        let mut got = vec![0u8; image.len()];
        mem.read_slice(&mut got, GuestAddress(base)).unwrap();
        assert!(
            got == image,
            "memory differs from the element-by-element copy"
        );
        assert_eq!(cpu.state.gpr[reg::RCX], 0);
        assert_eq!(cpu.state.gpr[reg::RSI], src + n * size as u64);
        assert_eq!(cpu.state.gpr[reg::RDI], dst + n * size as u64);
    }

    #[test]
    fn movs_overlapping_forward_repeats_like_the_element_loop() {
        movs_matches_reference(REP_MOVSB, 1, 0x30ff0, 0x30ff3, 5000);
        movs_matches_reference(REP_MOVSQ, 8, 0x30100, 0x30104, 1500);
    }

    #[test]
    fn movs_backward_overlap_and_disjoint_runs() {
        movs_matches_reference(REP_MOVSB, 1, 0x30803, 0x30800, 9000);
        movs_matches_reference(REP_MOVSQ, 8, 0x30005, 0x33ffa, 1800);
    }

    #[test]
    fn stos_into_mmio_leaves_one_element_per_exit() {
        let (mut cpu, _mem) = cpu_with(REP_STOSQ);
        cpu.state.gpr[reg::RDI] = MMIO;
        cpu.state.gpr[reg::RCX] = 2;
        cpu.state.gpr[reg::RAX] = 7;
        let exit = cpu.run(100).unwrap();
        assert_eq!(
            exit,
            Exit::MmioWrite {
                gpa: MMIO,
                size: 8,
                data: 7
            }
        );
        assert_eq!(cpu.state.gpr[reg::RCX], 1);
        assert_eq!(cpu.state.rip, CODE, "resumes at the REP");
    }

    #[test]
    fn stos_over_following_code_is_seen_at_once() {
        // REP STOSB writes HLT over the NOPs that follow it in the same block.
        let mut code = vec![0xf3, 0xaa];
        code.extend([0x90; 16]);
        code.extend([0x48, 0xff, 0xc3, 0xf4]); // inc rbx; hlt
        let (mut cpu, _mem) = cpu_with(&code);
        cpu.state.gpr[reg::RDI] = CODE + 2;
        cpu.state.gpr[reg::RCX] = 4;
        cpu.state.gpr[reg::RAX] = 0xf4;
        cpu.state.gpr[reg::RBX] = 0;
        run_to_hlt(&mut cpu);
        assert_eq!(cpu.state.rip, CODE + 3, "stopped at the first patched byte");
        assert_eq!(cpu.state.gpr[reg::RBX], 0);
    }
}
