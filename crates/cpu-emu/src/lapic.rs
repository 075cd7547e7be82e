//! A local APIC: the register page, IRR/ISR with priorities, EOI, the timer (one-shot,
//! periodic, TSC-deadline) and fixed IPIs. Shared between its vCPU thread, the IOAPIC and
//! other vCPUs (IPIs), so the state sits behind a mutex with a condition variable that wakes
//! a halted vCPU.

use std::sync::{Condvar, Mutex};
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
    /// Delivery mode (0 fixed, 4 NMI, 5 INIT, 6 SIPI).
    pub mode: u8,
    /// Destination APIC ID, or the shorthand.
    pub dest: IpiDest,
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
            }),
            wake: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Regs> {
        self.regs.lock().unwrap_or_else(|p| p.into_inner())
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
        let r = self.lock();
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
            ID | TPR | LDR | DFR | SVR | TIMER_DIV => r.set(off, v),
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

    /// The APIC ID.
    pub fn id(&self) -> u8 {
        (self.lock().get(ID) >> 24) as u8
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
}
