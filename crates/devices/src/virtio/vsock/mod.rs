//! virtio-vsock with Firecracker's hybrid host side: the guest's vsock streams meet Unix
//! stream sockets on the host.
//!
//! - Host to guest: a host program connects to the device's Unix socket (`uds_path`), writes
//!   `CONNECT <port>\n`, and once a guest program listening on vsock port `<port>` accepted,
//!   reads `OK <host port>\n`; then the stream carries the connection's bytes.
//! - Guest to host: a guest connecting to CID 2 port `<port>` reaches the host program
//!   listening on the Unix socket `<uds_path>_<port>`; nobody listening → connection refused.
//!
//! The device's host sockets sit in a nested epoll (edge-triggered) whose fd is the only one
//! the VMM's event loop watches; readiness is remembered per connection, so work the guest's
//! queues cannot take yet (no receive buffer, no credit) resumes on its next queue notify.

mod conn;
pub mod packet;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use super::{read_config_bytes, VirtioDevice, VirtioError};
use crate::GuestMem;
use conn::{Conn, ConnState};
use packet::{op, Header, HDR_LEN, HOST_CID, SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM};

const RX: usize = 0;
const TX: usize = 1;
/// First host port handed to host-initiated connections (Firecracker's choice too).
const FIRST_LOCAL_PORT: u32 = 1 << 30;
/// Largest payload put in one packet to the guest.
const MAX_PKT_PAYLOAD: usize = 64 * 1024;
/// Longest `CONNECT <port>\n` line accepted.
const MAX_CONNECT_LINE: usize = 32;

/// Errors creating the device.
#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    /// The Unix socket cannot be created.
    #[error("vsock socket {path}: {source}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A live process already serves the path.
    #[error("vsock socket {path} is in use by another process")]
    InUse {
        /// The socket path.
        path: PathBuf,
    },
    /// epoll failed.
    #[error("vsock epoll: {0}")]
    Epoll(std::io::Error),
}

/// Counters of the vsock device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VsockCounters {
    /// Connections the host opened.
    pub host_connections: u64,
    /// Connections the guest opened.
    pub guest_connections: u64,
    /// Payload bytes to the guest.
    pub rx_bytes: u64,
    /// Payload bytes from the guest.
    pub tx_bytes: u64,
    /// Resets sent to the guest.
    pub resets: u64,
}

/// A host connection that has not sent its `CONNECT <port>` line yet.
struct Handshake {
    stream: UnixStream,
    line: Vec<u8>,
}

type Key = (u32, u32);

/// The vsock device.
pub struct Vsock {
    cid: u64,
    uds_path: PathBuf,
    listener: UnixListener,
    epoll: Epoll,
    handshakes: HashMap<RawFd, Handshake>,
    conns: BTreeMap<Key, Conn>,
    by_fd: HashMap<RawFd, Key>,
    ctrl: VecDeque<Header>,
    next_local_port: u32,
    buf: Vec<u8>,
    /// Counters.
    pub counters: VsockCounters,
}

/// Bind `path`, replacing a stale socket file but never a live one.
fn bind(path: &Path) -> Result<UnixListener, VsockError> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(VsockError::InUse { path: path.into() });
        }
        let _ = std::fs::remove_file(path);
    }
    let l = UnixListener::bind(path).map_err(|source| VsockError::Bind {
        path: path.into(),
        source,
    })?;
    l.set_nonblocking(true).map_err(|source| VsockError::Bind {
        path: path.into(),
        source,
    })?;
    Ok(l)
}

fn watch(epoll: &Epoll, fd: RawFd) -> std::io::Result<()> {
    let set = EventSet::IN | EventSet::OUT | EventSet::EDGE_TRIGGERED | EventSet::READ_HANG_UP;
    epoll.ctl(ControlOperation::Add, fd, EpollEvent::new(set, fd as u64))
}

fn unwatch(epoll: &Epoll, fd: RawFd) {
    let _ = epoll.ctl(ControlOperation::Delete, fd, EpollEvent::default());
}

