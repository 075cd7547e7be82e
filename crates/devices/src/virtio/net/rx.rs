//! The receive path: frames from the tap into the guest's receive buffers, one buffer per
//! frame, or as many as a frame needs once the driver accepted mergeable receive buffers
//! (VIRTIO_NET_F_MRG_RXBUF; Linux then posts page-sized buffers instead of 64 KiB chains).
//!
//! A frame's buffers become visible to the driver together: Linux reads `num_buffers` from
//! the first and takes the rest at once, dropping the frame if one is missing.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::atomic::{fence, Ordering};

use virtio_bindings::virtio_ring::VRING_AVAIL_F_NO_INTERRUPT;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};

use super::tap::VNET_HDR_LEN;
use super::{fd_read, Net, GSO_TYPE, RX};
use crate::virtio::VirtioError;
use crate::GuestMem;

/// Offset of `num_buffers` in the virtio-net header.
const NUM_BUFFERS: usize = 10;

/// What became of the frame waiting in `rx_frame`.
enum Delivery {
    /// It is in the guest's buffers (or was dropped for not fitting one).
    Done,
    /// The driver has not posted buffers enough for it: it waits for more.
    NoBuffers,
}

fn bad(message: impl ToString) -> VirtioError {
    VirtioError::BadRequest {
        queue: RX,
        message: message.to_string(),
    }
}

impl Net {
    /// Move frames from the tap into the guest's receive buffers until either runs out.
    pub(super) fn rx_pump(&mut self, rxq: &mut Queue, mem: &GuestMem) -> Result<bool, VirtioError> {
        let mut used = false;
        while self.rx_len > 0 || self.read_frame() {
            let delivery = if self.mergeable {
                self.deliver_merged(rxq, mem)?
            } else {
                self.deliver_whole(rxq, mem)?
            };
            match delivery {
                Delivery::NoBuffers => break,
                Delivery::Done => {
                    self.rx_len = 0;
                    used = true;
                }
            }
        }
        Ok(used)
    }

    /// Read the tap's next frame into `rx_frame`; false when it has none now.
    fn read_frame(&mut self) -> bool {
        loop {
            match fd_read(self.tap.as_raw_fd(), &mut self.rx_frame) {
                Ok(n) if n >= VNET_HDR_LEN => {
                    self.rx_len = n;
                    return true;
                }
                Ok(_) => self.counters.rx_dropped += 1,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                Err(e) => {
                    tracing::warn!("virtio-net: reading the tap: {e}");
                    self.counters.rx_dropped += 1;
                    return false;
                }
            }
        }
    }

    /// The frame into one buffer, dropped when it does not fit.
    fn deliver_whole(&mut self, rxq: &mut Queue, mem: &GuestMem) -> Result<Delivery, VirtioError> {
        let Some(chain) = rxq.pop_descriptor_chain(mem) else {
            return Ok(Delivery::NoBuffers);
        };
        let head = chain.head_index();
        let len = self.rx_len;
        self.rx_frame[NUM_BUFFERS..NUM_BUFFERS + 2].copy_from_slice(&1u16.to_le_bytes());
        let mut writer = chain.writer(mem).map_err(bad)?;
        let written = if writer.available_bytes() >= len {
            writer.write_all(&self.rx_frame[..len]).map_err(bad)?;
            self.count_rx(len);
            len
        } else {
            self.counters.rx_dropped += 1;
            0
        };
        publish_used(rxq, mem, &[(head, written as u32)])?;
        Ok(Delivery::Done)
    }

    /// The frame over as many buffers as it needs, `num_buffers` in the first one's header.
    fn deliver_merged(&mut self, rxq: &mut Queue, mem: &GuestMem) -> Result<Delivery, VirtioError> {
        let start = rxq.next_avail();
        let mut first = None;
        self.rx_used.clear();
        let mut offset = 0;
        while offset < self.rx_len {
            let Some(chain) = rxq.pop_descriptor_chain(mem) else {
                rxq.set_next_avail(start);
                return Ok(Delivery::NoBuffers);
            };
            let head = chain.head_index();
            let mut writer = chain.clone().writer(mem).map_err(bad)?;
            if writer.available_bytes() < VNET_HDR_LEN {
                return Err(bad(format!(
                    "a mergeable receive buffer of {} bytes, smaller than the header",
                    writer.available_bytes()
                )));
            }
            let n = writer.available_bytes().min(self.rx_len - offset);
            writer
                .write_all(&self.rx_frame[offset..offset + n])
                .map_err(bad)?;
            first.get_or_insert(chain);
            self.rx_used.push((head, n as u32));
            offset += n;
        }
        let count = self.rx_used.len() as u16;
        let header = &mut self.rx_frame[..VNET_HDR_LEN];
        header[NUM_BUFFERS..].copy_from_slice(&count.to_le_bytes());
        if let Some(first) = first {
            first
                .writer(mem)
                .map_err(bad)?
                .write_all(header)
                .map_err(bad)?;
        }
        publish_used(rxq, mem, &self.rx_used)?;
        self.count_rx(self.rx_len);
        Ok(Delivery::Done)
    }

    fn count_rx(&mut self, frame_len: usize) {
        self.counters.rx_frames += 1;
        self.counters.rx_bytes += (frame_len - VNET_HDR_LEN) as u64;
        self.counters.rx_gso_frames += u64::from(self.rx_frame[GSO_TYPE] != 0);
    }
}

/// Put `elements` (head, bytes written) on the used ring, then make them visible with one
/// index update. virtio-queue's `add_used` publishes one element per index update, which
/// would let the driver see a frame's first buffer without the others.
fn publish_used(q: &mut Queue, mem: &GuestMem, elements: &[(u16, u32)]) -> Result<(), VirtioError> {
    let failed = |message: String| VirtioError::Queue { queue: RX, message };
    let ring = q.used_ring();
    let mut next = q.next_used();
    for &(head, len) in elements {
        if head >= q.size() {
            return Err(failed(format!("descriptor {head} beyond the queue")));
        }
        let slot = ring + 4 + 8 * u64::from(next % q.size());
        mem.write_obj(u32::from(head).to_le(), GuestAddress(slot))
            .and_then(|()| mem.write_obj(len.to_le(), GuestAddress(slot + 4)))
            .map_err(|e| failed(e.to_string()))?;
        next = next.wrapping_add(1);
    }
    q.set_next_used(next);
    mem.store(next.to_le(), GuestAddress(ring + 2), Ordering::Release)
        .map_err(|e| failed(e.to_string()))
}

/// Whether the driver wants an interrupt for new used buffers: Linux sets
/// VRING_AVAIL_F_NO_INTERRUPT while it polls the queue, and checks the ring again after
/// clearing it, so an interrupt then would only cost the guest a handler run.
pub(super) fn driver_wants_interrupt(q: &Queue, mem: &GuestMem) -> bool {
    // The used index written before must be visible before the flags are read (the driver
    // does the mirror image: clear the flag, barrier, read the used index).
    fence(Ordering::SeqCst);
    let flags: u16 = mem
        .load(GuestAddress(q.avail_ring()), Ordering::Acquire)
        .map(u16::from_le)
        .unwrap_or(0);
    flags & VRING_AVAIL_F_NO_INTERRUPT as u16 == 0
}
