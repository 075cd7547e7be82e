//! Decoded basic blocks, keyed by guest-physical address and checked against the page's
//! write generation, so code the guest patches (alternatives, static keys) is re-decoded.

use std::collections::HashMap;
use std::sync::Arc;

use iced_x86::{Decoder, DecoderError, DecoderOptions, FlowControl, Instruction};

use crate::cpu::Cpu;
use crate::error::Stop;
use crate::mmu::acc;
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
    /// The instructions.
    pub instrs: Box<[Instruction]>,
    /// Their pre-decoded forms, one per instruction.
    pub pre: Box<[Pre]>,
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
        now == &*self.bytes
    }
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
    map: HashMap<u64, Arc<Block>>,
    fast: Vec<Option<Arc<Block>>>,
}

impl Default for BlockCache {
    fn default() -> Self {
        BlockCache {
            map: HashMap::new(),
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
        let t = self.translate(rip, a)?;
        if t.host == 0 {
            return Err(Stop::Internal(format!(
                "instruction fetch from non-RAM address {:#x}",
                t.gpa
            )));
        }
        let gen = self.code.generation(t.gpa);
        let s = slot(t.gpa);
        if let Some(b) = self.blocks.fast[s].take() {
            if b.matches(rip, t.gpa, gen, t.host) {
                return Ok(Fetched {
                    block: b,
                    slot: Some(s),
                });
            }
        }
        if let Some(b) = self.blocks.map.get(&t.gpa) {
            if b.matches(rip, t.gpa, gen, t.host) {
                return Ok(Fetched {
                    block: b.clone(),
                    slot: Some(s),
                });
            }
        }
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
            instrs.push(ins);
            if ins.flow_control() != FlowControl::Next {
                break;
            }
        }
        if instrs.is_empty() {
            // The instruction straddles a page boundary: decode it on its own, uncached.
            return self.decode_straddling(rip, gen, t.gpa);
        }
        let len = instrs.iter().map(|i| i.len()).sum::<usize>();
        let block = Arc::new(Block {
            vstart: rip,
            gpa: t.gpa,
            gen,
            pre: instrs.iter().map(predecode).collect(),
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
            pre: Box::new([predecode(&ins)]),
            instrs: vec![ins].into_boxed_slice(),
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
