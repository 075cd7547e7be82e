//! Queue handling of virtio-net against a datagram socket pair standing in for the tap.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;

use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::virtio::testing::{new_mem, write_desc, DriverQueue, NEXT, WRITE};

fn nic() -> (Net, UnixDatagram) {
    let (ours, peer) = UnixDatagram::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    peer.set_nonblocking(true).unwrap();
    (Net::new(OwnedFd::from(ours), derive_mac("tap-test")), peer)
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; VNET_HDR_LEN];
    f.extend_from_slice(payload);
    f
}

/// The RX queue at 0x10000 and the TX queue at 0x20000, as a driver sets them up.
fn queues(mem: &GuestMem) -> (DriverQueue, DriverQueue, Vec<Queue>) {
    let rx = DriverQueue::new(0x10000, 8);
    let tx = DriverQueue::new(0x20000, 8);
    let qs = vec![rx.queue(mem), tx.queue(mem)];
    (rx, tx, qs)
}

#[test]
fn config_space_holds_the_mac_and_macs_parse() {
    let (n, _peer) = nic();
    let mut b = [0u8; 6];
    n.read_config(0, &mut b);
    assert_eq!(b, derive_mac("tap-test"));
    assert_eq!(b[0], 0x02, "locally administered unicast");
    assert_ne!(derive_mac("a"), derive_mac("b"));
    assert_eq!(
        parse_mac("52:54:00:12:34:56"),
        Some([0x52, 0x54, 0, 0x12, 0x34, 0x56])
    );
    assert_eq!(parse_mac("01:00:5e:00:00:01"), None, "multicast refused");
    assert_eq!(parse_mac("52:54:00:12:34"), None);
    assert_eq!(parse_mac("52:54:00:12:34:56:78"), None);
    assert_eq!(
        format_mac(&[0x52, 0x54, 0, 0x12, 0x34, 0x56]),
        "52:54:00:12:34:56"
    );
    assert_eq!(n.device_type(), 1);
    assert_eq!(n.queue_max_sizes().len(), 2);
}

#[test]
fn rx_delivers_a_frame_into_a_posted_buffer() {
    let mem = new_mem();
    let (mut n, peer) = nic();
    let (rx, _tx, mut qs) = queues(&mem);
    write_desc(&mem, rx.desc, 0, 0x40000, 2048, WRITE, 0);
    rx.publish(&mem, &[0]);
    peer.send(&frame(b"hello-guest")).unwrap();
    assert!(n.host_event(0, &mut qs, &mem).unwrap());
    assert_eq!(rx.used_elem(&mem, 0), (0, (VNET_HDR_LEN + 11) as u32));
    let mut got = [0u8; 11];
    mem.read_slice(&mut got, GuestAddress(0x40000 + VNET_HDR_LEN as u64))
        .unwrap();
    assert_eq!(&got, b"hello-guest");
    let num_buffers: u16 = mem.read_obj(GuestAddress(0x40000 + 10)).unwrap();
    assert_eq!(num_buffers, 1);
    assert_eq!(n.counters.rx_frames, 1);
    assert_eq!(n.counters.rx_bytes, 11);
    assert!(!n.host_event(0, &mut qs, &mem).unwrap(), "nothing more");
}

#[test]
fn rx_frame_waits_for_a_buffer_then_goes_in_on_notify() {
    let mem = new_mem();
    let (mut n, peer) = nic();
    let (rx, _tx, mut qs) = queues(&mem);
    peer.send(&frame(b"first")).unwrap();
    peer.send(&frame(b"second")).unwrap();
    assert!(!n.host_event(0, &mut qs, &mem).unwrap(), "no buffer yet");
    write_desc(&mem, rx.desc, 0, 0x40000, 2048, WRITE, 0);
    rx.publish(&mem, &[0]);
    assert!(n.process_queue(RX, &mut qs, &mem).unwrap());
    assert_eq!(rx.used_idx(&mem), 1, "one buffer, one frame");
    let mut got = [0u8; 5];
    mem.read_slice(&mut got, GuestAddress(0x40000 + VNET_HDR_LEN as u64))
        .unwrap();
    assert_eq!(&got, b"first", "frames keep their order");
    write_desc(&mem, rx.desc, 1, 0x41000, 2048, WRITE, 0);
    rx.publish(&mem, &[1]);
    assert!(n.process_queue(RX, &mut qs, &mem).unwrap());
    assert_eq!(rx.used_elem(&mem, 1), (1, (VNET_HDR_LEN + 6) as u32));
    assert_eq!(n.counters.rx_frames, 2);
}

