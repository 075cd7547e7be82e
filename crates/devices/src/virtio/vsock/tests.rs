//! The hybrid vsock against in-memory guest queues and real Unix sockets on the host side.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::virtio::testing::{new_mem, write_desc, DriverQueue, WRITE};

const GUEST_CID: u64 = 3;
const RX_BUFS: u64 = 0x100000;
const TX_BUFS: u64 = 0x200000;

/// A guest driver's side of the device's queues.
struct Guest {
    mem: GuestMem,
    rx: DriverQueue,
    tx: DriverQueue,
    qs: Vec<Queue>,
    rx_next_desc: u16,
    rx_seen: u16,
    tx_next_desc: u16,
}

impl Guest {
    fn new() -> Self {
        let mem = new_mem();
        let rx = DriverQueue::new(0x10000, 64);
        let tx = DriverQueue::new(0x20000, 64);
        let ev = DriverQueue::new(0x30000, 64);
        let qs = vec![rx.queue(&mem), tx.queue(&mem), ev.queue(&mem)];
        Guest {
            mem,
            rx,
            tx,
            qs,
            rx_next_desc: 0,
            rx_seen: 0,
            tx_next_desc: 0,
        }
    }

    /// Post `n` 4 KiB receive buffers.
    fn post_rx(&mut self, n: u16) {
        for _ in 0..n {
            let i = self.rx_next_desc;
            let addr = RX_BUFS + u64::from(i) * 0x1000;
            write_desc(&self.mem, self.rx.desc, i, addr, 0x1000, WRITE, 0);
            self.rx.publish(&self.mem, &[i]);
            self.rx_next_desc += 1;
        }
    }

    /// Packets the device put in receive buffers since the last call.
    fn received(&mut self) -> Vec<(Header, Vec<u8>)> {
        let mut out = Vec::new();
        while self.rx_seen != self.rx.used_idx(&self.mem) {
            let (head, len) = self.rx.used_elem(&self.mem, self.rx_seen);
            let addr = RX_BUFS + u64::from(head) * 0x1000;
            let mut hdr = [0u8; HDR_LEN];
            self.mem.read_slice(&mut hdr, GuestAddress(addr)).unwrap();
            let mut payload = vec![0u8; len as usize - HDR_LEN];
            self.mem
                .read_slice(&mut payload, GuestAddress(addr + HDR_LEN as u64))
                .unwrap();
            out.push((Header::from_bytes(&hdr), payload));
            self.rx_seen += 1;
        }
        out
    }

    /// Send one packet from the guest and let the device handle its TX queue.
    fn send(&mut self, dev: &mut Vsock, h: Header, payload: &[u8]) {
        let i = self.tx_next_desc;
        let addr = TX_BUFS + u64::from(i) * 0x1000;
        let mut h = h;
        h.len = payload.len() as u32;
        self.mem
            .write_slice(&h.to_bytes(), GuestAddress(addr))
            .unwrap();
        self.mem
            .write_slice(payload, GuestAddress(addr + HDR_LEN as u64))
            .unwrap();
        write_desc(
            &self.mem,
            self.tx.desc,
            i,
            addr,
            (HDR_LEN + payload.len()) as u32,
            0,
            0,
        );
        self.tx.publish(&self.mem, &[i]);
        self.tx_next_desc += 1;
        assert!(dev.process_queue(TX, &mut self.qs, &self.mem).unwrap());
    }

    fn host_event(&mut self, dev: &mut Vsock) {
        dev.host_event(0, &mut self.qs, &self.mem).unwrap();
    }
}

fn guest_hdr(op: u16, guest_port: u32, host_port: u32) -> Header {
    Header {
        src_cid: GUEST_CID,
        dst_cid: HOST_CID,
        src_port: guest_port,
        dst_port: host_port,
        len: 0,
        kind: TYPE_STREAM,
        op,
        flags: 0,
        buf_alloc: 65536,
        fwd_cnt: 0,
    }
}

