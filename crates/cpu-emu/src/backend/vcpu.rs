//! One software vCPU behind the boundary's `Vcpu` trait: runs the interpreter in slices,
//! serves its LAPIC and the IOAPIC pages itself (routing IPIs, INIT and STARTUP to the other
//! vCPUs' LAPICs), waits in HLT for interrupts, and hands port I/O and other MMIO to the VMM
//! as exits. Application processors wait for INIT, then a STARTUP IPI, before they run.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use corral_vmm::hypervisor::{
    CpuidEntry, ExitReport, FpuState, LapicState, Msr, Regs, Result, SpecialRegs, Vcpu, VcpuExit,
    VcpuKick,
};

use super::convert;
use crate::cpu::InterruptSource;
use crate::ioapic::IoApic;
use crate::lapic::{mode, Ipi, IpiDest, Lapic};
use crate::{Cpu, Exit};

const LAPIC_BASE: u64 = 0xfee0_0000;
const IOAPIC_BASE: u64 = 0xfec0_0000;
/// Instructions per slice between timer and kick checks.
const SLICE: u64 = 20_000;

struct LapicSource(Arc<Lapic>);

impl InterruptSource for LapicSource {
    fn take_interrupt(&mut self) -> Option<u8> {
        self.0.take()
    }
    fn has_interrupt(&self) -> bool {
        self.0.pending()
    }
    fn may_have_interrupt(&self) -> bool {
        self.0.maybe_deliverable()
    }
}

struct Kick {
    flag: Arc<AtomicBool>,
    lapic: Arc<Lapic>,
}

impl VcpuKick for Kick {
    fn kick(&self) {
        self.flag.store(true, Ordering::Release);
        self.lapic.notify();
    }
}

/// Where a vCPU is in the INIT/SIPI protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Power {
    /// Executing.
    Running,
    /// An application processor before its first INIT.
    WaitInit,
    /// INIT received: waiting for a STARTUP IPI.
    WaitSipi,
}

/// What the last exit left for the next `run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    None,
    Read(usize),
}

/// A software vCPU.
pub struct EmuVcpu {
    id: u8,
    cpu: Cpu,
    lapic: Arc<Lapic>,
    lapics: Vec<Arc<Lapic>>,
    /// How many vCPUs exist (IPIs go to their LAPICs only).
    count: Arc<AtomicUsize>,
    ioapic: Arc<IoApic>,
    kick: Arc<AtomicBool>,
    buf: [u8; 8],
    pending: Pending,
    deadline_seen: u64,
    power: Power,
}

impl EmuVcpu {
    pub(super) fn new(
        id: u8,
        mut cpu: Cpu,
        lapics: Vec<Arc<Lapic>>,
        count: Arc<AtomicUsize>,
        ioapic: Arc<IoApic>,
    ) -> Self {
        let lapic = lapics[id as usize].clone();
        cpu.set_interrupt_source(Box::new(LapicSource(lapic.clone())));
        if id != 0 {
            // Only the bootstrap processor has IA32_APIC_BASE.BSP set.
            cpu.state.msrs.apic_base &= !(1 << 8);
        }
        let kick = Arc::new(AtomicBool::new(false));
        EmuVcpu {
            id,
            cpu,
            lapic,
            lapics,
            count,
            ioapic,
            kick,
            buf: [0; 8],
            pending: Pending::None,
            deadline_seen: 0,
            power: if id == 0 {
                Power::Running
            } else {
                Power::WaitInit
            },
        }
    }

    /// Acts on INIT and STARTUP IPIs: INIT resets the CPU to wait for a STARTUP, which
    /// starts it in real mode at the vector's page.
    fn handle_startup(&mut self) {
        let s = self.lapic.take_startup();
        if s.init {
            tracing::debug!(vcpu = self.id, "INIT");
            self.cpu.init_reset();
            self.pending = Pending::None;
            self.deadline_seen = 0;
            self.power = Power::WaitSipi;
        }
        if let Some(v) = s.sipi {
            if self.power == Power::WaitSipi {
                tracing::debug!(
                    vcpu = self.id,
                    entry = format_args!("{:#x}", (v as u64) << 12),
                    "STARTUP"
                );
                self.cpu.start_up(v);
                self.power = Power::Running;
            }
        }
    }

