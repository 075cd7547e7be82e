//! The balancing algorithms, chosen per service, and the picker that applies one to a backend
//! set. Every pick reads only atomics and the immutable set: no locks on the HTTP hot path.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::backend::{BackendId, BackendSet};
use crate::error::LbError;
use crate::ring::hash64;
use crate::sticky::{AffinityTable, DEFAULT_COOKIE};

/// What the `hash` algorithm hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashKey {
    /// The client's IP address.
    SourceIp,
    /// An HTTP request header's value (the client IP when the header is absent; TCP services
    /// always use the client IP).
    Header(String),
}

/// A balancing algorithm.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Algorithm {
    /// Each backend in turn.
    #[default]
    RoundRobin,
    /// Uniformly at random, or the less busy of two random backends (power of two choices).
    Random {
        /// Use the power of two choices.
        two_choices: bool,
    },
    /// The backend with the fewest requests/connections in flight.
    LeastConnections,
    /// The backend with the lowest load: reported load, else latency EWMA × work in flight.
    LeastLoad,
    /// Consistent hashing of a key, so scaling moves few keys.
    Hash(HashKey),
    /// A cookie (HTTP) or the client IP (TCP) keeps a client on its first backend.
    Sticky {
        /// The cookie's name.
        cookie: String,
    },
}

impl FromStr for Algorithm {
    type Err = LbError;

    /// Parses `round_robin`, `random`, `random:two_choices`, `least_connections`,
    /// `least_load`, `hash`, `hash:source_ip`, `hash:header=NAME`, `sticky`,
    /// `sticky:cookie=NAME` (dashes are accepted for underscores).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().replace('-', "_");
        let (name, opt) = match norm.split_once(':') {
            Some((n, o)) => (n.to_ascii_lowercase(), Some(o.trim().to_string())),
            None => (norm.to_ascii_lowercase(), None),
        };
        let bad = || LbError::UnknownAlgorithm(s.to_string());
        let alg = match (name.as_str(), opt.as_deref()) {
            ("round_robin" | "roundrobin", None) => Algorithm::RoundRobin,
            ("random", None) => Algorithm::Random { two_choices: false },
            ("random", Some("two_choices" | "p2c")) | ("p2c", None) => {
                Algorithm::Random { two_choices: true }
            }
            ("least_connections" | "least_conn" | "leastconn", None) => Algorithm::LeastConnections,
            ("least_load", None) => Algorithm::LeastLoad,
            ("hash", None | Some("source_ip")) => Algorithm::Hash(HashKey::SourceIp),
            ("hash", Some(o)) => match o.split_once('=') {
                Some(("header", h)) if !h.is_empty() => {
                    // Header names keep their dashes.
                    let original = s.rsplit_once('=').map(|(_, h)| h.trim()).unwrap_or(h);
                    Algorithm::Hash(HashKey::Header(original.to_ascii_lowercase()))
                }
                _ => return Err(bad()),
            },
            ("sticky", None) => Algorithm::Sticky {
                cookie: DEFAULT_COOKIE.to_string(),
            },
            ("sticky", Some(o)) => match o.split_once('=') {
                Some(("cookie", c)) if !c.is_empty() => {
                    let original = s.rsplit_once('=').map(|(_, c)| c.trim()).unwrap_or(c);
                    Algorithm::Sticky {
                        cookie: original.to_string(),
                    }
                }
                _ => return Err(bad()),
            },
            _ => return Err(bad()),
        };
        Ok(alg)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Algorithm::RoundRobin => f.write_str("round_robin"),
            Algorithm::Random { two_choices: false } => f.write_str("random"),
            Algorithm::Random { two_choices: true } => f.write_str("random:two_choices"),
            Algorithm::LeastConnections => f.write_str("least_connections"),
            Algorithm::LeastLoad => f.write_str("least_load"),
            Algorithm::Hash(HashKey::SourceIp) => f.write_str("hash"),
            Algorithm::Hash(HashKey::Header(h)) => write!(f, "hash:header={h}"),
            Algorithm::Sticky { cookie } if cookie == DEFAULT_COOKIE => f.write_str("sticky"),
            Algorithm::Sticky { cookie } => write!(f, "sticky:cookie={cookie}"),
        }
    }
}

