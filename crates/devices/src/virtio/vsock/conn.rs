//! One vsock stream connection between a guest port and a host Unix stream, with the
//! credit accounting of virtio-vsock: the guest may send at most what our buffer has room for
//! (`CONN_BUF` minus bytes not yet written to the host), and we send the guest at most its
//! advertised `buf_alloc` minus what it has not consumed yet.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;

use super::packet::{Header, HOST_CID, TYPE_STREAM};

/// Receive buffer we advertise per connection (bytes from the guest not yet on the host).
pub const CONN_BUF: u32 = 256 * 1024;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// The host asked for it (`CONNECT <port>`); waiting for the guest's RESPONSE.
    Connecting,
    /// Data flows.
    Established,
    /// The guest closed and was answered; guest bytes still go out to the host, then the
    /// connection is dropped.
    Draining,
}

/// A connection. Keyed by (host port, guest port).
#[derive(Debug)]
pub struct Conn {
    /// The host side.
    pub stream: UnixStream,
    /// Life-cycle state.
    pub state: ConnState,
    /// Port on the host side (CID 2).
    pub local_port: u32,
    /// Port on the guest side.
    pub peer_port: u32,
    /// Bytes not yet written to the host stream: first `ours` bytes of our own (the `OK`
    /// line), then guest data.
    tx_buf: Vec<u8>,
    ours: usize,
    /// Bytes from the guest written to the host (our `fwd_cnt`).
    pub fwd_cnt: u32,
    /// `fwd_cnt` when the guest last heard it.
    pub fwd_cnt_told: u32,
    /// The guest's receive buffer and how much of it it consumed.
    pub peer_buf_alloc: u32,
    /// See `peer_buf_alloc`.
    pub peer_fwd_cnt: u32,
    /// Bytes sent to the guest.
    pub rx_cnt: u32,
    /// The host stream may have data (or EOF) to read.
    pub host_readable: bool,
    /// The host closed its write side; the guest was told.
    pub host_eof: bool,
    /// The guest sent SHUTDOWN(SEND): shut the host stream's write side once flushed.
    pub guest_done_sending: bool,
}

impl Conn {
    /// A new connection over `stream`.
    pub fn new(stream: UnixStream, state: ConnState, local_port: u32, peer_port: u32) -> Self {
        Conn {
            stream,
            state,
            local_port,
            peer_port,
            tx_buf: Vec::new(),
            ours: 0,
            fwd_cnt: 0,
            fwd_cnt_told: 0,
            peer_buf_alloc: 0,
            peer_fwd_cnt: 0,
            rx_cnt: 0,
            host_readable: false,
            host_eof: false,
            guest_done_sending: false,
        }
    }

    /// A header from the host side of this connection to the guest `guest_cid`.
    pub fn header(&mut self, guest_cid: u64, op: u16, len: u32) -> Header {
        self.fwd_cnt_told = self.fwd_cnt;
        Header {
            src_cid: HOST_CID,
            dst_cid: guest_cid,
            src_port: self.local_port,
            dst_port: self.peer_port,
            len,
            kind: TYPE_STREAM,
            op,
            flags: 0,
            buf_alloc: CONN_BUF,
            fwd_cnt: self.fwd_cnt,
        }
    }

    /// Take the credit fields of a packet from the guest.
    pub fn update_peer_credit(&mut self, h: &Header) {
        self.peer_buf_alloc = h.buf_alloc;
        self.peer_fwd_cnt = h.fwd_cnt;
    }

    /// How many bytes the guest can take now.
    pub fn peer_credit(&self) -> u32 {
        let in_flight = self.rx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    /// Whether there is data for the guest worth trying to read now.
    pub fn wants_rx(&self) -> bool {
        self.state == ConnState::Established
            && self.host_readable
            && !self.host_eof
            && self.peer_credit() > 0
    }

    /// Queue guest data for the host and write what the stream takes; false if the guest
    /// overran the credit it was given (the connection must be reset).
    pub fn push_from_guest(&mut self, data: &[u8]) -> bool {
        if self.tx_buf.len() - self.ours + data.len() > CONN_BUF as usize {
            return false;
        }
        self.tx_buf.extend_from_slice(data);
        self.flush();
        true
    }

    /// Send the host a line of our own (not guest data: it takes no guest credit).
    pub fn push_line_to_host(&mut self, line: &str) {
        self.tx_buf.splice(0..0, line.bytes());
        self.ours += line.len();
        self.flush();
    }

    /// Write pending guest data to the host stream (non-blocking); shut its write side once
    /// everything is out and the guest has finished sending.
    pub fn flush(&mut self) {
        while !self.tx_buf.is_empty() {
            match self.stream.write(&self.tx_buf) {
                Ok(0) => break,
                Ok(n) => {
                    self.tx_buf.drain(..n);
                    let ours = n.min(self.ours);
                    self.ours -= ours;
                    self.fwd_cnt = self.fwd_cnt.wrapping_add((n - ours) as u32);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    // The host side is gone: nobody will read these bytes.
                    self.tx_buf.clear();
                    self.ours = 0;
                    break;
                }
            }
        }
        if self.tx_buf.is_empty() && self.guest_done_sending {
            let _ = self.stream.shutdown(std::net::Shutdown::Write);
        }
    }

    /// Whether every byte from the guest reached the host.
    pub fn flushed(&self) -> bool {
        self.tx_buf.is_empty()
    }

    /// Whether the guest should hear about freed buffer space (half the buffer consumed since
    /// it last heard).
    pub fn credit_update_due(&self) -> bool {
        self.fwd_cnt.wrapping_sub(self.fwd_cnt_told) >= CONN_BUF / 2
    }

    /// Read host data for the guest into `buf` (at most the guest's credit).
    /// Ok(0) means the host closed its side; WouldBlock clears `host_readable`.
    pub fn read_for_guest(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let max = buf.len().min(self.peer_credit() as usize);
        loop {
            match self.stream.read(&mut buf[..max]) {
                Ok(n) => {
                    self.rx_cnt = self.rx_cnt.wrapping_add(n as u32);
                    return Ok(n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    if e.kind() == ErrorKind::WouldBlock {
                        self.host_readable = false;
                    }
                    return Err(e);
                }
            }
        }
    }
}