impl Vsock {
    /// A device for guest `cid` whose host side listens on `uds_path`.
    pub fn new(cid: u64, uds_path: &Path) -> Result<Self, VsockError> {
        let epoll = Epoll::new().map_err(VsockError::Epoll)?;
        let listener = bind(uds_path)?;
        let lfd = listener.as_raw_fd();
        let set = EventSet::IN | EventSet::EDGE_TRIGGERED;
        if let Err(e) = epoll.ctl(ControlOperation::Add, lfd, EpollEvent::new(set, lfd as u64)) {
            let _ = std::fs::remove_file(uds_path);
            return Err(VsockError::Epoll(e));
        }
        Ok(Vsock {
            cid,
            uds_path: uds_path.into(),
            listener,
            epoll,
            handshakes: HashMap::new(),
            conns: BTreeMap::new(),
            by_fd: HashMap::new(),
            ctrl: VecDeque::new(),
            next_local_port: FIRST_LOCAL_PORT,
            buf: vec![0; MAX_PKT_PAYLOAD],
            counters: VsockCounters::default(),
        })
    }

    /// The host socket path.
    pub fn uds_path(&self) -> &Path {
        &self.uds_path
    }

    /// Take in everything the host sockets have signalled since last time.
    fn poll_host(&mut self) {
        let mut events = [EpollEvent::default(); 32];
        loop {
            let n = match self.epoll.wait(0, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!("vsock epoll: {e}");
                    return;
                }
            };
            for ev in &events[..n] {
                let fd = ev.fd();
                if fd == self.listener.as_raw_fd() {
                    self.accept_all();
                } else if self.handshakes.contains_key(&fd) {
                    self.read_connect_line(fd);
                } else if let Some(conn) = self.by_fd.get(&fd).and_then(|k| self.conns.get_mut(k)) {
                    let set = ev.event_set();
                    if set.intersects(EventSet::IN | EventSet::READ_HANG_UP | EventSet::HANG_UP) {
                        conn.host_readable = true;
                    }
                    if set.contains(EventSet::OUT) {
                        conn.flush();
                        if conn.state == ConnState::Draining && conn.flushed() {
                            let key = (conn.local_port, conn.peer_port);
                            self.remove(key);
                            continue;
                        }
                        if conn.credit_update_due() {
                            let h = conn.header(self.cid, op::CREDIT_UPDATE, 0);
                            self.ctrl.push_back(h);
                        }
                    }
                }
            }
            if n < events.len() {
                return;
            }
        }
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    let fd = stream.as_raw_fd();
                    if stream.set_nonblocking(true).is_err() || watch(&self.epoll, fd).is_err() {
                        continue;
                    }
                    self.handshakes.insert(
                        fd,
                        Handshake {
                            stream,
                            line: Vec::new(),
                        },
                    );
                    self.read_connect_line(fd);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Read the `CONNECT <port>\n` line byte by byte (nothing after it is consumed: that is
    /// the connection's data), then ask the guest to accept.
    fn read_connect_line(&mut self, fd: RawFd) {
        let Some(hs) = self.handshakes.get_mut(&fd) else {
            return;
        };
        let mut byte = [0u8; 1];
        let port = loop {
            match hs.stream.read(&mut byte) {
                Ok(1) if byte[0] == b'\n' => {
                    let line = String::from_utf8_lossy(&hs.line).into_owned();
                    break line
                        .trim_end_matches('\r')
                        .strip_prefix("CONNECT ")
                        .and_then(|p| p.trim().parse::<u32>().ok());
                }
                Ok(1) if hs.line.len() < MAX_CONNECT_LINE => hs.line.push(byte[0]),
                Ok(_) => break None,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => break None,
            }
        };
        let Some(hs) = self.handshakes.remove(&fd) else {
            return;
        };
        let Some(port) = port else {
            unwatch(&self.epoll, fd);
            return;
        };
        let local = self.next_local_port;
        self.next_local_port = self.next_local_port.wrapping_add(1).max(FIRST_LOCAL_PORT);
        let mut conn = Conn::new(hs.stream, ConnState::Connecting, local, port);
        self.ctrl.push_back(conn.header(self.cid, op::REQUEST, 0));
        self.by_fd.insert(fd, (local, port));
        self.conns.insert((local, port), conn);
        self.counters.host_connections += 1;
    }

    fn remove(&mut self, key: Key) {
        if let Some(c) = self.conns.remove(&key) {
            let fd = c.stream.as_raw_fd();
            unwatch(&self.epoll, fd);
            self.by_fd.remove(&fd);
        }
    }

    fn reset(&mut self, to: Header) {
        self.counters.resets += 1;
        self.ctrl.push_back(to);
    }

    /// Handle one packet the guest sent.
    fn handle_guest_packet(&mut self, h: Header, payload: &[u8]) {
        if h.kind != TYPE_STREAM || h.src_cid != self.cid || h.dst_cid != HOST_CID {
            if h.op != op::RST {
                self.reset(h.reply(op::RST));
            }
            return;
        }
        let key = (h.dst_port, h.src_port);
        if h.op == op::REQUEST {
            self.guest_connect(h);
            return;
        }
        let Some(conn) = self.conns.get_mut(&key) else {
            if h.op != op::RST {
                self.reset(h.reply(op::RST));
            }
            return;
        };
        conn.update_peer_credit(&h);
        match h.op {
            op::RESPONSE if conn.state == ConnState::Connecting => {
                conn.state = ConnState::Established;
                conn.host_readable = true;
                conn.push_line_to_host(&format!("OK {}\n", conn.local_port));
            }
            op::RW if conn.state == ConnState::Established => {
                self.counters.tx_bytes += payload.len() as u64;
                if !conn.push_from_guest(payload) {
                    tracing::warn!("vsock: guest overran its credit on port {}", key.0);
                    let rst = conn.header(self.cid, op::RST, 0);
                    self.remove(key);
                    self.reset(rst);
                } else if conn.credit_update_due() {
                    let up = conn.header(self.cid, op::CREDIT_UPDATE, 0);
                    self.ctrl.push_back(up);
                }
            }
            op::CREDIT_UPDATE => {}
            op::CREDIT_REQUEST => {
                let up = conn.header(self.cid, op::CREDIT_UPDATE, 0);
                self.ctrl.push_back(up);
            }
            op::SHUTDOWN => {
                if h.flags & SHUTDOWN_SEND != 0 {
                    conn.guest_done_sending = true;
                    conn.flush();
                }
                if h.flags & (SHUTDOWN_RCV | SHUTDOWN_SEND) == SHUTDOWN_RCV | SHUTDOWN_SEND {
                    // The guest closed: acknowledge with a reset, as Linux expects, and keep
                    // the host side until the guest's last bytes are out.
                    let rst = conn.header(self.cid, op::RST, 0);
                    if conn.flushed() {
                        self.remove(key);
                    } else {
                        conn.state = ConnState::Draining;
                    }
                    self.ctrl.push_back(rst);
                }
            }
            op::RST => self.remove(key),
            _ => {
                let rst = conn.header(self.cid, op::RST, 0);
                self.remove(key);
                self.reset(rst);
            }
        }
    }

    /// The guest connects to host port `h.dst_port`: reach `<uds_path>_<port>`.
    fn guest_connect(&mut self, h: Header) {
        let key = (h.dst_port, h.src_port);
        if self.conns.contains_key(&key) {
            self.reset(h.reply(op::RST));
            return;
        }
        let mut path = self.uds_path.clone().into_os_string();
        path.push(format!("_{}", h.dst_port));
        let stream = match UnixStream::connect(&path) {
            Ok(s)
                if s.set_nonblocking(true).is_ok() && watch(&self.epoll, s.as_raw_fd()).is_ok() =>
            {
                s
            }
            _ => {
                self.reset(h.reply(op::RST));
                return;
            }
        };
        let fd = stream.as_raw_fd();
        let mut conn = Conn::new(stream, ConnState::Established, h.dst_port, h.src_port);
        conn.update_peer_credit(&h);
        conn.host_readable = true;
        self.ctrl.push_back(conn.header(self.cid, op::RESPONSE, 0));
        self.by_fd.insert(fd, key);
        self.conns.insert(key, conn);
        self.counters.guest_connections += 1;
    }

    /// Read every packet the guest queued for sending.
    fn process_tx(&mut self, txq: &mut Queue, mem: &GuestMem) -> Result<bool, VirtioError> {
        let mut used = false;
        let mut payload = Vec::new();
        while let Some(chain) = txq.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            if let Ok(mut r) = chain.reader(mem) {
                let mut hdr = [0u8; HDR_LEN];
                if r.read_exact(&mut hdr).is_ok() {
                    let h = Header::from_bytes(&hdr);
                    let len = (h.len as usize).min(r.available_bytes());
                    payload.resize(len, 0);
                    if r.read_exact(&mut payload).is_ok() {
                        self.handle_guest_packet(h, &payload);
                    }
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

    /// The next packet for the guest given a buffer of `room` bytes: control packets first,
    /// then data from a readable connection. None when there is nothing to send.
    fn next_for_guest(&mut self, room: usize) -> Option<(Header, usize)> {
        if let Some(h) = self.ctrl.pop_front() {
            return Some((h, 0));
        }
        let room = room.saturating_sub(HDR_LEN).min(self.buf.len());
        if room == 0 {
            return None;
        }
        let keys: Vec<Key> = self
            .conns
            .iter()
            .filter(|(_, c)| c.wants_rx())
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            let conn = self.conns.get_mut(&key)?;
            match conn.read_for_guest(&mut self.buf[..room]) {
                Ok(0) => {
                    conn.host_eof = true;
                    let mut h = conn.header(self.cid, op::SHUTDOWN, 0);
                    h.flags = SHUTDOWN_RCV | SHUTDOWN_SEND;
                    return Some((h, 0));
                }
                Ok(n) => {
                    self.counters.rx_bytes += n as u64;
                    return Some((conn.header(self.cid, op::RW, n as u32), n));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => {
                    let rst = conn.header(self.cid, op::RST, 0);
                    self.remove(key);
                    self.counters.resets += 1;
                    return Some((rst, 0));
                }
            }
        }
        None
    }

    /// Fill the guest's receive buffers with whatever is ready.
    fn fill_rx(&mut self, rxq: &mut Queue, mem: &GuestMem) -> Result<bool, VirtioError> {
        let mut used = false;
        while let Some(chain) = rxq.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let mut w = chain.writer(mem).map_err(|e| VirtioError::BadRequest {
                queue: RX,
                message: e.to_string(),
            })?;
            let Some((h, n)) = self.next_for_guest(w.available_bytes()) else {
                rxq.go_to_previous_position();
                break;
            };
            let bad = |e: std::io::Error| VirtioError::BadRequest {
                queue: RX,
                message: e.to_string(),
            };
            w.write_all(&h.to_bytes()).map_err(bad)?;
            w.write_all(&self.buf[..n]).map_err(bad)?;
            rxq.add_used(mem, head, (HDR_LEN + n) as u32)
                .map_err(|e| VirtioError::Queue {
                    queue: RX,
                    message: e.to_string(),
                })?;
            used = true;
        }
        Ok(used)
    }

    fn pump(
        &mut self,
        queues: &mut [Queue],
        mem: &GuestMem,
        tx: bool,
    ) -> Result<bool, VirtioError> {
        self.poll_host();
        let mut used = false;
        if tx {
            if let Some(q) = queues.get_mut(TX) {
                used |= self.process_tx(q, mem)?;
            }
        }
        if let Some(q) = queues.get_mut(RX).filter(|q| q.ready()) {
            used |= self.fill_rx(q, mem)?;
        }
        Ok(used)
    }
}

impl Drop for Vsock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.uds_path);
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        19
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[256, 256, 256]
    }

