//! Running pre-decoded instructions (see `predecode`): the semantics of the full
//! interpreter's handlers (`exec`, `control`), from operands resolved when the block was
//! decoded. The tests run every form against the full interpreter on the same states.

use iced_x86::Instruction;

use crate::alu;
use crate::alu::Shift;
use crate::cpu::Cpu;
use crate::error::Stop;
use crate::lazyflags::Kind;
use crate::operand::{mask, sext};
use crate::predecode::{Alu, Count, Dst, Gpr, Mem, Op, Pre, Src, NO_REG};
use crate::state::flags::{CF, OF, STATUS};
use crate::state::reg;
use crate::state::Seg;

impl Cpu {
    #[inline(always)]
    fn gpr_get(&self, r: Gpr) -> u64 {
        let v = self.state.gpr[r.idx as usize & 15];
        if r.hi {
            (v >> 8) & 0xff
        } else {
            v & mask(r.size as usize)
        }
    }

    #[inline(always)]
    fn gpr_set(&mut self, r: Gpr, v: u64) {
        let cur = &mut self.state.gpr[r.idx as usize & 15];
        if r.hi {
            *cur = (*cur & !0xff00) | ((v & 0xff) << 8);
            return;
        }
        match r.size {
            8 => *cur = v,
            4 => *cur = v & 0xffff_ffff,
            s => {
                let m = mask(s as usize);
                *cur = (*cur & !m) | (v & m);
            }
        }
    }

    /// The operand's address without a segment base (LEA's result).
    #[inline(always)]
    fn mem_offset(&self, m: &Mem) -> u64 {
        let mut a = m.disp;
        if m.base != NO_REG {
            a = a.wrapping_add(self.state.gpr[m.base as usize & 15]);
        }
        if m.index != NO_REG {
            a = a.wrapping_add(self.state.gpr[m.index as usize & 15].wrapping_mul(m.scale as u64));
        }
        if m.a32 {
            a &= 0xffff_ffff;
        }
        a
    }

    /// The operand's linear address.
    #[inline(always)]
    fn mem_linear(&self, m: &Mem) -> u64 {
        let a = self.mem_offset(m);
        match m.seg {
            1 => a.wrapping_add(self.state.seg[Seg::Fs as usize].base),
            2 => a.wrapping_add(self.state.seg[Seg::Gs as usize].base),
            _ => a,
        }
    }

    #[inline(always)]
    fn src_val(&mut self, s: Src, m: &Mem, size: u8) -> Result<u64, Stop> {
        match s {
            Src::Reg(r) => Ok(self.gpr_get(r)),
            Src::Imm(v) => Ok(v),
            Src::Mem => {
                let a = self.mem_linear(m);
                self.read_mem(a, size as usize)
            }
        }
    }

    #[inline(always)]
    fn dst_val(&mut self, d: Dst, m: &Mem, size: u8) -> Result<u64, Stop> {
        match d {
            Dst::Reg(r) => Ok(self.gpr_get(r)),
            Dst::Mem => {
                let a = self.mem_linear(m);
                self.read_mem(a, size as usize)
            }
        }
    }

    #[inline(always)]
    fn dst_set(&mut self, d: Dst, m: &Mem, size: u8, v: u64) -> Result<(), Stop> {
        match d {
            Dst::Reg(r) => {
                self.gpr_set(r, v);
                Ok(())
            }
            Dst::Mem => {
                let a = self.mem_linear(m);
                self.write_mem(a, size as usize, v)
            }
        }
    }