#[test]
fn rx_drops_a_frame_larger_than_the_buffer() {
    let mem = new_mem();
    let (mut n, peer) = nic();
    let (rx, _tx, mut qs) = queues(&mem);
    write_desc(&mem, rx.desc, 0, 0x40000, 16, WRITE, 0);
    rx.publish(&mem, &[0]);
    peer.send(&frame(&[7u8; 100])).unwrap();
    assert!(n.host_event(0, &mut qs, &mem).unwrap());
    assert_eq!(rx.used_elem(&mem, 0), (0, 0));
    assert_eq!(n.counters.rx_dropped, 1);
}

#[test]
fn tx_gathers_a_chain_into_one_frame_on_the_tap() {
    let mem = new_mem();
    let (mut n, peer) = nic();
    let (_rx, tx, mut qs) = queues(&mem);
    mem.write_slice(&[0u8; VNET_HDR_LEN], GuestAddress(0x50000))
        .unwrap();
    mem.write_slice(b"to-the-host", GuestAddress(0x51000))
        .unwrap();
    write_desc(&mem, tx.desc, 0, 0x50000, VNET_HDR_LEN as u32, NEXT, 1);
    write_desc(&mem, tx.desc, 1, 0x51000, 11, 0, 0);
    tx.publish(&mem, &[0]);
    assert!(n.process_queue(TX, &mut qs, &mem).unwrap());
    assert_eq!(tx.used_elem(&mem, 0), (0, 0));
    let mut buf = [0u8; 64];
    let len = peer.recv(&mut buf).unwrap();
    assert_eq!(&buf[..len], frame(b"to-the-host").as_slice());
    assert_eq!((n.counters.tx_frames, n.counters.tx_bytes), (1, 11));
}

#[test]
fn tx_refuses_a_chain_shorter_than_the_header() {
    let mem = new_mem();
    let (mut n, peer) = nic();
    let (_rx, tx, mut qs) = queues(&mem);
    write_desc(&mem, tx.desc, 0, 0x50000, 4, 0, 0);
    tx.publish(&mem, &[0]);
    assert!(n.process_queue(TX, &mut qs, &mem).unwrap());
    assert_eq!(n.counters.tx_dropped, 1);
    let mut buf = [0u8; 64];
    assert!(peer.recv(&mut buf).is_err(), "nothing reached the tap");
}

/// A NIC whose driver accepted mergeable receive buffers, with `count` 64-byte buffers
/// posted at 0x40000, 0x41000, …
fn mergeable_nic_with_buffers(
    count: u16,
) -> (Net, UnixDatagram, GuestMem, DriverQueue, Vec<Queue>) {
    let mem = new_mem();
    let (mut n, peer) = nic();
    n.activate(offload::F_MRG_RXBUF);
    let (rx, _tx, qs) = queues(&mem);
    for i in 0..count {
        write_desc(
            &mem,
            rx.desc,
            i,
            0x40000 + 0x1000 * u64::from(i),
            64,
            WRITE,
            0,
        );
    }
    rx.publish(&mem, &(0..count).collect::<Vec<_>>());
    (n, peer, mem, rx, qs)
}

