//! Stickiness: the HTTP cookie that pins a client to a backend, and the client-IP affinity
//! table that does the same for TCP.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::backend::{now_ms, BackendId};

/// The default name of the sticky cookie.
pub const DEFAULT_COOKIE: &str = "corral_lb";

/// Finds `name=VALUE` in a `Cookie` header and returns the backend id it names.
pub fn backend_from_cookie(header: &[u8], name: &str) -> Option<BackendId> {
    let text = std::str::from_utf8(header).ok()?;
    text.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then(|| BackendId::from_hex(v.trim()))?
    })
}

/// The `Set-Cookie` value that pins a client to `id`.
pub fn set_cookie_value(name: &str, id: BackendId) -> String {
    format!("{name}={}; Path=/; HttpOnly", id.to_hex())
}

/// How long a TCP client's affinity lasts without new connections.
pub const AFFINITY_TTL_MS: u64 = 30 * 60 * 1000;
/// At most this many clients are remembered; past it, expired entries are purged and new
/// clients are balanced without being remembered until room frees up.
pub const AFFINITY_CAPACITY: usize = 100_000;

/// Client IP → backend, for sticky TCP services. Touched once per TCP connection, never per
/// HTTP request.
#[derive(Debug, Default)]
pub struct AffinityTable {
    entries: Mutex<HashMap<IpAddr, (BackendId, u64)>>,
}

impl AffinityTable {
    /// The backend remembered for `ip`, refreshing its lifetime.
    pub fn get(&self, ip: IpAddr) -> Option<BackendId> {
        let now = now_ms();
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(&ip) {
            Some((id, seen)) if now.saturating_sub(*seen) < AFFINITY_TTL_MS => {
                *seen = now;
                Some(*id)
            }
            Some(_) => {
                map.remove(&ip);
                None
            }
            None => None,
        }
    }

    /// Remembers that `ip` goes to `id`.
    pub fn set(&self, ip: IpAddr, id: BackendId) {
        let now = now_ms();
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= AFFINITY_CAPACITY && !map.contains_key(&ip) {
            map.retain(|_, (_, seen)| now.saturating_sub(*seen) < AFFINITY_TTL_MS);
            if map.len() >= AFFINITY_CAPACITY {
                return;
            }
        }
        map.insert(ip, (id, now));
    }

    /// Number of remembered clients.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no client is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_is_found_among_others_and_round_trips() {
        let id = BackendId(0xdead_beef);
        let set = set_cookie_value("srv", id);
        let value = set.split(';').next().unwrap();
        let header = format!("a=1; {value}; b=2");
        assert_eq!(backend_from_cookie(header.as_bytes(), "srv"), Some(id));
        assert_eq!(backend_from_cookie(header.as_bytes(), "other"), None);
        assert_eq!(backend_from_cookie(b"srv=nothex", "srv"), None);
        assert_eq!(backend_from_cookie(b"", "srv"), None);
    }

    #[test]
    fn affinity_remembers_per_ip() {
        let t = AffinityTable::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(t.get(a), None);
        t.set(a, BackendId(1));
        t.set(b, BackendId(2));
        assert_eq!(t.get(a), Some(BackendId(1)));
        assert_eq!(t.get(b), Some(BackendId(2)));
        assert_eq!(t.len(), 2);
    }
}