    /// Executes one instruction from its pre-decoded form (`ins` for the generic path).
    #[inline]
    pub(crate) fn exec_pre(&mut self, p: &Pre, ins: &Instruction) -> Result<(), Stop> {
        let m = &p.mem;
        match p.op {
            Op::Generic => {
                self.stats.generic += 1;
                // The full interpreter reads and writes RFLAGS directly.
                self.flags_sync();
                self.exec(ins)
            }
            Op::Nop => Ok(()),
            Op::Mov { dst, src, size } => {
                let v = self.src_val(src, m, size)?;
                self.dst_set(dst, m, size, v)
            }
            Op::Extend {
                dst,
                src,
                ssize,
                sign,
            } => {
                let v = self.src_val(src, m, ssize)?;
                self.gpr_set(dst, if sign { sext(v, ssize as usize) } else { v });
                Ok(())
            }
            Op::Lea { dst } => {
                let a = self.mem_offset(m) & mask(dst.size as usize);
                self.gpr_set(dst, a);
                Ok(())
            }
            Op::Alu { op, dst, src, size } => self.alu_pre(op, dst, src, size, m),
            Op::IncDec { dec, dst, size } => {
                let a = self.dst_val(dst, m, size)?;
                let s = size as usize;
                let m_s = mask(s);
                let (r, kind) = if dec {
                    (a.wrapping_sub(1) & m_s, Kind::Dec)
                } else {
                    (a.wrapping_add(1) & m_s, Kind::Inc)
                };
                self.dst_set(dst, m, size, r)?;
                self.flags_lazy(kind, size, a, 1, r);
                Ok(())
            }
            Op::Push { src, size } => {
                let v = self.src_val(src, m, size)?;
                self.push(v, size as usize)
            }
            Op::Pop { dst, size } => {
                let v = self.pop(size as usize)?;
                self.gpr_set(dst, v);
                Ok(())
            }
            Op::Jcc { cc, target } => {
                if self.cond_now(cc) {
                    self.next_rip = target;
                }
                Ok(())
            }
            Op::Jmp { target } => {
                self.next_rip = target;
                Ok(())
            }
            Op::Call { target } => {
                self.push(ins.next_ip(), 8)?;
                self.next_rip = target;
                Ok(())
            }
            Op::Ret => {
                self.next_rip = self.pop(8)?;
                Ok(())
            }
            Op::Cmov { cc, dst, src, size } => {
                let v = self.src_val(src, m, size)?;
                if self.cond_now(cc) {
                    self.gpr_set(dst, v);
                } else if size == 4 {
                    // A 32-bit CMOV zero-extends its destination even when false.
                    let cur = self.gpr_get(dst);
                    self.gpr_set(dst, cur);
                }
                Ok(())
            }
            Op::Setcc { cc, dst } => {
                let v = self.cond_now(cc) as u64;
                self.dst_set(dst, m, 1, v)
            }
            Op::NegNot { neg, dst, size } => {
                let a = self.dst_val(dst, m, size)?;
                let ms = mask(size as usize);
                if neg {
                    // NEG's flags are those of 0 - a.
                    let r = 0u64.wrapping_sub(a) & ms;
                    self.dst_set(dst, m, size, r)?;
                    self.flags_lazy(Kind::Sub, size, 0, a, r);
                    Ok(())
                } else {
                    self.dst_set(dst, m, size, !a & ms)
                }
            }
            Op::Shift {
                op,
                dst,
                count,
                size,
            } => self.shift_pre(op, dst, count, size, m),
        }
    }

    /// A shift or rotate, as `shift_op` in `bits` does it.
    #[inline(always)]
    fn shift_pre(
        &mut self,
        op: Shift,
        dst: Dst,
        count: Count,
        size: u8,
        m: &Mem,
    ) -> Result<(), Stop> {
        let s = size as usize;
        let count = match count {
            Count::Imm(c) => c as u32,
            Count::Cl => (self.state.gpr[reg::RCX] & 0xff) as u32,
        } & if s == 8 { 63 } else { 31 };
        let v = self.dst_val(dst, m, size)?;
        // Rotates keep SF, ZF, PF and AF, and a zero count keeps every flag: the shift
        // works on exact flags.
        self.flags_sync();
        match alu::shift(op, v, count, s, self.state.rflags) {
            Some((r, f)) => {
                self.dst_set(dst, m, size, r)?;
                let which = match op {
                    Shift::Rol | Shift::Ror | Shift::Rcl | Shift::Rcr => CF | OF,
                    _ => STATUS,
                };
                self.set_flags(f, which);
            }
            // A zero count still writes (zero-extends) a 32-bit register.
            None if s == 4 => {
                if let Dst::Reg(r) = dst {
                    self.gpr_set(r, v);
                }
            }
            None => {}
        }
        Ok(())
    }

