//! Integer arithmetic with exact RFLAGS: add/sub with carry, logic, shifts and rotates,
//! multiply and divide. Each function returns the result and the new status flags; flags
//! the architecture leaves undefined get the values Intel CPUs produce where cheap, and
//! are masked by the differential tests otherwise.

use crate::error::Fault;
use crate::operand::{mask, sext};
use crate::state::flags::{AF, CF, OF, PF, SF, ZF};

/// Parity flag of the low byte.
#[inline]
pub fn parity(v: u64) -> u64 {
    if (v as u8).count_ones() % 2 == 0 {
        PF
    } else {
        0
    }
}

#[inline]
fn msb(v: u64, size: usize) -> u64 {
    (v >> (size * 8 - 1)) & 1
}

/// ZF, SF and PF of a result.
#[inline]
pub fn szp(r: u64, size: usize) -> u64 {
    let r = r & mask(size);
    (if r == 0 { ZF } else { 0 }) | (if msb(r, size) != 0 { SF } else { 0 }) | parity(r)
}

/// `a + b + carry`.
#[inline]
pub fn add(a: u64, b: u64, carry: u64, size: usize) -> (u64, u64) {
    let m = mask(size);
    let (a, b) = (a & m, b & m);
    let full = (a as u128) + (b as u128) + (carry as u128);
    let r = (full as u64) & m;
    let cf = if size == 8 {
        full >> 64 != 0
    } else {
        full > m as u128
    };
    let of = msb((a ^ r) & (b ^ r), size) != 0;
    let f =
        szp(r, size) | (if cf { CF } else { 0 }) | (if of { OF } else { 0 }) | ((a ^ b ^ r) & AF);
    (r, f)
}

/// `a - b - borrow`.
#[inline]
pub fn sub(a: u64, b: u64, borrow: u64, size: usize) -> (u64, u64) {
    let m = mask(size);
    let (a, b) = (a & m, b & m);
    let r = a.wrapping_sub(b).wrapping_sub(borrow) & m;
    let cf = (a as u128) < (b as u128) + (borrow as u128);
    let of = msb((a ^ b) & (a ^ r), size) != 0;
    let f =
        szp(r, size) | (if cf { CF } else { 0 }) | (if of { OF } else { 0 }) | ((a ^ b ^ r) & AF);
    (r, f)
}

/// Flags of AND/OR/XOR/TEST: CF=OF=0, AF cleared.
#[inline]
pub fn logic(r: u64, size: usize) -> u64 {
    szp(r, size)
}

/// Shift and rotate operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shift {
    /// ROL.
    Rol,
    /// ROR.
    Ror,
    /// RCL.
    Rcl,
    /// RCR.
    Rcr,
    /// SHL/SAL.
    Shl,
    /// SHR.
    Shr,
    /// SAR.
    Sar,
}

/// Shifts/rotates `v` by `count` (already masked to 5 or 6 bits); returns the result and
/// the flags, or `None` when the count is zero (nothing changes).
pub fn shift(op: Shift, v: u64, count: u32, size: usize, flags_in: u64) -> Option<(u64, u64)> {
    if count == 0 {
        return None;
    }
    let bits = (size * 8) as u32;
    let m = mask(size);
    let v = v & m;
    let cf_in = flags_in & CF != 0;
    let keep = flags_in & (ZF | SF | PF | AF);
    let (r, cf, of, arith) = match op {
        Shift::Shl => {
            let r = if count >= 64 { 0 } else { (v << count) & m };
            let cf = count <= bits && (v >> (bits - count)) & 1 != 0;
            let of = (msb(r, size) != 0) ^ cf;
            (r, cf, of, true)
        }
        Shift::Shr => {
            let r = if count >= 64 { 0 } else { v >> count };
            let cf = count <= bits && (v >> (count - 1)) & 1 != 0;
            let of = msb(v, size) != 0;
            (r, cf, of, true)
        }
        Shift::Sar => {
            let sv = sext(v, size) as i64;
            let c = count.min(63);
            let r = ((sv >> c) as u64) & m;
            let cf = (sv >> (count - 1).min(63)) & 1 != 0;
            (r, cf, false, true)
        }
        Shift::Rol => {
            let c = count % bits;
            let r = if c == 0 {
                v
            } else {
                ((v << c) | (v >> (bits - c))) & m
            };
            let cf = r & 1 != 0;
            let of = (msb(r, size) != 0) ^ cf;
            (r, cf, of, false)
        }
        Shift::Ror => {
            let c = count % bits;
            let r = if c == 0 {
                v
            } else {
                ((v >> c) | (v << (bits - c))) & m
            };
            let cf = msb(r, size) != 0;
            let of = (msb(r, size) ^ ((r >> (bits - 2)) & 1)) != 0;
            (r, cf, of, false)
        }
        Shift::Rcl | Shift::Rcr => {
            let c = count % (bits + 1);
            if c == 0 {
                return Some((v, (flags_in & !(CF | OF)) | (flags_in & (CF | OF))));
            }
            let mut r = v as u128 | ((cf_in as u128) << bits);
            let total = bits + 1;
            let wm = (1u128 << total) - 1;
            r = if op == Shift::Rcl {
                ((r << c) | (r >> (total - c))) & wm
            } else {
                ((r >> c) | (r << (total - c))) & wm
            };
            let res = (r as u64) & m;
            let cf = (r >> bits) & 1 != 0;
            let of = if op == Shift::Rcl {
                (msb(res, size) != 0) ^ cf
            } else {
                (msb(res, size) ^ ((res >> (bits - 2)) & 1)) != 0
            };
            (res, cf, of, false)
        }
    };
    let mut f = if arith { szp(r, size) } else { keep };
    if cf {
        f |= CF;
    }
    if of {
        f |= OF;
    }
    Some((r, f))
}

