//! The vCPU thread: run, dispatch exits to the buses, obey pause and stop, report how the guest
//! ended. The same loop drives every backend.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use vmm_sys_util::eventfd::EventFd;

use crate::bus::Bus;
use crate::hypervisor::{Vcpu, VcpuExit, VcpuKick};
use crate::metrics::{ExitKind, Metrics};

/// How a VM ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MachineExit {
    /// The guest reset itself (i8042 reset line or a backend reset event): a clean end for a
    /// microVM, as in Firecracker.
    Reset,
    /// The guest powered off.
    PowerOff,
    /// The guest halted with nothing to wake it: how Linux powers off a microVM without ACPI
    /// ("Power off not available: System halted instead"), so a clean end.
    Halted {
        /// The vCPU that halted.
        vcpu: u8,
    },
    /// Stopped from outside (control socket, quit key, signal).
    Stopped,
    /// A triple fault.
    TripleFault {
        /// The vCPU.
        vcpu: u8,
        /// Its RIP.
        rip: u64,
    },
    /// The backend could not go on.
    Error {
        /// The vCPU.
        vcpu: u8,
        /// Guest RIP, when it could be read.
        rip: Option<u64>,
        /// The backend's report.
        report: String,
    },
}

impl MachineExit {
    /// Whether this is a clean end (exit status 0).
    pub fn is_clean(&self) -> bool {
        matches!(
            self,
            MachineExit::Reset
                | MachineExit::PowerOff
                | MachineExit::Halted { .. }
                | MachineExit::Stopped
        )
    }
}

impl std::fmt::Display for MachineExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MachineExit::Reset => f.write_str("guest reset"),
            MachineExit::PowerOff => f.write_str("guest powered off"),
            MachineExit::Halted { vcpu } => write!(f, "vCPU {vcpu} halted with nothing to wake it"),
            MachineExit::Stopped => f.write_str("stopped"),
            MachineExit::TripleFault { vcpu, rip } => {
                write!(f, "triple fault on vCPU {vcpu} at guest RIP {rip:#x}")
            }
            MachineExit::Error { vcpu, rip, report } => match rip {
                Some(rip) => write!(f, "{report} on vCPU {vcpu} at guest RIP {rip:#x}"),
                None => write!(f, "{report} on vCPU {vcpu}"),
            },
        }
    }
}

/// Run state shared by the VMM and its vCPU threads.
pub struct RunControl {
    stop: AtomicBool,
    paused: Mutex<bool>,
    changed: Condvar,
    parked: AtomicUsize,
    exit: Mutex<Option<MachineExit>>,
    exit_evt: EventFd,
    kicks: Mutex<Vec<Arc<dyn VcpuKick>>>,
}

impl RunControl {
    /// New control with an eventfd signalled when the machine should end.
    pub fn new() -> std::io::Result<Self> {
        Ok(RunControl {
            stop: AtomicBool::new(false),
            paused: Mutex::new(false),
            changed: Condvar::new(),
            parked: AtomicUsize::new(0),
            exit: Mutex::new(None),
            exit_evt: EventFd::new(vmm_sys_util::eventfd::EFD_NONBLOCK)?,
            kicks: Mutex::new(Vec::new()),
        })
    }

    /// The eventfd the event loop watches for the end of the machine.
    pub fn exit_evt(&self) -> &EventFd {
        &self.exit_evt
    }

    pub(crate) fn add_kick(&self, k: Arc<dyn VcpuKick>) {
        self.kicks.lock().unwrap_or_else(|p| p.into_inner()).push(k);
    }