    #[inline(always)]
    fn alu_pre(&mut self, op: Alu, dst: Dst, src: Src, size: u8, m: &Mem) -> Result<(), Stop> {
        let s = size as usize;
        let b = self.src_val(src, m, size)?;
        let a = self.dst_val(dst, m, size)?;
        let ms = mask(s);
        // ADC/SBB compute their flags at once (they need the carry in); the others leave
        // a record for `lazyflags`.
        let (r, kind) = match op {
            Alu::Adc | Alu::Sbb => {
                let cf = self.carry_now();
                let (r, f) = if op == Alu::Adc {
                    alu::add(a, b, cf, s)
                } else {
                    alu::sub(a, b, cf, s)
                };
                self.dst_set(dst, m, size, r)?;
                self.lazy.kind = Kind::Clean;
                self.set_flags(f, STATUS);
                return Ok(());
            }
            Alu::Add => (a.wrapping_add(b) & ms, Kind::Add),
            Alu::Sub | Alu::Cmp => (a.wrapping_sub(b) & ms, Kind::Sub),
            Alu::And | Alu::Test => (a & b, Kind::Logic),
            Alu::Or => ((a | b) & ms, Kind::Logic),
            Alu::Xor => ((a ^ b) & ms, Kind::Logic),
        };
        if !matches!(op, Alu::Cmp | Alu::Test) {
            self.dst_set(dst, m, size, r)?;
        }
        self.flags_lazy(kind, size, a, b, r);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use iced_x86::{Decoder, DecoderOptions};
    use vm_memory::{Bytes, GuestAddress};

    use crate::predecode::{predecode, Op};
    use crate::state::{flags, reg, Seg};
    use crate::testutil::{cpu_with, CODE};

    /// Where register values point when they are addresses.
    const DATA: u64 = 0x20000;
    const DATA_LEN: usize = 0x3000;
    /// Memory restored before and compared after each run: small register values are
    /// addresses in the first pages too.
    const IMAGE_LEN: usize = DATA as usize + DATA_LEN;

    /// One form of every pre-decoded kind (register widths, AH-BH, immediates of each size,
    /// RIP-relative, FS, 32-bit addresses, scaled indexes).
    const FORMS: &[&[u8]] = &[
        &[0x48, 0x01, 0xd8],                         // add rax, rbx
        &[0x01, 0x1b],                               // add [rbx], ebx
        &[0x48, 0x03, 0x43, 0x08],                   // add rax, [rbx+8]
        &[0x80, 0xc1, 0x7f],                         // add cl, 0x7f
        &[0x48, 0x83, 0xe8, 0x01],                   // sub rax, 1
        &[0x48, 0x81, 0xf1, 0x44, 0x33, 0x22, 0x91], // xor rcx, -0x6eddccbc
        &[0x66, 0x25, 0xff, 0x00],                   // and ax, 0xff
        &[0x30, 0xe7],                               // xor bh, ah
        &[0x40, 0x30, 0xe7],                         // xor dil, spl
        &[0x48, 0x39, 0x4c, 0x8b, 0x10],             // cmp [rbx+rcx*4+0x10], rcx
        &[0x84, 0xc0],                               // test al, al
        &[0xf6, 0x43, 0x05, 0x80],                   // test byte [rbx+5], 0x80
        &[0x48, 0x11, 0xd8],                         // adc rax, rbx
        &[0x48, 0x19, 0x1b],                         // sbb [rbx], rbx
        &[0x66, 0x09, 0x4b, 0x02],                   // or [rbx+2], cx
        &[0x48, 0x8b, 0x03],                         // mov rax, [rbx]
        &[0x89, 0x03],                               // mov [rbx], eax
        &[0x88, 0x63, 0x01],                         // mov [rbx+1], ah
        &[0x48, 0xc7, 0xc0, 0xff, 0xff, 0xff, 0xff], // mov rax, -1
        &[0x48, 0xb8, 1, 2, 3, 4, 5, 6, 7, 0x88],    // movabs rax, imm64
        &[0xb0, 0x12],                               // mov al, 0x12
        &[0x66, 0xb8, 0x34, 0x12],                   // mov ax, 0x1234
        &[0x8b, 0x05, 0x00, 0xf0, 0x01, 0x00],       // mov eax, [rip+0x1f000]
        &[0x64, 0x48, 0x8b, 0x03],                   // mov rax, fs:[rbx]
        &[0x65, 0x48, 0x89, 0x43, 0x10],             // mov gs:[rbx+0x10], rax
        &[0x67, 0x8b, 0x03],                         // mov eax, [ebx]
        &[0x0f, 0xb6, 0xc3],                         // movzx eax, bl
        &[0x48, 0x0f, 0xbf, 0x03],                   // movsx rax, word [rbx]
        &[0x48, 0x63, 0xc3],                         // movsxd rax, ebx
        &[0x0f, 0xbe, 0xc7],                         // movsx eax, bh
        &[0x48, 0x8d, 0x44, 0x8b, 0x08],             // lea rax, [rbx+rcx*4+8]
        &[0x8d, 0x04, 0x0b],                         // lea eax, [rbx+rcx]
        &[0x67, 0x8d, 0x04, 0x0b],                   // lea eax, [ebx+ecx]
        &[0x64, 0x48, 0x8d, 0x03],                   // lea rax, fs:[rbx]
        &[0x66, 0x8d, 0x43, 0xff],                   // lea ax, [rbx-1]
        &[0x48, 0xff, 0xc0],                         // inc rax
        &[0xff, 0x0b],                               // dec dword [rbx]
        &[0xfe, 0xc4],                               // inc ah
        &[0x53],                                     // push rbx
        &[0x66, 0x53],                               // push bx
        &[0x54],                                     // push rsp
        &[0x6a, 0xf0],                               // push -16
        &[0x68, 0x78, 0x56, 0x34, 0x92],             // push imm32
        &[0xff, 0x33],                               // push qword [rbx]
        &[0x5b],                                     // pop rbx
        &[0x66, 0x5b],                               // pop bx
        &[0x5c],                                     // pop rsp
        &[0x0f, 0x44, 0xc3],                         // cmove eax, ebx
        &[0x48, 0x0f, 0x4f, 0x03],                   // cmovg rax, [rbx]
        &[0x66, 0x0f, 0x42, 0xc3],                   // cmovb ax, bx
        &[0x0f, 0x94, 0xc0],                         // sete al
        &[0x0f, 0x9c, 0x03],                         // setl byte [rbx]
        &[0x0f, 0x9f, 0xc4],                         // setg ah
        &[0x74, 0x05],                               // je +5
        &[0x0f, 0x8e, 0x00, 0x01, 0x00, 0x00],       // jle +0x100
        &[0xe9, 0x00, 0x10, 0x00, 0x00],             // jmp +0x1000
        &[0xe8, 0x00, 0x10, 0x00, 0x00],             // call +0x1000
        &[0xc3],                                     // ret
        &[0x90],                                     // nop
        &[0xf3, 0x90],                               // pause
        &[0x0f, 0x1f, 0x44, 0x00, 0x00],             // nop dword [rax+rax]
        &[0x48, 0xc1, 0xe0, 0x05],                   // shl rax, 5
        &[0xd3, 0xe0],                               // shl eax, cl
        &[0x48, 0xd1, 0xe9],                         // shr rcx, 1
        &[0x48, 0xc1, 0x3b, 0x03],                   // sar qword [rbx], 3
        &[0xc1, 0xc3, 0x07],                         // rol ebx, 7
        &[0x66, 0xd3, 0xc8],                         // ror ax, cl
        &[0xd0, 0x6b, 0x01],                         // shr byte [rbx+1], 1
        &[0xc0, 0xe4, 0x02],                         // shl ah, 2
        &[0xd1, 0xd0],                               // rcl eax, 1
        &[0x48, 0xd3, 0xda],                         // rcr rdx, cl
        &[0xc1, 0xe0, 0x00],                         // shl eax, 0
        &[0x48, 0xd3, 0x3b],                         // sar qword [rbx], cl
        &[0xf7, 0xd8],                               // neg eax
        &[0x48, 0xf7, 0xd8],                         // neg rax
        &[0xf6, 0x1b],                               // neg byte [rbx]
        &[0xf6, 0xdc],                               // neg ah
        &[0xf7, 0xd1],                               // not ecx
        &[0x48, 0xf7, 0x13],                         // not qword [rbx]
    ];

    /// xorshift64*.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    #[test]
    fn every_form_matches_the_full_interpreter() {
        let (mut cpu, mem) = cpu_with(&[0xf4]);
        let mut base = vec![0u8; IMAGE_LEN];
        mem.read_slice(&mut base, GuestAddress(0)).unwrap();
        let mut rng = Rng(0x1234_5678_9abc_def1);
        for form in FORMS {
            let ins = Decoder::with_ip(64, form, CODE, DecoderOptions::NONE).decode();
            let pre = predecode(&ins);
            assert_ne!(pre.op, Op::Generic, "{ins} should have a fast form");
            for _ in 0..300 {
                let mut s = cpu.state.clone();
                for g in s.gpr.iter_mut() {
                    let r = rng.next();
                    *g = match r % 4 {
                        0 => r >> 8,
                        1 => r >> 60,
                        _ => DATA + (r >> 16) % 0x1000,
                    };
                }
                s.gpr[reg::RSP] = DATA + 0x2000 + (rng.next() % 64) * 8;
                s.rflags = flags::FIXED | (rng.next() & flags::STATUS);
                s.seg[Seg::Fs as usize].base = rng.next() % 0x800;
                s.seg[Seg::Gs as usize].base = rng.next() % 0x800;
                let mut image = base.clone();
                image[DATA as usize..]
                    .iter_mut()
                    .for_each(|b| *b = rng.next() as u8);
                let mut outcome = |fast: bool| {
                    cpu.state = s.clone();
                    cpu.flush_tlb();
                    mem.write_slice(&image, GuestAddress(0)).unwrap();
                    cpu.next_rip = ins.next_ip();
                    cpu.pending_exit = None;
                    cpu.read_reply = None;
                    cpu.lazy = Default::default();
                    let r = if fast {
                        let r = cpu.exec_pre(&pre, &ins);
                        cpu.flags_sync();
                        r
                    } else {
                        cpu.exec(&ins)
                    };
                    let mut after = vec![0u8; IMAGE_LEN];
                    mem.read_slice(&mut after, GuestAddress(0)).unwrap();
                    (
                        format!("{r:?}"),
                        cpu.state.clone(),
                        cpu.next_rip,
                        cpu.pending_exit,
                        after,
                    )
                };
                let fast = outcome(true);
                let full = outcome(false);
                assert_eq!(fast.0, full.0, "{ins}: outcome");
                assert_eq!(fast.1, full.1, "{ins}: state");
                assert_eq!((fast.2, fast.3), (full.2, full.3), "{ins}: next RIP, exit");
                assert!(fast.4 == full.4, "{ins}: memory");
            }
        }
    }

    #[test]
    fn odd_forms_stay_generic() {
        for form in [
            &[0xf0, 0x01, 0x03][..], // lock add [rbx], eax
            &[0x8e, 0xd8],           // mov ds, eax
            &[0x0f, 0x20, 0xc0],     // mov rax, cr0
            &[0xc2, 0x08, 0x00],     // ret 8
            &[0xff, 0xe0],           // jmp rax
            &[0x0f, 0xae, 0xf0],     // mfence
        ] {
            let ins = Decoder::with_ip(64, form, CODE, DecoderOptions::NONE).decode();
            assert_eq!(predecode(&ins).op, Op::Generic, "{ins}");
        }
    }
}