#[test]
fn mergeable_rx_spreads_a_frame_over_buffers_and_publishes_them_together() {
    let (mut n, peer, mem, rx, mut qs) = mergeable_nic_with_buffers(4);
    let payload: Vec<u8> = (0..150u8).collect();
    peer.send(&frame(&payload)).unwrap();
    assert!(n.host_event(0, &mut qs, &mem).unwrap());
    assert_eq!(
        rx.used_idx(&mem),
        3,
        "162 bytes in three 64-byte buffers, one index update"
    );
    assert_eq!(rx.used_elem(&mem, 0), (0, 64));
    assert_eq!(rx.used_elem(&mem, 1), (1, 64));
    assert_eq!(rx.used_elem(&mem, 2), (2, 34));
    let num_buffers: u16 = mem.read_obj(GuestAddress(0x40000 + 10)).unwrap();
    assert_eq!(num_buffers, 3);
    let mut got = vec![0u8; 150];
    mem.read_slice(&mut got[..52], GuestAddress(0x40000 + VNET_HDR_LEN as u64))
        .unwrap();
    mem.read_slice(&mut got[52..116], GuestAddress(0x41000))
        .unwrap();
    mem.read_slice(&mut got[116..], GuestAddress(0x42000))
        .unwrap();
    assert_eq!(got, payload);
    assert_eq!((n.counters.rx_frames, n.counters.rx_bytes), (1, 150));
}

#[test]
fn mergeable_rx_waits_whole_when_buffers_run_short() {
    let (mut n, peer, mem, rx, mut qs) = mergeable_nic_with_buffers(2);
    peer.send(&frame(&[9u8; 150])).unwrap();
    assert!(
        !n.host_event(0, &mut qs, &mem).unwrap(),
        "two buffers are not enough"
    );
    assert_eq!(rx.used_idx(&mem), 0, "nothing half-delivered");
    write_desc(&mem, rx.desc, 2, 0x42000, 64, WRITE, 0);
    rx.publish(&mem, &[2]);
    assert!(n.process_queue(RX, &mut qs, &mem).unwrap());
    assert_eq!(rx.used_idx(&mem), 3);
    assert_eq!(
        rx.used_elem(&mem, 0),
        (0, 64),
        "the same buffers, from the first"
    );
}

#[test]
fn mergeable_rx_refuses_a_buffer_smaller_than_the_header() {
    let mem = new_mem();
    let (mut n, peer) = nic();
    n.activate(offload::F_MRG_RXBUF);
    let (rx, _tx, mut qs) = queues(&mem);
    write_desc(&mem, rx.desc, 0, 0x40000, 8, WRITE, 0);
    rx.publish(&mem, &[0]);
    peer.send(&frame(b"x")).unwrap();
    let e = n.host_event(0, &mut qs, &mem).unwrap_err();
    assert!(e.to_string().contains("smaller than the header"), "{e}");
}

#[test]
fn no_interrupt_while_the_driver_polls() {
    let mem = new_mem();
    let (mut n, peer) = nic();
    let (rx, _tx, mut qs) = queues(&mem);
    write_desc(&mem, rx.desc, 0, 0x40000, 2048, WRITE, 0);
    write_desc(&mem, rx.desc, 1, 0x41000, 2048, WRITE, 0);
    rx.publish(&mem, &[0, 1]);
    mem.write_obj(1u16, GuestAddress(rx.avail)).unwrap(); // VRING_AVAIL_F_NO_INTERRUPT
    peer.send(&frame(b"polled")).unwrap();
    assert!(
        !n.host_event(0, &mut qs, &mem).unwrap(),
        "no interrupt wanted"
    );
    assert_eq!(rx.used_idx(&mem), 1, "but the frame is delivered");
    mem.write_obj(0u16, GuestAddress(rx.avail)).unwrap();
    peer.send(&frame(b"woken")).unwrap();
    assert!(n.host_event(0, &mut qs, &mem).unwrap());
}

#[test]
fn offers_offloads_and_mergeable_buffers() {
    let (n, _peer) = nic();
    let f = n.features();
    for bit in [0, 1, 5, 7, 8, 11, 12, 15] {
        assert_ne!(f & (1 << bit), 0, "feature bit {bit}");
    }
}
