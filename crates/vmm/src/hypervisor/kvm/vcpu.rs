//! A KVM vCPU, and how another thread kicks it out of `KVM_RUN`.
//!
//! Kicking: [`KvmKick::kick`] sets a pending flag and sends [`kick_signal`] to the vCPU's
//! thread. The signal handler sets `kvm_run.immediate_exit` through a thread-local pointer,
//! so a kick that lands between the pending check and the ioctl still makes `KVM_RUN` return
//! at once with `EINTR` (the scheme Firecracker and Cloud Hypervisor use).

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Once};

use kvm_bindings::{kvm_msr_entry, Msrs};
use kvm_ioctls::{VcpuExit as KvmExit, VcpuFd};

use super::convert;
use crate::hypervisor::{
    CpuidEntry, ExitReport, FpuState, HypervisorError, LapicState, Msr, Regs, Result, SpecialRegs,
    Vcpu, VcpuExit, VcpuKick,
};

/// `_IOW(KVMIO, 0x86, struct kvm_interrupt)`; kvm-ioctls has no wrapper for it.
const KVM_INTERRUPT: libc::c_ulong = 0x4004_ae86;

thread_local! {
    /// This thread's `kvm_run.immediate_exit`, while it runs a vCPU.
    static IMMEDIATE_EXIT: Cell<*mut u8> = const { Cell::new(std::ptr::null_mut()) };
}

/// The real-time signal used to kick vCPU threads.
pub fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN() + 1
}

extern "C" fn on_kick_signal(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let ptr = IMMEDIATE_EXIT.with(Cell::get);
    if !ptr.is_null() {
        // SAFETY: the pointer is into this thread's mapped kvm_run, set by `run` and cleared
        // before the VcpuFd can be dropped; a volatile byte store is async-signal-safe.
        unsafe { ptr.write_volatile(1) };
    }
}

fn install_kick_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Err(e) = vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick_signal)
        {
            tracing::warn!("installing the vCPU kick signal handler failed: {e}");
        }
    });
}

/// Kicks one KVM vCPU.
#[derive(Debug, Default)]
pub struct KvmKick {
    pending: AtomicBool,
    /// `pthread_t` of the thread running the vCPU (0 before its first `run`).
    thread: AtomicU64,
}

impl VcpuKick for KvmKick {
    fn kick(&self) {
        self.pending.store(true, Ordering::SeqCst);
        let thread = self.thread.load(Ordering::SeqCst);
        if thread != 0 {
            // SAFETY: the id was stored by the vCPU thread itself from pthread_self(); the VMM
            // joins vCPU threads only after they stop running, and pthread_kill on an exited
            // but unjoined thread is harmless.
            unsafe { libc::pthread_kill(thread as libc::pthread_t, kick_signal()) };
        }
    }
}

/// A KVM vCPU.
pub struct KvmVcpu {
    id: u8,
    fd: VcpuFd,
    kick: Arc<KvmKick>,
}

impl KvmVcpu {
    pub(super) fn new(id: u8, fd: VcpuFd) -> Self {
        install_kick_handler();
        KvmVcpu {
            id,
            fd,
            kick: Arc::new(KvmKick::default()),
        }
    }
}

/// Describe a `KVM_EXIT_INTERNAL_ERROR` from the vCPU's `kvm_run`.
///
/// # Safety
/// `run` points to the vCPU's live `kvm_run` just after `KVM_RUN` returned that exit.
unsafe fn internal_error(run: *const kvm_bindings::kvm_run) -> ExitReport {
    {
        // SAFETY: per the contract, the kernel filled the `internal` member of the exit union.
        let internal = unsafe { (*run).__bindgen_anon_1.internal };
        let n = (internal.ndata as usize).min(internal.data.len());
        let reason = match internal.suberror {
            1 => "KVM emulation failure",
            2 => "KVM simultaneous exception",
            3 => "KVM delivery event failure",
            _ => "KVM internal error",
        };
        ExitReport {
            reason: reason.into(),
            detail: format!(
                "suberror {} data {:x?}",
                internal.suberror,
                &internal.data[..n]
            ),
        }
    }
}