fn host_stream(path: &Path) -> UnixStream {
    let s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn read_exactly(s: &mut UnixStream, n: usize) -> String {
    let mut b = vec![0u8; n];
    s.read_exact(&mut b).unwrap();
    String::from_utf8(b).unwrap()
}

/// Run the device until it answers (the host's writes reach the nested epoll asynchronously).
fn until<T>(mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..500 {
        if let Some(v) = f() {
            return v;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("the device never answered");
}

#[test]
fn host_connects_to_a_guest_port_and_data_flows_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("vsock.sock");
    let mut dev = Vsock::new(GUEST_CID, &uds).unwrap();
    let mut cfg = [0u8; 8];
    dev.read_config(0, &mut cfg);
    assert_eq!(u64::from_le_bytes(cfg), GUEST_CID);
    let mut g = Guest::new();
    g.post_rx(8);

    let mut host = host_stream(&uds);
    host.write_all(b"CONNECT 5000\n").unwrap();
    let (req, _) = until(|| {
        g.host_event(&mut dev);
        g.received().pop()
    });
    assert_eq!(req.op, op::REQUEST);
    assert_eq!((req.dst_cid, req.dst_port), (GUEST_CID, 5000));
    assert_eq!((req.src_cid, req.src_port), (HOST_CID, FIRST_LOCAL_PORT));

    g.send(
        &mut dev,
        guest_hdr(op::RESPONSE, 5000, FIRST_LOCAL_PORT),
        &[],
    );
    assert_eq!(
        read_exactly(&mut host, 14),
        format!("OK {FIRST_LOCAL_PORT}\n")
    );

    host.write_all(b"hello").unwrap();
    let (rw, data) = until(|| {
        g.host_event(&mut dev);
        g.received().pop()
    });
    assert_eq!((rw.op, rw.len, data.as_slice()), (op::RW, 5, &b"hello"[..]));
    assert_eq!(rw.fwd_cnt, 0, "the OK line is not guest data");

    g.send(
        &mut dev,
        guest_hdr(op::RW, 5000, FIRST_LOCAL_PORT),
        b"world",
    );
    assert_eq!(read_exactly(&mut host, 5), "world");

    host.shutdown(std::net::Shutdown::Write).unwrap();
    let (shut, _) = until(|| {
        g.host_event(&mut dev);
        g.received().pop()
    });
    assert_eq!(
        (shut.op, shut.flags),
        (op::SHUTDOWN, SHUTDOWN_RCV | SHUTDOWN_SEND)
    );
    g.send(&mut dev, guest_hdr(op::RST, 5000, FIRST_LOCAL_PORT), &[]);
    assert!(dev.conns.is_empty());
    assert_eq!(dev.counters.rx_bytes, 5);
    assert_eq!(dev.counters.tx_bytes, 5);
}

#[test]
fn guest_connects_to_a_host_listener_or_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("v.sock");
    let mut dev = Vsock::new(GUEST_CID, &uds).unwrap();
    let listener = UnixListener::bind(dir.path().join("v.sock_6000")).unwrap();
    let mut g = Guest::new();
    g.post_rx(8);

    g.send(&mut dev, guest_hdr(op::REQUEST, 1234, 6000), &[]);
    let (resp, _) = g.received().pop().expect("an answer");
    assert_eq!(resp.op, op::RESPONSE);
    assert_eq!((resp.src_port, resp.dst_port), (6000, 1234));
    let (mut host, _) = listener.accept().unwrap();
    host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    g.send(&mut dev, guest_hdr(op::RW, 1234, 6000), b"ping");
    assert_eq!(read_exactly(&mut host, 4), "ping");
    host.write_all(b"pong").unwrap();
    let (rw, data) = until(|| {
        g.host_event(&mut dev);
        g.received().pop()
    });
    assert_eq!((rw.op, data.as_slice()), (op::RW, &b"pong"[..]));

    let mut shut = guest_hdr(op::SHUTDOWN, 1234, 6000);
    shut.flags = SHUTDOWN_RCV | SHUTDOWN_SEND;
    g.send(&mut dev, shut, &[]);
    assert_eq!(
        g.received().pop().unwrap().0.op,
        op::RST,
        "close acknowledged"
    );
    let mut rest = Vec::new();
    assert_eq!(host.read_to_end(&mut rest).unwrap(), 0, "host sees EOF");

    g.send(&mut dev, guest_hdr(op::REQUEST, 1235, 6001), &[]);
    assert_eq!(g.received().pop().unwrap().0.op, op::RST, "nobody listens");
    assert_eq!(dev.counters.guest_connections, 1);
}

#[test]
fn credit_limits_what_the_guest_gets_and_updates_resume_it() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("v.sock");
    let mut dev = Vsock::new(GUEST_CID, &uds).unwrap();
    let listener = UnixListener::bind(dir.path().join("v.sock_7000")).unwrap();
    let mut g = Guest::new();
    g.post_rx(8);
    let mut req = guest_hdr(op::REQUEST, 99, 7000);
    req.buf_alloc = 3;
    g.send(&mut dev, req, &[]);
    assert_eq!(g.received().pop().unwrap().0.op, op::RESPONSE);
    let (mut host, _) = listener.accept().unwrap();
    host.write_all(b"abcdef").unwrap();
    let (_, data) = until(|| {
        g.host_event(&mut dev);
        g.received().pop()
    });
    assert_eq!(data, b"abc", "only 3 bytes of credit");
    g.host_event(&mut dev);
    assert!(g.received().is_empty(), "no credit left");
    let mut up = guest_hdr(op::CREDIT_UPDATE, 99, 7000);
    up.buf_alloc = 3;
    up.fwd_cnt = 3;
    g.send(&mut dev, up, &[]);
    assert_eq!(g.received().pop().unwrap().1, b"def");
}

