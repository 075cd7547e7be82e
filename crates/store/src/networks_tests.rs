//! Unit tests of [`NetStore`]: leases allocated, released, exhausted, kept across a reopen,
//! never shared by concurrent writers, and an older root's `net.json` imported once.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use corral_net::ipam::{self, IpamError};
use corral_net::{
    EndpointKind, EndpointRecord, FileStore, NetError, NetState, NetworkRecord, PortMapping,
    StateError, StateStore,
};

use super::{Import, NetStore};

fn db(dir: &Path) -> PathBuf {
    dir.join("state.db")
}

fn network(name: &str, subnet: &str, bridge: &str) -> NetworkRecord {
    let subnet = subnet.parse().unwrap();
    NetworkRecord {
        name: name.into(),
        subnet,
        gateway: ipam::gateway_of(subnet),
        bridge: bridge.into(),
    }
}

fn add_network(s: &impl StateStore, rec: NetworkRecord) {
    s.update(|st| {
        st.networks.insert(rec.name.clone(), rec);
        Ok::<_, StateError>(())
    })
    .unwrap();
}

/// What the net manager's reserve does: the lowest free address and a link serial, in one
/// update.
fn lease(s: &impl StateStore, network: &str, instance: &str) -> Result<Ipv4Addr, NetError> {
    s.update(|st| {
        let net = st.networks[network].clone();
        let ip = ipam::allocate_ip(st, &net)?;
        let serial = st.take_serial();
        st.endpoints.insert(
            instance.into(),
            EndpointRecord {
                instance: instance.into(),
                network: network.into(),
                ip,
                mac: ipam::mac_for(ip),
                kind: EndpointKind::Veth,
                host_link: format!("tst{serial}"),
                names: vec![instance.into()],
                ports: vec![],
            },
        );
        Ok(ip)
    })
}

fn release(s: &impl StateStore, instance: &str) {
    s.update(|st| {
        st.endpoints.remove(instance);
        Ok::<_, StateError>(())
    })
    .unwrap();
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

#[test]
fn allocates_the_lowest_free_address_and_reuses_a_released_one() {
    let dir = tempfile::tempdir().unwrap();
    let s = NetStore::open(&db(dir.path())).unwrap();
    assert!(
        !s.recorded().unwrap(),
        "a fresh database has no network state"
    );
    add_network(&s, network("n", "10.9.0.0/24", "br-n"));
    assert!(s.recorded().unwrap());
    assert_eq!(lease(&s, "n", "a").unwrap(), ip("10.9.0.2"));
    assert_eq!(lease(&s, "n", "b").unwrap(), ip("10.9.0.3"));
    assert_eq!(lease(&s, "n", "c").unwrap(), ip("10.9.0.4"));
    release(&s, "b");
    assert_eq!(
        lease(&s, "n", "d").unwrap(),
        ip("10.9.0.3"),
        "b's address is free again"
    );
    let st = s.load().unwrap();
    assert_eq!(st.endpoints.len(), 3);
    assert_eq!(st.next_serial, 4, "serials are never reused");
}

#[test]
fn a_full_network_refuses_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = NetStore::open(&db(dir.path())).unwrap();
    // A /29: .1 is the gateway, .2-.6 are five leases.
    add_network(&s, network("small", "10.9.1.0/29", "br-small"));
    for i in 0..5 {
        lease(&s, "small", &format!("i{i}")).unwrap();
    }
    let before = s.load().unwrap();
    let err = lease(&s, "small", "one-too-many").unwrap_err();
    assert!(
        matches!(err, NetError::Ipam(IpamError::NetworkFull { .. })),
        "{err}"
    );
    assert_eq!(
        s.load().unwrap(),
        before,
        "the failed update was rolled back"
    );
}

#[test]
fn leases_survive_a_reopen_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(dir.path());
    let port: PortMapping = "127.0.0.1:8080:80/udp".parse().unwrap();
    let first = {
        let s = NetStore::open(&path).unwrap();
        add_network(&s, network("n", "10.9.2.0/24", "br-n"));
        lease(&s, "n", "a").unwrap();
        lease(&s, "n", "b").unwrap();
        s.update(|st| {
            let ep = st.endpoints.get_mut("b").unwrap();
            ep.kind = EndpointKind::Tap;
            ep.names.push("db".into());
            ep.ports.push(port);
            Ok::<_, StateError>(())
        })
        .unwrap();
        s.load().unwrap()
    };
    let s = NetStore::open(&path).unwrap();
    assert_eq!(s.load().unwrap(), first, "every field round-trips");
    assert_eq!(lease(&s, "n", "c").unwrap(), ip("10.9.2.4"));
    assert_eq!(s.load().unwrap().endpoints["c"].host_link, "tst2");
}

