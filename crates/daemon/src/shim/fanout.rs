//! A container's output shared by every attached client: each chunk goes to every client
//! still connected; with a backlog, the output made before the first client came is kept for
//! it (at most 1 MiB), so a client that starts the container and attaches right after misses
//! nothing. Closing ends every client's stream.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Output kept for the first client.
const BACKLOG_MAX: usize = 1 << 20;

#[derive(Default)]
struct Clients {
    streams: Vec<UnixStream>,
    /// Output nobody has seen yet; None once a client attached (or when none is kept).
    backlog: Option<Vec<u8>>,
    closed: bool,
}

/// The attached clients of one container's output.
pub struct Fanout {
    clients: Mutex<Clients>,
    first_attach: Condvar,
}

impl Fanout {
    /// No clients yet; with `backlog`, output is kept for the first one.
    pub fn new(backlog: bool) -> Fanout {
        Fanout {
            clients: Mutex::new(Clients {
                backlog: backlog.then(Vec::new),
                ..Default::default()
            }),
            first_attach: Condvar::new(),
        }
    }

    /// Send `bytes` to every client (and the backlog); a client that cannot take them is
    /// dropped.
    pub fn push(&self, bytes: &[u8]) {
        let mut c = self.clients.lock().expect("clients poisoned");
        if let Some(b) = &mut c.backlog {
            b.extend_from_slice(bytes);
            let excess = b.len().saturating_sub(BACKLOG_MAX);
            b.drain(..excess);
        }
        c.streams.retain_mut(|s| s.write_all(bytes).is_ok());
    }

    /// Add a client: it gets the backlog when it is the first, then every later chunk.
    /// False when the output already ended (after the backlog was sent) or the client left.
    pub fn attach(&self, conn: &UnixStream) -> bool {
        let mut c = self.clients.lock().expect("clients poisoned");
        if let Some(backlog) = c.backlog.take() {
            self.first_attach.notify_all();
            if (&*conn).write_all(&backlog).is_err() {
                return false;
            }
        }
        if c.closed {
            return false;
        }
        match conn.try_clone() {
            Ok(out) => {
                c.streams.push(out);
                true
            }
            Err(_) => false,
        }
    }

    /// Wait up to `wait` for a first client to take the backlog (none kept: no wait).
    pub fn wait_first_client(&self, wait: Duration) {
        let c = self.clients.lock().expect("clients poisoned");
        let _ = self
            .first_attach
            .wait_timeout_while(c, wait, |c| c.backlog.is_some());
    }

    /// End every client's stream; later clients get only the backlog.
    pub fn close(&self) {
        let mut c = self.clients.lock().expect("clients poisoned");
        c.closed = true;
        for s in c.streams.drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_first_client_gets_the_backlog_later_ones_only_new_output() {
        let f = Fanout::new(true);
        f.push(b"early ");
        let (a, mut a_peer) = UnixStream::pair().unwrap();
        assert!(f.attach(&a));
        let (b, mut b_peer) = UnixStream::pair().unwrap();
        assert!(f.attach(&b));
        f.push(b"late");
        f.close();
        drop((a, b));
        let mut got = String::new();
        a_peer.read_to_string(&mut got).unwrap();
        assert_eq!(got, "early late");
        got.clear();
        b_peer.read_to_string(&mut got).unwrap();
        assert_eq!(got, "late");
        // After the end a client is refused.
        let (c, _c_peer) = UnixStream::pair().unwrap();
        assert!(!f.attach(&c));
    }

    #[test]
    fn without_a_backlog_nothing_is_kept_and_nobody_waits() {
        let f = Fanout::new(false);
        f.push(b"lost");
        f.wait_first_client(Duration::from_secs(60));
        let (a, mut a_peer) = UnixStream::pair().unwrap();
        assert!(f.attach(&a));
        f.close();
        drop(a);
        let mut got = String::new();
        a_peer.read_to_string(&mut got).unwrap();
        assert_eq!(got, "");
    }
}
