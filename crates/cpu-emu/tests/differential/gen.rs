//! Seeded generation of single-instruction snippets per instruction group, with inputs
//! biased towards boundary values, and the flags each instruction leaves undefined.

use iced_x86::{Decoder, DecoderOptions, Mnemonic as M};

use super::case::{Case, DATA, PAGE};

/// xorshift64* — small, seeded, reproducible.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    /// A value biased towards edges.
    pub fn value(&mut self) -> u64 {
        match self.below(8) {
            0 => self.pick(&[
                0,
                1,
                2,
                u64::MAX,
                0x8000_0000_0000_0000,
                0x7fff_ffff_ffff_ffff,
                0x80,
                0x7f,
            ]),
            1 => self.pick(&[
                0xff,
                0x100,
                0xffff,
                0x8000,
                0x7fff_ffff,
                0x8000_0000,
                0xffff_ffff,
                0x1_0000_0000,
            ]),
            2 => self.below(64),
            3 => self.next() & 0xffff_ffff,
            4 => (self.next() as i8) as i64 as u64,
            _ => self.next(),
        }
    }
}

/// Instruction groups.
pub const GROUPS: &[&str] = &[
    "alu", "muldiv", "shift", "bits", "moves", "atomic", "stack", "string", "branch", "sse",
    "ssefloat",
];

/// Prefix/REX/ModRM builder for one instruction.
struct Enc<'a> {
    rng: &'a mut Rng,
    bytes: Vec<u8>,
}

impl Enc<'_> {
    /// Emits `[66] [F2/F3] [F0] [REX] opcode ModRM [disp8]` with a random operand choice;
    /// `digit` fixes the reg field; `mem` forces memory, `reg_only` forbids it.
    fn emit(
        &mut self,
        pre: &[u8],
        opsize: u8,
        op: &[u8],
        digit: Option<u8>,
        mem: Option<bool>,
        lock: bool,
    ) {
        let use_mem = mem.unwrap_or_else(|| self.rng.chance(40));
        let reg = digit.unwrap_or_else(|| self.rng.below(16) as u8);
        let rm = if use_mem { 3 } else { self.rng.below(16) as u8 };
        let mut rex = 0x40u8;
        if opsize == 8 {
            rex |= 8;
        }
        if digit.is_none() && reg >= 8 {
            rex |= 4;
        }
        if !use_mem && rm >= 8 {
            rex |= 1;
        }
        if opsize == 2 {
            self.bytes.push(0x66);
        }
        self.bytes.extend_from_slice(pre);
        if lock && use_mem {
            self.bytes.push(0xf0);
        }
        if rex != 0x40 || (opsize == 1 && self.rng.chance(50)) {
            self.bytes.push(rex);
        }
        self.bytes.extend_from_slice(op);
        if use_mem {
            self.bytes.push(0x40 | ((reg & 7) << 3) | 3);
            let d = if self.rng.chance(50) {
                (self.rng.below(16) as u8) << 4
            } else {
                self.rng.next() as u8
            };
            self.bytes.push(d);
        } else {
            self.bytes.push(0xc0 | ((reg & 7) << 3) | (rm & 7));
        }
    }
    fn imm(&mut self, n: usize) {
        let v = self.rng.value();
        self.bytes.extend_from_slice(&v.to_le_bytes()[..n]);
    }
}

fn opsize(rng: &mut Rng) -> u8 {
    rng.pick(&[2, 4, 8, 8])
}

fn imm_len(os: u8) -> usize {
    if os == 2 {
        2
    } else {
        4
    }
}

