//! virtio devices over the virtio-mmio transport (virtio 1.x, split queues via virtio-queue).
//!
//! Each device implements [`VirtioDevice`]: its features, config space and the processing of a
//! queue after the driver notified it. Queue processing needs only guest memory, so it is
//! unit-tested with in-memory guest memory; [`mmio::MmioTransport`] does the register
//! protocol and raises the interrupt.

pub mod balloon;
pub mod block;
pub mod mmio;
pub mod net;
pub mod rng;
#[cfg(test)]
pub(crate) mod testing;
pub mod vsock;

use std::os::fd::RawFd;

use virtio_queue::Queue;
use vmm_sys_util::epoll::EventSet;

use crate::GuestMem;

/// `VIRTIO_F_VERSION_1`.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// Errors from queue processing.
#[derive(Debug, thiserror::Error)]
pub enum VirtioError {
    /// The driver built a malformed request.
    #[error("malformed request on queue {queue}: {message}")]
    BadRequest {
        /// Queue index.
        queue: usize,
        /// What is wrong.
        message: String,
    },
    /// virtio-queue refused an operation (bad ring addresses, …).
    #[error("queue {queue}: {message}")]
    Queue {
        /// Queue index.
        queue: usize,
        /// virtio-queue's error.
        message: String,
    },
}

/// A virtio device behind a transport.
pub trait VirtioDevice: Send {
    /// virtio device ID (2 block, 4 rng, 1 net, 19 vsock, 5 balloon).
    fn device_type(&self) -> u32;
    /// Maximum size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Features the device offers.
    fn features(&self) -> u64;
    /// Read the device's config space.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Write the device's config space (most devices ignore it).
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// The driver set DRIVER_OK with these features.
    fn activate(&mut self, _acked_features: u64) {}
    /// Handle available buffers on `queues[queue]` after the driver notified it; returns
    /// whether any queue has new used buffers (an interrupt is needed). Every queue is passed
    /// because handling one can fill another (vsock answers a TX packet on its RX queue).
    fn process_queue(
        &mut self,
        queue: usize,
        queues: &mut [Queue],
        mem: &GuestMem,
    ) -> Result<bool, VirtioError>;
    /// The driver reset the device.
    fn reset(&mut self) {}
    /// Host file descriptors the event loop watches for this device for its whole life (a
    /// tap, a nested epoll); each with the events wanted. The device keeps them open.
    fn host_fds(&self) -> Vec<(RawFd, EventSet)> {
        Vec::new()
    }
    /// One of [`VirtioDevice::host_fds`] is ready; called only once the driver is ready
    /// (DRIVER_OK). Returns whether any queue has new used buffers.
    fn host_event(
        &mut self,
        _fd: RawFd,
        _queues: &mut [Queue],
        _mem: &GuestMem,
    ) -> Result<bool, VirtioError> {
        Ok(false)
    }
    /// Whether the config space changed on the device's side since the last call (the
    /// transport then raises a configuration-change interrupt).
    fn take_config_changed(&mut self) -> bool {
        false
    }
    /// Named counters for the control socket's metrics.
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

/// Copy `src` bytes of a little-endian config struct into a config read.
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let start = offset as usize;
    if start < config.len() {
        let end = (start + data.len()).min(config.len());
        data[..end - start].copy_from_slice(&config[start..end]);
    }
}