    /// Sends an IPI to the LAPICs it names.
    fn send_ipi(&self, ipi: Ipi) {
        let count = self.count.load(Ordering::Acquire).min(self.lapics.len());
        let me = self.id as usize;
        let targets = self.lapics[..count]
            .iter()
            .enumerate()
            .filter(|(i, l)| match ipi.dest {
                IpiDest::Id(d) => l.accepts(d, ipi.logical),
                IpiDest::SelfOnly => *i == me,
                IpiDest::All => true,
                IpiDest::Others => *i != me,
            })
            .map(|(_, l)| l);
        match ipi.mode {
            mode::FIXED => targets.for_each(|l| l.raise(ipi.vector, false)),
            mode::LOWEST => {
                if let Some(l) = targets.into_iter().next() {
                    l.raise(ipi.vector, false);
                }
            }
            // INIT level de-assert (level-triggered, not asserted) does nothing on CPUs with
            // an integrated APIC.
            mode::INIT if ipi.level && !ipi.assert => {}
            mode::INIT => targets.for_each(|l| l.deliver_init()),
            mode::STARTUP => targets.for_each(|l| l.deliver_sipi(ipi.vector)),
            mode::NMI => tracing::warn!(vcpu = self.id, "NMI IPIs are not delivered yet"),
            m => tracing::warn!(
                vcpu = self.id,
                mode = m,
                "IPI delivery mode not supported by the software CPU yet"
            ),
        }
    }

    fn sync_timer(&mut self) {
        let d = self.cpu.state.msrs.tsc_deadline;
        if d != self.deadline_seen {
            self.deadline_seen = d;
            self.lapic.set_tsc_deadline(d);
        }
        let now = self.cpu.tsc();
        let armed = self.lapic.deadline();
        self.lapic.poll_timer(now);
        if armed != 0 && self.lapic.deadline() == 0 && d != 0 && now >= d {
            // A fired TSC deadline reads back as zero.
            self.cpu.state.msrs.tsc_deadline = 0;
            self.deadline_seen = 0;
        }
    }

    fn lapic_write(&mut self, off: usize, v: u32) {
        let now = self.cpu.tsc();
        let (ipi, eoi) = self.lapic.write(off, v, now);
        if let Some(vec) = eoi {
            self.ioapic.eoi(vec);
        }
        if let Some(ipi) = ipi {
            self.send_ipi(ipi);
        }
    }

    fn internal(&mut self, e: crate::EmuError) -> VcpuExit<'_> {
        VcpuExit::InternalError(ExitReport {
            reason: "software CPU stopped".into(),
            detail: e.to_string(),
        })
    }
}

impl Vcpu for EmuVcpu {
    fn id(&self) -> u8 {
        self.id
    }
    fn regs(&self) -> Result<Regs> {
        Ok(convert::regs_out(&self.cpu.state))
    }
    fn set_regs(&mut self, regs: &Regs) -> Result<()> {
        convert::regs_in(&mut self.cpu.state, regs);
        Ok(())
    }
    fn sregs(&self) -> Result<SpecialRegs> {
        Ok(convert::sregs_out(&self.cpu.state))
    }
    fn set_sregs(&mut self, sregs: &SpecialRegs) -> Result<()> {
        convert::sregs_in(&mut self.cpu.state, sregs);
        self.cpu.flush_tlb();
        Ok(())
    }
    fn fpu(&self) -> Result<FpuState> {
        Ok(convert::fpu_out(&self.cpu.state.fpu))
    }
    fn set_fpu(&mut self, fpu: &FpuState) -> Result<()> {
        convert::fpu_in(&mut self.cpu.state.fpu, fpu);
        Ok(())
    }
    fn msrs(&self, indices: &[u32]) -> Result<Vec<Msr>> {
        let mut out = Vec::new();
        for &index in indices {
            if let Some(data) = self.cpu.peek_msr(index) {
                out.push(Msr { index, data });
            }
        }
        Ok(out)
    }
    fn set_msrs(&mut self, msrs: &[Msr]) -> Result<()> {
        for m in msrs {
            self.cpu.wrmsr(m.index, m.data).map_err(|_| {
                corral_vmm::hypervisor::HypervisorError::Other {
                    op: "set_msrs",
                    message: format!("MSR {:#x} refused", m.index),
                }
            })?;
        }
        Ok(())
    }
    fn lapic(&self) -> Result<LapicState> {
        Ok(LapicState {
            regs: self.lapic.image()[..corral_vmm::hypervisor::types::LAPIC_REGS_SIZE].to_vec(),
        })
    }
    fn set_lapic(&mut self, lapic: &LapicState) -> Result<()> {
        self.lapic.load_image(&lapic.regs);
        Ok(())
    }
    fn set_cpuid(&mut self, entries: &[CpuidEntry]) -> Result<()> {
        // The software CPU answers CPUID from its own curated table (the VMM's entries were
        // derived from it); only the topology is taken: the vCPU count from leaf 0xB.
        let count = entries
            .iter()
            .find(|e| e.function == 0xb && e.index == 1)
            .map(|e| e.ebx & 0xffff)
            .or_else(|| {
                entries
                    .iter()
                    .find(|e| e.function == 1)
                    .map(|e| (e.ebx >> 16) & 0xff)
            })
            .filter(|&n| n > 0);
        if let Some(count) = count {
            self.cpu.set_identity(crate::CpuIdentity {
                index: self.id as u32,
                count,
            });
        }
        Ok(())
    }

