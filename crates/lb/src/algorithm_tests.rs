//! Distribution and stickiness of every algorithm.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::backend::Backend;

fn set(n: u16) -> BackendSet {
    BackendSet::new(
        (0..n)
            .map(|p| Arc::new(Backend::new(SocketAddr::from(([127, 0, 0, 1], 9000 + p)))))
            .collect(),
    )
}

fn ip(i: u32) -> IpAddr {
    IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i))
}

fn counts(picker: &Picker, set: &BackendSet, picks: usize) -> Vec<usize> {
    let mut c = vec![0; set.len()];
    for k in 0..picks {
        let ctx = PickContext::from_ip(ip(k as u32));
        c[picker.pick(set, &ctx).expect("a backend")] += 1;
    }
    c
}

#[test]
fn parses_and_prints_every_algorithm() {
    for (text, alg) in [
        ("round_robin", Algorithm::RoundRobin),
        ("random", Algorithm::Random { two_choices: false }),
        (
            "random:two_choices",
            Algorithm::Random { two_choices: true },
        ),
        ("least_connections", Algorithm::LeastConnections),
        ("least_load", Algorithm::LeastLoad),
        ("hash", Algorithm::Hash(HashKey::SourceIp)),
        (
            "hash:header=x-user",
            Algorithm::Hash(HashKey::Header("x-user".into())),
        ),
        (
            "sticky",
            Algorithm::Sticky {
                cookie: "corral_lb".into(),
            },
        ),
        (
            "sticky:cookie=SRV",
            Algorithm::Sticky {
                cookie: "SRV".into(),
            },
        ),
    ] {
        assert_eq!(text.parse::<Algorithm>().unwrap(), alg, "{text}");
        assert_eq!(alg.to_string(), text);
    }
    assert_eq!(
        "least-connections".parse::<Algorithm>().unwrap(),
        Algorithm::LeastConnections
    );
    assert_eq!(
        "hash:header=X-User".parse::<Algorithm>().unwrap(),
        Algorithm::Hash(HashKey::Header("x-user".into()))
    );
    for bad in [
        "fastest",
        "hash:cookie=x",
        "sticky:header=x",
        "random:three",
        "",
    ] {
        let err = bad.parse::<Algorithm>().unwrap_err();
        assert!(err.to_string().contains("unknown load-balancing"), "{bad}");
    }
}

#[test]
fn round_robin_is_exactly_even_and_skips_unavailable() {
    let s = set(3);
    let p = Picker::new(Algorithm::RoundRobin);
    assert_eq!(counts(&p, &s, 300), vec![100, 100, 100]);
    s.backends()[1].set_healthy(false);
    let c = counts(&p, &s, 300);
    assert_eq!(c[1], 0);
    assert_eq!(c[0] + c[2], 300);
    s.backends()[0].set_healthy(false);
    s.backends()[2].set_healthy(false);
    assert_eq!(p.pick(&s, &PickContext::from_ip(ip(1))), None);
    assert_eq!(p.pick(&set(0), &PickContext::from_ip(ip(1))), None);
}

#[test]
fn random_spreads_roughly_evenly() {
    let s = set(4);
    for two_choices in [false, true] {
        let p = Picker::new(Algorithm::Random { two_choices });
        for c in counts(&p, &s, 8000) {
            assert!((1600..2400).contains(&c), "two_choices={two_choices}: {c}");
        }
    }
}

#[test]
fn two_choices_avoids_the_busy_backend() {
    let s = set(3);
    let busy: Vec<_> = (0..50)
        .map(|_| s.backends()[0].try_acquire().unwrap())
        .collect();
    let p = Picker::new(Algorithm::Random { two_choices: true });
    let c = counts(&p, &s, 3000);
    // Backend 0 wins only when both choices land on it (1/9 of picks).
    assert!(c[0] < 500, "{c:?}");
    drop(busy);
}

#[test]
fn least_connections_follows_in_flight_work() {
    let s = set(3);
    let p = Picker::new(Algorithm::LeastConnections);
    let _a = s.backends()[0].try_acquire().unwrap();
    let _b = s.backends()[0].try_acquire().unwrap();
    let _c = s.backends()[1].try_acquire().unwrap();
    assert_eq!(p.pick(&s, &PickContext::from_ip(ip(1))), Some(2));
    // Holding each pick's work open fills backends evenly.
    let mut held = Vec::new();
    for _ in 0..9 {
        let i = p.pick(&s, &PickContext::from_ip(ip(1))).unwrap();
        held.push(s.backends()[i].try_acquire().unwrap());
    }
    let active: Vec<_> = s.backends().iter().map(|b| b.active()).collect();
    assert_eq!(active, vec![4, 4, 4]);
    // Ties rotate instead of always choosing the first backend.
    let idle = set(3);
    assert_eq!(counts(&p, &idle, 300), vec![100, 100, 100]);
}

