//! An IOAPIC: 24 redirection entries behind the IOREGSEL/IOWIN window, routing device lines
//! (edge or level, with remote IRR) to the LAPICs.

use std::sync::{Arc, Mutex};

use crate::lapic::Lapic;

/// Number of pins.
pub const PINS: usize = 24;

#[derive(Debug)]
struct State {
    sel: u32,
    id: u32,
    rte: [u64; PINS],
    /// Pins raised while masked or while their level interrupt is in service.
    pending: [bool; PINS],
}

/// The IOAPIC.
#[derive(Debug)]
pub struct IoApic {
    state: Mutex<State>,
    lapics: Vec<Arc<Lapic>>,
}

impl IoApic {
    /// An IOAPIC delivering to `lapics` (index = APIC ID), every pin masked.
    pub fn new(lapics: Vec<Arc<Lapic>>) -> Self {
        IoApic {
            state: Mutex::new(State {
                sel: 0,
                id: 0,
                rte: [1 << 16; PINS],
                pending: [false; PINS],
            }),
            lapics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A device raised `pin`.
    pub fn raise(&self, pin: u32) {
        let mut s = self.lock();
        let Some(&rte) = s.rte.get(pin as usize) else {
            return;
        };
        if rte & (1 << 16) != 0 {
            s.pending[pin as usize] = true;
            return;
        }
        let level = rte & (1 << 15) != 0;
        if level {
            if rte & (1 << 14) != 0 {
                s.pending[pin as usize] = true;
                return;
            }
            s.rte[pin as usize] |= 1 << 14;
        }
        drop(s);
        self.deliver(rte, level);
    }

    fn deliver(&self, rte: u64, level: bool) {
        let vector = rte as u8;
        let dest = (rte >> 56) as u8;
        let logical = rte & (1 << 11) != 0;
        for l in &self.lapics {
            if l.accepts(dest, logical) {
                l.raise(vector, level);
                if (rte >> 8) & 7 == 1 {
                    break; // lowest priority: the first one will do
                }
            }
        }
    }

    /// A LAPIC's EOI of level-triggered `vector`: clears remote IRR and re-delivers a pin
    /// raised meanwhile.
    pub fn eoi(&self, vector: u8) {
        let mut again = Vec::new();
        let mut s = self.lock();
        for pin in 0..PINS {
            if s.rte[pin] as u8 == vector && s.rte[pin] & (1 << 14) != 0 {
                s.rte[pin] &= !(1 << 14);
                if std::mem::take(&mut s.pending[pin]) {
                    s.rte[pin] |= 1 << 14;
                    again.push(s.rte[pin]);
                }
            }
        }
        drop(s);
        for rte in again {
            self.deliver(rte, true);
        }
    }

    /// MMIO read at offset `off` of the IOAPIC page.
    pub fn read(&self, off: u64) -> u32 {
        let s = self.lock();
        match off {
            0x00 => s.sel,
            0x10 => match s.sel {
                0 => s.id,
                1 => ((PINS as u32 - 1) << 16) | 0x11,
                2 => 0,
                r @ 0x10..=0x3f => {
                    let e = s.rte[((r - 0x10) / 2) as usize];
                    if r % 2 == 0 {
                        e as u32
                    } else {
                        (e >> 32) as u32
                    }
                }
                _ => 0,
            },
            _ => 0,
        }
    }

    /// MMIO write at offset `off`.
    pub fn write(&self, off: u64, v: u32) {
        let mut s = self.lock();
        match off {
            0x00 => s.sel = v & 0xff,
            0x10 => match s.sel {
                0 => s.id = v & 0x0f00_0000,
                r @ 0x10..=0x3f => {
                    let pin = ((r - 0x10) / 2) as usize;
                    let e = s.rte[pin];
                    // Remote IRR and delivery status are read-only.
                    let ro = e & ((1 << 14) | (1 << 12));
                    let e = if r % 2 == 0 {
                        (e & !0xffff_ffff) | (v as u64 & !((1 << 14) | (1 << 12))) | ro
                    } else {
                        (e & 0xffff_ffff) | ((v as u64) << 32)
                    };
                    s.rte[pin] = e;
                    let unmasked = e & (1 << 16) == 0;
                    if unmasked && s.pending[pin] && e & (1 << 15) == 0 {
                        s.pending[pin] = false;
                        let rte = e;
                        drop(s);
                        self.deliver(rte, false);
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }
}
