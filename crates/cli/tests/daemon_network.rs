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

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn skip() -> bool {
    if std::env::var("CORRAL_SKIP_HOST_TESTS").as_deref() == Ok("1") {
        eprintln!("skipped: CORRAL_SKIP_HOST_TESTS=1");
        return true;
    }
    assert_eq!(
        nix::unistd::geteuid().as_raw(),
        0,
        "host_ network tests need root (set CORRAL_SKIP_HOST_TESTS=1 to skip)"
    );
    for tool in ["nft", "ip"] {
        assert!(
            Command::new(tool).arg("-V").output().is_ok(),
            "host_ network tests need `{tool}` to check for leftovers (scripts/setup.sh installs it)"
        );
    }
    assert!(
        Path::new("/bin/busybox").exists(),
        "/bin/busybox is missing (apt-get install busybox-static)"
    );
    false
}

/// One private daemon world with its own root, run dir, link prefix, table and pool.
struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    run: PathBuf,
    prefix: String,
    pool: String,
}

impl World {
    /// `slot` (0-7) gives each test of this file its own letter and /19 of 10.216.0.0/16.
    fn new(slot: u8) -> World {
        let dir = tempfile::Builder::new()
            .prefix(&format!("net-{}-", std::process::id()))
            .tempdir()
            .unwrap();
        let letter = (b'a' + slot) as char;
        let w = World {
            root: dir.path().join("root"),
            run: dir.path().join("run"),
            prefix: format!("net{:04}{letter}", std::process::id() % 10000),
            pool: format!("10.216.{}.0/19", u32::from(slot) * 32),
            _dir: dir,
        };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/busybox-image.sh");
        let out = Command::new(&script)
            .env("CORRAL", env!("CARGO_BIN_EXE_corral"))
            .env("CORRAL_ROOT", &w.root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        w
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_corral"));
        c.args(args)
            .env("CORRAL_ROOT", &self.root)
            .env("CORRAL_RUN", &self.run)
            .env("CORRAL_NET_PREFIX", &self.prefix)
            .env("CORRAL_NET_POOL", &self.pool)
            .env_remove("CORRAL_OCI_RUNTIME")
            .env_remove("CORRAL_CRASH_AT");
        c
    }

    fn corral(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.corral(args);
        assert!(
            out.status.success(),
            "corral {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.root.join("daemon.log")).unwrap_or_default()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Run and require failure; stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.corral(args);
        assert!(!out.status.success(), "corral {args:?} should have failed");
        String::from_utf8(out.stderr).unwrap()
    }

    fn inspect(&self, name: &str) -> serde_json::Value {
        let out = self.ok(&["inspect", name]);
        serde_json::from_str::<serde_json::Value>(&out).unwrap()[0].clone()
    }

    fn ip_of(&self, name: &str) -> String {
        let i = self.inspect(name);
        i["network"]["ip"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no address: {i}"))
            .to_string()
    }

    fn daemon_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.run.join("corral.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn kill9_daemon(&self) {
        if let Some(pid) = self.daemon_pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            wait_gone(pid);
        }
    }

    /// Host links whose name starts with this world's prefix.
    fn links(&self) -> Vec<String> {
        let out = Command::new("ip")
            .args(["-o", "link", "show"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
            .filter(|n| n.starts_with(&self.prefix))
            .collect()
    }

    fn nft_table(&self) -> Option<String> {
        let out = Command::new("nft")
            .args(["list", "table", "ip", &self.prefix])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn netns_files(&self) -> Vec<String> {
        std::fs::read_dir(self.run.join("netns"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// After every container is gone and `network prune`: nothing of this world on the host.
    fn assert_nothing_left(&self) {
        // `run --rm` containers are removed by the daemon just after they exit.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.ok(&["ps", "-a", "--format", "json"]).trim() != "[]" {
            assert!(Instant::now() < deadline, "containers left");
            std::thread::sleep(Duration::from_millis(50));
        }
        let pruned = self.ok(&["network", "prune"]);
        assert_eq!(self.links(), Vec::<String>::new(), "links left ({pruned})");
        assert_eq!(self.nft_table(), None, "nftables table left");
        assert_eq!(self.netns_files(), Vec::<String>::new(), "namespaces left");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains(&self.run.join("netns").display().to_string()),
            "a namespace mount left"
        );
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Ok(out) = self.cmd(&["ps", "-a", "--format", "json"]).output() {
            if let Ok(list) = serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout) {
                for c in list {
                    let _ = self.corral(&["rm", "-f", c["id"].as_str().unwrap_or("")]);
                }
            }
        }
        let _ = self.corral(&["network", "prune"]);
        if let Some(pid) = self.daemon_pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
            wait_gone(pid);
        }
        // Safety net for a failed test: links and the table of this world's prefix.
        for l in self.links() {
            let _ = Command::new("ip").args(["link", "del", &l]).status();
        }
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &self.prefix])
            .output();
    }
}

fn wait_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let gone = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true);
        if gone {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A free host TCP port (bind to :0, read, release).
fn free_port() -> u16 {
    TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over HTTP/1.0 to 127.0.0.1:`port`; the body. Retries while the server in the
/// container is not listening yet (connection refused or reset), up to 5 s.
fn http_get(port: u16, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            write!(s, "GET {path} HTTP/1.0\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })();
        match attempt {
            Ok(text) if text.contains("\r\n\r\n") => {
                return text.split_once("\r\n\r\n").unwrap().1.to_string()
            }
            Ok(_) | Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            other => panic!("GET 127.0.0.1:{port}{path}: {other:?}"),
        }
    }
}

/// A shell line that fetches `/hostname` from `host` port 80 with busybox nc (`wget -T`
/// crashes in Debian's busybox 1.35).
fn nc_get(host: &str) -> String {
    format!("printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {host} 80")
}

#[test]
fn host_containers_reach_each_other_by_name_and_the_host_reaches_published_ports() {
    if skip() {
        return;
    }
    let w = World::new(0);
    let net = format!("{}-app", w.prefix);
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
    let w = World::new(1);
    let (a, b) = (format!("{}-a", w.prefix), format!("{}-b", w.prefix));
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
    let w = World::new(2);
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
    let w = World::new(3);
    let net = format!("{}-vm", w.prefix);
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
