//! A whole VM: guest memory, the backend's VM and vCPUs, the buses and devices, boot setup;
//! then its run: one thread per vCPU and an event loop for device I/O and the end of the VM.

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use corral_devices::legacy::{SerialDevice, SerialOut, I8042};
use corral_devices::virtio::balloon::{self, BalloonHandle, BalloonStatus};
use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberOps};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::boot::{self, layout, BootSpec};
use crate::bus::Bus;
use crate::config::{ConfigError, VmConfig, DEFAULT_CMDLINE};
use crate::hypervisor::{Hypervisor, HypervisorError, Vcpu, Vm};
use crate::memory::{self, MemoryError};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::vcpu_loop::{run_vcpu, MachineExit, RunControl, VcpuContext};
use crate::virtio_setup::{AttachedDevice, DeviceEvents, QueueNotifies};
use crate::GuestMem;

/// COM1's ports.
const COM1: u64 = 0x3f8;
/// The i8042's keyboard interrupt (ISA IRQ 1).
const I8042_IRQ: u32 = 1;
/// The i8042's ports 0x60..=0x64.
const I8042_PORT: u64 = 0x60;

/// Errors building or running a VM.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Guest memory.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// Loading the kernel or writing boot structures.
    #[error(transparent)]
    Boot(#[from] boot::BootError),
    /// The backend.
    #[error("{backend} backend: {source}")]
    Backend {
        /// Backend name.
        backend: &'static str,
        /// Its error.
        source: HypervisorError,
    },
    /// A device could not be set up.
    #[error("{device}: {message}")]
    Device {
        /// Which device (e.g. "disk /path/root.img").
        device: String,
        /// What went wrong.
        message: String,
    },
    /// Thread, eventfd or epoll failures.
    #[error("{op}: {source}")]
    Os {
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A VM ready to run.
pub struct Machine {
    vm: Arc<dyn Vm>,
    mem: GuestMem,
    vcpus: Vec<Box<dyn Vcpu>>,
    pio: Arc<Bus>,
    mmio: Arc<Bus>,
    serial: Arc<Mutex<SerialDevice>>,
    i8042: Arc<Mutex<I8042>>,
    reset_evt: EventFd,
    control: Arc<RunControl>,
    metrics: Arc<Metrics>,
    cmdline: String,
    devices: Arc<Vec<AttachedDevice>>,
    balloon: Option<BalloonHandle>,
    memory_bytes: u64,
}

/// A handle other threads use to pause, resume, stop and observe a running machine.
#[derive(Clone)]
pub struct MachineHandle {
    control: Arc<RunControl>,
    metrics: Arc<Metrics>,
    serial: Arc<Mutex<SerialDevice>>,
    i8042: Arc<Mutex<I8042>>,
    vcpus: usize,
    devices: Arc<Vec<AttachedDevice>>,
    balloon: Option<BalloonHandle>,
    memory_bytes: u64,
}

/// Errors of balloon requests.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BalloonRequestError {
    /// The VM has no balloon device.
    #[error("this VM has no balloon device (add [balloon] to its vm.toml)")]
    NoBalloon,
    /// The target is more than the guest has.
    #[error("balloon target {target_mib} MiB is more than the guest's {memory_mib} MiB")]
    TooLarge {
        /// Requested target.
        target_mib: u64,
        /// Guest memory.
        memory_mib: u64,
    },
}

impl MachineHandle {
    /// Pause every vCPU (returns once they are parked).
    pub fn pause(&self) {
        self.control.pause(self.vcpus);
    }
    /// Resume.
    pub fn resume(&self) {
        self.control.resume();
    }
    /// Whether paused.
    pub fn is_paused(&self) -> bool {
        self.control.is_paused()
    }
    /// End the VM.
    pub fn stop(&self) {
        self.control.finish(MachineExit::Stopped);
    }
    /// Press Ctrl-Alt-Del on the keyboard controller (a guest-cooperative shutdown).
    pub fn ctrl_alt_del(&self) {
        self.i8042
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .ctrl_alt_del();
    }
    /// Current counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        let tx = self
            .serial
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .tx_bytes;
        let mut snap = self.metrics.snapshot(tx);
        for d in self.devices.iter() {
            let t = d.transport.lock().unwrap_or_else(|p| p.into_inner());
            snap.devices.insert(
                d.id.clone(),
                t.counters()
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
            );
        }
        snap
    }
    /// Ask the guest to give back `target_mib` MiB through the balloon.
    pub fn balloon_set_target(&self, target_mib: u64) -> Result<(), BalloonRequestError> {
        let b = self
            .balloon
            .as_ref()
            .ok_or(BalloonRequestError::NoBalloon)?;
        if target_mib << 20 > self.memory_bytes {
            return Err(BalloonRequestError::TooLarge {
                target_mib,
                memory_mib: self.memory_bytes >> 20,
            });
        }
        b.set_target_pages(((target_mib << 20) / balloon::PAGE) as u32);
        Ok(())
    }

    /// The balloon's target, actual size and the guest's latest memory statistics.
    pub fn balloon_status(&self) -> Result<BalloonStatus, BalloonRequestError> {
        let b = self
            .balloon
            .as_ref()
            .ok_or(BalloonRequestError::NoBalloon)?;
        Ok(b.status())
    }

    /// Number of vCPUs.
    pub fn vcpu_count(&self) -> usize {
        self.vcpus
    }
    /// Queue console input for the guest; returns how many bytes were taken.
    pub fn serial_input(&self, bytes: &[u8]) -> usize {
        self.serial
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .enqueue_input(bytes)
    }
}

