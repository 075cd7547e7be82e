//! One software vCPU: its state, TLB and block cache, and the run loop that executes blocks,
//! delivers interrupts and turns port I/O and MMIO into exits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};

use crate::decode::{Block, BlockCache};
use crate::error::{EmuError, Exit, Report, Stop};
use crate::lazyflags::Lazy;
use crate::mmu::Tlb;
use crate::phys::{CodePages, PhysMemory};
use crate::profile::{CacheStats, GuestProfile};
use crate::state::{flags, CpuState};

/// A read exit waiting for (or holding) its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PendingRead {
    /// Port input.
    Io {
        port: u16,
        size: u8,
        data: Option<u32>,
    },
    /// MMIO read.
    Mmio {
        gpa: u64,
        size: u8,
        data: Option<u64>,
    },
}

/// Where external interrupts come from (the LAPIC, or a test).
pub trait InterruptSource: Send {
    /// The highest-priority deliverable vector, accepted (moved to in-service) by this call.
    fn take_interrupt(&mut self) -> Option<u8>;
    /// Whether an interrupt is pending (used to wake from HLT).
    fn has_interrupt(&self) -> bool;
    /// A cheap hint checked before every block: false means `take_interrupt` would return
    /// `None` now, so the run loop skips it. A source without a cheaper test says true.
    fn may_have_interrupt(&self) -> bool {
        true
    }
}

/// Identity and topology a vCPU reports through CPUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuIdentity {
    /// This vCPU's index (its APIC ID).
    pub index: u32,
    /// Number of vCPUs in the VM.
    pub count: u32,
}

/// A software x86-64 CPU.
pub struct Cpu {
    /// Architectural state.
    pub state: CpuState,
    pub(crate) mem: Arc<dyn PhysMemory>,
    pub(crate) code: Arc<CodePages>,
    pub(crate) tlb: Tlb,
    pub(crate) blocks: BlockCache,
    pub(crate) read_reply: Option<PendingRead>,
    pub(crate) pending_exit: Option<Exit>,
    pub(crate) next_rip: u64,
    pub(crate) end_block: bool,
    pub(crate) code_written: bool,
    /// Interrupts are inhibited for one instruction (after STI, MOV SS).
    pub(crate) int_shadow: bool,
    /// Status flags not yet folded into RFLAGS (see `lazyflags`).
    pub(crate) lazy: Lazy,
    pub(crate) identity: CpuIdentity,
    pub(crate) irq: Option<Box<dyn InterruptSource>>,
    pub(crate) clock: Instant,
    /// Executing outside 64-bit mode: the start-up path after INIT/SIPI (see `legacy`).
    pub(crate) legacy: bool,
    kick: Arc<AtomicBool>,
    /// Instructions retired since creation.
    pub instret: u64,
    /// Instructions per block, when the environment asks for a guest profile.
    profile: Option<Box<GuestProfile>>,
    /// Fast-path counters of the block cache and TLB (see `profile`).
    pub(crate) stats: CacheStats,
}

impl std::fmt::Debug for Cpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cpu")
            .field("rip", &format_args!("{:#x}", self.state.rip))
            .field("instret", &self.instret)
            .finish_non_exhaustive()
    }
}

impl Cpu {
    /// A CPU over `mem`, sharing `code` (page write generations) with the VM's other vCPUs.
    pub fn new(mem: Arc<dyn PhysMemory>, code: Arc<CodePages>, identity: CpuIdentity) -> Self {
        Cpu {
            state: CpuState::default(),
            mem,
            code,
            tlb: Tlb::default(),
            blocks: BlockCache::default(),
            read_reply: None,
            pending_exit: None,
            next_rip: 0,
            end_block: false,
            code_written: false,
            int_shadow: false,
            lazy: Lazy::default(),
            identity,
            irq: None,
            clock: Instant::now(),
            legacy: false,
            kick: Arc::new(AtomicBool::new(false)),
            instret: 0,
            profile: GuestProfile::from_env(identity.index),
            stats: CacheStats::default(),
        }
    }

    /// Connects the source of external interrupts (the LAPIC).
    pub fn set_interrupt_source(&mut self, src: Box<dyn InterruptSource>) {
        self.irq = Some(src);
    }

    /// A flag another thread sets to make [`Cpu::run`] return [`Exit::Interrupted`] soon.
    pub fn kicker(&self) -> Arc<AtomicBool> {
        self.kick.clone()
    }

    /// Replaces the state (e.g. from the VMM's boot setup); flushes translations.
    pub fn set_state(&mut self, state: CpuState) {
        self.state = state;
        self.lazy = Lazy::default();
        self.flush_tlb();
        self.blocks.clear();
        self.read_reply = None;
        self.pending_exit = None;
    }

    /// Sets the instant the guest TSC counts from, shared by the VM's vCPUs so their TSCs
    /// agree (Linux checks that they are synchronised).
    pub fn set_epoch(&mut self, epoch: Instant) {
        self.clock = epoch;
    }

    /// Sets the topology CPUID reports (the VMM knows the vCPU count once all exist).
    pub fn set_identity(&mut self, identity: CpuIdentity) {
        self.identity = identity;
    }

    /// Drops all cached translations.
    pub fn flush_tlb(&mut self) {
        self.tlb.flush();
    }

