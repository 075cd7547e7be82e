//! The virtio-mmio transport (virtio 1.x "modern" register layout, version 2).

use std::os::fd::RawFd;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use virtio_queue::{Queue, QueueT};
use vmm_sys_util::epoll::EventSet;

use super::{VirtioDevice, VIRTIO_F_VERSION_1};
use crate::{BusDevice, GuestMem, Interrupt};

const MAGIC: u32 = 0x7472_6976; // "virt"
/// Offset of the QueueNotify register: the driver writes a queue index there.
pub const QUEUE_NOTIFY: u64 = 0x50;
const VERSION: u32 = 2;
const VENDOR: u32 = 0x4c52_4f43; // "CORL"

const STATUS_DRIVER_OK: u32 = 4;
const STATUS_FAILED: u32 = 128;
const INT_USED_RING: u32 = 1;
const INT_CONFIG: u32 = 2;

/// The transport's persisted state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmioState {
    /// Device status register.
    pub status: u32,
    /// Features the driver accepted.
    pub acked_features: u64,
    /// Pending interrupt bits.
    pub interrupt_status: u32,
    /// Selected queue.
    pub queue_select: u32,
    /// Bumped whenever the device changes its config space.
    #[serde(default)]
    pub config_generation: u32,
}

/// A virtio device on the MMIO bus.
pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    mem: GuestMem,
    irq: Arc<dyn Interrupt>,
    queues: Vec<Queue>,
    state: MmioState,
    features_select: u32,
    driver_features_select: u32,
    early_notify: Vec<bool>,
    /// Queue notifications handled.
    pub notifications: u64,
}

impl MmioTransport {
    /// Wrap `device`, which uses `mem` and raises `irq`.
    pub fn new(device: Box<dyn VirtioDevice>, mem: GuestMem, irq: Arc<dyn Interrupt>) -> Self {
        let queues: Vec<Queue> = device
            .queue_max_sizes()
            .iter()
            .map(|&max| Queue::new(max).expect("queue sizes are powers of two"))
            .collect();
        let early_notify = vec![false; queues.len()];
        MmioTransport {
            device,
            mem,
            irq,
            early_notify,
            queues,
            state: MmioState::default(),
            features_select: 0,
            driver_features_select: 0,
            notifications: 0,
        }
    }

    /// The transport's state.
    pub fn state(&self) -> MmioState {
        self.state.clone()
    }

    fn offered_features(&self) -> u64 {
        self.device.features() | VIRTIO_F_VERSION_1
    }

