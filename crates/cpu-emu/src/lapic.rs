//! A local APIC: the register page, IRR/ISR with priorities, EOI, the timer (one-shot,
//! periodic, TSC-deadline), IPIs with physical and logical (flat and cluster) destinations,
//! and the INIT/SIPI start-up signals. Shared between its vCPU thread, the IOAPIC and other
//! vCPUs (IPIs), so the state sits behind a mutex with a condition variable that wakes a
//! halted or waiting vCPU. Every change of the page republishes "an interrupt is
//! deliverable" in an atomic, so the running vCPU polls it without taking the mutex.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

const ID: usize = 0x20;
const VERSION: usize = 0x30;
const TPR: usize = 0x80;
const PPR: usize = 0xa0;
const EOI: usize = 0xb0;
const LDR: usize = 0xd0;
const DFR: usize = 0xe0;
const SVR: usize = 0xf0;
const ISR: usize = 0x100;
const TMR: usize = 0x180;
const IRR: usize = 0x200;
const ICR_LO: usize = 0x300;
const ICR_HI: usize = 0x310;
const LVT_TIMER: usize = 0x320;
const TIMER_INIT: usize = 0x380;
const TIMER_CUR: usize = 0x390;
const TIMER_DIV: usize = 0x3e0;
const MASKED: u32 = 1 << 16;

/// Register page and timer state.
#[derive(Debug)]
struct Regs {
    page: [u32; 256],
    /// Guest TSC (ns) at which the timer fires; 0 = not armed.
    deadline: u64,
    /// Guest TSC when the one-shot/periodic count was loaded.
    loaded_at: u64,
    /// An INIT arrived and its vCPU has not seen it yet.
    init: bool,
    /// The vector of a STARTUP IPI its vCPU has not seen yet.
    sipi: Option<u8>,
}

impl Regs {
    fn get(&self, off: usize) -> u32 {
        self.page[off / 16]
    }
    fn set(&mut self, off: usize, v: u32) {
        self.page[off / 16] = v;
    }
    fn bit(&self, base: usize, v: u8) -> bool {
        self.page[(base + (v as usize / 32) * 16) / 16] & (1 << (v % 32)) != 0
    }
    fn set_bit(&mut self, base: usize, v: u8, on: bool) {
        let w = &mut self.page[(base + (v as usize / 32) * 16) / 16];
        if on {
            *w |= 1 << (v % 32);
        } else {
            *w &= !(1 << (v % 32));
        }
    }
    fn highest(&self, base: usize) -> Option<u8> {
        (0..8).rev().find_map(|i| {
            let w = self.page[(base + i * 16) / 16];
            (w != 0).then(|| (i * 32 + 31 - w.leading_zeros() as usize) as u8)
        })
    }
    fn ppr(&self) -> u32 {
        let tpr = self.get(TPR) & 0xff;
        let isr = self.highest(ISR).map_or(0, |v| v as u32 & 0xf0);
        if tpr & 0xf0 >= isr {
            tpr
        } else {
            isr
        }
    }
    /// Whether [`Lapic::take`] would return a vector: the APIC is software-enabled and the
    /// highest requested vector's priority class is above the processor priority.
    fn deliverable(&self) -> bool {
        if self.get(SVR) & 0x100 == 0 {
            return false;
        }
        self.highest(IRR)
            .is_some_and(|v| (v as u32 & 0xf0) > (self.ppr() & 0xf0))
    }
    /// Timer ticks are nanoseconds times the divider.
    fn divider(&self) -> u64 {
        let d = self.get(TIMER_DIV);
        let code = (d & 3) | ((d >> 1) & 4);
        if code == 7 {
            1
        } else {
            2 << code
        }
    }
}

