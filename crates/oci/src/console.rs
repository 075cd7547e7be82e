//! Terminals: a pty made inside the container's devpts, its master sent over the console
//! socket with `SCM_RIGHTS` (runc's `--console-socket` protocol), its slave bound on
//! `/dev/console` and made the controlling terminal of the process.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::sys::stat::Mode;

use crate::init::InitError;
use crate::syscall::Syscall;

fn sys(step: &'static str) -> impl FnOnce(nix::Error) -> InitError {
    move |source| InitError::Sys {
        step: step.into(),
        source,
    }
}

/// Make a pty in the rootfs's devpts, bind its slave on `/dev/console`, send the master over
/// `socket`; returns the slave.
pub fn setup(sys_: &dyn Syscall, rootfs: &Path, socket: RawFd) -> Result<OwnedFd, InitError> {
    let ptmx = rootfs.join("dev/pts/ptmx");
    let ptmx = if ptmx.exists() {
        ptmx
    } else {
        rootfs.join("dev/ptmx")
    };
    let master = nix::fcntl::open(
        &ptmx,
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("open ptmx"))?;
    // SAFETY: `open` returned a new descriptor that we own.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    let mut unlock: libc::c_int = 0;
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCSPTLCK and TIOCGPTN take a pointer to an int we own.
    unsafe {
        nix::errno::Errno::result(libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCSPTLCK,
            &mut unlock,
        ))
        .map_err(sys("unlock pty"))?;
        nix::errno::Errno::result(libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n))
            .map_err(sys("get pty number"))?;
    }
    let slave_path = rootfs.join(format!("dev/pts/{n}"));
    let slave = nix::fcntl::open(
        &slave_path,
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("open pty slave"))?;
    // SAFETY: `open` returned a new descriptor that we own.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    let console = rootfs.join("dev/console");
    sys_.touch(&console).map_err(sys("create /dev/console"))?;
    sys_.mount(Some(&slave_path), &console, None, MsFlags::MS_BIND, None)
        .map_err(sys("bind pty on /dev/console"))?;
    send_fd(socket, master.as_raw_fd(), "/dev/ptmx")?;
    Ok(slave)
}

/// For `exec --tty`: a pty from the container's `/dev/ptmx` (we are in its mount namespace),
/// its master sent over `socket`; returns the slave.
pub fn open_pty_in_container(socket: RawFd) -> Result<OwnedFd, InitError> {
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(sys("open /dev/ptmx"))?;
    nix::pty::unlockpt(&master).map_err(sys("unlock pty"))?;
    // SAFETY: ptsname is only unsafe for its static buffer; this process is single-threaded.
    let name = unsafe { nix::pty::ptsname(&master) }.map_err(sys("pty name"))?;
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("open pty slave"))?;
    send_fd(socket, master.as_raw_fd(), "/dev/ptmx")?;
    // SAFETY: `open` returned a new descriptor that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(slave) })
}

/// Send `fd` over the unix socket `socket` with `name` as the payload, as runc does.
pub fn send_fd(socket: RawFd, fd: RawFd, name: &str) -> Result<(), InitError> {
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(name.as_bytes())];
    sendmsg::<()>(socket, &iov, &cmsg, MsgFlags::empty(), None)
        .map(drop)
        .map_err(sys("send pty master over the console socket"))
}

/// Make `pty` stdin, stdout, stderr and the controlling terminal.
pub fn make_controlling(pty: OwnedFd) -> Result<(), InitError> {
    for target in 0..3 {
        // SAFETY: dup2 onto the standard descriptors, which we own.
        let r = unsafe { libc::dup2(pty.as_raw_fd(), target) };
        nix::errno::Errno::result(r).map_err(sys("dup2 pty"))?;
    }
    // SAFETY: TIOCSCTTY with an integer argument on our session's terminal.
    let r = unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
    nix::errno::Errno::result(r).map_err(sys("make pty the controlling terminal"))?;
    Ok(())
}

/// Connect to the console socket at `path` (by the runtime, before the clone).
pub fn connect(path: &Path) -> std::io::Result<OwnedFd> {
    let s = std::os::unix::net::UnixStream::connect(path)?;
    Ok(OwnedFd::from(s))
}