impl serde::Serialize for Algorithm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Algorithm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a pick knows about the request or connection.
#[derive(Clone, Copy, Debug)]
pub struct PickContext {
    /// The client's IP address.
    pub client_ip: IpAddr,
    /// The hash of the `hash` algorithm's header, when it is an HTTP header that was present.
    pub header_hash: Option<u64>,
    /// The backend a sticky cookie names.
    pub sticky: Option<BackendId>,
    /// Whether stickiness falls back to the client-IP table (TCP services).
    pub ip_affinity: bool,
}

impl PickContext {
    /// A context with only the client's address.
    pub fn from_ip(client_ip: IpAddr) -> Self {
        PickContext {
            client_ip,
            header_hash: None,
            sticky: None,
            ip_affinity: false,
        }
    }
}

/// An algorithm with the little state it keeps between picks.
#[derive(Debug, Default)]
pub struct Picker {
    algorithm: Algorithm,
    counter: AtomicUsize,
    affinity: AffinityTable,
}

impl Picker {
    /// A picker for `algorithm`.
    pub fn new(algorithm: Algorithm) -> Self {
        Picker {
            algorithm,
            counter: AtomicUsize::new(0),
            affinity: AffinityTable::default(),
        }
    }

    /// The algorithm it applies.
    pub fn algorithm(&self) -> &Algorithm {
        &self.algorithm
    }

    /// The index in `set` of the backend for this request or connection, among available ones;
    /// `None` when none is available.
    pub fn pick(&self, set: &BackendSet, ctx: &PickContext) -> Option<usize> {
        let n = set.len();
        if n == 0 {
            return None;
        }
        let bs = set.backends();
        match &self.algorithm {
            Algorithm::RoundRobin => self.round_robin(set),
            Algorithm::Random { two_choices } => {
                let a = random_available(set)?;
                if !*two_choices || n == 1 {
                    return Some(a);
                }
                let b = random_available(set)?;
                // Compare in-flight work relative to weight.
                let load = |i: usize| bs[i].active() as u64 * 1000 / bs[i].weight() as u64;
                Some(if load(b) < load(a) { b } else { a })
            }
            Algorithm::LeastConnections => {
                let start = self.counter.fetch_add(1, Ordering::Relaxed);
                min_by_score(set, start, |i| {
                    bs[i].active() as f64 / bs[i].weight() as f64
                })
            }
            Algorithm::LeastLoad => {
                let start = self.counter.fetch_add(1, Ordering::Relaxed);
                min_by_score(set, start, |i| bs[i].load_score())
            }
            Algorithm::Hash(_) => {
                let key = ctx.header_hash.unwrap_or_else(|| hash64(&ctx.client_ip));
                set.ring().lookup(key, |i| bs[i].is_available())
            }
            Algorithm::Sticky { .. } => {
                if let Some(id) = ctx.sticky {
                    if let Some(i) = bs.iter().position(|b| b.id() == id) {
                        if bs[i].is_available() {
                            return Some(i);
                        }
                    }
                }
                if !ctx.ip_affinity {
                    return self.round_robin(set);
                }
                if let Some(id) = self.affinity.get(ctx.client_ip) {
                    if let Some(i) = bs.iter().position(|b| b.id() == id) {
                        if bs[i].is_available() {
                            return Some(i);
                        }
                    }
                }
                let i = self.round_robin(set)?;
                self.affinity.set(ctx.client_ip, bs[i].id());
                Some(i)
            }
        }
    }

    fn round_robin(&self, set: &BackendSet) -> Option<usize> {
        let n = set.len();
        let start = self.counter.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| (start.wrapping_add(i)) % n)
            .find(|&i| set.backends()[i].is_available())
    }
}

fn random_available(set: &BackendSet) -> Option<usize> {
    let n = set.len();
    let start = fastrand::usize(..n);
    (0..n)
        .map(|i| (start + i) % n)
        .find(|&i| set.backends()[i].is_available())
}

/// The available backend with the lowest score, scanning from `start` so ties rotate.
fn min_by_score(set: &BackendSet, start: usize, score: impl Fn(usize) -> f64) -> Option<usize> {
    let n = set.len();
    let mut best: Option<(usize, f64)> = None;
    for k in 0..n {
        let i = start.wrapping_add(k) % n;
        if !set.backends()[i].is_available() {
            continue;
        }
        let s = score(i);
        if best.is_none_or(|(_, b)| s < b) {
            best = Some((i, s));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
#[path = "algorithm_tests.rs"]
mod tests;