/// An interprocessor interrupt a LAPIC asks to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipi {
    /// Vector.
    pub vector: u8,
    /// Delivery mode (0 fixed, 1 lowest priority, 4 NMI, 5 INIT, 6 SIPI).
    pub mode: u8,
    /// Destination APIC ID or logical mask, or the shorthand.
    pub dest: IpiDest,
    /// Logical destination mode (ICR bit 11).
    pub logical: bool,
    /// Level asserted (ICR bit 14); an INIT with it clear and level trigger is the
    /// "INIT level de-assert" that modern CPUs ignore.
    pub assert: bool,
    /// Level-triggered (ICR bit 15).
    pub level: bool,
}

/// The delivery modes of IPIs and redirection entries.
pub mod mode {
    /// Fixed vector.
    pub const FIXED: u8 = 0;
    /// Lowest priority (delivered to one of the destinations).
    pub const LOWEST: u8 = 1;
    /// Non-maskable interrupt.
    pub const NMI: u8 = 4;
    /// INIT.
    pub const INIT: u8 = 5;
    /// STARTUP (SIPI).
    pub const STARTUP: u8 = 6;
}

/// A start-up signal taken by [`Lapic::take_startup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Startup {
    /// An INIT arrived (handle it first).
    pub init: bool,
    /// A STARTUP IPI's vector arrived (after any INIT).
    pub sipi: Option<u8>,
}

/// Where an IPI goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpiDest {
    /// One APIC ID (physical mode) or a logical mask.
    Id(u8),
    /// This CPU.
    SelfOnly,
    /// Everyone.
    All,
    /// Everyone else.
    Others,
}

/// One local APIC.
#[derive(Debug)]
pub struct Lapic {
    regs: Mutex<Regs>,
    wake: Condvar,
    /// Set with `init`/`sipi` so the running vCPU can check for start-up signals cheaply.
    startup_flag: AtomicBool,
    /// `Regs::deliverable` as of the last change, for the running vCPU's per-block check.
    deliverable: AtomicBool,
}

/// The locked register page; on release it republishes whether an interrupt is deliverable.
struct Locked<'a> {
    regs: MutexGuard<'a, Regs>,
    deliverable: &'a AtomicBool,
}

impl Deref for Locked<'_> {
    type Target = Regs;
    fn deref(&self) -> &Regs {
        &self.regs
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Regs {
        &mut self.regs
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // Stored while the mutex is still held, so the flag never lags a later change.
        self.deliverable
            .store(self.regs.deliverable(), Ordering::Release);
    }
}

impl Lapic {
    /// A LAPIC with APIC ID `id` in its reset state.
    pub fn new(id: u8) -> Self {
        let mut page = [0u32; 256];
        page[ID / 16] = (id as u32) << 24;
        page[VERSION / 16] = 0x0005_0014;
        page[DFR / 16] = 0xffff_ffff;
        page[SVR / 16] = 0xff;
        for off in (LVT_TIMER..=0x370).step_by(16) {
            page[off / 16] = MASKED;
        }
        Lapic {
            regs: Mutex::new(Regs {
                page,
                deadline: 0,
                loaded_at: 0,
                init: false,
                sipi: None,
            }),
            wake: Condvar::new(),
            startup_flag: AtomicBool::new(false),
            deliverable: AtomicBool::new(false),
        }
    }

    /// Whether this LAPIC is a destination of `dest` (ICR or redirection-entry destination
    /// field) in physical or logical mode; 0xff is a broadcast in both.
    pub fn accepts(&self, dest: u8, logical: bool) -> bool {
        if dest == 0xff {
            return true;
        }
        let r = self.lock();
        if !logical {
            return (r.get(ID) >> 24) as u8 == dest;
        }
        let ldr = (r.get(LDR) >> 24) as u8;
        if r.get(DFR) >> 28 == 0xf {
            // Flat model: the LDR is a bit mask.
            ldr & dest != 0
        } else {
            // Cluster model: high nibble the cluster, low nibble a mask within it.
            ldr >> 4 == dest >> 4 && ldr & dest & 0xf != 0
        }
    }

    /// An INIT IPI: the vCPU resets and waits for a STARTUP IPI.
    pub fn deliver_init(&self) {
        let mut r = self.lock();
        r.init = true;
        r.sipi = None;
        self.startup_flag.store(true, Ordering::Release);
        drop(r);
        self.wake.notify_all();
    }