    fn selected(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.state.queue_select as usize)
    }

    fn reset(&mut self) {
        self.state = MmioState::default();
        self.early_notify.fill(false);
        for q in &mut self.queues {
            q.reset();
        }
        self.device.reset();
    }

    fn notify(&mut self, index: usize) {
        self.notifications += 1;
        if self.state.status & STATUS_DRIVER_OK == 0 {
            // Linux's balloon queues its first statistics buffer before DRIVER_OK: remember
            // the notification and replay it once the driver is ready.
            if let Some(p) = self.early_notify.get_mut(index) {
                *p = true;
            }
            return;
        }
        if !self.queues.get(index).is_some_and(|q| q.ready()) {
            return;
        }
        let result = self
            .device
            .process_queue(index, &mut self.queues, &self.mem);
        self.after_processing(result);
    }

    /// The driver notified queue `index` by other means than an MMIO write (KVM's
    /// ioeventfd on [`QUEUE_NOTIFY`]).
    pub fn queue_notify(&mut self, index: usize) {
        self.notify(index);
    }

    /// Number of queues.
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// Host file descriptors the device wants watched by the event loop.
    pub fn host_fds(&self) -> Vec<(RawFd, EventSet)> {
        self.device.host_fds()
    }

    /// One of the device's host fds is ready: let the device move data, interrupt if needed.
    /// Until the driver is ready the device gets no queues: it takes in what the fd signalled
    /// (so a level-triggered fd does not spin the event loop) and delivers it later.
    pub fn host_event(&mut self, fd: RawFd) {
        if self.state.status & STATUS_DRIVER_OK == 0 || self.state.status & STATUS_FAILED != 0 {
            if let Err(e) = self.device.host_event(fd, &mut [], &self.mem) {
                tracing::debug!("virtio device {}: {e}", self.device.device_type());
            }
            return;
        }
        let result = self.device.host_event(fd, &mut self.queues, &self.mem);
        self.after_processing(result);
    }

    /// The device's counters, with the transport's own.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        let mut c = vec![("notifications", self.notifications)];
        c.extend(self.device.counters());
        c
    }

    /// The virtio device type (1 net, 2 block, …).
    pub fn device_type(&self) -> u32 {
        self.device.device_type()
    }

    fn after_processing(&mut self, result: Result<bool, super::VirtioError>) {
        if self.device.take_config_changed() {
            self.state.config_generation = self.state.config_generation.wrapping_add(1);
            self.state.interrupt_status |= INT_CONFIG;
            if let Err(e) = self.irq.trigger() {
                tracing::warn!("virtio config interrupt: {e}");
            }
        }
        match result {
            Ok(true) => {
                self.state.interrupt_status |= INT_USED_RING;
                if let Err(e) = self.irq.trigger() {
                    tracing::warn!("virtio interrupt: {e}");
                }
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!("virtio device {}: {e}", self.device.device_type());
                self.state.status |= STATUS_FAILED;
            }
        }
    }

    fn read_reg(&mut self, offset: u64) -> u32 {
        match offset {
            0x000 => MAGIC,
            0x004 => VERSION,
            0x008 => self.device.device_type(),
            0x00c => VENDOR,
            0x010 => {
                let f = self.offered_features();
                if self.features_select == 0 {
                    f as u32
                } else if self.features_select == 1 {
                    (f >> 32) as u32
                } else {
                    0
                }
            }
            0x034 => self.selected().map(|q| q.max_size() as u32).unwrap_or(0),
            0x044 => self.selected().map(|q| q.ready() as u32).unwrap_or(0),
            0x060 => self.state.interrupt_status,
            0x070 => self.state.status,
            0x0fc => self.state.config_generation,
            _ => 0,
        }
    }

    fn write_reg(&mut self, offset: u64, v: u32) {
        match offset {
            0x014 => self.features_select = v,
            0x020 => {
                let shift = match self.driver_features_select {
                    0 => 0,
                    1 => 32,
                    _ => return,
                };
                let mask = !(0xffff_ffffu64 << shift);
                let offered = self.offered_features();
                self.state.acked_features =
                    (self.state.acked_features & mask) | ((u64::from(v) << shift) & offered);
            }
            0x024 => self.driver_features_select = v,
            0x030 => self.state.queue_select = v,
            0x038 => {
                if let Some(q) = self.selected() {
                    q.set_size(v as u16)
                }
            }
            0x044 => {
                if let Some(q) = self.selected() {
                    q.set_ready(v == 1)
                }
            }
            QUEUE_NOTIFY => self.notify(v as usize),
            0x064 => self.state.interrupt_status &= !v,
            0x070 => {
                if v == 0 {
                    self.reset();
                } else {
                    let was_ok = self.state.status & STATUS_DRIVER_OK != 0;
                    self.state.status = v;
                    if !was_ok && v & STATUS_DRIVER_OK != 0 {
                        let acked = self.state.acked_features;
                        let mem = self.mem.clone();
                        let event_idx = acked & (1 << 29) != 0;
                        for q in &mut self.queues {
                            q.set_event_idx(event_idx);
                            if q.ready() && !q.is_valid(&mem) {
                                tracing::warn!("virtio queue with invalid addresses");
                            }
                        }
                        self.device.activate(acked);
                        let early = std::mem::take(&mut self.early_notify);
                        self.early_notify = vec![false; early.len()];
                        for (i, _) in early.iter().enumerate().filter(|(_, &n)| n) {
                            self.notifications -= 1;
                            self.notify(i);
                        }
                    }
                }
            }
            0x080 => self.with_queue(|q| q.set_desc_table_address(Some(v), None)),
            0x084 => self.with_queue(|q| q.set_desc_table_address(None, Some(v))),
            0x090 => self.with_queue(|q| q.set_avail_ring_address(Some(v), None)),
            0x094 => self.with_queue(|q| q.set_avail_ring_address(None, Some(v))),
            0x0a0 => self.with_queue(|q| q.set_used_ring_address(Some(v), None)),
            0x0a4 => self.with_queue(|q| q.set_used_ring_address(None, Some(v))),
            _ => tracing::trace!("virtio-mmio write to {offset:#x} ignored"),
        }
    }

    fn with_queue(&mut self, f: impl FnOnce(&mut Queue)) {
        if let Some(q) = self.selected() {
            f(q)
        }
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= 0x100 {
            self.device.read_config(offset - 0x100, data);
            return;
        }
        let v = self.read_reg(offset).to_le_bytes();
        data.fill(0);
        let n = data.len().min(4);
        data[..n].copy_from_slice(&v[..n]);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= 0x100 {
            self.device.write_config(offset - 0x100, data);
            return;
        }
        let mut b = [0u8; 4];
        let n = data.len().min(4);
        b[..n].copy_from_slice(&data[..n]);
        self.write_reg(offset, u32::from_le_bytes(b));
    }
}

#[cfg(test)]
mod tests {
    use super::super::rng::Rng;
    use super::super::testing::{new_mem, write_desc, DriverQueue};
    use super::*;
    use crate::IrqLevel;

