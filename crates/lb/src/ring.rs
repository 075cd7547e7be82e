//! A consistent-hash ring with virtual nodes: adding or removing one of N backends moves only
//! about 1/N of the keys, so caches behind a `hash` service stay warm while it scales.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::backend::Backend;

/// Virtual nodes per unit of weight: enough for an even spread (±10 %) with a handful of
/// backends, cheap to rebuild on every backend-set change.
pub const VNODES_PER_WEIGHT: u32 = 160;

/// A sorted ring of (point, backend index) pairs.
#[derive(Debug, Default)]
pub struct HashRing {
    points: Vec<(u64, u32)>,
}

/// The 64-bit hash the ring and the `hash` algorithm use (SipHash with fixed keys, so the same
/// key maps to the same point in every process).
pub fn hash64<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

impl HashRing {
    /// Builds the ring for these backends (their order gives the indexes returned).
    pub fn build(backends: &[Arc<Backend>]) -> Self {
        let mut points = Vec::new();
        for (idx, b) in backends.iter().enumerate() {
            for v in 0..VNODES_PER_WEIGHT * b.weight() {
                points.push((hash64(&(b.id().0, v)), idx as u32));
            }
        }
        points.sort_unstable();
        HashRing { points }
    }

    /// The index of the first backend clockwise from `key` that `usable` accepts.
    pub fn lookup(&self, key: u64, mut usable: impl FnMut(usize) -> bool) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let start = self.points.partition_point(|&(p, _)| p < key);
        let n = self.points.len();
        let mut tried_last = u32::MAX;
        for i in 0..n {
            let (_, idx) = self.points[(start + i) % n];
            if idx == tried_last {
                continue;
            }
            if usable(idx as usize) {
                return Some(idx as usize);
            }
            tried_last = idx;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn backends(ports: &[u16]) -> Vec<Arc<Backend>> {
        ports
            .iter()
            .map(|p| Arc::new(Backend::new(SocketAddr::from(([10, 0, 0, 1], *p)))))
            .collect()
    }

    #[test]
    fn adding_a_backend_moves_about_one_share_of_keys() {
        let three = backends(&[1, 2, 3]);
        let four = backends(&[1, 2, 3, 4]);
        let (r3, r4) = (HashRing::build(&three), HashRing::build(&four));
        let keys = 10_000u64;
        let mut moved = 0;
        for k in 0..keys {
            let h = hash64(&k);
            let a = three[r3.lookup(h, |_| true).unwrap()].addr();
            let b = four[r4.lookup(h, |_| true).unwrap()].addr();
            if a != b {
                // Every moved key must have moved to the new backend.
                assert_eq!(b.port(), 4);
                moved += 1;
            }
        }
        let share = moved as f64 / keys as f64;
        assert!((0.15..0.35).contains(&share), "moved {share}");
    }

    #[test]
    fn spread_is_even_within_bounds() {
        let bs = backends(&[1, 2, 3]);
        let ring = HashRing::build(&bs);
        let mut counts = [0u32; 3];
        for k in 0..30_000u64 {
            counts[ring.lookup(hash64(&k), |_| true).unwrap()] += 1;
        }
        for c in counts {
            assert!((8_000..12_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn unusable_backend_keys_go_elsewhere_and_others_stay() {
        let bs = backends(&[1, 2, 3]);
        let ring = HashRing::build(&bs);
        for k in 0..1000u64 {
            let h = hash64(&k);
            let first = ring.lookup(h, |_| true).unwrap();
            let without_0 = ring.lookup(h, |i| i != 0).unwrap();
            assert_ne!(without_0, 0);
            if first != 0 {
                assert_eq!(first, without_0);
            }
        }
        assert_eq!(ring.lookup(1, |_| false), None);
        assert_eq!(HashRing::default().lookup(1, |_| true), None);
    }
}