    /// A STARTUP IPI with `vector` (the start page number).
    pub fn deliver_sipi(&self, vector: u8) {
        let mut r = self.lock();
        r.sipi = Some(vector);
        self.startup_flag.store(true, Ordering::Release);
        drop(r);
        self.wake.notify_all();
    }

    /// Whether a start-up signal is waiting (cheap: one atomic load).
    pub fn has_startup(&self) -> bool {
        self.startup_flag.load(Ordering::Acquire)
    }

    /// Takes the waiting start-up signals; an INIT also resets the register page as
    /// hardware does (IRR/ISR/TMR, LVTs masked, timer stopped; the APIC ID stays).
    pub fn take_startup(&self) -> Startup {
        let mut r = self.lock();
        self.startup_flag.store(false, Ordering::Release);
        let s = Startup {
            init: std::mem::take(&mut r.init),
            sipi: r.sipi.take(),
        };
        if s.init {
            let id = r.get(ID);
            let fresh = Lapic::new((id >> 24) as u8);
            let page = fresh.lock().page;
            r.page = page;
            r.deadline = 0;
            r.loaded_at = 0;
        }
        s
    }

    /// Blocks until a start-up signal arrives or `timeout` elapses (a vCPU waiting for
    /// INIT or SIPI).
    pub fn wait_startup(&self, timeout: Duration) {
        let r = self.lock_raw();
        if r.init || r.sipi.is_some() {
            return;
        }
        let _ = self.wake.wait_timeout(r, timeout);
    }

