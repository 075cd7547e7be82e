//! Creating the init: one `clone3` that makes the new namespaces, returns a pidfd and, on
//! cgroup v2, starts the child directly in the container's cgroup. Fork semantics (no new
//! stack), so the child continues in this function's caller. The caller must be
//! single-threaded (the `corral oci` process is): the child runs ordinary Rust code until exec.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::sched::CloneFlags;

/// `struct clone_args` of linux/sched.h (version 2, with `cgroup`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_PIDFD: u64 = 0x1000;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Which side of the clone this is.
#[derive(Debug)]
pub enum Forked {
    /// The new process.
    Child,
    /// The caller, with the child's pid and a pidfd for it.
    Parent {
        /// Child pid (in the caller's pid namespace).
        pid: i32,
        /// A pidfd that polls readable when the child exits.
        pidfd: OwnedFd,
    },
}

/// Clone with `flags` (namespace flags), `SIGCHLD` on exit and, if given, into the cgroup v2
/// directory `cgroup_fd`.
pub fn clone3(flags: CloneFlags, cgroup_fd: Option<RawFd>) -> nix::Result<Forked> {
    let mut pidfd: i32 = -1;
    let mut args = CloneArgs {
        flags: flags.bits() as u64 | CLONE_PIDFD,
        pidfd: &mut pidfd as *mut i32 as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(fd) = cgroup_fd {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    // SAFETY: `args` is a valid clone_args of the size passed; with no stack given the child
    // runs on a copy of this stack exactly as after fork(2).
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match r {
        -1 => Err(nix::Error::last()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent {
            pid: pid as i32,
            // SAFETY: CLONE_PIDFD stored a new descriptor that nothing else owns.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        }),
    }
}

/// `pidfd_open(2)` for a process that is not our child.
pub fn pidfd_open(pid: i32) -> nix::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if r < 0 {
        return Err(nix::Error::last());
    }
    // SAFETY: the kernel returned a new descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// Wait until the process behind `pidfd` exits (poll readable), or `timeout_ms` passes
/// (-1: forever). Returns whether it exited.
pub fn wait_pidfd(pidfd: &OwnedFd, timeout_ms: i32) -> bool {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        if r < 0 && nix::Error::last() == nix::Error::EINTR {
            continue;
        }
        return r > 0;
    }
}

/// `_exit(2)` without running destructors or atexit handlers (for the child side).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and is async-signal-safe.
    unsafe { libc::_exit(code) }
}