#[test]
fn bad_connect_lines_are_dropped_and_live_sockets_are_not_stolen() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("v.sock");
    let mut dev = Vsock::new(GUEST_CID, &uds).unwrap();
    assert!(matches!(
        Vsock::new(GUEST_CID, &uds),
        Err(VsockError::InUse { .. })
    ));
    let mut g = Guest::new();
    g.post_rx(2);
    let mut host = host_stream(&uds);
    host.write_all(b"HELLO 5\n").unwrap();
    host.set_nonblocking(true).unwrap();
    until(|| {
        g.host_event(&mut dev);
        let mut b = [0u8; 8];
        matches!(host.read(&mut b), Ok(0)).then_some(())
    });
    assert!(dev.handshakes.is_empty());
    assert!(g.received().is_empty());
    drop(dev);
    assert!(!uds.exists(), "the socket file goes with the device");
}

#[test]
fn a_refused_host_connect_closes_the_host_stream() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("v.sock");
    let mut dev = Vsock::new(GUEST_CID, &uds).unwrap();
    let mut g = Guest::new();
    g.post_rx(4);
    let mut host = host_stream(&uds);
    host.write_all(b"CONNECT 9\n").unwrap();
    let (req, _) = until(|| {
        g.host_event(&mut dev);
        g.received().pop()
    });
    assert_eq!(req.op, op::REQUEST);
    // Nobody listens on guest port 9: the guest resets.
    g.send(&mut dev, guest_hdr(op::RST, 9, req.src_port), &[]);
    let mut rest = Vec::new();
    assert_eq!(host.read_to_end(&mut rest).unwrap(), 0, "no OK, just EOF");
    assert!(dev.conns.is_empty());
}

#[test]
fn the_guest_hears_about_freed_buffer_space_as_the_host_reads() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("v.sock");
    let mut dev = Vsock::new(GUEST_CID, &uds).unwrap();
    let listener = UnixListener::bind(dir.path().join("v.sock_8000")).unwrap();
    let mut g = Guest::new();
    g.post_rx(8);
    g.send(&mut dev, guest_hdr(op::REQUEST, 77, 8000), &[]);
    assert_eq!(g.received().pop().unwrap().0.op, op::RESPONSE);
    let (mut host, _) = listener.accept().unwrap();
    host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Send just over half the advertised buffer in 4 KiB packets; the host reads it all.
    let chunk = vec![0x42u8; 4000];
    let n = (conn::CONN_BUF as usize / 2) / chunk.len() + 1;
    let reader = std::thread::spawn(move || {
        let mut got = vec![0u8; n * 4000];
        host.read_exact(&mut got).unwrap();
        got.iter().all(|&b| b == 0x42)
    });
    for _ in 0..n {
        g.send(&mut dev, guest_hdr(op::RW, 77, 8000), &chunk);
    }
    let updates = until(|| {
        g.host_event(&mut dev);
        let ups: Vec<Header> = g
            .received()
            .into_iter()
            .map(|(h, _)| h)
            .filter(|h| h.op == op::CREDIT_UPDATE)
            .collect();
        (!ups.is_empty()).then_some(ups)
    });
    assert!(reader.join().unwrap(), "every byte arrived intact");
    let last = updates.last().unwrap();
    assert_eq!(last.buf_alloc, conn::CONN_BUF);
    assert!(
        last.fwd_cnt as usize >= conn::CONN_BUF as usize / 2,
        "{last:?}"
    );
}
