//! Decoded blocks, keyed by guest-physical address and checked against the page's write
//! generation, so code the guest patches (alternatives, static keys) is re-decoded.
//!
//! A block runs on through conditional branches (a superblock with side exits): the run loop
//! leaves it wherever control goes elsewhere, so a branch not taken costs no block lookup.
//! Kernel code branches about every five instructions; most of those branches fall through.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use iced_x86::{Decoder, DecoderError, DecoderOptions, FlowControl, Instruction};

use crate::cpu::Cpu;
use crate::error::Stop;
use crate::mmu::{acc, Translation};
use crate::phys::PAGE_SIZE;
use crate::predecode::{predecode, Pre};

/// Longest block, in instructions.
const MAX_BLOCK: usize = 64;
/// Slots in the direct-mapped lookup in front of the map.
const FAST_SLOTS: usize = 4096;

/// A straight run of instructions ending at a control transfer or the end of a page.
#[derive(Debug)]
pub struct Block {
    /// Linear address of the first instruction (decoding depends on it: RIP-relative
    /// operands and branch targets are absolute in iced's output).
    pub vstart: u64,
    /// Guest-physical address of the first instruction.
    pub gpa: u64,
    /// Write generation of the page when decoded.
    pub gen: u32,
    /// The instructions with their pre-decoded forms, side by side: one allocation, walked
    /// in order.
    pub instrs: Box<[Decoded]>,
    /// The bytes they were decoded from: checked on every lookup, so writes the generation
    /// tracking cannot see (device DMA into a recycled page) never run stale code.
    pub bytes: Box<[u8]>,
}

impl Block {
    fn matches(&self, rip: u64, gpa: u64, gen: u32, host: usize) -> bool {
        if self.vstart != rip || self.gpa != gpa || self.gen != gen {
            return false;
        }
        // SAFETY: `host` maps the block's first byte; the block never extends past its page.
        let now = unsafe { std::slice::from_raw_parts(host as *const u8, self.bytes.len()) };
        same_bytes(now, &self.bytes)
    }
}

/// `a == b` for slices of equal length, eight bytes at a time and inlined: blocks are a few
/// dozen bytes, checked on every lookup, where a call to the library's memcmp costs more
/// than the comparison. The last word overlaps the one before it when the length is not a
/// multiple of eight.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n < 8 || b.len() != n {
        return a == b;
    }
    let word = |s: &[u8], at: usize| u64::from_ne_bytes(s[at..at + 8].try_into().unwrap());
    (0..n / 8).all(|i| word(a, i * 8) == word(b, i * 8)) && word(a, n - 8) == word(b, n - 8)
}

/// One instruction of a block.
#[derive(Debug)]
pub struct Decoded {
    /// Its pre-decoded form.
    pub(crate) pre: Pre,
    /// The instruction as iced-x86 decoded it.
    pub ins: Instruction,
}

impl Decoded {
    fn new(ins: Instruction) -> Self {
        Decoded {
            pre: predecode(&ins),
            ins,
        }
    }
}

/// Whether decoding goes on after `ins` in the same block: straight-line code, and
/// conditional branches (their fall-through path).
fn continues_block(ins: &Instruction) -> bool {
    matches!(
        ins.flow_control(),
        FlowControl::Next | FlowControl::ConditionalBranch
    )
}

/// A block out of the cache for running, and the fast slot it goes back to (none for an
/// uncached block).
#[derive(Debug)]
pub(crate) struct Fetched {
    /// The block.
    pub block: Arc<Block>,
    slot: Option<usize>,
}

/// Decoded blocks of one vCPU.
#[derive(Debug)]
pub struct BlockCache {
    map: FxHashMap<u64, Arc<Block>>,
    fast: Vec<Option<Arc<Block>>>,
}

impl Default for BlockCache {
    fn default() -> Self {
        BlockCache {
            map: FxHashMap::default(),
            fast: vec![None; FAST_SLOTS],
        }
    }
}

impl BlockCache {
    /// Forgets every block.
    pub fn clear(&mut self) {
        self.map.clear();
        self.fast.iter_mut().for_each(|s| *s = None);
    }
}

fn slot(gpa: u64) -> usize {
    ((gpa ^ (gpa >> 12)) as usize) & (FAST_SLOTS - 1)
}