    fn w(t: &mut MmioTransport, off: u64, v: u32) {
        t.write(off, &v.to_le_bytes());
    }
    fn r(t: &mut MmioTransport, off: u64) -> u32 {
        let mut b = [0u8; 4];
        t.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn driver_handshake_then_notify_uses_buffers_and_interrupts() {
        let mem = new_mem();
        let irq = Arc::new(IrqLevel::new(5));
        let mut t = MmioTransport::new(Box::new(Rng::new()), mem.clone(), irq.clone());
        assert_eq!(r(&mut t, 0), MAGIC);
        assert_eq!(r(&mut t, 4), 2);
        assert_eq!(r(&mut t, 8), 4);
        w(&mut t, 0x14, 1);
        assert_eq!(r(&mut t, 0x10), 1, "VERSION_1 offered");
        w(&mut t, 0x70, 1 | 2);
        w(&mut t, 0x24, 1);
        w(&mut t, 0x20, 1);
        w(&mut t, 0x70, 1 | 2 | 8);
        let dq = DriverQueue::new(0x10000, 16);
        w(&mut t, 0x30, 0);
        assert_eq!(r(&mut t, 0x34), 256);
        w(&mut t, 0x38, 16);
        w(&mut t, 0x80, dq.desc as u32);
        w(&mut t, 0x90, dq.avail as u32);
        w(&mut t, 0xa0, dq.used as u32);
        w(&mut t, 0x44, 1);
        w(&mut t, 0x70, 1 | 2 | 8 | 4);
        write_desc(&mem, dq.desc, 0, 0x40000, 32, 2, 0);
        dq.publish(&mem, &[0]);
        w(&mut t, 0x50, 0);
        assert_eq!(dq.used_idx(&mem), 1);
        assert_eq!(dq.used_elem(&mem, 0), (0, 32));
        assert_eq!(irq.count(), 1);
        assert_eq!(r(&mut t, 0x60), 1);
        w(&mut t, 0x64, 1);
        assert_eq!(r(&mut t, 0x60), 0);
        assert_eq!(t.state().acked_features, VIRTIO_F_VERSION_1);
        w(&mut t, 0x70, 0);
        assert_eq!(r(&mut t, 0x70), 0, "reset");
        assert_eq!(r(&mut t, 0x44), 0, "queue not ready after reset");
    }

    #[test]
    fn a_notify_before_driver_ok_is_replayed_when_the_driver_is_ready() {
        let mem = new_mem();
        let irq = Arc::new(IrqLevel::new(5));
        let mut t = MmioTransport::new(Box::new(Rng::new()), mem.clone(), irq.clone());
        w(&mut t, 0x70, 1 | 2);
        w(&mut t, 0x24, 1);
        w(&mut t, 0x20, 1);
        w(&mut t, 0x70, 1 | 2 | 8);
        let dq = DriverQueue::new(0x10000, 16);
        w(&mut t, 0x38, 16);
        w(&mut t, 0x80, dq.desc as u32);
        w(&mut t, 0x90, dq.avail as u32);
        w(&mut t, 0xa0, dq.used as u32);
        w(&mut t, 0x44, 1);
        write_desc(&mem, dq.desc, 0, 0x40000, 32, 2, 0);
        dq.publish(&mem, &[0]);
        w(&mut t, 0x50, 0);
        assert_eq!(dq.used_idx(&mem), 0, "not before DRIVER_OK");
        w(&mut t, 0x70, 1 | 2 | 8 | 4);
        assert_eq!(dq.used_idx(&mem), 1, "replayed at DRIVER_OK");
        assert_eq!(irq.count(), 1);
        assert_eq!(t.notifications, 1);
    }

    /// Counts host events and how many queues each saw.
    struct Probe(Arc<std::sync::Mutex<Vec<usize>>>);

    impl VirtioDevice for Probe {
        fn device_type(&self) -> u32 {
            99
        }
        fn queue_max_sizes(&self) -> &[u16] {
            &[16]
        }
        fn features(&self) -> u64 {
            0
        }
        fn read_config(&self, _offset: u64, data: &mut [u8]) {
            data.fill(0);
        }
        fn process_queue(
            &mut self,
            _queue: usize,
            _queues: &mut [Queue],
            _mem: &GuestMem,
        ) -> Result<bool, super::super::VirtioError> {
            Ok(false)
        }
        fn host_event(
            &mut self,
            _fd: RawFd,
            queues: &mut [Queue],
            _mem: &GuestMem,
        ) -> Result<bool, super::super::VirtioError> {
            self.0.lock().unwrap().push(queues.len());
            Ok(true)
        }
    }

    #[test]
    fn host_events_before_driver_ok_reach_the_device_without_queues_or_interrupts() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let irq = Arc::new(IrqLevel::new(5));
        let mut t = MmioTransport::new(Box::new(Probe(seen.clone())), new_mem(), irq.clone());
        t.host_event(3);
        assert_eq!(*seen.lock().unwrap(), vec![0], "drained, no queues");
        assert_eq!(irq.count(), 0);
        w(&mut t, 0x70, 1 | 2 | 8 | 4);
        t.host_event(3);
        assert_eq!(*seen.lock().unwrap(), vec![0, 1]);
        assert_eq!(irq.count(), 1);
    }
}
