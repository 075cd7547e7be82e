//! Host tests (need root, netlink, nftables and network namespaces): "containers" are plain
//! network namespaces these tests create (`ip netns add`, named `cnt<pid>…`) and plug into
//! test bridges through the library. Every test uses its own link prefix, nftables table,
//! subnets and state dir, and removes everything it made. Traffic stays on the test bridges and
//! loopback. Set CORRAL_SKIP_HOST_TESTS=1 to skip them.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use corral_net::dns::{DnsServer, NameTable};
use corral_net::links::Netlink;
use corral_net::{nft, tap, AttachRequest, FileStore, NetConfig, NetManager, Netns};
use ipnet::Ipv4Net;

/// One test's private world: prefix, subnets, state dir, netns names; cleaned up on drop.
struct World {
    prefix: String,
    dir: tempfile::TempDir,
    netns: Vec<String>,
    slot: u8,
}

fn skip() -> bool {
    if std::env::var("CORRAL_SKIP_HOST_TESTS").as_deref() == Ok("1") {
        eprintln!("skipped: CORRAL_SKIP_HOST_TESTS=1");
        return true;
    }
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "host network tests need root (netlink, nftables, netns); set CORRAL_SKIP_HOST_TESTS=1 to skip"
    );
    for tool in ["ip", "nft"] {
        assert!(
            Command::new(tool).arg("-V").output().is_ok(),
            "host network tests need `{tool}` (scripts/setup.sh installs it)"
        );
    }
    false
}

impl World {
    /// `letter` makes the prefix unique per test inside this process; `slot` picks its subnets.
    fn new(letter: char, slot: u8) -> Self {
        World {
            prefix: format!("cnt{}{letter}", std::process::id()),
            dir: tempfile::tempdir().unwrap(),
            netns: vec![],
            slot,
        }
    }

    fn config(&self) -> NetConfig {
        NetConfig {
            link_prefix: self.prefix.clone(),
            default_bridge: format!("{}d", self.prefix),
            pool: "10.214.0.0/16".parse().unwrap(),
            subnet_prefix: 24,
            subnet_start: 0,
            nft_table: self.prefix.clone(),
        }
    }

    fn manager(&self) -> NetManager<FileStore> {
        NetManager::new(self.config(), FileStore::new(self.dir.path())).unwrap()
    }

    /// The k-th subnet of this test: 10.214.X.0/24 with X from the pid and the test's slot, so
    /// concurrent runs of the suite do not collide (the manager still refuses host routes).
    fn subnet(&self, k: u8) -> Ipv4Net {
        let x = ((std::process::id() % 10) as u8) * 25 + self.slot * 3 + k;
        format!("10.214.{x}.0/24").parse().unwrap()
    }

    fn netns(&mut self, n: usize) -> Netns {
        let name = format!("{}n{n}", self.prefix);
        ip(&["netns", "add", &name]);
        self.netns.push(name.clone());
        Netns::Path(format!("/run/netns/{name}").into())
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for ns in &self.netns {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = nft::remove(&self.prefix);
        // Links are deleted through the manager in each test; this is the safety net.
        if let Ok(out) = Command::new("ip").args(["-o", "link", "show"]).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let name = line.split(':').nth(1).unwrap_or("").trim();
                let name = name.split('@').next().unwrap_or("");
                if name.starts_with(&self.prefix) {
                    let _ = Command::new("ip").args(["link", "del", name]).status();
                }
            }
        }
    }
}

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().unwrap();
    assert!(st.success(), "ip {args:?} failed");
}