    fn features(&self) -> u64 {
        0
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.cid.to_le_bytes(), offset, data);
    }

    fn process_queue(
        &mut self,
        queue: usize,
        queues: &mut [Queue],
        mem: &GuestMem,
    ) -> Result<bool, VirtioError> {
        self.pump(queues, mem, queue == TX)
    }

    fn reset(&mut self) {
        let keys: Vec<Key> = self.conns.keys().copied().collect();
        for k in keys {
            self.remove(k);
        }
        for (fd, _) in self.handshakes.drain() {
            unwatch(&self.epoll, fd);
        }
        self.ctrl.clear();
    }

    fn host_fds(&self) -> Vec<(RawFd, EventSet)> {
        vec![(self.epoll.as_raw_fd(), EventSet::IN)]
    }

    fn host_event(
        &mut self,
        _fd: RawFd,
        queues: &mut [Queue],
        mem: &GuestMem,
    ) -> Result<bool, VirtioError> {
        self.pump(queues, mem, false)
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let c = &self.counters;
        vec![
            ("host_connections", c.host_connections),
            ("guest_connections", c.guest_connections),
            ("open_connections", self.conns.len() as u64),
            ("rx_bytes", c.rx_bytes),
            ("tx_bytes", c.tx_bytes),
            ("resets", c.resets),
        ]
    }
}