    /// The mutex alone, for waiting on the condition variable without changing the page.
    fn lock_raw(&self) -> MutexGuard<'_, Regs> {
        self.regs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock(&self) -> Locked<'_> {
        Locked {
            regs: self.lock_raw(),
            deliverable: &self.deliverable,
        }
    }

    /// Whether an interrupt was deliverable at the last change of the page: one atomic
    /// load, no lock (a change racing with it is seen at the next check).
    pub fn maybe_deliverable(&self) -> bool {
        self.deliverable.load(Ordering::Acquire)
    }

    /// Marks `vector` pending (from the IOAPIC, an IPI or the timer) and wakes the vCPU.
    pub fn raise(&self, vector: u8, level: bool) {
        let mut r = self.lock();
        r.set_bit(IRR, vector, true);
        r.set_bit(TMR, vector, level);
        drop(r);
        self.wake.notify_all();
    }

    /// Fires the timer if its deadline passed (`now` is the guest TSC in ns).
    pub fn poll_timer(&self, now: u64) {
        let mut r = self.lock();
        if r.deadline == 0 || now < r.deadline {
            return;
        }
        let lvt = r.get(LVT_TIMER);
        let mode = (lvt >> 17) & 3;
        if mode == 1 {
            let period = r.get(TIMER_INIT) as u64 * r.divider();
            r.loaded_at = now;
            r.deadline = if period == 0 { 0 } else { now + period };
        } else {
            r.deadline = 0;
            if mode == 2 {
                // TSC-deadline: the MSR reads back 0 once fired (kept by the CPU state).
            }
        }
        if lvt & MASKED == 0 {
            r.set_bit(IRR, lvt as u8, true);
            r.set_bit(TMR, lvt as u8, false);
        }
    }

    /// Arms the TSC-deadline timer (WRMSR IA32_TSC_DEADLINE); 0 disarms.
    pub fn set_tsc_deadline(&self, deadline: u64) {
        let mut r = self.lock();
        if (r.get(LVT_TIMER) >> 17) & 3 == 2 {
            r.deadline = deadline;
        }
    }

    /// The highest deliverable vector, moved from IRR to ISR.
    pub fn take(&self) -> Option<u8> {
        let mut r = self.lock();
        if r.get(SVR) & 0x100 == 0 {
            return None;
        }
        let v = r.highest(IRR)?;
        if (v as u32 & 0xf0) <= (r.ppr() & 0xf0) {
            return None;
        }
        r.set_bit(IRR, v, false);
        r.set_bit(ISR, v, true);
        Some(v)
    }

    /// Whether an interrupt is waiting in the IRR.
    pub fn pending(&self) -> bool {
        self.lock().highest(IRR).is_some()
    }

    /// The guest TSC at which the timer fires next (0 = none).
    pub fn deadline(&self) -> u64 {
        self.lock().deadline
    }

    /// Blocks until an interrupt is pending, `until` (guest ns, from `now`) passes, or
    /// `timeout` elapses.
    pub fn wait(&self, now: u64, timeout: Duration) {
        let r = self.lock_raw();
        if r.highest(IRR).is_some() {
            return;
        }
        let mut t = timeout;
        if r.deadline != 0 {
            t = t.min(Duration::from_nanos(r.deadline.saturating_sub(now)));
        }
        let _ = self.wake.wait_timeout(r, t);
    }

    /// Wakes a waiting vCPU (a kick).
    pub fn notify(&self) {
        self.wake.notify_all();
    }

    /// Reads the register at `off`; `now` is the guest TSC for the current count.
    pub fn read(&self, off: usize, now: u64) -> u32 {
        let r = self.lock();
        match off {
            PPR => r.ppr(),
            TIMER_CUR => {
                if r.deadline == 0 || (r.get(LVT_TIMER) >> 17) & 3 == 2 {
                    0
                } else {
                    (r.deadline.saturating_sub(now) / r.divider()) as u32
                }
            }
            o if o < 0x400 => r.get(o & !0xf),
            _ => 0,
        }
    }

    /// Writes the register at `off`; returns an IPI to send and, after EOI of a
    /// level-triggered vector, that vector (for the IOAPIC's remote IRR).
    pub fn write(&self, off: usize, v: u32, now: u64) -> (Option<Ipi>, Option<u8>) {
        let mut r = self.lock();
        match off {
            EOI => {
                if let Some(vec) = r.highest(ISR) {
                    r.set_bit(ISR, vec, false);
                    if r.bit(TMR, vec) {
                        return (None, Some(vec));
                    }
                }
            }
            ID | TPR | LDR | SVR | TIMER_DIV => r.set(off, v),
            // The DFR's low 28 bits read as ones.
            DFR => r.set(off, v | 0x0fff_ffff),
            0x280 => r.set(off, 0),
            ICR_HI => r.set(off, v),
            ICR_LO => {
                r.set(off, v & !(1 << 12));
                let dest = match (v >> 18) & 3 {
                    1 => IpiDest::SelfOnly,
                    2 => IpiDest::All,
                    3 => IpiDest::Others,
                    _ => IpiDest::Id((r.get(ICR_HI) >> 24) as u8),
                };
                return (
                    Some(Ipi {
                        vector: v as u8,
                        mode: ((v >> 8) & 7) as u8,
                        dest,
                        logical: v & (1 << 11) != 0,
                        assert: v & (1 << 14) != 0,
                        level: v & (1 << 15) != 0,
                    }),
                    None,
                );
            }
            LVT_TIMER => {
                let old_mode = (r.get(LVT_TIMER) >> 17) & 3;
                r.set(off, v);
                if (v >> 17) & 3 != old_mode {
                    r.deadline = 0;
                }
            }
            0x330..=0x370 => r.set(off & !0xf, v),
            TIMER_INIT => {
                r.set(off, v);
                if (r.get(LVT_TIMER) >> 17) & 3 != 2 {
                    r.loaded_at = now;
                    r.deadline = if v == 0 {
                        0
                    } else {
                        now + v as u64 * r.divider()
                    };
                }
            }
            _ => {}
        }
        (None, None)
    }

    /// The register page image (for `Vcpu::lapic`).
    pub fn image(&self) -> Vec<u8> {
        self.lock()
            .page
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect()
    }

    /// Loads a register page image (for `Vcpu::set_lapic`).
    pub fn load_image(&self, img: &[u8]) {
        let mut r = self.lock();
        for (i, c) in img.chunks(4).enumerate().take(256) {
            if c.len() == 4 {
                r.page[i] = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_and_eoi() {
        let l = Lapic::new(0);
        l.write(SVR, 0x1ff, 0);
        l.raise(0x31, false);
        l.raise(0x51, false);
        assert_eq!(l.take(), Some(0x51));
        // 0x31 is in a lower priority class than the in-service 0x51.
        assert_eq!(l.take(), None);
        l.write(EOI, 0, 0);
        assert_eq!(l.take(), Some(0x31));
    }

    #[test]
    fn deliverable_flag_follows_the_page() {
        let l = Lapic::new(0);
        l.raise(0x31, false);
        // Software-disabled APIC: nothing is deliverable.
        assert!(!l.maybe_deliverable());
        l.write(SVR, 0x1ff, 0);
        assert!(l.maybe_deliverable());
        l.write(TPR, 0x40, 0);
        assert!(!l.maybe_deliverable(), "masked by the task priority");
        l.write(TPR, 0, 0);
        assert!(l.maybe_deliverable());
        assert_eq!(l.take(), Some(0x31));
        assert!(!l.maybe_deliverable());
        l.raise(0x21, false);
        assert!(!l.maybe_deliverable(), "below the in-service class");
        l.write(EOI, 0, 0);
        assert!(l.maybe_deliverable());
        l.write(LVT_TIMER, 0xec, 0);
        l.write(TIMER_DIV, 0xb, 0);
        l.write(TIMER_INIT, 10, 0);
        assert_eq!(l.take(), Some(0x21));
        l.write(EOI, 0, 0);
        assert!(!l.maybe_deliverable());
        l.poll_timer(10);
        assert!(l.maybe_deliverable(), "the timer fired");
    }

    #[test]
    fn one_shot_timer_fires_once() {
        let l = Lapic::new(0);
        l.write(SVR, 0x1ff, 0);
        l.write(TIMER_DIV, 0xb, 0); // divide by 1
        l.write(LVT_TIMER, 0xec, 0);
        l.write(TIMER_INIT, 1000, 0);
        l.poll_timer(999);
        assert_eq!(l.take(), None);
        l.poll_timer(1000);
        assert_eq!(l.take(), Some(0xec));
        assert_eq!(l.deadline(), 0);
    }

    #[test]
    fn logical_destinations_flat_and_cluster() {
        let l = Lapic::new(1);
        assert!(l.accepts(1, false));
        assert!(!l.accepts(2, false));
        assert!(l.accepts(0xff, false));
        // Flat: LDR bit 1.
        l.write(LDR, 0x0200_0000, 0);
        assert!(l.accepts(0x02, true));
        assert!(l.accepts(0x03, true));
        assert!(!l.accepts(0x01, true));
        // Cluster 2, member bit 0.
        l.write(DFR, 0x0fff_ffff, 0);
        l.write(LDR, 0x2100_0000, 0);
        assert!(l.accepts(0x21, true));
        assert!(!l.accepts(0x11, true));
        assert!(!l.accepts(0x22, true));
    }

    #[test]
    fn init_then_sipi_and_icr_fields() {
        let l = Lapic::new(0);
        let (ipi, _) = l.write(ICR_LO, 0x0000_c500, 0);
        let ipi = ipi.unwrap();
        assert_eq!((ipi.mode, ipi.assert, ipi.level), (mode::INIT, true, true));
        let t = Lapic::new(1);
        t.write(SVR, 0x1ff, 0);
        t.raise(0x40, false);
        assert!(!t.has_startup());
        t.deliver_init();
        t.deliver_sipi(0x9a);
        assert!(t.has_startup());
        assert_eq!(
            t.take_startup(),
            Startup {
                init: true,
                sipi: Some(0x9a)
            }
        );
        // INIT reset the page: the pending vector is gone and the APIC ID kept.
        assert!(!t.pending());
        assert!(t.accepts(1, false));
        assert!(!t.has_startup());
    }
}