    /// Answers the pending IoIn or MmioRead exit with `data`.
    pub fn complete_read(&mut self, data: u64) -> Result<(), EmuError> {
        self.read_reply = match self.read_reply {
            Some(PendingRead::Io {
                port,
                size,
                data: None,
            }) => Some(PendingRead::Io {
                port,
                size,
                data: Some(data as u32),
            }),
            Some(PendingRead::Mmio {
                gpa,
                size,
                data: None,
            }) => Some(PendingRead::Mmio {
                gpa,
                size,
                data: Some(data),
            }),
            _ => return Err(EmuError::NoPendingRead),
        };
        Ok(())
    }

    /// The guest TSC: nanoseconds of the host monotonic clock plus the guest's offset.
    pub fn tsc(&self) -> u64 {
        (self.clock.elapsed().as_nanos() as u64).wrapping_add(self.state.msrs.tsc_offset as u64)
    }

    /// Runs until an exit, or `budget` instructions have retired ([`Exit::Interrupted`]).
    pub fn run(&mut self, budget: u64) -> Result<Exit, EmuError> {
        let r = self.run_blocks(budget);
        // RFLAGS is observable (and writable) between runs: no flags stay pending.
        self.flags_sync();
        r
    }

    fn run_blocks(&mut self, budget: u64) -> Result<Exit, EmuError> {
        let limit = self.instret.saturating_add(budget);
        loop {
            // A plain load first: the locked swap only when a kick is actually there.
            if self.instret >= limit
                || (self.kick.load(Ordering::Relaxed) && self.kick.swap(false, Ordering::AcqRel))
            {
                return Ok(Exit::Interrupted);
            }
            if !self.int_shadow && self.state.rflags & flags::IF != 0 {
                if let Some(v) = self
                    .irq
                    .as_mut()
                    .filter(|s| s.may_have_interrupt())
                    .and_then(|s| s.take_interrupt())
                {
                    if let Some(exit) = self.deliver_external(v)? {
                        return Ok(exit);
                    }
                }
            }
            if self.legacy {
                if let Err(stop) = self.step_legacy() {
                    if let Some(exit) = self.handle_stop(stop)? {
                        return Ok(exit);
                    }
                }
                if let Some(exit) = self.pending_exit.take() {
                    return Ok(exit);
                }
                continue;
            }
            let fetched = match self.fetch_block() {
                Ok(b) => b,
                Err(stop) => match self.handle_stop(stop)? {
                    Some(exit) => return Ok(exit),
                    None => continue,
                },
            };
            let (start, before) = (self.state.rip, self.instret);
            let r = self.run_block(&fetched.block, limit);
            if let Some(profile) = &mut self.profile {
                profile.record(start, self.instret - before, &self.stats);
            }
            self.return_block(fetched);
            if let Some(exit) = r? {
                return Ok(exit);
            }
        }
    }

    /// Runs the instructions of `block` from its start until one transfers control, stops,
    /// or the budget ends; an exit to return comes back as `Some`.
    #[inline]
    fn run_block(&mut self, block: &Block, limit: u64) -> Result<Option<Exit>, EmuError> {
        for d in block.instrs.iter() {
            let (ins, pre) = (&d.ins, &d.pre);
            self.next_rip = ins.next_ip();
            // Read before writing: the shadow is rarely set, and a store per instruction is not free.
            let shadow = self.int_shadow;
            if shadow {
                self.int_shadow = false;
            }
            match self.exec_pre(pre, ins) {
                Ok(()) => {
                    self.state.rip = self.next_rip;
                    self.instret += 1;
                }
                Err(stop) => {
                    if matches!(stop, Stop::Exit(_)) {
                        self.int_shadow = shadow;
                    }
                    match self.handle_stop(stop)? {
                        Some(exit) => return Ok(Some(exit)),
                        None => break,
                    }
                }
            }
            if self.pending_exit.is_some() {
                return Ok(self.pending_exit.take());
            }
            if self.end_block
                || self.code_written
                || self.state.rip != ins.next_ip()
                || self.instret >= limit
            {
                self.end_block = false;
                self.code_written = false;
                break;
            }
        }
        Ok(None)
    }

    /// Turns a stopped instruction into an exception delivery, an exit or an error.
    fn handle_stop(&mut self, stop: Stop) -> Result<Option<Exit>, EmuError> {
        self.flags_sync();
        match stop {
            Stop::Fault(f) => {
                self.pending_exit = None;
                self.deliver_fault(f)
            }
            Stop::Exit(e) => Ok(Some(e)),
            Stop::Unsupported => Err(EmuError::Unsupported(self.report())),
            Stop::NotLongMode => Err(EmuError::NotLongMode(self.report())),
            Stop::Internal(what) => Err(EmuError::Internal {
                what,
                report: self.report(),
            }),
        }
    }

    /// What the CPU was doing: RIP, the instruction there, registers.
    pub fn report(&mut self) -> Report {
        self.flags_sync();
        let rip = self.state.rip;
        let bits = if self.legacy { self.code_bits() } else { 64 };
        let mut bytes = vec![0u8; 15];
        let mut n = 0;
        while n < bytes.len()
            && self
                .fetch_bytes(
                    self.code_linear(rip.wrapping_add(n as u64)),
                    &mut bytes[n..n + 1],
                )
                .is_ok()
        {
            n += 1;
        }
        bytes.truncate(n);
        let mut decoded = String::new();
        let mut dec = Decoder::with_ip(bits, &bytes, rip, DecoderOptions::NONE);
        if dec.can_decode() {
            let ins = dec.decode();
            IntelFormatter::new().format(&ins, &mut decoded);
            bytes.truncate(ins.len().max(1));
        }
        Report {
            rip,
            bytes,
            decoded,
            state: Box::new(self.state.clone()),
        }
    }
}
