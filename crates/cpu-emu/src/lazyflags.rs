//! Lazily computed status flags for the pre-decoded instructions: an ADD, SUB, CMP,
//! logic operation, INC or DEC records its operands and result instead of computing the six
//! status flags, which the next such instruction usually overwrites unread. A condition
//! (Jcc, CMOVcc, SETcc) is evaluated from the record directly; anything else that reads
//! RFLAGS first folds the record into it ([`Cpu::flags_sync`]): the full interpreter, event
//! delivery, and every return from `Cpu::run`, so RFLAGS is exact whenever it is observable.

use iced_x86::ConditionCode;

use crate::alu;
use crate::cpu::Cpu;
use crate::operand::{mask, sext};
use crate::state::flags::{CF, STATUS};

/// Which operation produced the pending flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Kind {
    /// Nothing pending: RFLAGS holds the status flags.
    #[default]
    Clean,
    /// `a + b`.
    Add,
    /// `a - b` (SUB, CMP).
    Sub,
    /// AND, OR, XOR, TEST with result `r`.
    Logic,
    /// `a + 1`, CF kept in `cf`.
    Inc,
    /// `a - 1`, CF kept in `cf`.
    Dec,
}

/// The last flag-producing operation, not yet folded into RFLAGS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Lazy {
    pub kind: Kind,
    /// Operand size in bytes.
    pub size: u8,
    pub a: u64,
    pub b: u64,
    /// The result, masked to the size.
    pub r: u64,
    /// INC/DEC: the carry flag they leave alone (CF or 0).
    pub cf: u64,
}

impl Lazy {
    /// The six status flags the record stands for (exactly what `alu` computes).
    pub fn status(&self) -> u64 {
        let s = self.size as usize;
        match self.kind {
            Kind::Clean => 0,
            Kind::Add => alu::add(self.a, self.b, 0, s).1,
            Kind::Sub => alu::sub(self.a, self.b, 0, s).1,
            Kind::Logic => alu::logic(self.r, s),
            Kind::Inc => (alu::add(self.a, 1, 0, s).1 & !CF) | self.cf,
            Kind::Dec => (alu::sub(self.a, 1, 0, s).1 & !CF) | self.cf,
        }
    }

    /// The carry flag (CF or 0).
    #[inline]
    pub fn carry(&self) -> u64 {
        let m = mask(self.size as usize);
        match self.kind {
            Kind::Add => ((self.r < (self.a & m)) as u64) * CF,
            Kind::Sub => (((self.a & m) < (self.b & m)) as u64) * CF,
            Kind::Inc | Kind::Dec => self.cf,
            Kind::Logic | Kind::Clean => 0,
        }
    }

    /// The condition `cc`, when the record answers it without the full flags.
    #[inline]
    fn cond(&self, cc: ConditionCode) -> Option<bool> {
        let s = self.size as usize;
        let zf = self.r == 0;
        let sf = (self.r >> (s * 8 - 1)) & 1 != 0;
        Some(match (self.kind, cc) {
            (_, ConditionCode::e) => zf,
            (_, ConditionCode::ne) => !zf,
            (_, ConditionCode::s) => sf,
            (_, ConditionCode::ns) => !sf,
            (Kind::Sub, _) => {
                let m = mask(s);
                let (a, b) = (self.a & m, self.b & m);
                let (sa, sb) = (sext(a, s) as i64, sext(b, s) as i64);
                match cc {
                    ConditionCode::b => a < b,
                    ConditionCode::ae => a >= b,
                    ConditionCode::be => a <= b,
                    ConditionCode::a => a > b,
                    ConditionCode::l => sa < sb,
                    ConditionCode::ge => sa >= sb,
                    ConditionCode::le => sa <= sb,
                    ConditionCode::g => sa > sb,
                    _ => return None,
                }
            }
            (Kind::Logic, _) => match cc {
                // CF = OF = 0.
                ConditionCode::b | ConditionCode::o => false,
                ConditionCode::ae | ConditionCode::no => true,
                ConditionCode::be => zf,
                ConditionCode::a => !zf,
                ConditionCode::l => sf,
                ConditionCode::ge => !sf,
                ConditionCode::le => zf || sf,
                ConditionCode::g => !zf && !sf,
                _ => return None,
            },
            _ => return None,
        })
    }
}

impl Cpu {
    /// Folds pending flags into RFLAGS.
    #[inline]
    pub(crate) fn flags_sync(&mut self) {
        if self.lazy.kind != Kind::Clean {
            self.state.rflags = (self.state.rflags & !STATUS) | self.lazy.status();
            self.lazy.kind = Kind::Clean;
        }
    }

