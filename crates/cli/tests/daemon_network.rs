//! Networking end to end through the CLI and the daemon: containers from the image store's
//! busybox on corral networks (ping, TCP and DNS by name between them), a published port
//! reached from the host's 127.0.0.1, isolation between two named networks, `network rm`
//! refused while in use, clear errors for taken ports, and no leftovers (veth, bridge, nftables
//! table, network namespace) after rm, a failed create and a `kill -9` of the daemon.
//!
//! Every test needs root (netlink, nftables, namespaces, mounts): names start with `host_`.
//! Each daemon gets its own link prefix and nftables table (`CORRAL_NET_PREFIX`, "net" + pid +
//! a letter) and address pool (`CORRAL_NET_POOL`), so tests and other engineers' runs never
//! touch each other's objects. Traffic stays on the test bridges and loopback.

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use corral_net::StateStore;

mod world;

use world::network::{free_port, http_get, nc_get, require_net_host};
use world::{skip, World};

#[test]
fn host_containers_reach_each_other_by_name_and_the_host_reaches_published_ports() {
    if skip() {
        return;
    }
    require_net_host();
    let w = World::network(0);
    let net = format!("{}-app", w.prefix());
    w.ok(&["network", "create", &net]);
    let port = free_port();
    let publish = format!("{port}:80");
    let web = w.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        &net,
        "-p",
        &publish,
        "--network-alias",
        "www",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ]);
    let short = &web.trim()[..12];
    w.ok(&[
        "run",
        "-d",
        "--name",
        "client",
        "--network",
        &net,
        "--cap-add",
        "NET_RAW",
        "busybox",
        "sleep",
        "300",
    ]);
    let web_ip = w.ip_of("web");
    assert_ne!(web_ip, w.ip_of("client"));

    let ps = w.ok(&["ps"]);
    assert!(ps.contains(&format!("0.0.0.0:{port}->80/tcp")), "{ps}");
    // Host → published port on 127.0.0.1 (DNAT in the output chain, route_localnet).
    assert_eq!(http_get(port, "/hostname").trim(), short);
    // Container → container by name: DNS, TCP, ICMP; the alias resolves too.
    let ns = w.ok(&["exec", "client", "nslookup", "web"]);
    assert!(ns.contains(&web_ip), "{ns}");
    let body = w.ok(&["exec", "client", "sh", "-c", &nc_get("www")]);
    assert!(body.contains(short), "{body}");
    w.ok(&["exec", "client", "ping", "-c", "1", "-W", "2", "web"]);
    // Container → a published port through the gateway (hairpin NAT back into the bridge).
    let gw_port = format!(
        "printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {} {port}",
        w.inspect("client")["network"]["gateway"].as_str().unwrap()
    );
    let body = w.ok(&["exec", "client", "sh", "-c", &gw_port]);
    assert!(body.contains(short), "{body}");
    // The container's files point at the network's DNS responder.
    let resolv = w.ok(&["exec", "client", "cat", "/etc/resolv.conf"]);
    let gw = w.inspect("client")["network"]["gateway"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        resolv.starts_with(&format!("nameserver {gw}\n")),
        "{resolv}"
    );

    // The same host port again: a clear error and no half-made container.
    let err = w.fails(&[
        "run", "-d", "--name", "dup", "-p", &publish, "busybox", "true",
    ]);
    assert!(err.contains("already published by container web"), "{err}");
    // A port a host process holds: refused too.
    let held = TcpListener::bind("0.0.0.0:0").unwrap();
    let held_port = held.local_addr().unwrap().port();
    let err = w.fails(&[
        "run",
        "-d",
        "--name",
        "dup",
        "-p",
        &format!("{held_port}:80"),
        "busybox",
        "true",
    ]);
    assert!(err.contains("already in use on the host"), "{err}");
    assert!(w
        .fails(&["inspect", "dup"])
        .contains("no container or VM named"));
    let endpoints = w.ok(&["network", "inspect", &net]);
    assert_eq!(endpoints.matches("\"instance\"").count(), 2, "{endpoints}");

    // rm removes the rule: the port answers no more.
    w.ok(&["rm", "-f", "web", "client"]);
    let table = w.nft_table().unwrap_or_default();
    assert!(!table.contains(&format!("dport {port}")), "{table}");
    w.ok(&["network", "rm", &net]);
    w.assert_nothing_left();
}

