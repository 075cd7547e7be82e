//! SSE/SSE2: the moves, logic, integer lane operations, shuffles and shifts that glibc's
//! baseline string and memory routines use, and scalar/packed float arithmetic and
//! conversions (round-to-nearest; MXCSR exception flags are not tracked).

use iced_x86::{Instruction, Mnemonic as M, OpKind, Register};

use crate::cpu::Cpu;
use crate::error::{Fault, Stop};
use crate::state::cr;
use crate::state::flags::{self, CF, PF, ZF};

fn bytes(v: u128) -> [u8; 16] {
    v.to_le_bytes()
}
fn from_bytes(b: [u8; 16]) -> u128 {
    u128::from_le_bytes(b)
}
/// Applies `f` to each `N`-byte lane of `a` and `b`.
fn lanes<const N: usize>(a: u128, b: u128, f: impl Fn(u64, u64) -> u64) -> u128 {
    let (a, b) = (bytes(a), bytes(b));
    let mut out = [0u8; 16];
    for i in (0..16).step_by(N) {
        let mut x = [0u8; 8];
        let mut y = [0u8; 8];
        x[..N].copy_from_slice(&a[i..i + N]);
        y[..N].copy_from_slice(&b[i..i + N]);
        let r = f(u64::from_le_bytes(x), u64::from_le_bytes(y)).to_le_bytes();
        out[i..i + N].copy_from_slice(&r[..N]);
    }
    from_bytes(out)
}
fn lane(v: u128, n: usize, i: usize) -> u64 {
    let m = if n == 8 {
        u64::MAX
    } else {
        (1u64 << (n * 8)) - 1
    };
    ((v >> (i * n * 8)) as u64) & m
}
fn sat_u8(v: i64) -> u64 {
    v.clamp(0, 255) as u64
}
fn sx(v: u64, n: usize) -> i64 {
    crate::operand::sext(v, n) as i64
}

impl Cpu {
    pub(crate) fn xmm(&self, r: Register) -> u128 {
        self.state.fpu.xmm[r.number()]
    }
    pub(crate) fn set_xmm(&mut self, r: Register, v: u128) {
        self.state.fpu.xmm[r.number()] = v;
    }

    fn sse_enabled(&self) -> Result<(), Stop> {
        if self.state.cr0 & cr::CR0_EM != 0 || self.state.cr4 & cr::CR4_OSFXSR == 0 {
            return Err(Fault::ud().into());
        }
        if self.state.cr0 & cr::CR0_TS != 0 {
            return Err(Fault::nm().into());
        }
        Ok(())
    }

    /// Reads an XMM or 128-bit memory operand; `aligned` enforces 16-byte alignment.
    fn xop(&mut self, ins: &Instruction, i: u32, aligned: bool) -> Result<u128, Stop> {
        match ins.op_kind(i) {
            OpKind::Register => Ok(self.xmm(ins.op_register(i))),
            _ => {
                let a = self.ea(ins);
                if aligned && a & 15 != 0 {
                    return Err(Fault::gp(0).into());
                }
                let size = ins.memory_size().size();
                if size >= 16 {
                    self.read_u128(a)
                } else {
                    Ok(self.read_mem(a, size)? as u128)
                }
            }
        }
    }

    fn write_x(&mut self, ins: &Instruction, i: u32, v: u128, aligned: bool) -> Result<(), Stop> {
        match ins.op_kind(i) {
            OpKind::Register => {
                self.set_xmm(ins.op_register(i), v);
                Ok(())
            }
            _ => {
                let a = self.ea(ins);
                if aligned && a & 15 != 0 {
                    return Err(Fault::gp(0).into());
                }
                let size = ins.memory_size().size();
                if size >= 16 {
                    self.write_u128(a, v)
                } else {
                    self.write_mem(a, size, v as u64)
                }
            }
        }
    }

    /// Binary lane operation `dst = f(dst, src)`.
    fn xbin(&mut self, ins: &Instruction, f: impl Fn(u128, u128) -> u128) -> Result<(), Stop> {
        let b = self.xop(ins, 1, true)?;
        let a = self.xmm(ins.op_register(0));
        self.set_xmm(ins.op_register(0), f(a, b));
        Ok(())
    }

