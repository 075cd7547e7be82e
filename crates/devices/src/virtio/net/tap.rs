//! Opening an existing Linux tap interface for a virtio-net device.
//!
//! Hand-written because none of the rust-vmm crates we use ships a tap (vmm-sys-util 0.15 has
//! none; Firecracker and Cloud Hypervisor each keep their own small tap module, not
//! published). It is three ioctls from libc's definitions through vmm-sys-util's ioctl
//! helpers: TUNSETIFF (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR), TUNSETVNETHDRSZ (the 12-byte
//! virtio 1.x header, so guest frames pass through unchanged) and TUNSETOFFLOAD (none until
//! the driver has accepted offloads, see [`set_offloads`]).

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use vmm_sys_util::ioctl::{ioctl_with_mut_ref, ioctl_with_ref, ioctl_with_val};

/// Size of the header before every frame: `struct virtio_net_hdr_v1` (virtio 1.x).
pub const VNET_HDR_LEN: usize = 12;

/// Errors opening a tap.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The name cannot be an interface name.
    #[error("tap {name:?}: not a valid interface name (1 to 15 bytes, no '/' or whitespace)")]
    BadName {
        /// The name given.
        name: String,
    },
    /// No interface with that name exists.
    #[error(
        "tap {name}: no such interface (create it first, e.g. `ip tuntap add {name} mode tap`)"
    )]
    Missing {
        /// The name given.
        name: String,
    },
    /// /dev/net/tun cannot be opened.
    #[error("tap {name}: opening /dev/net/tun: {source}")]
    OpenTun {
        /// The tap name.
        name: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// An ioctl on the tap failed.
    #[error("tap {name}: {op}: {source}")]
    Ioctl {
        /// The tap name.
        name: String,
        /// Which ioctl.
        op: &'static str,
        /// The OS error (EINVAL on TUNSETIFF: the interface is not a tap).
        source: std::io::Error,
    },
}

/// Whether `name` is acceptable as a Linux interface name.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

/// Open the existing tap interface `name` for frames with a virtio-net header; the returned
/// fd is non-blocking and reads/writes one frame per call. The interface is not created: a
/// missing one is an error, so nothing is left behind by a typo.
pub fn open_tap(name: &str) -> Result<OwnedFd, TapError> {
    if !valid_ifname(name) {
        return Err(TapError::BadName { name: name.into() });
    }
    if !Path::new("/sys/class/net").join(name).exists() {
        return Err(TapError::Missing { name: name.into() });
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(|source| TapError::OpenTun {
            name: name.into(),
            source,
        })?;
    let ioctl_err = |op: &'static str| TapError::Ioctl {
        name: name.into(),
        op,
        source: std::io::Error::last_os_error(),
    };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as i16;
    // SAFETY: TUNSETIFF reads and writes one ifreq, which `req` is, for the call's duration.
    if unsafe { ioctl_with_mut_ref(&file, libc::TUNSETIFF as _, &mut req) } < 0 {
        return Err(ioctl_err("TUNSETIFF"));
    }
    let hdr_len = VNET_HDR_LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads one int from the pointer, which stays valid.
    if unsafe { ioctl_with_ref(&file, libc::TUNSETVNETHDRSZ as _, &hdr_len) } < 0 {
        return Err(ioctl_err("TUNSETVNETHDRSZ"));
    }
    // SAFETY: TUNSETOFFLOAD takes its flags by value; 0 turns every offload off.
    if unsafe { ioctl_with_val(&file, libc::TUNSETOFFLOAD as _, 0) } < 0 {
        return Err(ioctl_err("TUNSETOFFLOAD"));
    }
    tracing::debug!("tap {name} open as fd {}", file.as_raw_fd());
    Ok(OwnedFd::from(file))
}

/// Tell the tap which offloads (`TUN_F_*` flags) the guest takes: frames with a partial
/// checksum, TSO segments. Fails with ENOTTY on an fd that is not a tap.
pub fn set_offloads(tap: &impl AsRawFd, flags: u32) -> std::io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its flags by value and touches no memory of ours.
    let rc = unsafe { ioctl_with_val(tap, libc::TUNSETOFFLOAD as _, flags.into()) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_any_syscall() {
        assert!(valid_ifname("corral0"));
        assert!(!valid_ifname(""));
        assert!(!valid_ifname("a/b"));
        assert!(!valid_ifname("sixteen-chars-xx"));
        assert!(matches!(
            open_tap("bad name"),
            Err(TapError::BadName { .. })
        ));
        let e = open_tap("vmmnosuch0").unwrap_err();
        assert!(matches!(e, TapError::Missing { .. }), "{e}");
        assert!(e.to_string().contains("ip tuntap add"), "{e}");
    }
}