fn os(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> HypervisorError {
    move |e| HypervisorError::os(op, e)
}

impl Vcpu for KvmVcpu {
    fn id(&self) -> u8 {
        self.id
    }

    fn regs(&self) -> Result<Regs> {
        Ok(convert::regs_from_kvm(
            &self.fd.get_regs().map_err(os("KVM_GET_REGS"))?,
        ))
    }

    fn set_regs(&mut self, regs: &Regs) -> Result<()> {
        self.fd
            .set_regs(&convert::regs_to_kvm(regs))
            .map_err(os("KVM_SET_REGS"))
    }

    fn sregs(&self) -> Result<SpecialRegs> {
        Ok(convert::sregs_from_kvm(
            &self.fd.get_sregs().map_err(os("KVM_GET_SREGS"))?,
        ))
    }

    fn set_sregs(&mut self, sregs: &SpecialRegs) -> Result<()> {
        let base = self.fd.get_sregs().map_err(os("KVM_GET_SREGS"))?;
        self.fd
            .set_sregs(&convert::sregs_to_kvm(sregs, &base))
            .map_err(os("KVM_SET_SREGS"))
    }

    fn fpu(&self) -> Result<FpuState> {
        Ok(convert::fpu_from_kvm(
            &self.fd.get_fpu().map_err(os("KVM_GET_FPU"))?,
        ))
    }

    fn set_fpu(&mut self, fpu: &FpuState) -> Result<()> {
        self.fd
            .set_fpu(&convert::fpu_to_kvm(fpu))
            .map_err(os("KVM_SET_FPU"))
    }

    fn msrs(&self, indices: &[u32]) -> Result<Vec<Msr>> {
        let entries: Vec<kvm_msr_entry> = indices
            .iter()
            .map(|&index| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut msrs = Msrs::from_entries(&entries).map_err(|e| HypervisorError::Other {
            op: "KVM_GET_MSRS",
            message: format!("{e:?}"),
        })?;
        let n = self.fd.get_msrs(&mut msrs).map_err(os("KVM_GET_MSRS"))?;
        Ok(msrs.as_slice()[..n]
            .iter()
            .map(|e| Msr {
                index: e.index,
                data: e.data,
            })
            .collect())
    }

    fn set_msrs(&mut self, msrs: &[Msr]) -> Result<()> {
        let entries: Vec<kvm_msr_entry> = msrs
            .iter()
            .map(|m| kvm_msr_entry {
                index: m.index,
                data: m.data,
                ..Default::default()
            })
            .collect();
        let kmsrs = Msrs::from_entries(&entries).map_err(|e| HypervisorError::Other {
            op: "KVM_SET_MSRS",
            message: format!("{e:?}"),
        })?;
        let n = self.fd.set_msrs(&kmsrs).map_err(os("KVM_SET_MSRS"))?;
        if n < msrs.len() {
            return Err(HypervisorError::Other {
                op: "KVM_SET_MSRS",
                message: format!("KVM refused MSR {:#x}", msrs[n].index),
            });
        }
        Ok(())
    }

    fn lapic(&self) -> Result<LapicState> {
        Ok(convert::lapic_from_kvm(
            &self.fd.get_lapic().map_err(os("KVM_GET_LAPIC"))?,
        ))
    }

    fn set_lapic(&mut self, lapic: &LapicState) -> Result<()> {
        self.fd
            .set_lapic(&convert::lapic_to_kvm(lapic))
            .map_err(os("KVM_SET_LAPIC"))
    }

    fn set_cpuid(&mut self, entries: &[CpuidEntry]) -> Result<()> {
        let k: Vec<_> = entries.iter().map(convert::cpuid_to_kvm).collect();
        let cpuid = kvm_bindings::CpuId::from_entries(&k).map_err(|e| HypervisorError::Other {
            op: "KVM_SET_CPUID2",
            message: format!("{e:?}"),
        })?;
        self.fd.set_cpuid2(&cpuid).map_err(os("KVM_SET_CPUID2"))
    }

    fn run(&mut self) -> Result<VcpuExit<'_>> {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() } as u64;
        self.kick.thread.store(me, Ordering::SeqCst);
        if self.kick.pending.swap(false, Ordering::SeqCst) {
            return Ok(VcpuExit::Interrupted);
        }
        let run_ptr: *mut kvm_bindings::kvm_run = self.fd.get_kvm_run();
        // SAFETY: run_ptr points to the vCPU's kvm_run mapping, alive as long as self.fd.
        let immediate: *mut u8 = unsafe { &mut (*run_ptr).immediate_exit };
        IMMEDIATE_EXIT.with(|c| c.set(immediate));
        let result = self.fd.run();
        IMMEDIATE_EXIT.with(|c| c.set(std::ptr::null_mut()));
        let exit = match result {
            Ok(exit) => exit,
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                // SAFETY: see run_ptr above; KVM_RUN has returned, nothing else writes it.
                unsafe { immediate.write_volatile(0) };
                self.kick.pending.store(false, Ordering::SeqCst);
                return Ok(VcpuExit::Interrupted);
            }
            Err(e) => return Err(HypervisorError::os("KVM_RUN", e)),
        };
        Ok(match exit {
            KvmExit::IoIn(port, data) => VcpuExit::IoIn { port, data },
            KvmExit::IoOut(port, data) => VcpuExit::IoOut { port, data },
            KvmExit::MmioRead(addr, data) => VcpuExit::MmioRead { addr, data },
            KvmExit::MmioWrite(addr, data) => VcpuExit::MmioWrite { addr, data },
            KvmExit::Hlt => VcpuExit::Hlt,
            KvmExit::Shutdown => VcpuExit::Shutdown,
            KvmExit::IrqWindowOpen => VcpuExit::IrqWindowOpen,
            KvmExit::Intr => VcpuExit::Interrupted,
            KvmExit::SystemEvent(kind, _) => match kind {
                kvm_bindings::KVM_SYSTEM_EVENT_RESET => VcpuExit::Reset,
                kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN => VcpuExit::PowerOff,
                other => VcpuExit::InternalError(ExitReport {
                    reason: "unexpected KVM system event".into(),
                    detail: format!("type {other}"),
                }),
            },
            KvmExit::FailEntry(reason, cpu) => VcpuExit::InternalError(ExitReport {
                reason: "KVM failed to enter the guest".into(),
                detail: format!("hardware entry failure reason {reason:#x} on host cpu {cpu}"),
            }),
            KvmExit::InternalError => {
                // SAFETY: KVM_RUN just returned KVM_EXIT_INTERNAL_ERROR in this kvm_run.
                let report = unsafe { internal_error(run_ptr) };
                VcpuExit::InternalError(report)
            }
            other => VcpuExit::InternalError(ExitReport {
                reason: "unhandled KVM exit".into(),
                detail: format!("{other:?}"),
            }),
        })
    }

    fn inject_interrupt(&mut self, vector: u8) -> Result<()> {
        let irq = kvm_bindings::kvm_interrupt {
            irq: u32::from(vector),
        };
        // SAFETY: KVM_INTERRUPT reads one kvm_interrupt from the pointer we pass, which lives
        // for the duration of the call.
        let ret = unsafe {
            libc::ioctl(
                std::os::fd::AsRawFd::as_raw_fd(&self.fd),
                KVM_INTERRUPT as _,
                &irq,
            )
        };
        if ret < 0 {
            return Err(HypervisorError::os(
                "KVM_INTERRUPT",
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    fn request_interrupt_window(&mut self, enabled: bool) -> Result<()> {
        self.fd.get_kvm_run().request_interrupt_window = enabled.into();
        Ok(())
    }

    fn kicker(&self) -> Arc<dyn VcpuKick> {
        self.kick.clone()
    }
}