/// Run `f` on a thread inside network namespace `ns`.
fn in_netns<T: Send + 'static>(ns: &Netns, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = ns.open().unwrap();
    std::thread::spawn(move || {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// A TCP echo-once server in `ns` on `port`; returns after it listens.
fn serve_once(ns: &Netns, port: u16, reply: &'static str) -> std::thread::JoinHandle<()> {
    let file = ns.open().unwrap();
    let (tx, rx) = mpsc::channel();
    let h = std::thread::spawn(move || {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let l = TcpListener::bind(("0.0.0.0", port)).unwrap();
        tx.send(()).unwrap();
        if let Ok((mut s, _)) = l.accept() {
            let mut buf = [0u8; 4];
            let _ = s.read_exact(&mut buf);
            let _ = s.write_all(reply.as_bytes());
        }
    });
    rx.recv().unwrap();
    h
}

fn tcp_exchange(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"ping")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn ping(ns: &Netns, to: Ipv4Addr) -> bool {
    let Netns::Path(p) = ns else { unreachable!() };
    let name = p.file_name().unwrap().to_str().unwrap();
    Command::new("ip")
        .args([
            "netns",
            "exec",
            name,
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            &to.to_string(),
        ])
        .output()
        .expect("ping (iputils-ping) is installed by scripts/setup.sh")
        .status
        .success()
}

fn req(instance: &str, network: &str) -> AttachRequest {
    AttachRequest {
        instance: instance.into(),
        network: Some(network.into()),
        names: vec![instance.into()],
        ports: vec![],
    }
}

async fn links_with_prefix(prefix: &str) -> Vec<String> {
    Netlink::open()
        .unwrap()
        .links()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .filter(|n| n.starts_with(prefix))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_two_containers_ping_and_tcp() {
    if skip() {
        return;
    }
    let mut w = World::new('a', 0);
    let m = w.manager();
    m.create_network("n1", Some(w.subnet(0))).await.unwrap();
    let (ns1, ns2) = (w.netns(1), w.netns(2));
    let a = m.attach_container(&req("c1", "n1"), &ns1).await.unwrap();
    let b = m.attach_container(&req("c2", "n1"), &ns2).await.unwrap();
    assert_ne!(a.address.addr(), b.address.addr());
    assert!(ping(&ns1, b.address.addr()), "c1 cannot ping c2");
    assert!(ping(&ns2, a.gateway), "c2 cannot ping the gateway");
    let srv = serve_once(&ns2, 7000, "pong");
    let to = SocketAddr::from((b.address.addr(), 7000));
    let got = in_netns(&ns1, move || tcp_exchange(to)).unwrap();
    assert_eq!(got, "pong");
    srv.join().unwrap();
    assert!(m.detach("c1").await.unwrap());
    assert!(m.detach("c2").await.unwrap());
    m.remove_network("n1").await.unwrap();
    assert!(links_with_prefix(&w.prefix).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_vm_tap_on_the_bridge() {
    if skip() {
        return;
    }
    let w = World::new('b', 1);
    let m = w.manager();
    let net = m.create_network("n1", Some(w.subnet(0))).await.unwrap();
    let mut r = req("vm1", "n1");
    r.ports = vec![];
    let att = m.attach_vm(&r).await.unwrap();
    let nl = Netlink::open().unwrap();
    let tap_link = nl.link(&att.host_link).await.unwrap().expect("tap exists");
    let bridge = nl.link(&net.bridge).await.unwrap().expect("bridge exists");
    assert_eq!(tap_link.kind.as_deref(), Some("tun"));
    assert_eq!(
        tap_link.controller,
        Some(bridge.index),
        "tap is on the bridge"
    );
    assert!(tap_link.up);
    // What the VMM does: open the persistent tap by name.
    let fd = tap::open_tap(&att.host_link).expect("VMM can open the tap by name");
    drop(fd);
    assert!(att
        .kernel_ip_arg()
        .starts_with(&format!("ip={}::", att.address.addr())));
    assert!(m.detach("vm1").await.unwrap());
    assert!(
        nl.link(&att.host_link).await.unwrap().is_none(),
        "tap deleted"
    );
    m.remove_network("n1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_published_port_from_localhost() {
    if skip() {
        return;
    }
    let mut w = World::new('c', 2);
    let m = w.manager();
    m.create_network("n1", Some(w.subnet(0))).await.unwrap();
    let ns = w.netns(1);
    let host_port = 30000 + (std::process::id() % 20000) as u16;
    let mut r = req("web", "n1");
    r.ports = vec![format!("{host_port}:8080").parse().unwrap()];
    m.attach_container(&r, &ns).await.unwrap();
    let srv = serve_once(&ns, 8080, "hello");
    let got = tcp_exchange(SocketAddr::from((Ipv4Addr::LOCALHOST, host_port)))
        .expect("published port reachable from 127.0.0.1");
    assert_eq!(got, "hello");
    srv.join().unwrap();
    let table = nft::list(&w.prefix)
        .unwrap()
        .expect("corral's table exists");
    assert!(table.to_string().contains("\"dnat\":"), "a DNAT statement");
    // Removed with the instance: nothing answers any more.
    m.detach("web").await.unwrap();
    assert!(!nft::list(&w.prefix)
        .unwrap()
        .unwrap()
        .to_string()
        .contains("\"dnat\":"));
    m.remove_network("n1").await.unwrap();
    assert!(
        nft::list(&w.prefix).unwrap().is_none(),
        "table removed with the last network"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_isolation_between_named_networks() {
    if skip() {
        return;
    }
    let mut w = World::new('d', 3);
    let m = w.manager();
    m.create_network("red", Some(w.subnet(0))).await.unwrap();
    m.create_network("blue", Some(w.subnet(1))).await.unwrap();
    let (ns_r, ns_b) = (w.netns(1), w.netns(2));
    let r = m.attach_container(&req("r1", "red"), &ns_r).await.unwrap();
    let b = m.attach_container(&req("b1", "blue"), &ns_b).await.unwrap();
    assert!(
        ping(&ns_r, r.gateway) && ping(&ns_b, b.gateway),
        "each reaches its gateway"
    );
    let srv = serve_once(&ns_b, 7001, "leak");
    let to = SocketAddr::from((b.address.addr(), 7001));
    let got = in_netns(&ns_r, move || tcp_exchange(to));
    assert!(got.is_err(), "red reached blue: {got:?}");
    assert!(!ping(&ns_r, b.address.addr()), "red pinged blue");
    // The listener is still waiting: reach it from blue's own gateway side to end it.
    let _ = tcp_exchange(to);
    srv.join().unwrap();
    let err = m.remove_network("red").await.unwrap_err();
    assert!(err.to_string().contains("in use by r1"), "{err}");
    m.prune(&BTreeSet::new()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_dns_by_name() {
    if skip() {
        return;
    }
    let mut w = World::new('e', 4);
    let m = w.manager();
    let net = m.create_network("n1", Some(w.subnet(0))).await.unwrap();
    let (ns1, ns2) = (w.netns(1), w.netns(2));
    m.attach_container(&req("web", "n1"), &ns1).await.unwrap();
    let db = m.attach_container(&req("db", "n1"), &ns2).await.unwrap();
    let table = NameTable::default();
    table.replace(m.names("n1").unwrap());
    let _dns = DnsServer::start(SocketAddrV4::new(net.gateway, 53), table)
        .await
        .unwrap();
    let gw = net.gateway;
    let answer = in_netns(&ns1, move || resolve(gw, "db"));
    assert_eq!(answer, Some(db.address.addr()));
    m.prune(&BTreeSet::new()).await.unwrap();
}

/// Ask `server` for the A record of `name` over UDP, as a container's resolver would.
fn resolve(server: Ipv4Addr, name: &str) -> Option<Ipv4Addr> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    let mut q = Message::new();
    q.set_id(7)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    sock.send_to(&q.to_vec().unwrap(), (server, 53)).unwrap();
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).ok()?;
    let r = Message::from_vec(&buf[..n]).ok()?;
    r.answers().iter().find_map(|a| match a.data() {
        RData::A(a) => Some(a.0),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_failed_attach_leaves_nothing() {
    if skip() {
        return;
    }
    let w = World::new('f', 5);
    let m = w.manager();
    m.create_network("n1", Some(w.subnet(0))).await.unwrap();
    let missing = Netns::Path(format!("/run/netns/{}-missing", w.prefix).into());
    let err = m
        .attach_container(&req("c1", "n1"), &missing)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("-missing"), "{err}");
    assert!(
        m.state().unwrap().endpoints.is_empty(),
        "endpoint rolled back"
    );
    let links = links_with_prefix(&w.prefix).await;
    assert_eq!(links.len(), 1, "only the bridge remains: {links:?}");
    let err = m.create_network("n2", Some(w.subnet(0))).await.unwrap_err();
    assert!(err.to_string().contains("overlaps"), "{err}");
    m.remove_network("n1").await.unwrap();
    assert!(links_with_prefix(&w.prefix).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_prune_after_crash_leaves_nothing() {
    if skip() {
        return;
    }
    let mut w = World::new('g', 6);
    {
        // A "daemon" that dies without cleaning up: networks, veths, a tap, published ports.
        let m = w.manager();
        m.create_network("n1", Some(w.subnet(0))).await.unwrap();
        m.create_network("n2", Some(w.subnet(1))).await.unwrap();
        let (ns1, ns2) = (w.netns(1), w.netns(2));
        let mut r = req("c1", "n1");
        r.ports = vec!["127.0.0.1:41234:80".parse().unwrap()];
        m.attach_container(&r, &ns1).await.unwrap();
        m.attach_container(&req("c2", "n2"), &ns2).await.unwrap();
        m.attach_vm(&req("vm1", "n1")).await.unwrap();
    }
    // A stray link with corral's prefix the state does not know about (crash mid-create).
    ip(&["link", "add", &format!("{}v99", w.prefix), "type", "bridge"]);
    assert_eq!(links_with_prefix(&w.prefix).await.len(), 6);

    let m = w.manager();
    // c2 survives a reconcile that knows it; everything else of the crash goes.
    let known: BTreeSet<String> = ["c2".to_string()].into();
    let cleaned = m.reconcile(&known).await.unwrap();
    assert_eq!(cleaned.endpoints, vec!["c1".to_string(), "vm1".to_string()]);
    assert_eq!(
        links_with_prefix(&w.prefix).await.len(),
        3,
        "two bridges and c2's veth"
    );

    let cleaned = m.prune(&BTreeSet::new()).await.unwrap();
    assert_eq!(cleaned.networks.len(), 2);
    assert!(links_with_prefix(&w.prefix).await.is_empty(), "links left");
    assert!(nft::list(&w.prefix).unwrap().is_none(), "nft table left");
    assert_eq!(
        m.state().unwrap(),
        corral_net::NetState {
            next_serial: 5,
            ..Default::default()
        }
    );
    for ns in std::mem::take(&mut w.netns) {
        ip(&["netns", "del", &ns]);
    }
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(&w.prefix),
        "netns left"
    );
}
