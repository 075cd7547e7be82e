//! Creating the VM's virtio devices from its config and placing them on the MMIO bus, each with
//! a 4 KiB window and its own IOAPIC pin, announced to Linux with `virtio_mmio.device=`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_devices::virtio::balloon::{self, Balloon, BalloonHandle};
use corral_devices::virtio::block::Block;
use corral_devices::virtio::mmio::{MmioTransport, QUEUE_NOTIFY};
use corral_devices::virtio::net::{self, Net};
use corral_devices::virtio::rng::Rng;
use corral_devices::virtio::vsock::Vsock;
use corral_devices::virtio::VirtioDevice;
use corral_disk::RawDisk;
use event_manager::{EventOps, Events, MutEventSubscriber};
use std::os::fd::AsRawFd;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::boot::layout::{IOAPIC_PINS, VIRTIO_IRQ_BASE, VIRTIO_MMIO_BASE, VIRTIO_MMIO_SIZE};
use crate::bus::Bus;
use crate::config::VmConfig;
use crate::hypervisor::{Hypervisor, HypervisorError, Vm};
use crate::machine::MachineError;
use crate::GuestMem;

/// A device to attach, with names for errors and metrics.
pub struct NewDevice {
    /// e.g. "disk /path/root.img".
    pub name: String,
    /// Short name in metrics: vda, net0, rng0, …
    pub id: String,
    /// The device.
    pub device: Box<dyn VirtioDevice>,
}

/// MMIO base and IOAPIC pin of the `index`th virtio device.
pub fn slot(index: usize) -> (u64, u32) {
    (
        VIRTIO_MMIO_BASE + index as u64 * VIRTIO_MMIO_SIZE,
        VIRTIO_IRQ_BASE + index as u32,
    )
}

/// A virtio device on the bus, kept by the machine for host events and metrics.
pub struct AttachedDevice {
    /// Short name in metrics: vda, net0, rng0, …
    pub id: String,
    /// The transport (also on the MMIO bus).
    pub transport: Arc<Mutex<MmioTransport>>,
    /// One eventfd per queue the backend signals on a queue notify (KVM ioeventfd); empty
    /// when the backend has none and notifies arrive as MMIO writes.
    pub notify_evts: Vec<EventFd>,
}

/// The devices of a VM, and the handles the VMM keeps on some of them.
#[derive(Default)]
pub struct DeviceSet {
    /// Devices in slot order.
    pub devices: Vec<NewDevice>,
    /// The balloon's control handle, if there is a balloon.
    pub balloon: Option<BalloonHandle>,
}

/// The virtio devices `config` asks for, in order: disks, the NIC, vsock, the balloon, then
/// the entropy device.
pub fn create_devices(config: &VmConfig) -> Result<DeviceSet, MachineError> {
    let mut set = DeviceSet::default();
    let out = &mut set.devices;
    for (i, d) in config.disks.iter().enumerate() {
        let disk = RawDisk::open(&d.path, d.read_only).map_err(|e| MachineError::Device {
            device: format!("disk {}", d.path.display()),
            message: e.to_string(),
        })?;
        let id = format!("corral-vd{}", (b'a' + i as u8) as char);
        out.push(NewDevice {
            name: format!("disk {}", d.path.display()),
            id: format!("vd{}", (b'a' + i as u8) as char),
            device: Box::new(Block::new(Box::new(disk), &id)),
        });
    }
    if let Some(n) = &config.net {
        let tap = net::tap::open_tap(&n.tap).map_err(|e| MachineError::Device {
            device: "net".into(),
            message: e.to_string(),
        })?;
        let mac = n.mac_address()?;
        tracing::info!("net0: tap {} mac {}", n.tap, net::format_mac(&mac));
        out.push(NewDevice {
            name: format!("net tap {}", n.tap),
            id: "net0".into(),
            device: Box::new(Net::new(tap, mac)),
        });
    }
    if let Some(v) = &config.vsock {
        let path = v.socket_path();
        let dev = Vsock::new(u64::from(v.cid), &path).map_err(|e| MachineError::Device {
            device: "vsock".into(),
            message: e.to_string(),
        })?;
        tracing::info!(
            "vsock0: guest CID {}, host socket {}",
            v.cid,
            path.display()
        );
        out.push(NewDevice {
            name: format!("vsock {}", path.display()),
            id: "vsock0".into(),
            device: Box::new(dev),
        });
    }
    if let Some(b) = &config.balloon {
        let pages =
            u32::try_from(u64::from(b.target_mib) * (1 << 20) / balloon::PAGE).unwrap_or(u32::MAX);
        let interval = Duration::from_secs(u64::from(b.stats_interval_s));
        let dev =
            Balloon::new(pages, interval, b.deflate_on_oom).map_err(|e| MachineError::Device {
                device: "balloon".into(),
                message: e.to_string(),
            })?;
        set.balloon = Some(dev.handle());
        out.push(NewDevice {
            name: "balloon".into(),
            id: "balloon0".into(),
            device: Box::new(dev),
        });
    }
    if config.rng {
        out.push(NewDevice {
            name: "rng".into(),
            id: "rng0".into(),
            device: Box::new(Rng::new()),
        });
    }
    Ok(set)
}