#[test]
fn concurrent_writers_on_two_connections_never_share_an_address() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(dir.path());
    add_network(
        &NetStore::open(&path).unwrap(),
        network("n", "10.9.3.0/24", "br-n"),
    );
    let per_thread = 40;
    let threads: Vec<_> = ["x", "y"]
        .into_iter()
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                let s = NetStore::open(&path).unwrap();
                (0..per_thread)
                    .map(|i| lease(&s, "n", &format!("{t}{i}")).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let all: Vec<Ipv4Addr> = threads
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let distinct: BTreeSet<_> = all.iter().collect();
    assert_eq!(distinct.len(), 2 * per_thread, "{all:?}");
    let st = NetStore::open(&path).unwrap().load().unwrap();
    assert_eq!(st.endpoints.len(), 2 * per_thread);
    assert_eq!(st.next_serial, 2 * per_thread as u64);
}

#[test]
fn the_database_refuses_a_duplicate_address_and_a_network_under_its_leases() {
    let dir = tempfile::tempdir().unwrap();
    let s = NetStore::open(&db(dir.path())).unwrap();
    add_network(&s, network("n", "10.9.4.0/24", "br-n"));
    lease(&s, "n", "a").unwrap();
    let before = s.load().unwrap();
    let err = s
        .update(|st| {
            let mut twin = st.endpoints["a"].clone();
            twin.instance = "b".into();
            twin.host_link = "other".into();
            st.endpoints.insert("b".into(), twin);
            Ok::<_, StateError>(())
        })
        .unwrap_err();
    assert!(
        err.to_string().contains("10.9.4.2 is already leased"),
        "{err}"
    );
    let err = s
        .update(|st| {
            st.networks.remove("n");
            Ok::<_, StateError>(())
        })
        .unwrap_err();
    assert!(err.to_string().contains("FOREIGN KEY"), "{err}");
    assert_eq!(s.load().unwrap(), before);
}

fn file_state() -> NetState {
    let mut st = NetState::default();
    st.networks.insert(
        "default".into(),
        network("default", "10.213.0.0/24", "corral0"),
    );
    st.networks
        .insert("web".into(), network("web", "10.213.1.0/24", "crlb3"));
    for (inst, net, addr, link) in [
        ("c1", "default", "10.213.0.2", "crlv4"),
        ("v1", "web", "10.213.1.2", "crlt5"),
    ] {
        let ip = ip(addr);
        st.endpoints.insert(
            inst.into(),
            EndpointRecord {
                instance: inst.into(),
                network: net.into(),
                ip,
                mac: ipam::mac_for(ip),
                kind: EndpointKind::Veth,
                host_link: link.into(),
                names: vec![inst.into()],
                ports: vec!["8080:80".parse().unwrap()],
            },
        );
    }
    st.next_serial = 6;
    st
}

#[test]
fn imports_an_older_net_json_once() {
    let dir = tempfile::tempdir().unwrap();
    let net_dir = dir.path().join("net");
    FileStore::new(&net_dir)
        .update(|st| {
            *st = file_state();
            Ok::<_, StateError>(())
        })
        .unwrap();
    let s = NetStore::open(&db(dir.path())).unwrap();
    let renamed = net_dir.join("net.json.imported");
    assert_eq!(
        s.import_json(&net_dir).unwrap(),
        Import::Imported {
            networks: 2,
            leases: 2,
            renamed: renamed.clone()
        }
    );
    assert_eq!(s.load().unwrap(), file_state());
    assert!(!net_dir.join("net.json").exists() && renamed.exists());
    assert_eq!(s.import_json(&net_dir).unwrap(), Import::NoFile);

    // The next address after an import is a new one, also after a reopen.
    let s = NetStore::open(&db(dir.path())).unwrap();
    assert_eq!(lease(&s, "default", "c2").unwrap(), ip("10.213.0.3"));
    assert_eq!(s.load().unwrap().endpoints["c2"].host_link, "tst6");

    // A crash between the import's commit and the rename: the file is back, nothing doubles.
    let after = s.load().unwrap();
    std::fs::rename(&renamed, net_dir.join("net.json")).unwrap();
    assert_eq!(
        s.import_json(&net_dir).unwrap(),
        Import::AlreadyImported { renamed }
    );
    assert_eq!(s.load().unwrap(), after);
}

#[test]
fn a_corrupt_net_json_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("net.json"), "{not json").unwrap();
    let s = NetStore::open(&db(dir.path())).unwrap();
    let err = s.import_json(dir.path()).unwrap_err();
    assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
    assert!(dir.path().join("net.json").exists(), "kept for the user");
    assert!(!s.recorded().unwrap());
}