    pub(crate) fn exec_sse(&mut self, ins: &Instruction) -> Result<bool, Stop> {
        let m = ins.mnemonic();
        let is_xmm = |i: u32| ins.op_kind(i) == OpKind::Register && ins.op_register(i).is_xmm();
        if !(0..ins.op_count()).any(is_xmm)
            && !matches!(
                m,
                M::Ldmxcsr | M::Stmxcsr | M::Cvttsd2si | M::Cvtsd2si | M::Cvttss2si | M::Cvtss2si
            )
        {
            return Ok(false);
        }
        self.sse_enabled()?;
        match m {
            M::Movdqa | M::Movaps | M::Movapd | M::Movntdq | M::Movntps | M::Movntpd => {
                let v = self.xop(ins, 1, true)?;
                self.write_x(ins, 0, v, true)?;
            }
            M::Movdqu | M::Movups | M::Movupd | M::Lddqu => {
                let v = self.xop(ins, 1, false)?;
                self.write_x(ins, 0, v, false)?;
            }
            M::Movd | M::Movq => {
                let (k0, k1) = (is_xmm(0), is_xmm(1));
                let size = if m == M::Movd { 4 } else { 8 };
                let mask = if size == 4 {
                    0xffff_ffffu128
                } else {
                    u64::MAX as u128
                };
                if k0 && k1 {
                    let v = self.xmm(ins.op_register(1)) & mask;
                    self.set_xmm(ins.op_register(0), v);
                } else if k0 {
                    let v = if ins.op_kind(1) == OpKind::Register {
                        self.reg(ins.op_register(1)) as u128
                    } else {
                        let a = self.ea(ins);
                        self.read_mem(a, size)? as u128
                    };
                    self.set_xmm(ins.op_register(0), v & mask);
                } else {
                    let v = (self.xmm(ins.op_register(1)) & mask) as u64;
                    self.write_op(ins, 0, size, v)?;
                }
            }
            M::Movss | M::Movsd => {
                let n = if m == M::Movss { 4 } else { 8 };
                let lo = if n == 4 {
                    0xffff_ffffu128
                } else {
                    u64::MAX as u128
                };
                if is_xmm(0) && is_xmm(1) {
                    let d = self.xmm(ins.op_register(0));
                    let s = self.xmm(ins.op_register(1));
                    self.set_xmm(ins.op_register(0), (d & !lo) | (s & lo));
                } else if is_xmm(0) {
                    let a = self.ea(ins);
                    let v = self.read_mem(a, n)? as u128;
                    self.set_xmm(ins.op_register(0), v);
                } else {
                    let a = self.ea(ins);
                    let v = self.xmm(ins.op_register(1)) as u64;
                    self.write_mem(a, n, v)?;
                }
            }
            M::Movhps | M::Movhpd | M::Movlps | M::Movlpd => {
                let high = matches!(m, M::Movhps | M::Movhpd);
                let a = self.ea(ins);
                if is_xmm(0) {
                    let v = self.read_mem(a, 8)? as u128;
                    let d = self.xmm(ins.op_register(0));
                    let r = if high {
                        (d & u64::MAX as u128) | (v << 64)
                    } else {
                        (d & !(u64::MAX as u128)) | v
                    };
                    self.set_xmm(ins.op_register(0), r);
                } else {
                    let s = self.xmm(ins.op_register(1));
                    self.write_mem(a, 8, if high { (s >> 64) as u64 } else { s as u64 })?;
                }
            }
            M::Movhlps => {
                let s = self.xmm(ins.op_register(1));
                let d = self.xmm(ins.op_register(0));
                self.set_xmm(ins.op_register(0), (d & !(u64::MAX as u128)) | (s >> 64));
            }
            M::Movlhps => {
                let s = self.xmm(ins.op_register(1));
                let d = self.xmm(ins.op_register(0));
                self.set_xmm(ins.op_register(0), (d & u64::MAX as u128) | (s << 64));
            }
            M::Pxor | M::Xorps | M::Xorpd => self.xbin(ins, |a, b| a ^ b)?,
            M::Por | M::Orps | M::Orpd => self.xbin(ins, |a, b| a | b)?,
            M::Pand | M::Andps | M::Andpd => self.xbin(ins, |a, b| a & b)?,
            M::Pandn | M::Andnps | M::Andnpd => self.xbin(ins, |a, b| !a & b)?,
            M::Paddb => self.xbin(ins, |a, b| lanes::<1>(a, b, |x, y| x.wrapping_add(y)))?,
            M::Paddw => self.xbin(ins, |a, b| lanes::<2>(a, b, |x, y| x.wrapping_add(y)))?,
            M::Paddd => self.xbin(ins, |a, b| lanes::<4>(a, b, |x, y| x.wrapping_add(y)))?,
            M::Paddq => self.xbin(ins, |a, b| lanes::<8>(a, b, |x, y| x.wrapping_add(y)))?,
            M::Psubb => self.xbin(ins, |a, b| lanes::<1>(a, b, |x, y| x.wrapping_sub(y)))?,
            M::Psubw => self.xbin(ins, |a, b| lanes::<2>(a, b, |x, y| x.wrapping_sub(y)))?,
            M::Psubd => self.xbin(ins, |a, b| lanes::<4>(a, b, |x, y| x.wrapping_sub(y)))?,
            M::Psubq => self.xbin(ins, |a, b| lanes::<8>(a, b, |x, y| x.wrapping_sub(y)))?,
            M::Psubusb => self.xbin(ins, |a, b| lanes::<1>(a, b, |x, y| x.saturating_sub(y)))?,
            M::Paddusb => self.xbin(ins, |a, b| lanes::<1>(a, b, |x, y| (x + y).min(255)))?,
            M::Pcmpeqb => self.xbin(ins, |a, b| {
                lanes::<1>(a, b, |x, y| if x == y { 0xff } else { 0 })
            })?,
            M::Pcmpeqw => self.xbin(ins, |a, b| {
                lanes::<2>(a, b, |x, y| if x == y { 0xffff } else { 0 })
            })?,
            M::Pcmpeqd => self.xbin(ins, |a, b| {
                lanes::<4>(a, b, |x, y| if x == y { 0xffff_ffff } else { 0 })
            })?,
            M::Pcmpgtb => self.xbin(ins, |a, b| {
                lanes::<1>(a, b, |x, y| if sx(x, 1) > sx(y, 1) { 0xff } else { 0 })
            })?,
            M::Pcmpgtw => self.xbin(ins, |a, b| {
                lanes::<2>(a, b, |x, y| if sx(x, 2) > sx(y, 2) { 0xffff } else { 0 })
            })?,
            M::Pcmpgtd => self.xbin(ins, |a, b| {
                lanes::<4>(
                    a,
                    b,
                    |x, y| if sx(x, 4) > sx(y, 4) { 0xffff_ffff } else { 0 },
                )
            })?,
            M::Pminub => self.xbin(ins, |a, b| lanes::<1>(a, b, |x, y| x.min(y)))?,
            M::Pmaxub => self.xbin(ins, |a, b| lanes::<1>(a, b, |x, y| x.max(y)))?,
            M::Pminsw => self.xbin(ins, |a, b| {
                lanes::<2>(a, b, |x, y| sx(x, 2).min(sx(y, 2)) as u64)
            })?,
            M::Pmaxsw => self.xbin(ins, |a, b| {
                lanes::<2>(a, b, |x, y| sx(x, 2).max(sx(y, 2)) as u64)
            })?,
            M::Pavgb => self.xbin(ins, |a, b| lanes::<1>(a, b, |x, y| (x + y + 1) >> 1))?,
            M::Pmullw => self.xbin(ins, |a, b| lanes::<2>(a, b, |x, y| x.wrapping_mul(y)))?,
            M::Pmuludq => self.xbin(ins, |a, b| {
                lanes::<8>(a, b, |x, y| (x & 0xffff_ffff) * (y & 0xffff_ffff))
            })?,
            M::Psadbw => self.xbin(ins, |a, b| {
                let (x, y) = (bytes(a), bytes(b));
                let sum = |r: std::ops::Range<usize>| {
                    r.map(|i| x[i].abs_diff(y[i]) as u128).sum::<u128>()
                };
                sum(0..8) | (sum(8..16) << 64)
            })?,
            M::Pmovmskb => {
                let v = bytes(self.xmm(ins.op_register(1)));
                let mut r = 0u64;
                for (i, b) in v.iter().enumerate() {
                    r |= ((b >> 7) as u64) << i;
                }
                self.set_reg(ins.op_register(0), r);
            }
            M::Movmskps | M::Movmskpd => {
                let v = self.xmm(ins.op_register(1));
                let n = if m == M::Movmskps { 4 } else { 8 };
                let mut r = 0u64;
                for i in 0..16 / n {
                    r |= (lane(v, n, i) >> (n * 8 - 1)) << i;
                }
                self.set_reg(ins.op_register(0), r);
            }
            M::Punpcklbw
            | M::Punpcklwd
            | M::Punpckldq
            | M::Punpcklqdq
            | M::Punpckhbw
            | M::Punpckhwd
            | M::Punpckhdq
            | M::Punpckhqdq
            | M::Unpcklps
            | M::Unpcklpd
            | M::Unpckhps
            | M::Unpckhpd => {
                let (n, high) = match m {
                    M::Punpcklbw => (1, false),
                    M::Punpcklwd => (2, false),
                    M::Punpckldq | M::Unpcklps => (4, false),
                    M::Punpcklqdq | M::Unpcklpd => (8, false),
                    M::Punpckhbw => (1, true),
                    M::Punpckhwd => (2, true),
                    M::Punpckhdq | M::Unpckhps => (4, true),
                    _ => (8, true),
                };
                self.xbin(ins, |a, b| {
                    let (x, y) = (bytes(a), bytes(b));
                    let base = if high { 8 } else { 0 };
                    let mut out = [0u8; 16];
                    for k in 0..8 / n {
                        out[2 * k * n..2 * k * n + n]
                            .copy_from_slice(&x[base + k * n..base + k * n + n]);
                        out[2 * k * n + n..2 * k * n + 2 * n]
                            .copy_from_slice(&y[base + k * n..base + k * n + n]);
                    }
                    from_bytes(out)
                })?
            }
            M::Packuswb => self.xbin(ins, |a, b| {
                let mut out = [0u8; 16];
                for i in 0..8 {
                    out[i] = sat_u8(sx(lane(a, 2, i), 2)) as u8;
                    out[i + 8] = sat_u8(sx(lane(b, 2, i), 2)) as u8;
                }
                from_bytes(out)
            })?,
            M::Pshufd | M::Shufps | M::Pshuflw | M::Pshufhw | M::Shufpd => {
                let imm = ins.immediate(2) as usize;
                let src = self.xop(ins, 1, true)?;
                let dst = self.xmm(ins.op_register(0));
                let r = match m {
                    M::Pshufd => (0..4).fold(0u128, |r, i| {
                        r | ((lane(src, 4, (imm >> (2 * i)) & 3) as u128) << (32 * i))
                    }),
                    M::Shufps => (0..4).fold(0u128, |r, i| {
                        let from = if i < 2 { dst } else { src };
                        r | ((lane(from, 4, (imm >> (2 * i)) & 3) as u128) << (32 * i))
                    }),
                    M::Shufpd => {
                        (lane(dst, 8, imm & 1) as u128)
                            | ((lane(src, 8, (imm >> 1) & 1) as u128) << 64)
                    }
                    M::Pshuflw => {
                        let lo = (0..4).fold(0u128, |r, i| {
                            r | ((lane(src, 2, (imm >> (2 * i)) & 3) as u128) << (16 * i))
                        });
                        lo | (src & !(u64::MAX as u128))
                    }
                    _ => {
                        let hi = (0..4).fold(0u128, |r, i| {
                            r | ((lane(src, 2, 4 + ((imm >> (2 * i)) & 3)) as u128) << (16 * i))
                        });
                        (src & u64::MAX as u128) | (hi << 64)
                    }
                };
                self.set_xmm(ins.op_register(0), r);
            }
            M::Psrldq | M::Pslldq => {
                let n = (ins.immediate(1) as u32).min(16) * 8;
                let v = self.xmm(ins.op_register(0));
                let r = if n >= 128 {
                    0
                } else if m == M::Psrldq {
                    v >> n
                } else {
                    v << n
                };
                self.set_xmm(ins.op_register(0), r);
            }
            M::Psrlw
            | M::Psrld
            | M::Psrlq
            | M::Psllw
            | M::Pslld
            | M::Psllq
            | M::Psraw
            | M::Psrad => {
                let count = if matches!(ins.op_kind(1), OpKind::Immediate8) {
                    ins.immediate(1)
                } else {
                    self.xop(ins, 1, true)? as u64
                };
                let n = match m {
                    M::Psrlw | M::Psllw | M::Psraw => 2,
                    M::Psrld | M::Pslld | M::Psrad => 4,
                    _ => 8,
                };
                let bits = (n * 8) as u64;
                let v = self.xmm(ins.op_register(0));
                let r = lanes_unary(v, n, |x| match m {
                    M::Psrlw | M::Psrld | M::Psrlq => {
                        if count >= bits {
                            0
                        } else {
                            x >> count
                        }
                    }
                    M::Psllw | M::Pslld | M::Psllq => {
                        if count >= bits {
                            0
                        } else {
                            x << count
                        }
                    }
                    _ => (sx(x, n) >> count.min(bits - 1)) as u64,
                });
                self.set_xmm(ins.op_register(0), r);
            }
            M::Pextrw => {
                let v = lane(
                    self.xmm(ins.op_register(1)),
                    2,
                    (ins.immediate(2) & 7) as usize,
                );
                self.set_reg(ins.op_register(0), v);
            }
            M::Pinsrw => {
                let i = (ins.immediate(2) & 7) as usize;
                let w = self.read_op(ins, 1, 2)? as u128 & 0xffff;
                let d = self.xmm(ins.op_register(0));
                self.set_xmm(
                    ins.op_register(0),
                    (d & !(0xffffu128 << (16 * i))) | (w << (16 * i)),
                );
            }
            _ => return self.exec_sse_float(ins),
        }
        Ok(true)
    }