#[test]
fn host_named_networks_are_isolated_and_in_use_networks_stay() {
    if skip() {
        return;
    }
    require_net_host();
    let w = World::network(1);
    let (a, b) = (format!("{}-a", w.prefix()), format!("{}-b", w.prefix()));
    w.ok(&["network", "create", &a]);
    w.ok(&["network", "create", "--subnet", "10.216.60.0/24", &b]);
    w.ok(&[
        "run",
        "-d",
        "--name",
        "srv",
        "--network",
        &a,
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ]);
    w.ok(&[
        "run",
        "-d",
        "--name",
        "peer",
        "--network",
        &a,
        "busybox",
        "sleep",
        "300",
    ]);
    w.ok(&[
        "run",
        "-d",
        "--name",
        "stranger",
        "--network",
        &b,
        "--cap-add",
        "NET_RAW",
        "busybox",
        "sleep",
        "300",
    ]);
    let srv_ip = w.ip_of("srv");
    assert!(w.ip_of("stranger").starts_with("10.216.60."));
    // Same network: reachable (also a readiness wait for httpd, bounded).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = w.corral(&["exec", "peer", "sh", "-c", &nc_get(&srv_ip)]);
        if String::from_utf8_lossy(&out.stdout).contains("200 OK") {
            break;
        }
        assert!(Instant::now() < deadline, "srv never answered its peer");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Other network: neither TCP nor ICMP by address, nor the name.
    let out = w.corral(&["exec", "stranger", "sh", "-c", &nc_get(&srv_ip)]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("200 OK"),
        "a container of {b} reached {a}"
    );
    let out = w.corral(&["exec", "stranger", "ping", "-c", "1", "-W", "1", &srv_ip]);
    assert_ne!(out.status.code(), Some(0), "ping crossed networks");
    let out = w.corral(&["exec", "stranger", "nslookup", "srv"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&srv_ip));

    let err = w.fails(&["network", "rm", &a]);
    assert!(err.contains("in use"), "{err}");
    let err = w.fails(&["run", "-d", "--network", "nosuch", "busybox", "true"]);
    assert!(err.contains("no such network: nosuch"), "{err}");
    let err = w.fails(&["network", "create", "--subnet", "10.1.2/99", "lan"]);
    assert!(err.contains("subnet"), "{err}");
    let err = w.fails(&["network", "inspect", "nosuch"]);
    assert!(err.contains("no such network"), "{err}");
    w.ok(&["rm", "-f", "srv", "peer", "stranger"]);
    w.ok(&["network", "rm", &a]);
    w.ok(&["network", "rm", &b]);
    assert_eq!(
        w.ok(&["network", "ls"]).lines().count(),
        1,
        "only the header (the default network was never used)"
    );
    w.assert_nothing_left();
}

