//! System instructions: control and debug registers, descriptor tables, segment registers,
//! MSRs, CPUID, time stamps, port I/O, interrupts and their return, HLT, SWAPGS, far
//! transfers and cache/TLB maintenance.

use iced_x86::{Instruction, Mnemonic as M, OpKind, Register};

use crate::cpu::{Cpu, PendingRead};
use crate::error::{vector, Exit, Fault, Stop};
use crate::interrupts::EventKind;
use crate::state::{cr, flags, reg, Seg};

impl Cpu {
    fn require_cpl0(&self) -> Result<(), Stop> {
        if self.state.cpl() != 0 {
            return Err(Fault::gp(0).into());
        }
        Ok(())
    }

    /// I/O permission: CPL <= IOPL (the TSS bitmap is not consulted; Linux never grants it
    /// to the programs we run).
    pub(crate) fn check_io(&self, _port: u16, _size: usize) -> Result<(), Stop> {
        let iopl = ((self.state.rflags & flags::IOPL) >> 12) as u8;
        if self.state.cpl() > iopl {
            return Err(Fault::gp(0).into());
        }
        Ok(())
    }

    /// Reads a port: an exit the first time, the VMM's answer on restart.
    pub(crate) fn port_in(&mut self, port: u16, size: usize) -> Result<u32, Stop> {
        self.check_io(port, size)?;
        match self.read_reply.take() {
            Some(PendingRead::Io {
                port: p,
                size: s,
                data: Some(d),
            }) if p == port && s as usize == size => Ok(d),
            _ => {
                self.read_reply = Some(PendingRead::Io {
                    port,
                    size: size as u8,
                    data: None,
                });
                Err(Stop::Exit(Exit::IoIn {
                    port,
                    size: size as u8,
                }))
            }
        }
    }

