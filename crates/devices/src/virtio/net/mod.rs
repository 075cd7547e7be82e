//! virtio-net on a host tap: frames pass between the guest's queues and the tap with their
//! 12-byte virtio header unchanged (the tap speaks the same header), so checksum and TCP
//! segmentation offloads work both ways (see [`offload`]).
//!
//! RX: frames are read from the tap when it becomes readable (edge-triggered) and when the
//! driver adds receive buffers; a frame that finds no buffer waits in `rx_frame` until one
//! comes, so the tap is never read faster than the guest consumes. TX: every notified chain
//! is gathered and written to the tap as one frame. Interrupts are raised only when the
//! driver has not asked to go without (it polls meanwhile).

pub mod offload;
mod rx;
pub mod tap;

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use serde::{Deserialize, Serialize};
use virtio_queue::{Queue, QueueT};
use vmm_sys_util::epoll::EventSet;

use super::{read_config_bytes, VirtioDevice, VirtioError};
use crate::GuestMem;
use tap::VNET_HDR_LEN;

const RX: usize = 0;
const TX: usize = 1;
/// Largest frame plus header the device moves: a 64 KiB TSO segment behind an Ethernet
/// header with a VLAN tag.
const MAX_FRAME: usize = VNET_HDR_LEN + 18 + 65_536;

/// Counters of the NIC.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetCounters {
    /// Frames handed to the guest.
    pub rx_frames: u64,
    /// Their bytes (without the virtio header).
    pub rx_bytes: u64,
    /// Frames from the guest written to the tap.
    pub tx_frames: u64,
    /// Their bytes (without the virtio header).
    pub tx_bytes: u64,
    /// Frames dropped on the way in (guest buffer too small, tap error).
    pub rx_dropped: u64,
    /// Frames dropped on the way out (malformed chain, tap full or failing).
    pub tx_dropped: u64,
    /// Frames handed to the guest as one TSO segment (GUEST_TSO*).
    #[serde(default)]
    pub rx_gso_frames: u64,
    /// Frames the guest sent as one TSO segment for the tap to cut (HOST_TSO*).
    #[serde(default)]
    pub tx_gso_frames: u64,
}

/// Offset of `gso_type` in the virtio-net header; 0 is VIRTIO_NET_HDR_GSO_NONE.
const GSO_TYPE: usize = 1;

/// A MAC address.
pub type Mac = [u8; 6];

/// Parse "52:54:00:12:34:56"; only unicast addresses are accepted.
pub fn parse_mac(s: &str) -> Option<Mac> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    (parts.next().is_none() && mac[0] & 1 == 0).then_some(mac)
}

/// A stable, locally administered unicast MAC derived from `seed` (e.g. the tap name), so a
/// VM keeps its address across restarts without configuration.
pub fn derive_mac(seed: &str) -> Mac {
    // FNV-1a, 64 bit: small, stable across releases (unlike std's hasher).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let b = h.to_le_bytes();
    [0x02, b[0], b[1], b[2], b[3], b[4]]
}

/// Format a MAC as "aa:bb:cc:dd:ee:ff".
pub fn format_mac(mac: &Mac) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A virtio-net device over a tap (or any datagram fd carrying header + frame per message).
pub struct Net {
    tap: OwnedFd,
    mac: Mac,
    rx_frame: Vec<u8>,
    rx_len: usize,
    /// The driver accepted mergeable receive buffers.
    mergeable: bool,
    /// (head, length) of the buffers the frame being received went into.
    rx_used: Vec<(u16, u32)>,
    tx_frame: Vec<u8>,
    /// Counters.
    pub counters: NetCounters,
}

impl Net {
    /// A NIC with address `mac` on `tap`, a non-blocking fd from [`tap::open_tap`].
    pub fn new(tap: OwnedFd, mac: Mac) -> Self {
        Net {
            tap,
            mac,
            rx_frame: vec![0; MAX_FRAME],
            rx_len: 0,
            mergeable: false,
            rx_used: Vec::new(),
            tx_frame: Vec::with_capacity(MAX_FRAME),
            counters: NetCounters::default(),
        }
    }

    /// Tell the tap what the guest takes; an fd that is not a tap (tests) takes plain frames.
    fn set_tap_offloads(&self, flags: u32) {
        if let Err(e) = tap::set_offloads(&self.tap, flags) {
            tracing::debug!("virtio-net: tap offloads {flags:#x}: {e}");
        }
    }

