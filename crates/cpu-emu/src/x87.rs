//! x87 basics (FNINIT, FNSTCW/FLDCW, FNSTSW, FNCLEX, FWAIT, EMMS) and FXSAVE/FXRSTOR of
//! the whole x87/SSE state in the 512-byte legacy layout. x87 arithmetic is not
//! implemented: it stops the VM with a report.

use iced_x86::{Instruction, Mnemonic as M, OpKind};

use crate::cpu::Cpu;
use crate::error::{Fault, Stop};
use crate::state::{cr, FpuState};

impl Cpu {
    fn fpu_available(&self) -> Result<(), Stop> {
        if self.state.cr0 & cr::CR0_EM != 0 {
            return Err(Fault::nm().into());
        }
        if self.state.cr0 & cr::CR0_TS != 0 {
            return Err(Fault::nm().into());
        }
        Ok(())
    }

    pub(crate) fn exec_fp(&mut self, ins: &Instruction) -> Result<(), Stop> {
        if self.exec_sse(ins)? {
            return Ok(());
        }
        match ins.mnemonic() {
            M::Fninit => {
                self.fpu_available()?;
                let f = &mut self.state.fpu;
                f.fcw = 0x37f;
                f.fsw = 0;
                f.ftw = 0;
                f.fop = 0;
            }
            M::Fnstcw => {
                self.fpu_available()?;
                let a = self.ea(ins);
                self.write_mem(a, 2, self.state.fpu.fcw as u64)?;
            }
            M::Fldcw => {
                self.fpu_available()?;
                let a = self.ea(ins);
                self.state.fpu.fcw = self.read_mem(a, 2)? as u16;
            }
            M::Fnstsw => {
                self.fpu_available()?;
                let v = self.state.fpu.fsw as u64;
                if ins.op_kind(0) == OpKind::Register {
                    self.set_reg(ins.op_register(0), v);
                } else {
                    let a = self.ea(ins);
                    self.write_mem(a, 2, v)?;
                }
            }
            M::Fnclex => {
                self.fpu_available()?;
                self.state.fpu.fsw &= 0x7f00;
            }
            M::Wait | M::Emms => {
                if ins.mnemonic() == M::Emms {
                    self.fpu_available()?;
                    self.state.fpu.ftw = 0;
                }
            }
            M::Fxsave | M::Fxsave64 => {
                self.fpu_available()?;
                let a = self.ea(ins);
                if a & 15 != 0 {
                    return Err(Fault::gp(0).into());
                }
                let img = fxsave_image(&self.state.fpu);
                self.write_bytes(a, &img)?;
            }
            M::Fxrstor | M::Fxrstor64 => {
                self.fpu_available()?;
                let a = self.ea(ins);
                if a & 15 != 0 {
                    return Err(Fault::gp(0).into());
                }
                let mut img = [0u8; 512];
                self.read_bytes(a, &mut img)?;
                let mxcsr = u32::from_le_bytes([img[24], img[25], img[26], img[27]]);
                if mxcsr & !0xffff != 0 {
                    return Err(Fault::gp(0).into());
                }
                fxrstor_image(&mut self.state.fpu, &img);
            }
            _ => return Err(Stop::Unsupported),
        }
        Ok(())
    }
}

/// The 512-byte FXSAVE image (64-bit layout; FPU IP/DP are stored as zero).
pub fn fxsave_image(f: &FpuState) -> [u8; 512] {
    let mut b = [0u8; 512];
    b[0..2].copy_from_slice(&f.fcw.to_le_bytes());
    b[2..4].copy_from_slice(&f.fsw.to_le_bytes());
    b[4] = f.ftw;
    b[6..8].copy_from_slice(&f.fop.to_le_bytes());
    b[24..28].copy_from_slice(&f.mxcsr.to_le_bytes());
    b[28..32].copy_from_slice(&0xffffu32.to_le_bytes()); // MXCSR_MASK
    for (i, st) in f.st.iter().enumerate() {
        b[32 + i * 16..32 + i * 16 + 10].copy_from_slice(&st[..10]);
    }
    for (i, x) in f.xmm.iter().enumerate() {
        b[160 + i * 16..176 + i * 16].copy_from_slice(&x.to_le_bytes());
    }
    b
}

/// Loads an FXSAVE image.
pub fn fxrstor_image(f: &mut FpuState, b: &[u8; 512]) {
    f.fcw = u16::from_le_bytes([b[0], b[1]]);
    f.fsw = u16::from_le_bytes([b[2], b[3]]);
    f.ftw = b[4];
    f.fop = u16::from_le_bytes([b[6], b[7]]);
    f.mxcsr = u32::from_le_bytes([b[24], b[25], b[26], b[27]]);
    for (i, st) in f.st.iter_mut().enumerate() {
        st[..10].copy_from_slice(&b[32 + i * 16..32 + i * 16 + 10]);
    }
    for (i, x) in f.xmm.iter_mut().enumerate() {
        let mut w = [0u8; 16];
        w.copy_from_slice(&b[160 + i * 16..176 + i * 16]);
        *x = u128::from_le_bytes(w);
    }
}