    pub(crate) fn exec_system(&mut self, ins: &Instruction) -> Result<(), Stop> {
        match ins.mnemonic() {
            M::In => {
                let size = ins.op_register(0).size();
                let port = self.port_operand(ins, 1);
                let v = self.port_in(port, size)?;
                self.set_reg(ins.op_register(0), v as u64);
                Ok(())
            }
            M::Out => {
                let size = ins.op_register(1).size();
                let port = self.port_operand(ins, 0);
                self.check_io(port, size)?;
                let data = self.reg(ins.op_register(1)) as u32;
                self.pending_exit = Some(Exit::IoOut {
                    port,
                    size: size as u8,
                    data,
                });
                Ok(())
            }
            M::Hlt => {
                self.require_cpl0()?;
                // With IF=0 only an NMI wakes the CPU: the VMM ends the VM (a halt without
                // ACPI). With IF=1 the backend waits for an interrupt.
                self.pending_exit = Some(Exit::Hlt);
                Ok(())
            }
            M::Cli | M::Sti => {
                let iopl = ((self.state.rflags & flags::IOPL) >> 12) as u8;
                if self.state.cpl() > iopl {
                    return Err(Fault::gp(0).into());
                }
                if ins.mnemonic() == M::Cli {
                    self.state.rflags &= !flags::IF;
                } else {
                    if self.state.rflags & flags::IF == 0 {
                        self.int_shadow = true;
                    }
                    self.state.rflags |= flags::IF;
                    self.end_block = true;
                }
                Ok(())
            }
            M::Int | M::Int3 | M::Into | M::Int1 => {
                let v = match ins.mnemonic() {
                    M::Int => ins.immediate(0) as u8,
                    M::Int3 => vector::BP,
                    M::Int1 => vector::DB,
                    _ => {
                        if !self.flag(flags::OF) {
                            return Ok(());
                        }
                        vector::OF
                    }
                };
                let kind = if ins.mnemonic() == M::Int1 {
                    EventKind::External
                } else {
                    EventKind::Software
                };
                self.deliver(v, None, kind, self.next_rip)?;
                self.next_rip = self.state.rip;
                Ok(())
            }
            M::Iretq => self.iretq(8),
            M::Iretd | M::Iret => Err(Stop::NotLongMode),
            M::Syscall => self.syscall(),
            M::Sysretq | M::Sysret => self.sysret(),
            M::Swapgs => {
                self.require_cpl0()?;
                let gs = &mut self.state.seg[Seg::Gs as usize].base;
                std::mem::swap(gs, &mut self.state.msrs.kernel_gs_base);
                Ok(())
            }
            M::Retf => {
                let size = ins.stack_pointer_increment().unsigned_abs() as usize;
                let imm = if ins.op_count() > 0 {
                    ins.immediate(0)
                } else {
                    0
                };
                let size = if ins.op_count() > 0 {
                    (size - imm as usize) / 2
                } else {
                    size / 2
                };
                self.far_return(size, imm)
            }
            M::Cpuid => {
                let (a, b, c, d) = self.cpuid(
                    self.state.gpr[reg::RAX] as u32,
                    self.state.gpr[reg::RCX] as u32,
                );
                self.state.gpr[reg::RAX] = a as u64;
                self.state.gpr[reg::RBX] = b as u64;
                self.state.gpr[reg::RCX] = c as u64;
                self.state.gpr[reg::RDX] = d as u64;
                Ok(())
            }
            M::Rdtsc | M::Rdtscp => {
                let t = self.tsc();
                self.state.gpr[reg::RAX] = t & 0xffff_ffff;
                self.state.gpr[reg::RDX] = t >> 32;
                if ins.mnemonic() == M::Rdtscp {
                    self.state.gpr[reg::RCX] = self.state.msrs.tsc_aux & 0xffff_ffff;
                }
                Ok(())
            }
            M::Rdmsr => {
                self.require_cpl0()?;
                let v = self.rdmsr(self.state.gpr[reg::RCX] as u32)?;
                self.state.gpr[reg::RAX] = v & 0xffff_ffff;
                self.state.gpr[reg::RDX] = v >> 32;
                Ok(())
            }
            M::Wrmsr => {
                self.require_cpl0()?;
                let v = (self.state.gpr[reg::RDX] << 32) | (self.state.gpr[reg::RAX] & 0xffff_ffff);
                self.wrmsr(self.state.gpr[reg::RCX] as u32, v)?;
                self.end_block = true;
                Ok(())
            }
            M::Lgdt | M::Lidt => {
                self.require_cpl0()?;
                let a = self.ea(ins);
                let limit = self.read_mem(a, 2)? as u16;
                let base = self.read_mem(a + 2, 8)?;
                let t = if ins.mnemonic() == M::Lgdt {
                    &mut self.state.gdtr
                } else {
                    &mut self.state.idtr
                };
                t.base = base;
                t.limit = limit;
                Ok(())
            }
            M::Sgdt | M::Sidt => {
                let t = if ins.mnemonic() == M::Sgdt {
                    self.state.gdtr
                } else {
                    self.state.idtr
                };
                let a = self.ea(ins);
                let mut b = [0u8; 10];
                b[..2].copy_from_slice(&t.limit.to_le_bytes());
                b[2..].copy_from_slice(&t.base.to_le_bytes());
                self.write_bytes(a, &b)
            }
            M::Ltr | M::Lldt => {
                self.require_cpl0()?;
                let sel = self.read_op(ins, 0, 2)? as u16;
                self.load_system_segment(ins.mnemonic() == M::Ltr, sel)
            }
            M::Str | M::Sldt => {
                let s = if ins.mnemonic() == M::Str {
                    self.state.tr.selector
                } else {
                    self.state.ldtr.selector
                };
                let size = if ins.op_kind(0) == OpKind::Memory {
                    2
                } else {
                    self.op_size(ins, 0)
                };
                self.write_op(ins, 0, size, s as u64)
            }
            M::Invlpg => {
                self.require_cpl0()?;
                let a = self.ea(ins);
                self.tlb.flush_page(a);
                Ok(())
            }
            M::Wbinvd | M::Invd => self.require_cpl0(),
            M::Clts => {
                self.require_cpl0()?;
                self.state.cr0 &= !cr::CR0_TS;
                Ok(())
            }
            M::Smsw => {
                let size = if ins.op_kind(0) == OpKind::Memory {
                    2
                } else {
                    self.op_size(ins, 0)
                };
                self.write_op(ins, 0, size, self.state.cr0)
            }
            M::Lmsw => {
                self.require_cpl0()?;
                let v = self.read_op(ins, 0, 2)?;
                // LMSW can set PE but never clear it; it only touches the low four bits.
                self.state.cr0 = (self.state.cr0 & !0xe) | (v & 0xf) | (self.state.cr0 & 1);
                Ok(())
            }
            M::Ud0
            | M::Ud1
            | M::Ud2
            | M::Xgetbv
            | M::Xsetbv
            | M::Rdrand
            | M::Rdseed
            | M::Sysenter
            | M::Sysexit
            | M::Rdpid
            | M::Monitor
            | M::Mwait
            | M::Vmcall
            | M::Vmmcall => Err(Fault::ud().into()),
            _ => self.exec_fp(ins),
        }
    }

    fn port_operand(&self, ins: &Instruction, i: u32) -> u16 {
        if ins.op_kind(i) == OpKind::Register {
            self.state.gpr[reg::RDX] as u16
        } else {
            ins.immediate(i) as u16
        }
    }

