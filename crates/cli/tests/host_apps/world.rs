//! The private daemon world of the app tests and the helpers they share.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::daemon_teardown::stop_world;

pub fn skip() -> bool {
    std::env::var("CORRAL_SKIP_HOST_TESTS").as_deref() == Ok("1")
}

pub fn require_host() {
    assert_eq!(
        nix::unistd::geteuid().as_raw(),
        0,
        "host_ tests need root (set CORRAL_SKIP_HOST_TESTS=1 to skip)"
    );
    assert!(
        Path::new("/bin/busybox").exists(),
        "/bin/busybox is missing (apt-get install busybox-static)"
    );
}

/// One private daemon world with a project folder, its own host networking names and
/// address pool, and the busybox image.
pub struct World {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub run: PathBuf,
    pub project: PathBuf,
    pub prefix: String,
    pool: String,
    apps: std::cell::RefCell<Vec<String>>,
    env: std::cell::RefCell<Vec<(String, String)>>,
}

impl World {
    /// `slot` (0-7) gives each test its own link prefix letter and /19 of 10.217.0.0/16.
    pub fn new(tag: &str, slot: u8) -> World {
        let dir = tempfile::Builder::new()
            .prefix(&format!("apps-{tag}-{}-", std::process::id()))
            .tempdir()
            .unwrap();
        let project = dir.path().join("proj");
        std::fs::create_dir_all(&project).unwrap();
        let w = World {
            root: dir.path().join("root"),
            run: dir.path().join("run"),
            project,
            prefix: format!(
                "app{:04}{}",
                std::process::id() % 10000,
                (b'a' + slot) as char
            ),
            pool: format!("10.217.{}.0/19", u32::from(slot) * 32),
            _dir: dir,
            apps: Default::default(),
            env: Default::default(),
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

    /// A unique app name for this test.
    pub fn app_name(&self, tag: &str) -> String {
        let n = format!("apps{}{tag}", std::process::id());
        self.apps.borrow_mut().push(n.clone());
        n
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_corral"));
        c.args(args)
            .current_dir(&self.project)
            .env("CORRAL_ROOT", &self.root)
            .env("CORRAL_RUN", &self.run)
            .env("CORRAL_NET_PREFIX", &self.prefix)
            .env("CORRAL_NET_POOL", &self.pool)
            .env_remove("CORRAL_OCI_RUNTIME")
            .env_remove("CORRAL_CRASH_AT");
        c.envs(self.env.borrow().iter().cloned());
        c
    }

    /// Set a variable for every later command (and so for the daemon the next one starts).
    pub fn set_env(&self, key: &str, value: &str) {
        self.env.borrow_mut().push((key.into(), value.into()));
    }

    pub fn corral(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.root.join("daemon.log")).unwrap_or_default()
    }

    /// Run and require success; stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.corral(args);
        assert!(
            out.status.success(),
            "corral {args:?} failed: {}{}\n--- daemon log (end) ---\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.daemon_log(), 40)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.project.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// The app's status from the daemon's API (`GET /v1/apps/NAME` on its socket); null when
    /// there is no such app.
    pub fn status(&self, app: &str) -> serde_json::Value {
        use std::io::{Read, Write};
        let Ok(mut s) = std::os::unix::net::UnixStream::connect(self.run.join("corral.sock"))
        else {
            return serde_json::Value::Null;
        };
        let req = format!("GET /v1/apps/{app} HTTP/1.0\r\nHost: corral\r\n\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        if !text.starts_with("HTTP/1.0 200") && !text.starts_with("HTTP/1.1 200") {
            return serde_json::Value::Null;
        }
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("null");
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
    }

    /// Wait (up to 60 s) until `f` holds for the app's status.
    pub fn wait_for(
        &self,
        app: &str,
        what: &str,
        f: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let st = self.status(app);
            if f(&st) {
                return st;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "timed out waiting for {what}; last status: {st:#}\n--- daemon log (end) ---\n{}",
                tail(&self.daemon_log(), 40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn daemon_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.run.join("corral.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// SIGKILL the daemon and wait until it is gone (replicas live on in their shims).
    pub fn kill_daemon(&self) {
        let pid = self.daemon_pid().expect("a running daemon");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        for _ in 0..500 {
            let gone = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true);
            if gone {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("daemon {pid} did not die");
    }

    /// Host links named with this world's prefix.
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

    /// Containers the daemon knows.
    pub fn containers(&self) -> Vec<serde_json::Value> {
        let out = self.ok(&["ps", "-a", "--format", "json"]);
        serde_json::from_str(&out).unwrap()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for app in self.apps.borrow().iter() {
            let _ = self.corral(&["app", "down", "-v", "-p", app]);
        }
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

pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The web service: busybox httpd answering with the replica's host name.
pub const WEB_CMD: &str = r#"["sh", "-c", "mkdir -p /www && echo \"hello from $$HOSTNAME\" > /www/index.html && exec httpd -f -p 8080 -h /www"]"#;
/// The TCP echo service.
pub const ECHO_CMD: &str = r#"["nc", "-ll", "-p", "27017", "-e", "cat"]"#;

/// The issue's Compose file with local images (busybox httpd and nc), on `port`.
pub fn compose_file(port: u16) -> String {
    format!(
        "version: '2'
services:
  mongo:
    image: busybox
    command: {ECHO_CMD}
    stdin_open: true
    tty: true
    ports:
      - \"27017\"
    labels:
      io.rancher.container.pull_image: always
  chat:
    image: busybox
    command: {WEB_CMD}
    stdin_open: true
    tty: true
    ports:
      - {port}:8080/tcp
    labels:
      io.rancher.container.pull_image: always
"
    )
}

pub fn replicas_of<'a>(st: &'a serde_json::Value, service: &str) -> Vec<&'a serde_json::Value> {
    st["replicas"]
        .as_array()
        .map(|a| a.iter().filter(|r| r["service"] == service).collect())
        .unwrap_or_default()
}

pub fn all_running(st: &serde_json::Value, service: &str, n: usize) -> bool {
    let r = replicas_of(st, service);
    r.len() == n
        && r.iter()
            .all(|r| r["status"] == "Running" && r["ready"] == true)
}

/// One HTTP/1.0 GET through the balancer; the body.
pub fn http_get(port: u16) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    if !text.starts_with("HTTP/1.") || !text.contains(" 200 ") {
        return Err(std::io::Error::other(format!("bad answer: {text:?}")));
    }
    Ok(text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or("")
        .trim()
        .to_string())
}

/// A line through the TCP echo service.
pub fn echo(port: u16, line: &str) -> String {
    use std::io::{BufRead, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut back = String::new();
    std::io::BufReader::new(s).read_line(&mut back).unwrap();
    back.trim().to_string()
}

/// The host port a service's balancer listens on.
pub fn published_port(st: &serde_json::Value, service: &str) -> u16 {
    let ep = st["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["service"] == service)
        .unwrap_or_else(|| panic!("no endpoint for {service}: {st:#}"));
    let listen = ep["listen"].as_str().unwrap();
    listen.rsplit(':').next().unwrap().parse().unwrap()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The name of a service's only replica.
pub fn pod_name(st: &serde_json::Value, service: &str) -> String {
    let r = replicas_of(st, service);
    assert_eq!(r.len(), 1, "one replica of {service}: {st:#}");
    r[0]["name"].as_str().unwrap().to_string()
}