/// One snippet of `group`.
pub fn snippet(rng: &mut Rng, group: &str) -> Vec<u8> {
    let mut e = Enc {
        rng,
        bytes: Vec::new(),
    };
    match group {
        "alu" => {
            let k = e.rng.below(8) as u8;
            match e.rng.below(9) {
                0 => e.emit(&[], 1, &[k * 8], None, None, k != 7),
                1 => {
                    let os = opsize(e.rng);
                    e.emit(&[], os, &[k * 8 + 1], None, None, k != 7)
                }
                2 => e.emit(&[], 1, &[k * 8 + 2], None, None, false),
                3 => {
                    let os = opsize(e.rng);
                    e.emit(&[], os, &[k * 8 + 3], None, None, false)
                }
                4 => {
                    e.emit(&[], 1, &[0x80], Some(k), None, k != 7);
                    e.imm(1)
                }
                5 => {
                    let os = opsize(e.rng);
                    e.emit(&[], os, &[0x81], Some(k), None, k != 7);
                    e.imm(imm_len(os))
                }
                6 => {
                    let os = opsize(e.rng);
                    e.emit(&[], os, &[0x83], Some(k), None, k != 7);
                    e.imm(1)
                }
                7 => {
                    let os = opsize(e.rng);
                    let d = e.rng.pick(&[0u8, 2, 3]);
                    e.emit(&[], os, &[0xf7], Some(d), None, d != 0);
                    if d == 0 {
                        e.imm(imm_len(os))
                    }
                }
                _ => {
                    let os = opsize(e.rng);
                    let (op, d) = e.rng.pick(&[
                        (0xffu8, 0u8),
                        (0xff, 1),
                        (0xfe, 0),
                        (0xfe, 1),
                        (0x85, 9),
                        (0x84, 9),
                        (0x87, 9),
                        (0x89, 9),
                        (0x8b, 9),
                        (0x8d, 9),
                    ]);
                    let digit = if d == 9 { None } else { Some(d) };
                    let os = if op == 0xfe || op == 0x84 { 1 } else { os };
                    e.emit(
                        &[],
                        os,
                        &[op],
                        digit,
                        if op == 0x8d { Some(true) } else { None },
                        matches!(op, 0xfe | 0xff),
                    )
                }
            }
        }
        "muldiv" => {
            let os = e.rng.pick(&[1, 2, 4, 8]);
            match e.rng.below(4) {
                0 | 1 => {
                    let d = e.rng.pick(&[4u8, 5, 6, 7]);
                    e.emit(
                        &[],
                        os,
                        &[if os == 1 { 0xf6 } else { 0xf7 }],
                        Some(d),
                        None,
                        false,
                    )
                }
                2 => {
                    let os = opsize(e.rng);
                    e.emit(&[], os, &[0x0f, 0xaf], None, None, false)
                }
                _ => {
                    let os = opsize(e.rng);
                    if e.rng.chance(50) {
                        e.emit(&[], os, &[0x6b], None, None, false);
                        e.imm(1)
                    } else {
                        e.emit(&[], os, &[0x69], None, None, false);
                        e.imm(imm_len(os))
                    }
                }
            }
        }
        "shift" => {
            let os = e.rng.pick(&[1, 2, 4, 8]);
            let d = e.rng.pick(&[0u8, 1, 2, 3, 4, 5, 7]);
            let w = if os == 1 { 0 } else { 1 };
            match e.rng.below(4) {
                0 => {
                    e.emit(&[], os, &[0xc0 + w], Some(d), None, false);
                    let c = e
                        .rng
                        .pick(&[0u8, 1, 1, 2, 7, 8, 15, 16, 31, 32, 33, 63, 64, 255]);
                    e.bytes.push(c);
                }
                1 => e.emit(&[], os, &[0xd0 + w], Some(d), None, false),
                2 => e.emit(&[], os, &[0xd2 + w], Some(d), None, false),
                _ => {
                    let os = e.rng.pick(&[4, 8]);
                    let op = e.rng.pick(&[0xa4u8, 0xa5, 0xac, 0xad]);
                    e.emit(&[], os, &[0x0f, op], None, None, false);
                    if op & 1 == 0 {
                        let c = e.rng.pick(&[0u8, 1, 4, 31, 32, 63]);
                        e.bytes.push(c);
                    }
                }
            }
        }
        "bits" => {
            let os = opsize(e.rng);
            match e.rng.below(4) {
                0 => {
                    let op = e.rng.pick(&[0xa3u8, 0xab, 0xb3, 0xbb]);
                    e.emit(&[], os, &[0x0f, op], None, None, op != 0xa3)
                }
                1 => {
                    let d = e.rng.pick(&[4u8, 5, 6, 7]);
                    e.emit(&[], os, &[0x0f, 0xba], Some(d), None, d != 4);
                    e.imm(1)
                }
                2 => {
                    let op = e.rng.pick(&[0xbcu8, 0xbd]);
                    e.emit(&[], os, &[0x0f, op], None, None, false)
                }
                _ => e.emit(&[0xf3], os, &[0x0f, 0xb8], None, None, false),
            }
        }
        "moves" => match e.rng.below(7) {
            0 => {
                let op = e.rng.pick(&[0xb6u8, 0xb7, 0xbe, 0xbf]);
                let os = e.rng.pick(&[4, 8]);
                e.emit(&[], os, &[0x0f, op], None, None, false)
            }
            1 => e.emit(&[], 8, &[0x63], None, None, false),
            2 => {
                let os = opsize(e.rng);
                let cc = e.rng.below(16) as u8;
                e.emit(&[], os, &[0x0f, 0x40 + cc], None, None, false)
            }
            3 => {
                let cc = e.rng.below(16) as u8;
                e.emit(&[], 1, &[0x0f, 0x90 + cc], Some(0), None, false)
            }
            4 => {
                let os = opsize(e.rng);
                if os == 2 {
                    e.bytes.push(0x66)
                } else if os == 8 {
                    e.bytes.push(0x48)
                }
                let op = e
                    .rng
                    .pick(&[0x98u8, 0x99, 0x9e, 0x9f, 0xf5, 0xf8, 0xf9, 0xfc, 0xfd]);
                e.bytes.push(op)
            }
            5 => {
                let r = e.rng.below(16) as u8;
                let os = e.rng.pick(&[4, 8]);
                e.bytes
                    .push(0x40 | if os == 8 { 8 } else { 0 } | if r >= 8 { 1 } else { 0 });
                e.bytes.extend_from_slice(&[0x0f, 0xc8 + (r & 7)])
            }
            _ => {
                let op = e.rng.pick(&[0x86u8, 0x88, 0x8a, 0xc6]);
                e.emit(
                    &[],
                    1,
                    &[op],
                    if op == 0xc6 { Some(0) } else { None },
                    None,
                    false,
                );
                if op == 0xc6 {
                    e.imm(1)
                }
            }
        },
        "atomic" => {
            let os = e.rng.pick(&[1, 2, 4, 8]);
            match e.rng.below(3) {
                0 => e.emit(
                    &[],
                    os,
                    &[0x0f, if os == 1 { 0xb0 } else { 0xb1 }],
                    None,
                    None,
                    true,
                ),
                1 => e.emit(
                    &[],
                    os,
                    &[0x0f, if os == 1 { 0xc0 } else { 0xc1 }],
                    None,
                    None,
                    true,
                ),
                _ => {
                    let os = e.rng.pick(&[4, 8]);
                    e.emit(&[], os, &[0x0f, 0xc7], Some(1), Some(true), true)
                }
            }
        }
        "stack" => match e.rng.below(8) {
            0 => {
                let r = e.rng.below(16) as u8;
                if r >= 8 {
                    e.bytes.push(0x41)
                }
                e.bytes.push(e.rng.pick(&[0x50u8, 0x58]) + (r & 7))
            }
            1 => e.emit(&[], 8, &[0xff], Some(6), Some(true), false),
            2 => e.emit(&[], 8, &[0x8f], Some(0), Some(true), false),
            3 => e.bytes.push(e.rng.pick(&[0x9cu8, 0x9d])),
            4 => {
                e.bytes.push(0x6a);
                e.imm(1)
            }
            5 => {
                e.bytes.push(0x68);
                e.imm(4)
            }
            6 => e.bytes.push(0xc9),
            _ => {
                e.bytes.push(0xc8);
                e.imm(2);
                let l = e.rng.pick(&[0u8, 1, 2]);
                e.bytes.push(l)
            }
        },
        "string" => {
            let op = e
                .rng
                .pick(&[0xa4u8, 0xa5, 0xa6, 0xa7, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf]);
            let os = if op & 1 == 0 { 1 } else { opsize(e.rng) };
            if os == 2 {
                e.bytes.push(0x66)
            }
            if e.rng.chance(70) {
                e.bytes.push(e.rng.pick(&[0xf3u8, 0xf2]))
            }
            if os == 8 {
                e.bytes.push(0x48)
            }
            e.bytes.push(op)
        }
        "branch" => match e.rng.below(4) {
            0 => {
                let cc = e.rng.below(16) as u8;
                e.bytes.extend_from_slice(&[0x70 + cc, 2, 0x31, 0xc0])
            }
            1 => e.bytes.extend_from_slice(&[0xe3, 2, 0x31, 0xc0]),
            2 => {
                let op = e.rng.pick(&[0xe0u8, 0xe1, 0xe2]);
                e.bytes.extend_from_slice(&[op, 2, 0x31, 0xc0])
            }
            _ => e.bytes.extend_from_slice(&[0xe8, 0, 0, 0, 0]),
        },
        "sse" => sse(&mut e),
        _ => sse_float(&mut e),
    }
    e.bytes
}