impl Cpu {
    /// The block starting at RIP, from the cache or freshly decoded, with the fast slot it
    /// was taken out of: the caller puts it back with [`Cpu::return_block`] after running it
    /// (moving the `Arc` out and back costs no reference-count updates).
    pub(crate) fn fetch_block(&mut self) -> Result<Fetched, Stop> {
        let rip = self.state.rip;
        let a = acc::EXEC | if self.state.cpl() == 3 { acc::USER } else { 0 };
        let t = match self.direct_page(rip, a) {
            Some(page) => {
                let off = rip & (PAGE_SIZE - 1);
                Translation {
                    gpa: page.gpa | off,
                    host: page.host + off as usize,
                }
            }
            None => self.translate(rip, a)?,
        };
        if t.host == 0 {
            return Err(Stop::Internal(format!(
                "instruction fetch from non-RAM address {:#x}",
                t.gpa
            )));
        }
        let gen = self.code.generation(t.gpa);
        let s = slot(t.gpa);
        self.stats.fetches += 1;
        if let Some(b) = self.blocks.fast[s].take() {
            if b.matches(rip, t.gpa, gen, t.host) {
                self.stats.fast_hits += 1;
                return Ok(Fetched {
                    block: b,
                    slot: Some(s),
                });
            }
        }
        if let Some(b) = self.blocks.map.get(&t.gpa) {
            if b.matches(rip, t.gpa, gen, t.host) {
                self.stats.map_hits += 1;
                return Ok(Fetched {
                    block: b.clone(),
                    slot: Some(s),
                });
            }
        }
        self.stats.decodes += 1;
        let gen = self.code.mark_code(t.gpa);
        let off = (t.gpa & (PAGE_SIZE - 1)) as usize;
        // SAFETY: `t.host` is the host address of `rip` inside a mapped RAM page; the slice
        // ends at that page's end.
        let bytes =
            unsafe { std::slice::from_raw_parts(t.host as *const u8, PAGE_SIZE as usize - off) };
        let mut dec = Decoder::with_ip(64, bytes, rip, DecoderOptions::NO_INVALID_CHECK);
        let mut instrs = Vec::with_capacity(8);
        let mut ins = Instruction::default();
        while dec.can_decode() && instrs.len() < MAX_BLOCK {
            dec.decode_out(&mut ins);
            if dec.last_error() == DecoderError::NoMoreBytes {
                break;
            }
            if ins.is_invalid() {
                if instrs.is_empty() {
                    return Err(Stop::Unsupported);
                }
                break;
            }
            instrs.push(Decoded::new(ins));
            if !continues_block(&ins) {
                break;
            }
        }
        if instrs.is_empty() {
            // The instruction straddles a page boundary: decode it on its own, uncached.
            return self.decode_straddling(rip, gen, t.gpa);
        }
        let len = instrs.iter().map(|d| d.ins.len()).sum::<usize>();
        let block = Arc::new(Block {
            vstart: rip,
            gpa: t.gpa,
            gen,
            instrs: instrs.into_boxed_slice(),
            bytes: bytes[..len].into(),
        });
        self.blocks.map.insert(t.gpa, block.clone());
        Ok(Fetched {
            block,
            slot: Some(s),
        })
    }

    /// Puts a block taken by [`Cpu::fetch_block`] back into its fast slot.
    #[inline]
    pub(crate) fn return_block(&mut self, f: Fetched) {
        if let Some(s) = f.slot {
            self.blocks.fast[s] = Some(f.block);
        }
    }

    fn decode_straddling(&mut self, rip: u64, gen: u32, gpa: u64) -> Result<Fetched, Stop> {
        let mut bytes = [0u8; 15];
        self.fetch_bytes(rip, &mut bytes)?;
        let mut dec = Decoder::with_ip(64, &bytes, rip, DecoderOptions::NO_INVALID_CHECK);
        let ins = dec.decode();
        if ins.is_invalid() {
            return Err(Stop::Unsupported);
        }
        let block = Arc::new(Block {
            vstart: rip,
            gpa,
            gen,
            instrs: Box::new([Decoded::new(ins)]),
            bytes: Box::new([]),
        });
        Ok(Fetched { block, slot: None })
    }

    /// Reads instruction bytes at `va` as a fetch (for straddling instructions and reports).
    pub(crate) fn fetch_bytes(&mut self, va: u64, out: &mut [u8]) -> Result<(), Stop> {
        let a = acc::EXEC | if self.state.cpl() == 3 { acc::USER } else { 0 };
        for (i, b) in out.iter_mut().enumerate() {
            let cur = va.wrapping_add(i as u64);
            let t = self.translate(cur, a)?;
            if t.host == 0 {
                return Err(Stop::Internal(format!(
                    "instruction fetch from non-RAM address {:#x}",
                    t.gpa
                )));
            }
            // SAFETY: one byte inside a mapped RAM page.
            *b = unsafe { *(t.host as *const u8) };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::same_bytes;

    #[test]
    fn same_bytes_sees_a_difference_at_every_position_of_every_length() {
        let a: Vec<u8> = (0..40).collect();
        for n in 0..a.len() {
            assert!(same_bytes(&a[..n], &a[..n]), "equal, length {n}");
            for at in 0..n {
                let mut b = a[..n].to_vec();
                b[at] ^= 0x80;
                assert!(!same_bytes(&a[..n], &b), "length {n}, differing at {at}");
            }
        }
    }
}
