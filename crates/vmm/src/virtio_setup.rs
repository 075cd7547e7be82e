//! Creating the VM's virtio devices from its config and placing them on the MMIO bus, each with
//! a 4 KiB window and its own IOAPIC pin, announced to Linux with `virtio_mmio.device=`.

use std::sync::{Arc, Mutex};

use corral_devices::virtio::block::Block;
use corral_devices::virtio::mmio::MmioTransport;
use corral_devices::virtio::rng::Rng;
use corral_devices::virtio::VirtioDevice;
use corral_disk::RawDisk;

use crate::boot::layout::{IOAPIC_PINS, VIRTIO_IRQ_BASE, VIRTIO_MMIO_BASE, VIRTIO_MMIO_SIZE};
use crate::bus::Bus;
use crate::config::VmConfig;
use crate::hypervisor::{Hypervisor, Vm};
use crate::machine::MachineError;
use crate::GuestMem;

/// A device to attach, with a name for errors.
pub struct NewDevice {
    /// e.g. "disk /path/root.img".
    pub name: String,
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

/// The virtio devices `config` asks for, in order: disks, then the entropy device.
pub fn create_devices(config: &VmConfig) -> Result<Vec<NewDevice>, MachineError> {
    let mut out = Vec::new();
    for (i, d) in config.disks.iter().enumerate() {
        let disk = RawDisk::open(&d.path, d.read_only).map_err(|e| MachineError::Device {
            device: format!("disk {}", d.path.display()),
            message: e.to_string(),
        })?;
        let id = format!("corral-vd{}", (b'a' + i as u8) as char);
        out.push(NewDevice {
            name: format!("disk {}", d.path.display()),
            device: Box::new(Block::new(Box::new(disk), &id)),
        });
    }
    if config.net.is_some() {
        return Err(MachineError::Device {
            device: "net".into(),
            message: "virtio-net is not implemented yet".into(),
        });
    }
    if config.vsock.is_some() {
        return Err(MachineError::Device {
            device: "vsock".into(),
            message: "virtio-vsock is not implemented yet".into(),
        });
    }
    if config.balloon.is_some() {
        return Err(MachineError::Device {
            device: "balloon".into(),
            message: "virtio-balloon is not implemented yet".into(),
        });
    }
    if config.rng {
        out.push(NewDevice {
            name: "rng".into(),
            device: Box::new(Rng::new()),
        });
    }
    Ok(out)
}

/// Put `dev` on the bus in the next free slot; returns the slot index.
pub fn attach(
    mmio: &mut Bus,
    vm: &Arc<dyn Vm>,
    mem: &GuestMem,
    dev: NewDevice,
    hv: &dyn Hypervisor,
) -> Result<usize, MachineError> {
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
    let transport = MmioTransport::new(dev.device, mem.clone(), line);
    mmio.insert(Arc::new(Mutex::new(transport)), base, VIRTIO_MMIO_SIZE)
        .map_err(|e| MachineError::Device {
            device: dev.name,
            message: e.to_string(),
        })?;
    Ok(index)
}