fn sse(e: &mut Enc) {
    const OPS66: &[u8] = &[
        0xef, 0x74, 0x75, 0x76, 0xda, 0xde, 0x60, 0x61, 0x62, 0x6c, 0x68, 0x69, 0x6a, 0x6d, 0xd1,
        0xd2, 0xd3, 0xf1, 0xf2, 0xf3, 0xe1, 0xe2, 0xfc, 0xfd, 0xfe, 0xd4, 0xf8, 0xf9, 0xfa, 0xfb,
        0x64, 0x65, 0x66, 0x67, 0xf4, 0xd5, 0xe0, 0xf6, 0xd8, 0xdc, 0xea, 0xee, 0xdb, 0xdf, 0xeb,
        0x6f, 0x7f, 0x14, 0x15, 0x57, 0x54,
    ];
    match e.rng.below(8) {
        0..=2 => {
            let op = e.rng.pick(OPS66);
            e.emit(&[], 2, &[0x0f, op], None, None, false)
        }
        3 => {
            let (pre, op) = e
                .rng
                .pick(&[(0x66u8, 0x70u8), (0xf2, 0x70), (0xf3, 0x70), (0, 0xc6)]);
            let p: &[u8] = if pre == 0 { &[] } else { &[pre] };
            e.emit(p, 4, &[0x0f, op], None, None, false);
            e.imm(1)
        }
        4 => {
            let d = e.rng.pick(&[2u8, 3, 6, 7]);
            let op = if d == 3 || d == 7 {
                0x73
            } else {
                e.rng.pick(&[0x71u8, 0x72, 0x73])
            };
            let d = if op == 0x73 {
                d
            } else {
                e.rng.pick(&[2u8, 4, 6])
            };
            e.emit(&[], 2, &[0x0f, op], Some(d), Some(false), false);
            let c = e.rng.pick(&[0u8, 1, 3, 7, 8, 15, 16, 31, 63, 64]);
            e.bytes.push(c)
        }
        5 => {
            let (pre, op) = e.rng.pick(&[
                (0xf3u8, 0x6fu8),
                (0xf3, 0x7f),
                (0, 0x28),
                (0, 0x29),
                (0, 0x10),
                (0, 0x11),
                (0xf3, 0x7e),
                (0x66, 0xd6),
                (0xf2, 0x10),
                (0xf3, 0x10),
                (0xf2, 0x11),
                (0xf3, 0x11),
            ]);
            let p: &[u8] = if pre == 0 { &[] } else { &[pre] };
            e.emit(p, 4, &[0x0f, op], None, None, false)
        }
        6 => {
            // movd/movq between GPRs and XMM, pmovmskb, pextrw, pinsrw, movlps/movhps.
            match e.rng.below(5) {
                0 => {
                    let op = e.rng.pick(&[0x6eu8, 0x7e]);
                    let os = e.rng.pick(&[4, 8]);
                    e.bytes.push(0x66);
                    e.emit(&[], os, &[0x0f, op], None, None, false)
                }
                1 => {
                    e.bytes.push(0x66);
                    e.emit(&[], 4, &[0x0f, 0xd7], None, Some(false), false)
                }
                2 => {
                    e.bytes.push(0x66);
                    e.emit(&[], 4, &[0x0f, 0xc5], None, Some(false), false);
                    e.imm(1)
                }
                3 => {
                    e.bytes.push(0x66);
                    e.emit(&[], 4, &[0x0f, 0xc4], None, None, false);
                    e.imm(1)
                }
                _ => {
                    let op = e.rng.pick(&[0x12u8, 0x13, 0x16, 0x17]);
                    e.emit(&[], 4, &[0x0f, op], None, Some(true), false)
                }
            }
        }
        _ => {
            let op = e.rng.pick(&[0x57u8, 0x54, 0x55, 0x56, 0x14, 0x15]);
            e.emit(&[], 4, &[0x0f, op], None, None, false)
        }
    }
}