    /// Write every frame the guest queued for sending to the tap.
    fn tx_pump(&mut self, txq: &mut Queue, mem: &GuestMem) -> Result<bool, VirtioError> {
        let mut used = false;
        while let Some(chain) = txq.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            self.tx_frame.clear();
            let gathered = chain.reader(mem).map_err(|e| e.to_string()).and_then(|r| {
                if r.available_bytes() > MAX_FRAME || r.available_bytes() < VNET_HDR_LEN {
                    return Err(format!("frame of {} bytes", r.available_bytes()));
                }
                let mut r = r;
                r.read_to_end(&mut self.tx_frame).map_err(|e| e.to_string())
            });
            match gathered {
                Ok(_) => match fd_write(self.tap.as_raw_fd(), &self.tx_frame) {
                    Ok(_) => {
                        self.counters.tx_frames += 1;
                        self.counters.tx_gso_frames += u64::from(self.tx_frame[GSO_TYPE] != 0);
                        self.counters.tx_bytes += (self.tx_frame.len() - VNET_HDR_LEN) as u64;
                    }
                    Err(e) => {
                        if e.kind() != std::io::ErrorKind::WouldBlock {
                            tracing::debug!("virtio-net: writing the tap: {e}");
                        }
                        self.counters.tx_dropped += 1;
                    }
                },
                Err(e) => {
                    tracing::debug!("virtio-net: dropping a TX chain: {e}");
                    self.counters.tx_dropped += 1;
                }
            }
            txq.add_used(mem, head, 0).map_err(|e| VirtioError::Queue {
                queue: TX,
                message: e.to_string(),
            })?;
            used = true;
        }
        Ok(used)
    }
}

fn fd_read(fd: RawFd, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: read writes at most buf.len() bytes into the buffer we own.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn fd_write(fd: RawFd, buf: &[u8]) -> std::io::Result<usize> {
    // SAFETY: write reads at most buf.len() bytes from the buffer we own.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        1
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[256, 256]
    }

    fn features(&self) -> u64 {
        offload::OFFERED
    }

    fn activate(&mut self, acked_features: u64) {
        self.mergeable = acked_features & offload::F_MRG_RXBUF != 0;
        self.set_tap_offloads(offload::tap_offloads(acked_features));
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // struct virtio_net_config: mac[6], status (without VIRTIO_NET_F_STATUS: unused).
        let mut config = [0u8; 8];
        config[..6].copy_from_slice(&self.mac);
        read_config_bytes(&config, offset, data);
    }

    fn process_queue(
        &mut self,
        queue: usize,
        queues: &mut [Queue],
        mem: &GuestMem,
    ) -> Result<bool, VirtioError> {
        let used = match (queue, queues.get_mut(queue)) {
            (RX, Some(q)) => self.rx_pump(q, mem)?,
            (TX, Some(q)) => self.tx_pump(q, mem)?,
            _ => false,
        };
        Ok(used && rx::driver_wants_interrupt(&queues[queue], mem))
    }

    fn reset(&mut self) {
        self.rx_len = 0;
        self.mergeable = false;
        self.set_tap_offloads(0);
    }

    fn host_fds(&self) -> Vec<(RawFd, EventSet)> {
        vec![(
            self.tap.as_raw_fd(),
            EventSet::IN | EventSet::EDGE_TRIGGERED,
        )]
    }

    fn host_event(
        &mut self,
        _fd: RawFd,
        queues: &mut [Queue],
        mem: &GuestMem,
    ) -> Result<bool, VirtioError> {
        match queues.get_mut(RX) {
            Some(q) if q.ready() => Ok(self.rx_pump(q, mem)? && rx::driver_wants_interrupt(q, mem)),
            _ => Ok(false),
        }
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let c = &self.counters;
        vec![
            ("rx_frames", c.rx_frames),
            ("rx_bytes", c.rx_bytes),
            ("tx_frames", c.tx_frames),
            ("tx_bytes", c.tx_bytes),
            ("rx_dropped", c.rx_dropped),
            ("tx_dropped", c.tx_dropped),
            ("rx_gso_frames", c.rx_gso_frames),
            ("tx_gso_frames", c.tx_gso_frames),
        ]
    }
}

#[cfg(test)]
mod tests;