    fn load_system_segment(&mut self, tr: bool, sel: u16) -> Result<(), Stop> {
        if sel & !3 == 0 {
            if tr {
                return Err(Fault::gp(0).into());
            }
            self.state.ldtr = Default::default();
            return Ok(());
        }
        let gdt = self.state.gdtr;
        let idx = (sel & !7) as u64;
        if idx + 15 > gdt.limit as u64 {
            return Err(Fault::gp(sel as u32 & !3).into());
        }
        let lo = self.sys_read(gdt.base + idx, 8)?;
        let hi = self.sys_read(gdt.base + idx + 8, 8)?;
        let mut s = Self::segment_from(sel, lo);
        s.base |= (hi & 0xffff_ffff) << 32;
        if s.attr & 0x80 == 0 {
            return Err(Fault::np(sel as u32 & !3).into());
        }
        if tr {
            // Mark the TSS busy (type 9 -> 11), in the cache and in the GDT.
            s.attr |= 2;
            self.sys_write_byte(gdt.base + idx + 5, (s.attr & 0xff) as u8)?;
            self.state.tr = s;
        } else {
            self.state.ldtr = s;
        }
        Ok(())
    }

    fn sys_write_byte(&mut self, va: u64, v: u8) -> Result<(), Stop> {
        self.write_acc(va, 1, v as u64, crate::mmu::acc::READ)
    }

    /// MOV to/from CRn, DRn and segment registers.
    pub(crate) fn mov_special(&mut self, ins: &Instruction) -> Result<(), Stop> {
        let r0 = if ins.op_kind(0) == OpKind::Register {
            ins.op_register(0)
        } else {
            Register::None
        };
        let r1 = if ins.op_kind(1) == OpKind::Register {
            ins.op_register(1)
        } else {
            Register::None
        };
        if r1.is_segment_register() {
            let v = self.state.seg[crate::control::seg_index(r1)].selector as u64;
            let size = if ins.op_kind(0) == OpKind::Memory {
                2
            } else {
                self.op_size(ins, 0)
            };
            return self.write_op(ins, 0, size, v);
        }
        if r0.is_segment_register() {
            let sel = self.read_op(ins, 1, 2)? as u16;
            return self.load_segment(r0, sel);
        }
        self.require_cpl0()?;
        if r1.is_cr() {
            let v = match r1 {
                Register::CR0 => self.state.cr0,
                Register::CR2 => self.state.cr2,
                Register::CR3 => self.state.cr3,
                Register::CR4 => self.state.cr4,
                Register::CR8 => self.state.cr8,
                _ => return Err(Fault::ud().into()),
            };
            self.set_reg(r0, v);
            return Ok(());
        }
        if r0.is_cr() {
            let v = self.reg(r1);
            return self.write_cr(r0, v);
        }
        if r1.is_dr() {
            let v = self.state.dr[r1.number()];
            self.set_reg(r0, v);
            return Ok(());
        }
        if r0.is_dr() {
            self.state.dr[r0.number()] = self.reg(r1);
            return Ok(());
        }
        Err(Stop::Unsupported)
    }

    fn write_cr(&mut self, r: Register, v: u64) -> Result<(), Stop> {
        match r {
            Register::CR0 => {
                if v & cr::CR0_PG == 0 && self.state.efer & cr::EFER_LMA != 0 {
                    return Err(Stop::NotLongMode);
                }
                if v >> 32 != 0 {
                    return Err(Fault::gp(0).into());
                }
                self.state.cr0 = v | cr::CR0_ET;
                self.tlb.flush();
            }
            Register::CR2 => self.state.cr2 = v,
            Register::CR3 => {
                self.state.cr3 = v & !(1 << 63);
                self.tlb.flush();
            }
            Register::CR4 => {
                const SUPPORTED: u64 = 0x1f
                    | cr::CR4_PAE
                    | (1 << 6)
                    | cr::CR4_PGE
                    | (1 << 8)
                    | cr::CR4_OSFXSR
                    | cr::CR4_OSXMMEXCPT
                    | (1 << 16);
                if v & !SUPPORTED != 0 {
                    return Err(Fault::gp(0).into());
                }
                if v & cr::CR4_PAE == 0 && self.state.efer & cr::EFER_LMA != 0 {
                    return Err(Fault::gp(0).into());
                }
                self.state.cr4 = v;
                self.tlb.flush();
            }
            Register::CR8 => self.state.cr8 = v & 0xf,
            _ => return Err(Fault::ud().into()),
        }
        self.end_block = true;
        Ok(())
    }
}
