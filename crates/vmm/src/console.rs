//! Console input for the serial port: an event-loop subscriber that forwards a file descriptor
//! (stdin) to the guest and watches for the quit sequence (Ctrl-A then x) on a terminal.

use std::os::fd::RawFd;

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;

use crate::machine::MachineHandle;

/// The escape key: Ctrl-A.
pub const ESCAPE: u8 = 0x01;

/// Forwards input bytes to the guest's serial port.
pub struct ConsoleInput {
    fd: RawFd,
    handle: MachineHandle,
    /// Interpret Ctrl-A x as "quit" (on a terminal).
    escapes: bool,
    after_escape: bool,
    pending: Vec<u8>,
}

impl ConsoleInput {
    /// Read from `fd` (not owned, e.g. 0) for the machine behind `handle`.
    pub fn new(fd: RawFd, handle: MachineHandle, escapes: bool) -> Self {
        ConsoleInput {
            fd,
            handle,
            escapes,
            after_escape: false,
            pending: Vec::new(),
        }
    }

    /// Filter `bytes` for the escape sequence; returns the bytes for the guest and whether to quit.
    pub fn filter(&mut self, bytes: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(bytes.len());
        for &b in bytes {
            if !self.escapes {
                out.push(b);
            } else if self.after_escape {
                self.after_escape = false;
                match b {
                    b'x' | b'X' => return (out, true),
                    ESCAPE => out.push(ESCAPE),
                    other => {
                        out.push(ESCAPE);
                        out.push(other);
                    }
                }
            } else if b == ESCAPE {
                self.after_escape = true;
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

impl MutEventSubscriber for ConsoleInput {
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let mut buf = [0u8; 256];
        // SAFETY: reading into a local buffer of the given length from a descriptor we were
        // handed for this purpose.
        let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            if n == 0 || events.event_set().contains(EventSet::HANG_UP) {
                let _ = ops.remove(events);
            }
            return;
        }
        let (bytes, quit) = self.filter(&buf[..n as usize]);
        self.pending.extend(bytes);
        // The FIFO is small: hand over what fits, keep the rest for the next event.
        let taken = self.handle.serial_input(&self.pending);
        self.pending.drain(..taken);
        if quit {
            self.handle.stop();
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new_raw(self.fd, EventSet::IN)) {
            tracing::warn!("console input not available: {e:?}");
        }
    }
}