fn backend_err(hv: &dyn Hypervisor) -> impl Fn(HypervisorError) -> MachineError + '_ {
    move |source| MachineError::Backend {
        backend: hv.name(),
        source,
    }
}

fn os_err(op: &'static str) -> impl Fn(std::io::Error) -> MachineError {
    move |source| MachineError::Os { op, source }
}

impl Machine {
    /// Build a VM from `config` on `hv`; the serial console writes to `serial_out`.
    pub fn build(
        config: &VmConfig,
        hv: &dyn Hypervisor,
        serial_out: SerialOut,
    ) -> Result<Self, MachineError> {
        config.validate()?;
        let size = config.memory_bytes()?;
        let mem = memory::create_guest_memory(size)?;
        let cmdline = config
            .cmdline
            .clone()
            .unwrap_or_else(|| DEFAULT_CMDLINE.to_owned());
        let vm = hv.create_vm(&mem).map_err(backend_err(hv))?;

        let mut pio = Bus::new();
        let serial_irq = vm.irq_line(layout::SERIAL_IRQ).map_err(backend_err(hv))?;
        let serial = Arc::new(Mutex::new(SerialDevice::new(serial_irq, serial_out)));
        pio.insert(serial.clone(), COM1, 8)
            .map_err(|e| MachineError::Device {
                device: "serial".into(),
                message: e.to_string(),
            })?;
        let reset_evt = EventFd::new(EFD_NONBLOCK).map_err(os_err("eventfd"))?;
        let kbd_irq = vm.irq_line(I8042_IRQ).map_err(backend_err(hv))?;
        let i8042 = Arc::new(Mutex::new(
            I8042::new(reset_evt.try_clone().map_err(os_err("eventfd"))?)
                .with_keyboard_irq(kbd_irq),
        ));
        pio.insert(i8042.clone(), I8042_PORT, 5)
            .map_err(|e| MachineError::Device {
                device: "i8042".into(),
                message: e.to_string(),
            })?;
        let mut mmio = Bus::new();
        // No keyboard sits behind the i8042: its driver must not probe one (and wait).
        let mut cmdline = cmdline + " i8042.dumbkbd";
        let mut devices = Vec::new();
        let set = crate::virtio_setup::create_devices(config)?;
        let balloon = set.balloon;
        for dev in set.devices {
            let (index, attached) = crate::virtio_setup::attach(&mut mmio, &vm, &mem, dev, hv)?;
            let (base, irq) = crate::virtio_setup::slot(index);
            cmdline.push_str(&format!(" virtio_mmio.device=4K@{base:#x}:{irq}"));
            devices.push(attached);
        }

        let spec = BootSpec {
            kernel: &config.kernel,
            initrd: config.initrd.as_deref(),
            cmdline: &cmdline,
            cpus: config.cpus,
            protocol: config.boot_protocol,
            backend_supports_pvh: hv.name() != "emu",
        };
        let info = boot::load(&mem, &spec)?;
        let supported = hv.supported_cpuid().map_err(backend_err(hv))?;
        let mut vcpus = Vec::with_capacity(usize::from(config.cpus));
        for id in 0..config.cpus {
            let mut vcpu = vm.create_vcpu(id).map_err(backend_err(hv))?;
            vcpu.set_cpuid(&boot::cpuid::for_vcpu(&supported, id, config.cpus))
                .map_err(backend_err(hv))?;
            boot::cpu::setup_vcpu(vcpu.as_mut(), info.mode).map_err(backend_err(hv))?;
            vcpus.push(vcpu);
        }
        let control = Arc::new(RunControl::new().map_err(os_err("eventfd"))?);
        for v in &vcpus {
            control.add_kick(v.kicker());
        }
        Ok(Machine {
            vm,
            mem,
            metrics: Arc::new(Metrics::new(vcpus.len())),
            vcpus,
            pio: Arc::new(pio),
            mmio: Arc::new(mmio),
            serial,
            i8042,
            reset_evt,
            control,
            cmdline,
            devices: Arc::new(devices),
            balloon,
            memory_bytes: size,
        })
    }