fn sse_float(e: &mut Enc) {
    match e.rng.below(5) {
        0 | 1 => {
            let pre = e.rng.pick(&[0xf2u8, 0xf3]);
            let op = e
                .rng
                .pick(&[0x58u8, 0x59, 0x5c, 0x5e, 0x51, 0x5d, 0x5f, 0x5a]);
            e.emit(&[pre], 4, &[0x0f, op], None, None, false)
        }
        2 => {
            let p = e.rng.pick(&[0x66u8, 0]);
            let op = e.rng.pick(&[0x2eu8, 0x2f]);
            let pre: &[u8] = if p == 0 { &[] } else { &[0x66] };
            e.emit(pre, 4, &[0x0f, op], None, None, false)
        }
        3 => {
            let pre = e.rng.pick(&[0xf2u8, 0xf3]);
            let op = e.rng.pick(&[0x2au8, 0x2c, 0x2d]);
            let os = e.rng.pick(&[4, 8]);
            e.emit(&[pre], os, &[0x0f, op], None, None, false)
        }
        _ => {
            let p = e.rng.pick(&[0x66u8, 0]);
            let op = e.rng.pick(&[0x58u8, 0x59, 0x5c, 0x5e]);
            let pre: &[u8] = if p == 0 { &[] } else { &[0x66] };
            e.emit(pre, 4, &[0x0f, op], None, None, false)
        }
    }
}

