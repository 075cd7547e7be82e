//! Replica names as the users of each format know them:
//!
//! - Compose: `<project>-<service>-<N>`, N counting from 1 (Docker Compose v2's container
//!   names);
//! - a Kubernetes Deployment's pods: `<deployment>-<pod-template-hash>-<5 random>` (the name
//!   of the ReplicaSet of the template, then a random suffix), so a rolling update, which
//!   changes the template, gives new names, as kubectl shows;
//! - a bare Kubernetes Pod: its own `metadata.name`.

use std::hash::BuildHasher;

use crate::model::WorkloadKind;

/// Kubernetes' alphabet for generated names (`k8s.io/apimachinery/pkg/util/rand`): no vowels,
/// so no words, and no look-alikes such as 0/o, 1/l, 3/e.
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The length of a pod's random suffix (as Kubernetes' `generateName`).
const SUFFIX_LEN: usize = 5;

/// The length of a pod-template-hash.
const HASH_LEN: usize = 10;

/// SplitMix64: one well-mixed 64-bit value per input (the seed plus a counter).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `len` characters of [`ALPHABET`] from `x`.
fn encode(mut x: u64, len: usize) -> String {
    let mut s = String::with_capacity(len);
    for _ in 0..len {
        s.push(char::from(ALPHABET[(x % ALPHABET.len() as u64) as usize]));
        x /= ALPHABET.len() as u64;
    }
    s
}

/// The pod-template-hash of a revision: the same template always gives the same hash.
pub fn pod_template_hash(revision: &str) -> String {
    let x = u64::from_str_radix(revision, 16).unwrap_or_else(|_| {
        revision
            .bytes()
            .fold(0, |h, b| splitmix64(h ^ u64::from(b)))
    });
    encode(splitmix64(x), HASH_LEN)
}

/// Makes replica names; the random suffixes of Deployment pods come from a per-process seed.
#[derive(Debug, Clone)]
pub struct Namer {
    seed: u64,
    next: u64,
}

impl Default for Namer {
    fn default() -> Self {
        // std's RandomState is keyed randomly per process: a seed without another dependency.
        Namer::with_seed(std::collections::hash_map::RandomState::new().hash_one(0u8))
    }
}

impl Namer {
    /// A namer whose suffixes follow from `seed` (tests).
    pub fn with_seed(seed: u64) -> Self {
        Namer { seed, next: 0 }
    }

    fn suffix(&mut self) -> String {
        self.next += 1;
        encode(splitmix64(self.seed ^ splitmix64(self.next)), SUFFIX_LEN)
    }

    /// The name of a new replica of `service` (of this kind) in `app`.
    pub fn name(
        &mut self,
        app: &str,
        kind: WorkloadKind,
        service: &str,
        ordinal: u32,
        revision: &str,
    ) -> String {
        match kind {
            WorkloadKind::Compose => format!("{app}-{service}-{ordinal}"),
            WorkloadKind::Deployment => format!(
                "{service}-{}-{}",
                pod_template_hash(revision),
                self.suffix()
            ),
            WorkloadKind::Pod => service.to_string(),
        }
    }
}

/// The first ordinal (Compose numbers replicas from 1).
pub const FIRST_ORDINAL: u32 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    fn kubeish(s: &str, len: usize) -> bool {
        s.len() == len && s.bytes().all(|b| ALPHABET.contains(&b))
    }

    #[test]
    fn compose_and_pod_names() {
        let mut n = Namer::with_seed(1);
        assert_eq!(
            n.name("shop", WorkloadKind::Compose, "web", 3, "abc"),
            "shop-web-3"
        );
        assert_eq!(n.name("ns", WorkloadKind::Pod, "job", 1, "abc"), "job");
    }

    #[test]
    fn deployment_pods_are_named_like_kubectl_shows_them() {
        let mut n = Namer::with_seed(7);
        let a = n.name("ns", WorkloadKind::Deployment, "chat", 1, "00000000beef");
        let b = n.name("ns", WorkloadKind::Deployment, "chat", 2, "00000000beef");
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(parts.len(), 3, "{a}");
        assert_eq!(parts[0], "chat");
        assert!(kubeish(parts[1], HASH_LEN), "{a}");
        assert!(kubeish(parts[2], SUFFIX_LEN), "{a}");
        // Same template: same hash, different suffix.
        assert_eq!(a.rsplit_once('-').unwrap().0, b.rsplit_once('-').unwrap().0);
        assert_ne!(a, b);
        // Another template: another hash.
        let c = n.name("ns", WorkloadKind::Deployment, "chat", 1, "00000000bef0");
        assert_ne!(a.rsplit_once('-').unwrap().0, c.rsplit_once('-').unwrap().0);
    }

    #[test]
    fn suffixes_differ_between_processes_and_rarely_repeat() {
        let (mut a, mut b) = (Namer::default(), Namer::default());
        let xs: Vec<String> = (0..5).map(|_| a.suffix()).collect();
        let ys: Vec<String> = (0..5).map(|_| b.suffix()).collect();
        assert_ne!(xs, ys);
        let mut n = Namer::with_seed(42);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            assert!(seen.insert(n.suffix()), "a suffix repeated within 200");
        }
    }
}
