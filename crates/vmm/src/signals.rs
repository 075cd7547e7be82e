//! SIGTERM, SIGINT and SIGHUP end the VM in order (vCPUs stopped and joined, sockets removed)
//! instead of killing the process: they are blocked in every thread and read from a signalfd
//! in the event loop.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;

use crate::machine::MachineHandle;

fn termination_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a sigset_t we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        set
    }
}

/// Stops the machine on a termination signal.
pub struct TerminationSignals {
    fd: OwnedFd,
    handle: MachineHandle,
}

impl TerminationSignals {
    /// Block the termination signals in this thread (threads spawned later inherit the mask)
    /// and open a signalfd for them. Call before the machine starts its vCPU threads.
    pub fn install(handle: MachineHandle) -> std::io::Result<Self> {
        let set = termination_set();
        // SAFETY: the set is initialised; the old mask is not needed.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        // SAFETY: a new signalfd for an initialised set; we take ownership of the fd.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(TerminationSignals { fd, handle })
    }
}

impl MutEventSubscriber for TerminationSignals {
    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        // SAFETY: an all-zero signalfd_siginfo is valid; read fills at most its size.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: reading into a local struct of `size` bytes.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                size,
            )
        };
        if n == size as isize {
            tracing::info!("signal {} received: stopping the VM", info.ssi_signo);
            self.handle.stop();
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new_raw(self.fd.as_raw_fd(), EventSet::IN)) {
            tracing::error!("signal handling not registered: {e:?}");
        }
    }
}