fn nice_double(rng: &mut Rng) -> u64 {
    let v: f64 = match rng.below(6) {
        0 => rng.pick(&[
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            2.5,
            3.5,
            -2.5,
            1e300,
            -1e-300,
            4294967296.5,
            9.3e18,
        ]),
        1 => (rng.next() as i64 as f64) / 1024.0,
        2 => (rng.below(2000) as f64 - 1000.0) * 0.25,
        _ => (rng.next() as i32 as f64) * 1.000_001,
    };
    v.to_bits()
}

/// A case for `group`.
pub fn case(rng: &mut Rng, group: &str) -> Case {
    let code = snippet(rng, group);
    let mut gpr = [0u64; 16];
    for g in gpr.iter_mut() {
        *g = rng.value();
    }
    gpr[3] = DATA + 0x400; // rbx: base of memory operands
    gpr[4] = DATA + 0x800 + (rng.below(4) * 8); // rsp
    gpr[5] = if rng.chance(50) { DATA + 0xa00 } else { gpr[5] }; // rbp (LEAVE/ENTER)
    gpr[6] = DATA + 0x200 + rng.below(64); // rsi
    gpr[7] = DATA + 0x600 + rng.below(64); // rdi
    if group == "string" || group == "branch" {
        gpr[1] = rng.below(12);
    }
    if group == "stack" {
        gpr[5] = DATA + 0xa00 + rng.below(8) * 8;
    }
    let rflags = 0x2 | (rng.next() & 0x8d5) | if rng.chance(20) { 0x400 } else { 0 };
    let mut xmm = [0u128; 16];
    for x in xmm.iter_mut() {
        *x = if group == "ssefloat" {
            let lo = nice_double(rng);
            let hi = nice_double(rng);
            if rng.chance(50) {
                (hi as u128) << 64 | lo as u128
            } else {
                let f = f64::from_bits(lo) as f32;
                (hi as u128) << 64
                    | f.to_bits() as u128
                    | ((f32::from_bits(rng.next() as u32 & 0x3fff_ffff).to_bits() as u128) << 32)
            }
        } else {
            (rng.next() as u128) << 64 | rng.next() as u128
        };
    }
    let mut data = vec![0u8; PAGE as usize];
    for (i, chunk) in data.chunks_mut(8).enumerate() {
        let v = if group == "ssefloat" && i % 2 == 0 {
            nice_double(rng)
        } else {
            rng.value()
        };
        chunk.copy_from_slice(&v.to_le_bytes());
    }
    // POPF at CPL3 must not turn on single-stepping or alignment checks.
    for off in (0x800..0x840).step_by(8) {
        data[off + 1] &= !1; // TF
        data[off + 2] &= !(1 << 2); // AC
    }
    Case {
        code,
        gpr,
        rflags,
        xmm,
        data,
    }
}

/// Flags the instruction leaves undefined (masked in comparisons).
pub fn undefined_flags(code: &[u8]) -> u64 {
    const CF: u64 = 1;
    const PF: u64 = 4;
    const AF: u64 = 0x10;
    const ZF: u64 = 0x40;
    const SF: u64 = 0x80;
    const OF: u64 = 0x800;
    let mut d = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
    let ins = d.decode();
    let size = if ins.op_kind(0) == iced_x86::OpKind::Memory {
        ins.memory_size().size()
    } else {
        ins.op_register(0).size()
    };
    match ins.mnemonic() {
        M::Mul | M::Imul => SF | ZF | AF | PF,
        M::Div | M::Idiv => CF | OF | SF | ZF | AF | PF,
        M::And | M::Or | M::Xor | M::Test => AF,
        M::Shl | M::Sal | M::Shr | M::Sar => AF | OF | if size < 4 { CF } else { 0 },
        M::Shld | M::Shrd => AF | OF,
        M::Rol | M::Ror | M::Rcl | M::Rcr => OF,
        M::Bt | M::Bts | M::Btr | M::Btc => OF | SF | AF | PF,
        M::Bsf | M::Bsr => CF | OF | SF | AF | PF,
        _ => 0,
    }
}
