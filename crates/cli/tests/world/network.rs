//! The world's own host networking names, so tests and other engineers' runs never touch
//! each other's objects: a link prefix and nftables table (`CORRAL_NET_PREFIX`) and an
//! address pool (`CORRAL_NET_POOL`), the checks that nothing of them is left, and the
//! helpers that reach containers from the host.
//!
//! Pools by test binary: daemon_network*.rs 10.216.0.0/16 (prefix "net"), host_apps.rs
//! 10.217.0.0/16 (prefix "app"); each test takes a /19 of its binary's by its slot.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use super::World;

/// A world's link prefix (also its nftables table) and address pool.
pub(super) struct Net {
    pub(super) prefix: String,
    pub(super) pool: String,
}

impl Net {
    /// `PREFIX` + pid % 10000 + the slot's letter, and the slot's /19 of 10.`octet`.0.0/16.
    pub(super) fn new(prefix: &str, octet: u8, slot: u8) -> Net {
        assert!(slot < 8, "slot {slot}: a /16 holds 8 pools of /19");
        Net {
            prefix: format!(
                "{prefix}{:04}{}",
                std::process::id() % 10000,
                (b'a' + slot) as char
            ),
            pool: format!("10.{octet}.{}.0/19", u32::from(slot) * 32),
        }
    }

    /// Safety net for a failed test: links and the table of this prefix.
    pub(super) fn remove_leftovers(&self) {
        for l in links_named(&self.prefix) {
            let _ = Command::new("ip").args(["link", "del", &l]).status();
        }
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &self.prefix])
            .output();
    }
}

/// Fail loudly unless `require_host` holds and `nft` and `ip` are there to check for leftovers.
pub fn require_net_host() {
    super::require_host();
    for tool in ["nft", "ip"] {
        assert!(
            Command::new(tool).arg("-V").output().is_ok(),
            "host_ network tests need `{tool}` to check for leftovers (scripts/setup.sh installs it)"
        );
    }
}

impl World {
    /// The network world of the daemon_network*.rs tests; `slot` (0-7) gives each test its
    /// own prefix letter and /19 of 10.216.0.0/16.
    pub fn network(slot: u8) -> World {
        World::builder("net").network("net", 216, slot).build()
    }

    fn net(&self) -> &Net {
        self.net
            .as_ref()
            .expect("a world made with the `network` option")
    }

    /// The link prefix and nftables table of this world.
    pub fn prefix(&self) -> &str {
        &self.net().prefix
    }

    /// The address pool of this world.
    pub fn pool(&self) -> &str {
        &self.net().pool
    }

    /// Container `name`'s address.
    pub fn ip_of(&self, name: &str) -> String {
        let i = self.inspect(name);
        i["network"]["ip"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no address: {i}"))
            .to_string()
    }

    /// Host links whose name starts with this world's prefix.
    pub fn links(&self) -> Vec<String> {
        links_named(self.prefix())
    }

    /// This world's nftables table, if there is one.
    pub fn nft_table(&self) -> Option<String> {
        let out = Command::new("nft")
            .args(["list", "table", "ip", self.prefix()])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The network namespace files under the run dir.
    pub fn netns_files(&self) -> Vec<String> {
        std::fs::read_dir(self.run.join("netns"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// After every container is gone and `network prune`: nothing of this world on the host.
    pub fn assert_nothing_left(&self) {
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

/// Host links whose name starts with `prefix`.
fn links_named(prefix: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// A free host TCP port (bind to :0, read, release).
pub fn free_port() -> u16 {
    TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over HTTP/1.0 to 127.0.0.1:`port`; the body. Retries while the server in the
/// container is not listening yet (connection refused or reset), up to 5 s.
pub fn http_get(port: u16, path: &str) -> String {
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
pub fn nc_get(host: &str) -> String {
    format!("printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {host} 80")
}