    fn exec_sse_float(&mut self, ins: &Instruction) -> Result<bool, Stop> {
        let m = ins.mnemonic();
        match m {
            M::Addsd
            | M::Subsd
            | M::Mulsd
            | M::Divsd
            | M::Minsd
            | M::Maxsd
            | M::Sqrtsd
            | M::Addss
            | M::Subss
            | M::Mulss
            | M::Divss
            | M::Minss
            | M::Maxss
            | M::Sqrtss => {
                let single = matches!(
                    m,
                    M::Addss | M::Subss | M::Mulss | M::Divss | M::Minss | M::Maxss | M::Sqrtss
                );
                let b = self.xop(ins, 1, false)?;
                let a = self.xmm(ins.op_register(0));
                let r = if single {
                    let (x, y) = (f32::from_bits(a as u32), f32::from_bits(b as u32));
                    let r = float_op(m, x as f64, y as f64, true) as f32;
                    let r = if matches!(m, M::Minss | M::Maxss) {
                        minmax32(m, x, y)
                    } else {
                        r
                    };
                    (a & !0xffff_ffffu128) | r.to_bits() as u128
                } else {
                    let (x, y) = (f64::from_bits(a as u64), f64::from_bits(b as u64));
                    let r = if matches!(m, M::Minsd | M::Maxsd) {
                        minmax64(m, x, y)
                    } else {
                        float_op(m, x, y, false)
                    };
                    (a & !(u64::MAX as u128)) | r.to_bits() as u128
                };
                self.set_xmm(ins.op_register(0), r);
            }
            M::Addpd | M::Subpd | M::Mulpd | M::Divpd => {
                let b = self.xop(ins, 1, true)?;
                let a = self.xmm(ins.op_register(0));
                let r = lanes::<8>(a, b, |x, y| {
                    float_op(m, f64::from_bits(x), f64::from_bits(y), false).to_bits()
                });
                self.set_xmm(ins.op_register(0), r);
            }
            M::Addps | M::Subps | M::Mulps | M::Divps => {
                let b = self.xop(ins, 1, true)?;
                let a = self.xmm(ins.op_register(0));
                let r = lanes::<4>(a, b, |x, y| {
                    (float_op(
                        m,
                        f32::from_bits(x as u32) as f64,
                        f32::from_bits(y as u32) as f64,
                        true,
                    ) as f32)
                        .to_bits() as u64
                });
                self.set_xmm(ins.op_register(0), r);
            }
            M::Ucomisd | M::Comisd | M::Ucomiss | M::Comiss => {
                let b = self.xop(ins, 1, false)?;
                let a = self.xmm(ins.op_register(0));
                let (x, y) = if matches!(m, M::Ucomisd | M::Comisd) {
                    (f64::from_bits(a as u64), f64::from_bits(b as u64))
                } else {
                    (
                        f32::from_bits(a as u32) as f64,
                        f32::from_bits(b as u32) as f64,
                    )
                };
                let f = if x.is_nan() || y.is_nan() {
                    ZF | PF | CF
                } else if x < y {
                    CF
                } else if x == y {
                    ZF
                } else {
                    0
                };
                self.set_flags(f, flags::STATUS);
            }
            M::Cvtsi2sd | M::Cvtsi2ss => {
                let s = self.op_size(ins, 1);
                let v = crate::operand::sext(self.read_op(ins, 1, s)?, s) as i64;
                let d = self.xmm(ins.op_register(0));
                let r = if m == M::Cvtsi2sd {
                    (d & !(u64::MAX as u128)) | (v as f64).to_bits() as u128
                } else {
                    (d & !0xffff_ffffu128) | (v as f32).to_bits() as u128
                };
                self.set_xmm(ins.op_register(0), r);
            }
            M::Cvttsd2si | M::Cvtsd2si | M::Cvttss2si | M::Cvtss2si => {
                let v = self.xop(ins, 1, false)?;
                let x = if matches!(m, M::Cvttsd2si | M::Cvtsd2si) {
                    f64::from_bits(v as u64)
                } else {
                    f32::from_bits(v as u32) as f64
                };
                let x = if matches!(m, M::Cvtsd2si | M::Cvtss2si) {
                    x.round_ties_even()
                } else {
                    x.trunc()
                };
                let size = ins.op_register(0).size();
                let (lo, hi) = if size == 8 {
                    (i64::MIN as f64, -(i64::MIN as f64))
                } else {
                    (i32::MIN as f64, -(i32::MIN as f64))
                };
                let r = if x.is_nan() || x < lo || x >= hi {
                    if size == 8 {
                        i64::MIN as u64
                    } else {
                        0x8000_0000
                    }
                } else {
                    x as i64 as u64
                };
                self.set_reg(ins.op_register(0), r);
            }
            M::Cvtss2sd => {
                let v = self.xop(ins, 1, false)?;
                let d = self.xmm(ins.op_register(0));
                let r = (f32::from_bits(v as u32) as f64).to_bits() as u128;
                self.set_xmm(ins.op_register(0), (d & !(u64::MAX as u128)) | r);
            }
            M::Cvtsd2ss => {
                let v = self.xop(ins, 1, false)?;
                let d = self.xmm(ins.op_register(0));
                let r = (f64::from_bits(v as u64) as f32).to_bits() as u128;
                self.set_xmm(ins.op_register(0), (d & !0xffff_ffffu128) | r);
            }
            M::Ldmxcsr => {
                let a = self.ea(ins);
                let v = self.read_mem(a, 4)? as u32;
                if v & !0xffff != 0 {
                    return Err(Fault::gp(0).into());
                }
                self.state.fpu.mxcsr = v;
            }
            M::Stmxcsr => {
                let a = self.ea(ins);
                self.write_mem(a, 4, self.state.fpu.mxcsr as u64)?;
            }
            _ => return Err(Stop::Unsupported),
        }
        Ok(true)
    }
}