#[test]
fn host_kill9_of_the_daemon_keeps_the_network_and_restart_removes_leftovers() {
    if skip() {
        return;
    }
    require_net_host();
    let w = World::network(2);
    let port = free_port();
    w.ok(&[
        "run",
        "-d",
        "--name",
        "keep",
        "-p",
        &format!("{port}:80"),
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ]);
    let short = w.inspect("keep")["id"].as_str().unwrap()[..12].to_string();
    assert_eq!(http_get(port, "/hostname").trim(), short);

    // A daemon that dies right after the network step of a create (as `kill -9` would):
    // stop the running one, and let the CLI start one with the crash point armed.
    w.kill9_daemon();
    let out = w
        .cmd(&["run", "-d", "--name", "half", "busybox", "sleep", "100"])
        .env("CORRAL_CRASH_AT", "create:after-network")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the daemon should have died mid-create"
    );
    w.kill9_daemon();
    let links_mid = w.links();
    assert!(
        links_mid.len() >= 3,
        "the bridge and two veths expected mid-crash: {links_mid:?}"
    );
    assert_eq!(w.netns_files().len(), 2);

    // A daemon without the crash point: recovery undoes `half`, `keep` still serves.
    w.kill9_daemon();
    let list = w.ok(&["ps", "-a", "--format", "json"]);
    assert!(!list.contains("\"half\""), "{list}");
    assert_eq!(w.inspect("keep")["state"], "running");
    assert_eq!(http_get(port, "/hostname").trim(), short);
    let netns = w.netns_files();
    assert_eq!(netns.len(), 1, "only keep's namespace: {netns:?}");
    assert_eq!(w.links().len(), 2, "the bridge and keep's veth only");
    // Stop and start keep the address; a namespace lost meanwhile (as a reboot loses /run) is
    // made again at start.
    let keep_ip = w.ip_of("keep");
    w.ok(&["stop", "-t", "1", "keep"]);
    let keep_id = w.inspect("keep")["id"].as_str().unwrap().to_string();
    let ns_path = w.run.join("netns").join(&keep_id);
    nix::mount::umount2(&ns_path, nix::mount::MntFlags::MNT_DETACH).unwrap();
    std::fs::remove_file(&ns_path).unwrap();
    w.ok(&["start", "keep"]);
    assert_eq!(http_get(port, "/hostname").trim(), short);
    assert_eq!(w.links().len(), 2, "the old veth went with its namespace");

    // Names still resolve through the restarted DNS responder.
    assert_eq!(w.ip_of("keep"), keep_ip);
    let ns = w.ok(&["run", "--rm", "busybox", "nslookup", "keep"]);
    assert!(ns.contains(&keep_ip), "{ns}");

    w.ok(&["rm", "-f", "keep"]);
    w.assert_nothing_left();
}

#[test]
fn host_vm_on_a_network_gets_a_tap_an_address_and_a_name() {
    if skip() {
        return;
    }
    require_net_host();
    let w = World::network(3);
    let net = format!("{}-vm", w.prefix());
    w.ok(&["network", "create", &net]);
    // The VM is only defined (booting needs a guest kernel and virtio-net): the tap is made
    // and recorded at create, its address goes on the kernel command line.
    w.ok(&[
        "vm",
        "create",
        "vm1",
        "--kernel",
        "/bin/sh",
        "--network",
        &net,
        "--cmdline",
        "console=ttyS0",
    ]);
    let vm = w.inspect("vm1");
    let ip = vm["network"]["ip"].as_str().unwrap().to_string();
    let tap = vm["network"]["host_link"].as_str().unwrap().to_string();
    let gw = vm["network"]["gateway"].as_str().unwrap().to_string();
    let link = Command::new("ip")
        .args(["-o", "link", "show", &tap])
        .output()
        .unwrap();
    let link = String::from_utf8_lossy(&link.stdout);
    let bridge = w.ok(&["network", "inspect", &net]);
    let bridge: serde_json::Value = serde_json::from_str(&bridge).unwrap();
    assert!(
        link.contains(&format!("master {}", bridge["bridge"].as_str().unwrap())),
        "{link}"
    );
    let toml = std::fs::read_to_string(w.root.join("vms/vm1/vm.toml")).unwrap();
    assert!(toml.contains(&format!("tap = \"{tap}\"")), "{toml}");
    assert!(
        toml.contains(&format!(
            "console=ttyS0 ip={ip}::{gw}:255.255.255.0::eth0:off"
        )),
        "{toml}"
    );
    // Containers of the network resolve the VM by name.
    let ns = w.ok(&[
        "run",
        "--rm",
        "--network",
        &net,
        "busybox",
        "nslookup",
        "vm1",
    ]);
    assert!(ns.contains(&ip), "{ns}");
    assert!(w.fails(&["network", "rm", &net]).contains("in use"));
    let err = w.fails(&[
        "vm",
        "create",
        "vm2",
        "--kernel",
        "/bin/sh",
        "--network",
        "nosuch",
    ]);
    assert!(err.contains("no such network"), "{err}");
    assert!(w
        .fails(&["inspect", "vm2"])
        .contains("no container or VM named"));

    w.ok(&["vm", "rm", "vm1"]);
    assert!(!w.links().contains(&tap), "the tap went with the VM");
    w.ok(&["network", "rm", &net]);
    w.assert_nothing_left();
}