    fn kick_all(&self) {
        for k in self.kicks.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            k.kick();
        }
    }

    /// Record how the machine ended (the first reason wins) and wake the event loop.
    pub fn finish(&self, why: MachineExit) {
        let mut slot = self.exit.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(why);
        }
        drop(slot);
        let _ = self.exit_evt.write(1);
    }

    /// The recorded end, if any.
    pub fn exit_reason(&self) -> Option<MachineExit> {
        self.exit.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Make every vCPU thread leave.
    pub fn stop_vcpus(&self) {
        self.stop.store(true, Ordering::SeqCst);
        {
            let _g = self.paused.lock().unwrap_or_else(|p| p.into_inner());
            self.changed.notify_all();
        }
        self.kick_all();
    }

    /// Pause every vCPU; returns once all of them are parked (or the machine is stopping).
    pub fn pause(&self, vcpus: usize) {
        *self.paused.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.kick_all();
        let mut g = self.paused.lock().unwrap_or_else(|p| p.into_inner());
        while self.parked.load(Ordering::SeqCst) < vcpus && !self.stop.load(Ordering::SeqCst) {
            g = self
                .changed
                .wait_timeout(g, std::time::Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner())
                .0;
            if self.parked.load(Ordering::SeqCst) < vcpus {
                self.kick_all();
            }
        }
    }

    /// Resume paused vCPUs.
    pub fn resume(&self) {
        *self.paused.lock().unwrap_or_else(|p| p.into_inner()) = false;
        self.changed.notify_all();
    }

    /// Whether the vCPUs are paused.
    pub fn is_paused(&self) -> bool {
        *self.paused.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// After a kick: park while paused; false when the thread must leave.
    fn checkpoint(&self) -> bool {
        let mut g = self.paused.lock().unwrap_or_else(|p| p.into_inner());
        if *g && !self.stop.load(Ordering::SeqCst) {
            self.parked.fetch_add(1, Ordering::SeqCst);
            self.changed.notify_all();
            while *g && !self.stop.load(Ordering::SeqCst) {
                g = self.changed.wait(g).unwrap_or_else(|p| p.into_inner());
            }
            self.parked.fetch_sub(1, Ordering::SeqCst);
        }
        !self.stop.load(Ordering::SeqCst)
    }
}

/// What a vCPU thread needs.
pub struct VcpuContext {
    /// Port-I/O bus.
    pub pio: Arc<Bus>,
    /// MMIO bus.
    pub mmio: Arc<Bus>,
    /// Shared run state.
    pub control: Arc<RunControl>,
    /// Counters.
    pub metrics: Arc<Metrics>,
}

/// The body of a vCPU thread.
pub fn run_vcpu(mut vcpu: Box<dyn Vcpu>, ctx: VcpuContext) {
    let id = vcpu.id();
    loop {
        let result = vcpu.run();
        let end = match result {
            Ok(VcpuExit::IoIn { port, data }) => {
                ctx.metrics.count_exit(ExitKind::IoIn);
                ctx.pio.read(u64::from(port), data);
                None
            }
            Ok(VcpuExit::IoOut { port, data }) => {
                ctx.metrics.count_exit(ExitKind::IoOut);
                if !ctx.pio.write(u64::from(port), data) {
                    tracing::trace!("vCPU {id}: write to unclaimed port {port:#x}");
                }
                None
            }
            Ok(VcpuExit::MmioRead { addr, data }) => {
                ctx.metrics.count_exit(ExitKind::MmioRead);
                if !ctx.mmio.read(addr, data) {
                    tracing::debug!("vCPU {id}: read of unclaimed MMIO {addr:#x}");
                }
                None
            }
            Ok(VcpuExit::MmioWrite { addr, data }) => {
                ctx.metrics.count_exit(ExitKind::MmioWrite);
                if !ctx.mmio.write(addr, data) {
                    tracing::debug!("vCPU {id}: write to unclaimed MMIO {addr:#x}");
                }
                None
            }
            Ok(VcpuExit::Interrupted) | Ok(VcpuExit::IrqWindowOpen) => {
                ctx.metrics.count_exit(ExitKind::Interrupted);
                if ctx.control.checkpoint() {
                    None
                } else {
                    break;
                }
            }
            Ok(VcpuExit::Hlt) => {
                ctx.metrics.count_exit(ExitKind::Hlt);
                Some(MachineExit::Halted { vcpu: id })
            }
            Ok(VcpuExit::Reset) => Some(MachineExit::Reset),
            Ok(VcpuExit::PowerOff) => Some(MachineExit::PowerOff),
            Ok(VcpuExit::Shutdown) => Some(MachineExit::TripleFault {
                vcpu: id,
                rip: vcpu.regs().map(|r| r.rip).unwrap_or(0),
            }),
            Ok(VcpuExit::InternalError(report)) => Some(MachineExit::Error {
                vcpu: id,
                rip: vcpu.regs().ok().map(|r| r.rip),
                report: report.to_string(),
            }),
            Err(e) => Some(MachineExit::Error {
                vcpu: id,
                rip: vcpu.regs().ok().map(|r| r.rip),
                report: e.to_string(),
            }),
        };
        ctx.metrics.record_thread_time(usize::from(id));
        if let Some(end) = end {
            ctx.control.finish(end);
            break;
        }
    }
    ctx.metrics.record_thread_time(usize::from(id));
}