fn lanes_unary(v: u128, n: usize, f: impl Fn(u64) -> u64) -> u128 {
    let m = if n == 8 {
        u64::MAX
    } else {
        (1u64 << (n * 8)) - 1
    };
    (0..16 / n).fold(0u128, |r, i| {
        r | (((f(lane(v, n, i)) & m) as u128) << (i * n * 8))
    })
}

fn float_op(m: M, x: f64, y: f64, single: bool) -> f64 {
    let r = match m {
        M::Addsd | M::Addss | M::Addpd | M::Addps => x + y,
        M::Subsd | M::Subss | M::Subpd | M::Subps => x - y,
        M::Mulsd | M::Mulss | M::Mulpd | M::Mulps => x * y,
        M::Divsd | M::Divss | M::Divpd | M::Divps => x / y,
        _ => y.sqrt(),
    };
    if single {
        // Singles are computed in double and rounded once: exact for +,-,*,/ and sqrt.
        r as f32 as f64
    } else {
        r
    }
}

/// MINSD/MAXSD: the second operand when unordered or equal (x86 semantics).
fn minmax64(m: M, x: f64, y: f64) -> f64 {
    let take_x = if m == M::Minsd { x < y } else { x > y };
    if take_x {
        x
    } else {
        y
    }
}

fn minmax32(m: M, x: f32, y: f32) -> f32 {
    let take_x = if m == M::Minss { x < y } else { x > y };
    if take_x {
        x
    } else {
        y
    }
}