#[test]
fn host_image_config_is_honoured_and_publish_all_maps_exposed_ports() {
    if skip() {
        return;
    }
    require_net_host();
    let w = World::network(5);
    let ctx = w.root.parent().unwrap().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Containerfile"),
        "FROM busybox\nEXPOSE 8080\nENV GREETING=hi\nWORKDIR /etc\nUSER root\n\
         ENTRYPOINT [\"httpd\", \"-f\"]\nCMD [\"-p\", \"8080\", \"-h\", \"/etc\"]\n",
    )
    .unwrap();
    w.ok(&["build", "-t", "web:1", ctx.to_str().unwrap()]);
    let id = w.ok(&["run", "-d", "-P", "--name", "exp", "web:1"]);
    let ports = w.inspect("exp")["network"]["ports"].clone();
    let ports = ports.as_array().unwrap();
    assert_eq!(ports.len(), 1, "{ports:?}");
    let mapping = ports[0].as_str().unwrap();
    assert!(mapping.ends_with(":8080/tcp"), "{mapping}");
    let host_port: u16 = mapping.split(':').next().unwrap().parse().unwrap();
    // ENTRYPOINT + CMD started httpd in WORKDIR as USER (by name), with ENV. (A non-root USER
    // is resolved the same way, but corral's runtime cannot start non-root processes yet.)
    assert_eq!(http_get(host_port, "/hostname").trim(), &id.trim()[..12]);
    let out = w.ok(&["exec", "exp", "sh", "-c", "echo $GREETING $(pwd) $(id -u)"]);
    assert_eq!(out.trim(), "hi /etc 0");
    let err = w.fails(&["run", "-d", "no-such-image:2"]);
    assert!(err.contains("no such image: no-such-image:2"), "{err}");
    w.ok(&["rm", "-f", "exp"]);
    w.assert_nothing_left();
}

#[test]
fn host_an_older_roots_net_json_is_imported_once_into_the_state_database() {
    if skip() {
        return;
    }
    require_net_host();
    let w = World::network(6);
    // An older corral kept its networks in <root>/net/net.json: stop the daemon World::network
    // started and leave one there, with a network and a link serial of its own.
    w.kill9_daemon();
    let third_octet: u8 = w.pool().split('.').nth(2).unwrap().parse().unwrap();
    let subnet = format!("10.216.{}.0/24", third_octet + 7);
    let bridge = format!("{}b77", w.prefix());
    let net_dir = w.root.join("net");
    corral_net::FileStore::new(&net_dir)
        .update(|s| {
            let subnet = subnet.parse().unwrap();
            s.networks.insert(
                "old".into(),
                corral_net::NetworkRecord {
                    name: "old".into(),
                    subnet,
                    gateway: corral_net::ipam::gateway_of(subnet),
                    bridge: bridge.clone(),
                },
            );
            s.next_serial = 78;
            Ok::<_, corral_net::StateError>(())
        })
        .unwrap();

    // The next daemon takes it in, keeps the file aside and brings the network's bridge up.
    let old = w.ok(&["network", "inspect", "old"]);
    assert!(old.contains(&subnet) && old.contains(&bridge), "{old}");
    assert!(!net_dir.join("net.json").exists());
    assert!(net_dir.join("net.json.imported").exists());
    assert!(w.links().contains(&bridge), "{:?}", w.links());
    w.ok(&[
        "run",
        "-d",
        "--name",
        "c",
        "--network",
        "old",
        "busybox",
        "sleep",
        "100",
    ]);
    let ip = w.ip_of("c");
    assert_eq!(ip, subnet.replace(".0/24", ".2"));
    let link = w.inspect("c")["network"]["host_link"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(link, format!("{}v78", w.prefix()), "the serial goes on");

    // After a crash the lease comes from the database, not from the file again.
    w.kill9_daemon();
    assert_eq!(w.ip_of("c"), ip);
    let all = w.ok(&["network", "ls"]);
    assert_eq!(all.matches("old").count(), 1, "{all}");
    w.ok(&["rm", "-f", "c"]);
    w.ok(&["network", "rm", "old"]);
    w.assert_nothing_left();
}
