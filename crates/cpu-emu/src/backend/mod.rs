//! The software CPU as a backend of the vmm's boundary: [`EmuHypervisor`] → [`EmuVm`]
//! (guest memory, code-page generations, the IOAPIC and one LAPIC per vCPU) → `EmuVcpu`s.

mod convert;
mod vcpu;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use corral_devices::{GuestMem, Interrupt, InterruptError};
use corral_vmm::hypervisor::{
    CpuidEntry, DirtyBitmap, Hypervisor, HypervisorError, Result, Vcpu, Vm,
};
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

use crate::cpu::CpuIdentity;
use crate::ioapic::IoApic;
use crate::lapic::Lapic;
use crate::phys::CodePages;
use crate::Cpu;

pub use vcpu::EmuVcpu;

/// Largest number of vCPUs (APIC IDs 0..N).
pub const MAX_VCPUS: usize = 64;

/// The software CPU backend.
#[derive(Debug, Default)]
pub struct EmuHypervisor;

impl EmuHypervisor {
    /// The backend.
    pub fn new() -> Self {
        EmuHypervisor
    }
}

impl Hypervisor for EmuHypervisor {
    fn name(&self) -> &'static str {
        "emu"
    }

    fn supported_cpuid(&self) -> Result<Vec<CpuidEntry>> {
        let probe = probe_cpu();
        let mut v = Vec::new();
        for leaf in (0..=0x16u32).chain(0x8000_0000..=0x8000_0008) {
            let subs: &[u32] = match leaf {
                4 | 0xb => &[0, 1, 2],
                7 => &[0, 1],
                _ => &[0],
            };
            for &sub in subs {
                let (eax, ebx, ecx, edx) = probe.cpuid(leaf, sub);
                v.push(CpuidEntry {
                    function: leaf,
                    index: sub,
                    index_significant: matches!(leaf, 4 | 7 | 0xb),
                    eax,
                    ebx,
                    ecx,
                    edx,
                });
            }
        }
        Ok(v)
    }

    fn create_vm(&self, memory: &GuestMem) -> Result<Arc<dyn Vm>> {
        let limit = memory
            .iter()
            .map(|r| r.start_addr().0 + r.len())
            .max()
            .unwrap_or(0);
        let lapics: Vec<Arc<Lapic>> = (0..MAX_VCPUS)
            .map(|i| Arc::new(Lapic::new(i as u8)))
            .collect();
        Ok(Arc::new(EmuVm {
            mem: Arc::new(memory.clone()),
            code: CodePages::new(limit),
            ioapic: Arc::new(IoApic::new(lapics.clone())),
            lapics,
            created: Arc::new(AtomicUsize::new(0)),
            epoch: Instant::now(),
        }))
    }
}

fn probe_cpu() -> Cpu {
    let mem = Arc::new(
        GuestMem::from_ranges(&[(vm_memory::GuestAddress(0), 4096)])
            .expect("a one-page probe memory"),
    );
    Cpu::new(
        mem,
        CodePages::new(4096),
        CpuIdentity { index: 0, count: 1 },
    )
}

/// A VM on the software CPU.
#[derive(Debug)]
pub struct EmuVm {
    mem: Arc<GuestMem>,
    code: Arc<CodePages>,
    ioapic: Arc<IoApic>,
    lapics: Vec<Arc<Lapic>>,
    /// Number of vCPUs created (highest id + 1).
    created: Arc<AtomicUsize>,
    /// Where every vCPU's TSC counts from.
    epoch: Instant,
}

/// A device's interrupt line into the IOAPIC.
#[derive(Debug)]
struct IrqLine {
    gsi: u32,
    ioapic: Arc<IoApic>,
}

impl Interrupt for IrqLine {
    fn trigger(&self) -> std::result::Result<(), InterruptError> {
        self.ioapic.raise(self.gsi);
        Ok(())
    }
    fn line(&self) -> u32 {
        self.gsi
    }
}

impl Vm for EmuVm {
    fn create_vcpu(&self, id: u8) -> Result<Box<dyn Vcpu>> {
        if id as usize >= MAX_VCPUS {
            return Err(HypervisorError::Other {
                op: "create_vcpu",
                message: format!("at most {MAX_VCPUS} vCPUs"),
            });
        }
        let n = self
            .created
            .fetch_max(id as usize + 1, Ordering::AcqRel)
            .max(id as usize + 1);
        let mut cpu = Cpu::new(
            self.mem.clone(),
            self.code.clone(),
            CpuIdentity {
                index: id as u32,
                count: n as u32,
            },
        );
        cpu.set_epoch(self.epoch);
        Ok(Box::new(EmuVcpu::new(
            id,
            cpu,
            self.lapics.clone(),
            self.created.clone(),
            self.ioapic.clone(),
        )))
    }

    fn irq_line(&self, gsi: u32) -> Result<Arc<dyn Interrupt>> {
        if gsi as usize >= crate::ioapic::PINS {
            return Err(HypervisorError::Other {
                op: "irq_line",
                message: format!("GSI {gsi} is beyond the IOAPIC's pins"),
            });
        }
        Ok(Arc::new(IrqLine {
            gsi,
            ioapic: self.ioapic.clone(),
        }))
    }

    fn set_dirty_logging(&self, _enabled: bool) -> Result<()> {
        Err(HypervisorError::Unsupported {
            op: "dirty logging",
            backend: "emu",
        })
    }

    fn take_dirty_log(&self) -> Result<Vec<DirtyBitmap>> {
        Err(HypervisorError::Unsupported {
            op: "dirty logging",
            backend: "emu",
        })
    }
}