/// SHLD/SHRD: shifts `dst` by `count`, filling from `src`.
pub fn double_shift(left: bool, dst: u64, src: u64, count: u32, size: usize) -> Option<(u64, u64)> {
    if count == 0 {
        return None;
    }
    let bits = (size * 8) as u32;
    let m = mask(size);
    let (d, s) = (dst & m, src & m);
    // Counts above the width are undefined; compute on a 2x-wide value as Intel does.
    let wide: u128 = if left {
        ((d as u128) << bits) | s as u128
    } else {
        ((s as u128) << bits) | d as u128
    };
    let (r, cf) = if left {
        let shifted = wide << count;
        (
            ((shifted >> bits) as u64) & m,
            (wide >> (2 * bits - count)) & 1 != 0,
        )
    } else {
        (
            (((wide >> count) as u64) & m),
            (wide >> (count - 1)) & 1 != 0,
        )
    };
    let of = msb(r, size) != msb(d, size);
    let f = szp(r, size) | (if cf { CF } else { 0 }) | (if of { OF } else { 0 });
    Some((r, f))
}

/// Unsigned multiply of `a` and `b`: (low, high, flags).
pub fn mul(a: u64, b: u64, size: usize) -> (u64, u64, u64) {
    let m = mask(size);
    let full = (a & m) as u128 * (b & m) as u128;
    let lo = (full as u64) & m;
    let hi = if size == 8 {
        (full >> 64) as u64
    } else {
        ((full >> (size * 8)) as u64) & m
    };
    let f = if hi != 0 { CF | OF } else { 0 } | szp(lo, size);
    (lo, hi, f)
}

/// Signed multiply: (low, high, flags); CF=OF when the result does not fit `size`.
pub fn imul(a: u64, b: u64, size: usize) -> (u64, u64, u64) {
    let full = (sext(a, size) as i64 as i128) * (sext(b, size) as i64 as i128);
    let m = mask(size);
    let lo = (full as u64) & m;
    let hi = if size == 8 {
        (full >> 64) as u64
    } else {
        ((full >> (size * 8)) as u64) & m
    };
    let fits = sext(lo, size) as i64 as i128 == full;
    let f = if fits { 0 } else { CF | OF } | szp(lo, size);
    (lo, hi, f)
}

/// Unsigned divide of `hi:lo` by `d`: (quotient, remainder), #DE on zero or overflow.
pub fn div(hi: u64, lo: u64, d: u64, size: usize) -> Result<(u64, u64), Fault> {
    let m = mask(size);
    let d = d & m;
    if d == 0 {
        return Err(Fault::de());
    }
    let n = ((hi & m) as u128) << (size * 8) | (lo & m) as u128;
    let q = n / d as u128;
    if q > m as u128 {
        return Err(Fault::de());
    }
    Ok((q as u64, (n % d as u128) as u64))
}

/// Signed divide of `hi:lo` by `d`: (quotient, remainder), #DE on zero or overflow.
pub fn idiv(hi: u64, lo: u64, d: u64, size: usize) -> Result<(u64, u64), Fault> {
    let m = mask(size);
    let bits = size * 8;
    let d = sext(d, size) as i64 as i128;
    if d == 0 {
        return Err(Fault::de());
    }
    let n_u = ((hi & m) as u128) << bits | (lo & m) as u128;
    let n = ((n_u << (128 - 2 * bits)) as i128) >> (128 - 2 * bits);
    let (q, r) = match n.checked_div(d) {
        Some(q) => (q, n % d),
        None => return Err(Fault::de()),
    };
    let min = -(1i128 << (bits - 1));
    let max = (1i128 << (bits - 1)) - 1;
    if q < min || q > max {
        return Err(Fault::de());
    }
    Ok(((q as u64) & m, (r as u64) & m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_sets_carry_and_overflow() {
        let (r, f) = add(0x7f, 1, 0, 1);
        assert_eq!(r, 0x80);
        assert_eq!(f & (OF | CF | SF | AF), OF | SF | AF);
        let (r, f) = add(u64::MAX, 1, 0, 8);
        assert_eq!(r, 0);
        assert_eq!(f & (CF | ZF | OF), CF | ZF);
    }

    #[test]
    fn sub_borrow_and_parity() {
        let (r, f) = sub(0, 1, 0, 4);
        assert_eq!(r, 0xffff_ffff);
        assert_eq!(f & (CF | SF | PF), CF | SF | PF);
    }

    #[test]
    fn divide_faults() {
        assert!(div(0, 1, 0, 4).is_err());
        assert!(div(1, 0, 1, 4).is_err());
        assert_eq!(
            idiv(u64::MAX, (-7i64) as u64, 2, 8).unwrap(),
            ((-3i64) as u64, (-1i64) as u64)
        );
        assert!(idiv(0xffff_ffff, 0x8000_0000, 0xffff_ffff, 4).is_err());
    }

    #[test]
    fn rotates_through_carry() {
        let (r, f) = shift(Shift::Rcl, 0x80, 1, 1, CF).unwrap();
        assert_eq!(r, 0x01);
        assert_eq!(f & CF, CF);
    }
}
