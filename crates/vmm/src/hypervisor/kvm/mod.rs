//! The KVM implementation of the vCPU boundary (kvm-ioctls), with the in-kernel IOAPIC, PIC
//! and LAPICs, and devices' interrupts delivered through irqfds.

mod convert;
mod vcpu;

use std::sync::{Arc, Mutex};

use corral_devices::{GuestMem, Interrupt, InterruptError};
use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region, KVM_MEM_LOG_DIRTY_PAGES};
use kvm_ioctls::{IoEventAddress, Kvm, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::{CpuidEntry, DirtyBitmap, Hypervisor, HypervisorError, Result, Vcpu, Vm};

pub use vcpu::KvmVcpu;

/// Where KVM puts the three TSS pages it needs on Intel (inside the MMIO gap, below the IOAPIC).
const KVM_TSS_ADDRESS: usize = 0xfffb_d000;

/// `/dev/kvm`.
pub struct KvmHypervisor {
    kvm: Kvm,
}

impl KvmHypervisor {
    /// Open `/dev/kvm`.
    pub fn new() -> Result<Self> {
        let kvm = Kvm::new().map_err(|e| HypervisorError::os("open /dev/kvm", e))?;
        Ok(KvmHypervisor { kvm })
    }
}

impl Hypervisor for KvmHypervisor {
    fn name(&self) -> &'static str {
        "kvm"
    }

    fn supported_cpuid(&self) -> Result<Vec<CpuidEntry>> {
        let cpuid = self
            .kvm
            .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| HypervisorError::os("KVM_GET_SUPPORTED_CPUID", e))?;
        Ok(cpuid
            .as_slice()
            .iter()
            .map(convert::cpuid_from_kvm)
            .collect())
    }

    fn create_vm(&self, memory: &GuestMem) -> Result<Arc<dyn Vm>> {
        let fd = self
            .kvm
            .create_vm()
            .map_err(|e| HypervisorError::os("KVM_CREATE_VM", e))?;
        fd.set_tss_address(KVM_TSS_ADDRESS)
            .map_err(|e| HypervisorError::os("KVM_SET_TSS_ADDR", e))?;
        fd.create_irq_chip()
            .map_err(|e| HypervisorError::os("KVM_CREATE_IRQCHIP", e))?;
        let pit = kvm_pit_config {
            flags: kvm_bindings::KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        fd.create_pit2(pit)
            .map_err(|e| HypervisorError::os("KVM_CREATE_PIT2", e))?;
        let slots: Vec<Slot> = memory
            .iter()
            .map(|r| Slot {
                guest_base: r.start_addr().0,
                size: r.len(),
                host_addr: r.as_ptr() as u64,
            })
            .collect();
        let vm = KvmVm {
            fd,
            slots,
            dirty_logging: Mutex::new(false),
        };
        vm.register_slots(false)?;
        Ok(Arc::new(vm))
    }
}

/// One RAM region registered as a KVM memory slot (slot number = index).
#[derive(Debug, Clone, Copy)]
struct Slot {
    guest_base: u64,
    size: u64,
    host_addr: u64,
}

/// A KVM VM.
pub struct KvmVm {
    fd: VmFd,
    slots: Vec<Slot>,
    dirty_logging: Mutex<bool>,
}

impl KvmVm {
    fn register_slots(&self, log_dirty: bool) -> Result<()> {
        for (i, s) in self.slots.iter().enumerate() {
            let region = kvm_userspace_memory_region {
                slot: i as u32,
                flags: if log_dirty {
                    KVM_MEM_LOG_DIRTY_PAGES
                } else {
                    0
                },
                guest_phys_addr: s.guest_base,
                memory_size: s.size,
                userspace_addr: s.host_addr,
            };
            // SAFETY: the region is a live mapping of the GuestMem this VM was created with;
            // the VMM keeps that GuestMem alive for as long as the VM (it owns both).
            unsafe { self.fd.set_user_memory_region(region) }
                .map_err(|e| HypervisorError::os("KVM_SET_USER_MEMORY_REGION", e))?;
        }
        Ok(())
    }
}

impl Vm for KvmVm {
    fn create_vcpu(&self, id: u8) -> Result<Box<dyn Vcpu>> {
        let fd = self
            .fd
            .create_vcpu(u64::from(id))
            .map_err(|e| HypervisorError::os("KVM_CREATE_VCPU", e))?;
        Ok(Box::new(KvmVcpu::new(id, fd)))
    }

    fn irq_line(&self, gsi: u32) -> Result<Arc<dyn Interrupt>> {
        let evt = EventFd::new(EFD_NONBLOCK).map_err(|e| HypervisorError::os("eventfd", e))?;
        self.fd
            .register_irqfd(&evt, gsi)
            .map_err(|e| HypervisorError::os("KVM_IRQFD", e))?;
        Ok(Arc::new(IrqFd { gsi, evt }))
    }

    fn register_mmio_notify(&self, addr: u64, value: u32, evt: &EventFd) -> Result<()> {
        self.fd
            .register_ioevent(evt, &IoEventAddress::Mmio(addr), value)
            .map_err(|e| HypervisorError::os("KVM_IOEVENTFD", e))
    }

    fn set_dirty_logging(&self, enabled: bool) -> Result<()> {
        let mut on = self.dirty_logging.lock().unwrap_or_else(|p| p.into_inner());
        if *on != enabled {
            self.register_slots(enabled)?;
            *on = enabled;
        }
        Ok(())
    }

    fn take_dirty_log(&self) -> Result<Vec<DirtyBitmap>> {
        if !*self.dirty_logging.lock().unwrap_or_else(|p| p.into_inner()) {
            return Err(HypervisorError::Other {
                op: "KVM_GET_DIRTY_LOG",
                message: "dirty logging is not enabled".into(),
            });
        }
        self.slots
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let bits = self
                    .fd
                    .get_dirty_log(i as u32, s.size as usize)
                    .map_err(|e| HypervisorError::os("KVM_GET_DIRTY_LOG", e))?;
                Ok(DirtyBitmap {
                    guest_base: s.guest_base,
                    size: s.size,
                    bits,
                })
            })
            .collect()
    }
}

/// A device interrupt line: an eventfd that KVM turns into an edge on IOAPIC pin `gsi`.
struct IrqFd {
    gsi: u32,
    evt: EventFd,
}

impl Interrupt for IrqFd {
    fn trigger(&self) -> std::result::Result<(), InterruptError> {
        self.evt.write(1).map_err(|source| InterruptError::Signal {
            line: self.gsi,
            source,
        })
    }

    fn line(&self) -> u32 {
        self.gsi
    }
}
