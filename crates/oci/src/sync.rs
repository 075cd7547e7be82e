//! The runtime ↔ init channel: a `SOCK_SEQPACKET` socketpair carrying one-message steps.
//!
//! Wire format (version 1): each message is one packet; its first byte is the kind and the
//! rest its payload. `G` go on (runtime → init), `H` run the createRuntime hooks now
//! (init → runtime, answered by `G`), `R` ready (init → runtime), `E` + UTF-8 text: the init
//! failed. A closed socket means the other side exited.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};

/// Go on.
pub const GO: u8 = b'G';
/// Run the runtime-side hooks, then send `GO`.
pub const HOOKS: u8 = b'H';
/// The init is set up and waits for `start`.
pub const READY: u8 = b'R';
/// The init failed; the payload says why.
pub const ERROR: u8 = b'E';

/// One end of the channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

/// A message received.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    /// A kind byte and its payload.
    Msg(u8, Vec<u8>),
    /// The peer closed its end.
    Closed,
}

impl Channel {
    /// A connected pair (runtime end, init end), both close-on-exec.
    pub fn pair() -> nix::Result<(Channel, Channel)> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    /// Send a message.
    pub fn send(&self, kind: u8, payload: &[u8]) -> nix::Result<()> {
        let mut buf = Vec::with_capacity(payload.len() + 1);
        buf.push(kind);
        buf.extend_from_slice(payload);
        send(self.fd.as_raw_fd(), &buf, MsgFlags::MSG_NOSIGNAL).map(drop)
    }

    /// Receive one message, retrying on EINTR.
    pub fn recv(&self) -> nix::Result<Message> {
        let mut buf = [0u8; 4096];
        loop {
            match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(0) => return Ok(Message::Closed),
                Ok(n) => return Ok(Message::Msg(buf[0], buf[1..n].to_vec())),
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The raw descriptor.
    pub fn raw(&self) -> RawFd {
        self.fd.as_fd().as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_close() {
        let (a, b) = Channel::pair().unwrap();
        a.send(ERROR, b"boom").unwrap();
        assert_eq!(b.recv().unwrap(), Message::Msg(ERROR, b"boom".to_vec()));
        drop(a);
        assert_eq!(b.recv().unwrap(), Message::Closed);
    }
}