#[test]
fn least_load_prefers_the_fast_backend_and_reported_load() {
    let s = set(3);
    s.backends()[0].observe_latency(Duration::from_millis(10));
    s.backends()[1].observe_latency(Duration::from_millis(1));
    s.backends()[2].observe_latency(Duration::from_millis(5));
    let p = Picker::new(Algorithm::LeastLoad);
    assert_eq!(counts(&p, &s, 100), vec![0, 100, 0]);
    // Work in flight raises the fast backend's score past the others'.
    let held: Vec<_> = (0..10)
        .map(|_| s.backends()[1].try_acquire().unwrap())
        .collect();
    assert_eq!(p.pick(&s, &PickContext::from_ip(ip(1))), Some(2));
    drop(held);
    for (i, load) in [(0, 3), (1, 9), (2, 5)] {
        s.backends()[i].set_reported_load(Some(load));
    }
    assert_eq!(p.pick(&s, &PickContext::from_ip(ip(1))), Some(0));
}

#[test]
fn hash_is_stable_per_key_and_spreads_keys() {
    let s = set(3);
    let p = Picker::new(Algorithm::Hash(HashKey::SourceIp));
    let c = counts(&p, &s, 3000);
    for n in &c {
        assert!((700..1300).contains(n), "{c:?}");
    }
    for k in 0..100 {
        let ctx = PickContext::from_ip(ip(k));
        let first = p.pick(&s, &ctx);
        assert!((0..5).all(|_| p.pick(&s, &ctx) == first));
    }
    // A header key overrides the IP.
    let mut ctx = PickContext::from_ip(ip(1));
    ctx.header_hash = Some(hash64(b"alice".as_slice()));
    let alice = p.pick(&s, &ctx);
    ctx.client_ip = ip(2);
    assert_eq!(p.pick(&s, &ctx), alice);
}

#[test]
fn hash_scaling_moves_few_keys() {
    let three = set(3);
    let four = set(4);
    let p = Picker::new(Algorithm::Hash(HashKey::SourceIp));
    let moved = (0..5000)
        .filter(|&k| {
            let ctx = PickContext::from_ip(ip(k));
            let a = three.backends()[p.pick(&three, &ctx).unwrap()].addr();
            let b = four.backends()[p.pick(&four, &ctx).unwrap()].addr();
            a != b
        })
        .count();
    // Modulo hashing would move 3/4 of the keys; the ring moves about 1/4.
    assert!(moved < 1750, "moved {moved} of 5000");
}

#[test]
fn hash_reroutes_only_the_dead_backends_keys() {
    let s = set(3);
    let p = Picker::new(Algorithm::Hash(HashKey::SourceIp));
    let before: Vec<_> = (0..500)
        .map(|k| p.pick(&s, &PickContext::from_ip(ip(k))).unwrap())
        .collect();
    s.backends()[0].set_healthy(false);
    for (k, b) in before.iter().enumerate() {
        let now = p.pick(&s, &PickContext::from_ip(ip(k as u32))).unwrap();
        if *b != 0 {
            assert_eq!(now, *b);
        } else {
            assert_ne!(now, 0);
        }
    }
}

#[test]
fn sticky_cookie_pins_and_falls_back_when_its_backend_is_gone() {
    let s = set(3);
    let p = Picker::new("sticky".parse().unwrap());
    let target = s.backends()[2].id();
    let mut ctx = PickContext::from_ip(ip(1));
    ctx.sticky = Some(target);
    assert!((0..50).all(|_| p.pick(&s, &ctx) == Some(2)));
    s.backends()[2].set_healthy(false);
    let other = p.pick(&s, &ctx).unwrap();
    assert_ne!(other, 2);
    // Without a cookie, new clients are spread evenly.
    let fresh = set(3);
    assert_eq!(counts(&p, &fresh, 300), vec![100, 100, 100]);
}

#[test]
fn sticky_tcp_remembers_client_ip() {
    let s = set(3);
    let p = Picker::new("sticky".parse().unwrap());
    let mut firsts = vec![0; 3];
    for k in 0..60 {
        let mut ctx = PickContext::from_ip(ip(k));
        ctx.ip_affinity = true;
        let first = p.pick(&s, &ctx).unwrap();
        firsts[first] += 1;
        assert!((0..5).all(|_| p.pick(&s, &ctx) == Some(first)));
    }
    assert_eq!(firsts, vec![20, 20, 20]);
    // A client whose backend died moves, and then stays on the new one.
    let mut ctx = PickContext::from_ip(ip(0));
    ctx.ip_affinity = true;
    let old = p.pick(&s, &ctx).unwrap();
    s.backends()[old].set_healthy(false);
    let new = p.pick(&s, &ctx).unwrap();
    assert_ne!(new, old);
    s.backends()[old].set_healthy(true);
    assert_eq!(p.pick(&s, &ctx), Some(new));
}
