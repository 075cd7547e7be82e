//! Persistent tap devices for VMs: created by name here, opened by name by the VMM.
//!
//! The tap is made with `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR` (virtio-net's header in front of
//! every frame) and `TUNSETPERSIST`, so it outlives the descriptor that created it; the VMM
//! opens `/dev/net/tun` and attaches to it with `TUNSETIFF` and the same flags ([`open_tap`]).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

/// `IFF_TAP`: an Ethernet device.
pub const IFF_TAP: u16 = 0x0002;
/// `IFF_NO_PI`: no packet-information prefix.
pub const IFF_NO_PI: u16 = 0x1000;
/// `IFF_VNET_HDR`: frames carry a `virtio_net_hdr`.
pub const IFF_VNET_HDR: u16 = 0x4000;
/// The flags corral's taps use.
pub const TAP_FLAGS: u16 = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;

const TUN_PATH: &str = "/dev/net/tun";
const TUNSETIFF: libc::c_ulong =
    nix::request_code_write!(b'T', 202, std::mem::size_of::<libc::c_int>()) as libc::c_ulong;
const TUNSETPERSIST: libc::c_ulong =
    nix::request_code_write!(b'T', 203, std::mem::size_of::<libc::c_int>()) as libc::c_ulong;

/// `struct ifreq` as TUNSETIFF reads it: a name and the flags, padded to 40 bytes.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: u16,
    _pad: [u8; 22],
}

/// A tap could not be created, opened or removed.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The name does not fit an interface name.
    #[error("tap name {0:?} is empty or longer than 15 bytes")]
    Name(String),
    /// `/dev/net/tun` could not be opened.
    #[error("{TUN_PATH}: {0}")]
    Open(std::io::Error),
    /// An ioctl on the tap failed.
    #[error("tap {name}: {op}: {source}")]
    Ioctl {
        /// The tap.
        name: String,
        /// TUNSETIFF or TUNSETPERSIST.
        op: &'static str,
        /// The cause.
        source: std::io::Error,
    },
}

fn ifreq(name: &str, flags: u16) -> Result<IfReq, TapError> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(TapError::Name(name.to_string()));
    }
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags,
        _pad: [0; 22],
    };
    req.name[..bytes.len()].copy_from_slice(bytes);
    Ok(req)
}

fn ioctl(
    file: &File,
    name: &str,
    op: &'static str,
    req: libc::c_ulong,
    arg: usize,
) -> Result<(), TapError> {
    // SAFETY: `file` is an open /dev/net/tun descriptor; `arg` is either a pointer to a live
    // IfReq of the size TUNSETIFF reads, or an integer for TUNSETPERSIST.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), req, arg) };
    if rc < 0 {
        return Err(TapError::Ioctl {
            name: name.to_string(),
            op,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Open tap `name` (creating it when absent) and return the descriptor frames flow through.
pub fn open_tap(name: &str) -> Result<File, TapError> {
    let mut req = ifreq(name, TAP_FLAGS)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(TUN_PATH)
        .map_err(TapError::Open)?;
    ioctl(
        &file,
        name,
        "TUNSETIFF",
        TUNSETIFF,
        &mut req as *mut IfReq as usize,
    )?;
    Ok(file)
}

/// Create tap `name` so that it persists after this call (a VMM attaches to it later).
pub fn create_persistent_tap(name: &str) -> Result<(), TapError> {
    let file = open_tap(name)?;
    ioctl(&file, name, "TUNSETPERSIST", TUNSETPERSIST, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_names_that_do_not_fit() {
        assert!(matches!(ifreq("", TAP_FLAGS), Err(TapError::Name(_))));
        assert!(matches!(
            ifreq("a-very-long-name-x", TAP_FLAGS),
            Err(TapError::Name(_))
        ));
        let r = ifreq("tap0", TAP_FLAGS).unwrap();
        assert_eq!(&r.name[..5], b"tap0\0");
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
    }
}