    /// Records flags to compute later.
    #[inline(always)]
    pub(crate) fn flags_lazy(&mut self, kind: Kind, size: u8, a: u64, b: u64, r: u64) {
        let cf = match kind {
            Kind::Inc | Kind::Dec => self.carry_now(),
            _ => 0,
        };
        self.lazy = Lazy {
            kind,
            size,
            a,
            b,
            r,
            cf,
        };
    }

    /// CF as it stands, pending flags included.
    #[inline]
    pub(crate) fn carry_now(&self) -> u64 {
        if self.lazy.kind == Kind::Clean {
            self.state.rflags & CF
        } else {
            self.lazy.carry()
        }
    }

    /// Evaluates a condition code, pending flags included.
    #[inline]
    pub(crate) fn cond_now(&mut self, cc: ConditionCode) -> bool {
        if self.lazy.kind != Kind::Clean {
            if let Some(v) = self.lazy.cond(cc) {
                return v;
            }
            self.flags_sync();
        }
        self.cond(cc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::flags::{AF, OF, PF, SF, ZF};

    /// The flag bits compared (all six).
    const ALL: u64 = CF | PF | ZF | SF | OF | AF;

    const CCS: [ConditionCode; 16] = [
        ConditionCode::o,
        ConditionCode::no,
        ConditionCode::b,
        ConditionCode::ae,
        ConditionCode::e,
        ConditionCode::ne,
        ConditionCode::be,
        ConditionCode::a,
        ConditionCode::s,
        ConditionCode::ns,
        ConditionCode::p,
        ConditionCode::np,
        ConditionCode::l,
        ConditionCode::ge,
        ConditionCode::le,
        ConditionCode::g,
    ];

    /// The eager flags of each kind, from `alu` directly.
    fn eager(kind: Kind, a: u64, b: u64, s: usize, cf_in: u64) -> (u64, u64) {
        match kind {
            Kind::Add => alu::add(a, b, 0, s),
            Kind::Sub => alu::sub(a, b, 0, s),
            Kind::Logic => {
                let r = (a & b) & mask(s);
                (r, alu::logic(r, s))
            }
            Kind::Inc => {
                let (r, f) = alu::add(a, 1, 0, s);
                (r, (f & !CF) | cf_in)
            }
            Kind::Dec => {
                let (r, f) = alu::sub(a, 1, 0, s);
                (r, (f & !CF) | cf_in)
            }
            Kind::Clean => unreachable!(),
        }
    }

    #[test]
    fn lazy_flags_and_conditions_equal_the_eager_ones() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mix in edge values: zero, sign boundaries, all ones.
            match x % 8 {
                0 => 0,
                1 => 0x80 << ((x >> 8) % 4 * 8),
                2 => u64::MAX,
                3 => 0x7f,
                _ => x,
            }
        };
        for kind in [Kind::Add, Kind::Sub, Kind::Logic, Kind::Inc, Kind::Dec] {
            for s in [1usize, 2, 4, 8] {
                for _ in 0..4000 {
                    let (a, b) = (next() & mask(s), next() & mask(s));
                    let cf_in = next() & CF;
                    let (r, f) = eager(kind, a, b, s, cf_in);
                    let lazy = Lazy {
                        kind,
                        size: s as u8,
                        a,
                        b,
                        r,
                        cf: cf_in,
                    };
                    assert_eq!(lazy.status() & ALL, f & ALL, "{kind:?} {a:#x} {b:#x} {s}");
                    assert_eq!(lazy.carry(), f & CF, "carry {kind:?} {a:#x} {b:#x} {s}");
                    for cc in CCS {
                        if let Some(v) = lazy.cond(cc) {
                            assert_eq!(v, eager_cond(f, cc), "{kind:?} {cc:?} {a:#x} {b:#x} {s}");
                        }
                    }
                }
            }
        }
    }

    /// A condition from full flags (as `Cpu::cond`).
    fn eager_cond(f: u64, cc: ConditionCode) -> bool {
        let (cf, zf, sf, of, pf) = (
            f & CF != 0,
            f & ZF != 0,
            f & SF != 0,
            f & OF != 0,
            f & PF != 0,
        );
        match cc {
            ConditionCode::o => of,
            ConditionCode::no => !of,
            ConditionCode::b => cf,
            ConditionCode::ae => !cf,
            ConditionCode::e => zf,
            ConditionCode::ne => !zf,
            ConditionCode::be => cf || zf,
            ConditionCode::a => !cf && !zf,
            ConditionCode::s => sf,
            ConditionCode::ns => !sf,
            ConditionCode::p => pf,
            ConditionCode::np => !pf,
            ConditionCode::l => sf != of,
            ConditionCode::ge => sf == of,
            ConditionCode::le => zf || sf != of,
            ConditionCode::g => !zf && sf == of,
            ConditionCode::None => true,
        }
    }
}