    fn run(&mut self) -> Result<VcpuExit<'_>> {
        if let Pending::Read(n) = std::mem::replace(&mut self.pending, Pending::None) {
            let mut b = [0u8; 8];
            b[..n].copy_from_slice(&self.buf[..n]);
            if let Err(e) = self.cpu.complete_read(u64::from_le_bytes(b)) {
                return Ok(self.internal(e));
            }
        }
        loop {
            if self.kick.swap(false, Ordering::AcqRel) {
                return Ok(VcpuExit::Interrupted);
            }
            if self.lapic.has_startup() {
                self.handle_startup();
            }
            if self.power != Power::Running {
                self.lapic.wait_startup(Duration::from_millis(50));
                continue;
            }
            self.sync_timer();
            let exit = match self.cpu.run(SLICE) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!("vCPU {}: {e}", self.id);
                    return Ok(self.internal(e));
                }
            };
            match exit {
                Exit::Interrupted => continue,
                Exit::Hlt => {
                    if self.cpu.state.rflags & crate::state::flags::IF == 0 {
                        return Ok(VcpuExit::Hlt);
                    }
                    loop {
                        self.sync_timer();
                        if self.lapic.pending()
                            || self.kick.load(Ordering::Acquire)
                            || self.lapic.has_startup()
                        {
                            break;
                        }
                        self.lapic.wait(self.cpu.tsc(), Duration::from_millis(50));
                    }
                }
                Exit::Shutdown => return Ok(VcpuExit::Shutdown),
                Exit::MmioRead { gpa, size }
                    if (LAPIC_BASE..LAPIC_BASE + 0x1000).contains(&gpa) =>
                {
                    let v = self.lapic.read((gpa - LAPIC_BASE) as usize, self.cpu.tsc());
                    let _ = self
                        .cpu
                        .complete_read(v as u64 & crate::operand::mask(size as usize));
                }
                Exit::MmioWrite { gpa, data, .. }
                    if (LAPIC_BASE..LAPIC_BASE + 0x1000).contains(&gpa) =>
                {
                    self.lapic_write((gpa - LAPIC_BASE) as usize, data as u32);
                }
                Exit::MmioRead { gpa, .. }
                    if (IOAPIC_BASE..IOAPIC_BASE + 0x1000).contains(&gpa) =>
                {
                    let v = self.ioapic.read(gpa - IOAPIC_BASE);
                    let _ = self.cpu.complete_read(v as u64);
                }
                Exit::MmioWrite { gpa, data, .. }
                    if (IOAPIC_BASE..IOAPIC_BASE + 0x1000).contains(&gpa) =>
                {
                    self.ioapic.write(gpa - IOAPIC_BASE, data as u32);
                }
                Exit::IoIn { port, size } => {
                    let n = size as usize;
                    self.pending = Pending::Read(n);
                    self.buf = [0; 8];
                    return Ok(VcpuExit::IoIn {
                        port,
                        data: &mut self.buf[..n],
                    });
                }
                Exit::IoOut { port, size, data } => {
                    let n = size as usize;
                    self.buf[..4].copy_from_slice(&data.to_le_bytes());
                    return Ok(VcpuExit::IoOut {
                        port,
                        data: &self.buf[..n],
                    });
                }
                Exit::MmioRead { gpa, size } => {
                    let n = size as usize;
                    self.pending = Pending::Read(n);
                    self.buf = [0; 8];
                    return Ok(VcpuExit::MmioRead {
                        addr: gpa,
                        data: &mut self.buf[..n],
                    });
                }
                Exit::MmioWrite { gpa, size, data } => {
                    let n = size as usize;
                    self.buf = data.to_le_bytes();
                    return Ok(VcpuExit::MmioWrite {
                        addr: gpa,
                        data: &self.buf[..n],
                    });
                }
            }
        }
    }

    fn inject_interrupt(&mut self, vector: u8) -> Result<()> {
        self.lapic.raise(vector, false);
        Ok(())
    }
    fn request_interrupt_window(&mut self, _enabled: bool) -> Result<()> {
        Ok(())
    }
    fn kicker(&self) -> Arc<dyn VcpuKick> {
        Arc::new(Kick {
            flag: self.kick.clone(),
            lapic: self.lapic.clone(),
        })
    }
}