    /// The handle for pause/resume/stop/metrics.
    pub fn handle(&self) -> MachineHandle {
        MachineHandle {
            control: self.control.clone(),
            metrics: self.metrics.clone(),
            serial: self.serial.clone(),
            i8042: self.i8042.clone(),
            vcpus: self.vcpus.len(),
            devices: self.devices.clone(),
            balloon: self.balloon.clone(),
            memory_bytes: self.memory_bytes,
        }
    }

    /// The backend's VM (dirty log, interrupt lines).
    pub fn vm(&self) -> &Arc<dyn Vm> {
        &self.vm
    }

    /// Guest memory.
    pub fn memory(&self) -> &GuestMem {
        &self.mem
    }

    /// The final kernel command line.
    pub fn cmdline(&self) -> &str {
        &self.cmdline
    }

    /// Run until the guest ends or the machine is stopped; `extra` subscribers (console input,
    /// control socket) join the event loop. Every thread is joined before this returns.
    pub fn run(
        self,
        extra: Vec<Box<dyn MutEventSubscriber + Send>>,
    ) -> Result<MachineExit, MachineError> {
        let mut manager: EventManager<Box<dyn MutEventSubscriber + Send>> = EventManager::new()
            .map_err(|e| MachineError::Os {
                op: "epoll",
                source: std::io::Error::other(format!("{e:?}")),
            })?;
        manager.add_subscriber(Box::new(EndWatcher {
            control: self.control.clone(),
            reset: self.reset_evt.try_clone().map_err(os_err("eventfd"))?,
        }));
        for d in self.devices.iter() {
            if let Some(s) = DeviceEvents::for_device(d) {
                manager.add_subscriber(Box::new(s));
            }
            if let Some(s) = QueueNotifies::for_device(d) {
                manager.add_subscriber(Box::new(s));
            }
        }
        for s in extra {
            manager.add_subscriber(s);
        }

        let mut threads: Vec<JoinHandle<()>> = Vec::new();
        let mut spawn_error = None;
        for vcpu in self.vcpus {
            let ctx = VcpuContext {
                pio: self.pio.clone(),
                mmio: self.mmio.clone(),
                control: self.control.clone(),
                metrics: self.metrics.clone(),
            };
            let name = format!("vcpu{}", vcpu.id());
            match std::thread::Builder::new()
                .name(name)
                .spawn(move || run_vcpu(vcpu, ctx))
            {
                Ok(t) => threads.push(t),
                Err(e) => {
                    spawn_error = Some(e);
                    self.control.finish(MachineExit::Stopped);
                    break;
                }
            }
        }
        while self.control.exit_reason().is_none() {
            if let Err(e) = manager.run() {
                tracing::warn!("event loop: {e:?}");
            }
        }
        self.control.stop_vcpus();
        for t in threads {
            let _ = t.join();
        }
        if let Some(e) = spawn_error {
            return Err(MachineError::Os {
                op: "spawning a vCPU thread",
                source: e,
            });
        }
        Ok(self.control.exit_reason().unwrap_or(MachineExit::Stopped))
    }
}

/// Watches the i8042 reset line and the end-of-machine eventfd.
struct EndWatcher {
    control: Arc<RunControl>,
    reset: EventFd,
}

impl MutEventSubscriber for EndWatcher {
    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        if events.fd() == self.reset.as_raw_fd() {
            let _ = self.reset.read();
            self.control.finish(MachineExit::Reset);
        } else {
            let _ = self.control.exit_evt().read();
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        for fd in [self.reset.as_raw_fd(), self.control.exit_evt().as_raw_fd()] {
            if let Err(e) = ops.add(Events::new_raw(fd, EventSet::IN)) {
                tracing::error!("event loop registration: {e:?}");
            }
        }
    }
}
