//! The private daemon world of the network tests (daemon_network*.rs): its own root, run dir,
//! link prefix, nftables table and address pool, a busybox image, and leak checks.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

#[path = "../daemon_teardown/mod.rs"]
mod daemon_teardown;

use daemon_teardown::stop_world;
pub use daemon_teardown::wait_gone;

/// Whether host tests are skipped; panics naming what is missing otherwise.
pub fn skip() -> bool {
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
pub struct World {
    _dir: tempfile::TempDir,
    /// Root dir.
    pub root: PathBuf,
    /// Run dir.
    pub run: PathBuf,
    /// Link prefix and nftables table.
    pub prefix: String,
    /// Address pool.
    pub pool: String,
}

impl World {
    /// `slot` (0-7) gives each test of this file its own letter and /19 of 10.216.0.0/16.
    pub fn new(slot: u8) -> World {
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

    pub fn cmd(&self, args: &[&str]) -> Command {
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

    pub fn corral(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
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
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.corral(args);
        assert!(!out.status.success(), "corral {args:?} should have failed");
        String::from_utf8(out.stderr).unwrap()
    }

    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let out = self.ok(&["inspect", name]);
        serde_json::from_str::<serde_json::Value>(&out).unwrap()[0].clone()
    }

    pub fn ip_of(&self, name: &str) -> String {
        let i = self.inspect(name);
        i["network"]["ip"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no address: {i}"))
            .to_string()
    }

    pub fn daemon_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.run.join("corral.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    pub fn kill9_daemon(&self) {
        if let Some(pid) = self.daemon_pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            wait_gone(pid);
        }
    }

    /// Host links whose name starts with this world's prefix.
    pub fn links(&self) -> Vec<String> {
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

    pub fn nft_table(&self) -> Option<String> {
        let out = Command::new("nft")
            .args(["list", "table", "ip", &self.prefix])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

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

impl Drop for World {
    fn drop(&mut self) {
        stop_world(&|args| self.corral(args), &|| self.daemon_pid());
        // Safety net for a failed test: links and the table of this world's prefix.
        for l in self.links() {
            let _ = Command::new("ip").args(["link", "del", &l]).status();
        }
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &self.prefix])
            .output();
    }
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
