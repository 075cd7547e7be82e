//! Checksum and segmentation offloads: the features the NIC offers, and the tap offloads that
//! follow from those the driver accepted.
//!
//! The guest and the tap speak the same virtio-net header, so an offloaded frame passes
//! through unchanged in both directions: the guest hands the tap 64 KiB TCP segments with a
//! partial checksum (HOST_TSO*, CSUM) and the tap hands the guest the same (GUEST_TSO*,
//! GUEST_CSUM), which the tap does only once told so with TUNSETOFFLOAD. An emulated guest
//! then spends its instructions on one segment where it would have built and checksummed
//! forty-five frames.

use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_ECN, VIRTIO_NET_F_GUEST_TSO4,
    VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_HOST_ECN, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6,
    VIRTIO_NET_F_MAC, VIRTIO_NET_F_MRG_RXBUF,
};

const fn bit(feature: u32) -> u64 {
    1 << feature
}

/// `VIRTIO_NET_F_MRG_RXBUF`: a received frame may span several receive buffers.
pub const F_MRG_RXBUF: u64 = bit(VIRTIO_NET_F_MRG_RXBUF);

/// Every feature the NIC offers: its MAC, mergeable receive buffers, and checksum and TSO
/// offload both ways.
pub const OFFERED: u64 = bit(VIRTIO_NET_F_MAC)
    | F_MRG_RXBUF
    | bit(VIRTIO_NET_F_CSUM)
    | bit(VIRTIO_NET_F_HOST_TSO4)
    | bit(VIRTIO_NET_F_HOST_TSO6)
    | bit(VIRTIO_NET_F_HOST_ECN)
    | bit(VIRTIO_NET_F_GUEST_CSUM)
    | bit(VIRTIO_NET_F_GUEST_TSO4)
    | bit(VIRTIO_NET_F_GUEST_TSO6)
    | bit(VIRTIO_NET_F_GUEST_ECN);

/// The TUNSETOFFLOAD flags for a driver that accepted `acked`: what the tap may hand the
/// guest. Segmentation needs the checksum offload under it, as the specification requires.
pub fn tap_offloads(acked: u64) -> u32 {
    if acked & bit(VIRTIO_NET_F_GUEST_CSUM) == 0 {
        return 0;
    }
    let mut flags = libc::TUN_F_CSUM;
    if acked & bit(VIRTIO_NET_F_GUEST_TSO4) != 0 {
        flags |= libc::TUN_F_TSO4;
    }
    if acked & bit(VIRTIO_NET_F_GUEST_TSO6) != 0 {
        flags |= libc::TUN_F_TSO6;
    }
    let any_tso = flags & (libc::TUN_F_TSO4 | libc::TUN_F_TSO6) != 0;
    if any_tso && acked & bit(VIRTIO_NET_F_GUEST_ECN) != 0 {
        flags |= libc::TUN_F_TSO_ECN;
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_offloads_follow_what_the_driver_accepted() {
        assert_eq!(tap_offloads(0), 0);
        assert_eq!(tap_offloads(OFFERED & !bit(VIRTIO_NET_F_GUEST_CSUM)), 0);
        assert_eq!(tap_offloads(bit(VIRTIO_NET_F_GUEST_CSUM)), libc::TUN_F_CSUM);
        assert_eq!(
            tap_offloads(OFFERED),
            libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN
        );
        let no_tso6 = OFFERED & !bit(VIRTIO_NET_F_GUEST_TSO6);
        assert_eq!(
            tap_offloads(no_tso6),
            libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO_ECN
        );
        let ecn_only = bit(VIRTIO_NET_F_GUEST_CSUM) | bit(VIRTIO_NET_F_GUEST_ECN);
        assert_eq!(tap_offloads(ecn_only), libc::TUN_F_CSUM, "ECN needs TSO");
    }
}