/// Put `dev` on the bus in the next free slot; returns the slot index and the device.
pub fn attach(
    mmio: &mut Bus,
    vm: &Arc<dyn Vm>,
    mem: &GuestMem,
    dev: NewDevice,
    hv: &dyn Hypervisor,
) -> Result<(usize, AttachedDevice), MachineError> {
    let index = mmio.len();
    let (base, irq) = slot(index);
    if irq >= IOAPIC_PINS {
        return Err(MachineError::Device {
            device: dev.name,
            message: format!(
                "too many devices: no IOAPIC pin left (max {})",
                IOAPIC_PINS - VIRTIO_IRQ_BASE
            ),
        });
    }
    let line = vm.irq_line(irq).map_err(|source| MachineError::Backend {
        backend: hv.name(),
        source,
    })?;
    let transport = Arc::new(Mutex::new(MmioTransport::new(
        dev.device,
        mem.clone(),
        line,
    )));
    mmio.insert(transport.clone(), base, VIRTIO_MMIO_SIZE)
        .map_err(|e| MachineError::Device {
            device: dev.name.clone(),
            message: e.to_string(),
        })?;
    let queues = lock(&transport).queue_count();
    let notify_evts =
        notify_eventfds(vm.as_ref(), base + QUEUE_NOTIFY, queues).map_err(|message| {
            MachineError::Device {
                device: dev.name,
                message,
            }
        })?;
    Ok((
        index,
        AttachedDevice {
            id: dev.id,
            transport,
            notify_evts,
        },
    ))
}

/// An eventfd per queue, registered for notify writes at `addr`; none when the backend has no
/// ioeventfd.
fn notify_eventfds(vm: &dyn Vm, addr: u64, queues: usize) -> Result<Vec<EventFd>, String> {
    let mut evts = Vec::with_capacity(queues);
    for q in 0..queues {
        let evt = EventFd::new(EFD_NONBLOCK).map_err(|e| format!("eventfd: {e}"))?;
        match vm.register_mmio_notify(addr, q as u32, &evt) {
            Ok(()) => evts.push(evt),
            Err(HypervisorError::Unsupported { .. }) if q == 0 => return Ok(Vec::new()),
            Err(e) => return Err(format!("queue {q} notify: {e}")),
        }
    }
    Ok(evts)
}

/// Hands queue notifications the backend signalled on eventfds to the device.
pub struct QueueNotifies {
    id: String,
    transport: Arc<Mutex<MmioTransport>>,
    evts: Vec<EventFd>,
}

impl QueueNotifies {
    /// A subscriber for `device`'s notify eventfds, or None when it has none.
    pub fn for_device(device: &AttachedDevice) -> Option<Self> {
        let evts: Vec<EventFd> = device
            .notify_evts
            .iter()
            .filter_map(|e| e.try_clone().ok())
            .collect();
        (!evts.is_empty()).then(|| QueueNotifies {
            id: device.id.clone(),
            transport: device.transport.clone(),
            evts,
        })
    }
}

impl MutEventSubscriber for QueueNotifies {
    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        let Some(q) = self.evts.iter().position(|e| e.as_raw_fd() == events.fd()) else {
            return;
        };
        if self.evts[q].read().is_ok() {
            lock(&self.transport).queue_notify(q);
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        for e in &self.evts {
            if let Err(err) = ops.add(Events::new_raw(e.as_raw_fd(), EventSet::IN)) {
                tracing::error!("{}: queue notify registration: {err:?}", self.id);
            }
        }
    }
}

/// Feeds a device's host-side readiness (its tap, its sockets) from the event loop to the
/// device, which moves the data and raises its interrupt.
pub struct DeviceEvents {
    id: String,
    transport: Arc<Mutex<MmioTransport>>,
}

impl DeviceEvents {
    /// A subscriber for `device`, or None when it has no host fds.
    pub fn for_device(device: &AttachedDevice) -> Option<Self> {
        let fds = lock(&device.transport).host_fds();
        (!fds.is_empty()).then(|| DeviceEvents {
            id: device.id.clone(),
            transport: device.transport.clone(),
        })
    }
}

fn lock(t: &Mutex<MmioTransport>) -> std::sync::MutexGuard<'_, MmioTransport> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

impl MutEventSubscriber for DeviceEvents {
    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        lock(&self.transport).host_event(events.fd());
    }

    fn init(&mut self, ops: &mut EventOps) {
        for (fd, set) in lock(&self.transport).host_fds() {
            if let Err(e) = ops.add(Events::new_raw(fd, set)) {
                tracing::error!("{}: event loop registration: {e:?}", self.id);
            }
        }
    }
}
