//! The one private daemon world of the cli crate's host tests: a temp dir with its own root
//! (CORRAL_ROOT, the busybox image imported) and run dir (CORRAL_RUN), the CLI pointed at
//! them (the daemon is started by the CLI), and a teardown that leaves nothing behind.
//! Options add what a test file needs on top: its own link prefix, nftables table and
//! address pool (`network`), an app project folder (`apps`), the OCI runtime under test.
//!
//! Every test binary that uses it has `mod world;`; host resource names carry the binary's
//! tag and pid, because the binaries run at the same time (and other engineers' runs too).

#![allow(dead_code)]

pub mod apps;
pub mod daemon;
pub mod guest;
pub mod network;
pub mod pty;

use std::cell::RefCell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// Whether host tests are skipped (CORRAL_SKIP_HOST_TESTS=1); says so when they are.
pub fn skip() -> bool {
    let skip = std::env::var("CORRAL_SKIP_HOST_TESTS").as_deref() == Ok("1");
    if skip {
        eprintln!("skipped: CORRAL_SKIP_HOST_TESTS=1");
    }
    skip
}

/// The OCI runtime under test when it is not corral's own (CORRAL_TEST_OCI_RUNTIME, e.g.
/// /usr/sbin/runc, to check the tests themselves).
pub fn runtime() -> Option<String> {
    std::env::var("CORRAL_TEST_OCI_RUNTIME").ok()
}

/// Fail loudly unless this is root with busybox-static (and the runtime asked for).
pub fn require_host() {
    assert_eq!(
        nix::unistd::geteuid().as_raw(),
        0,
        "host_ tests need root (set CORRAL_SKIP_HOST_TESTS=1 to skip)"
    );
    if let Some(rt) = runtime() {
        assert!(Path::new(&rt).exists(), "OCI runtime {rt} is missing");
    }
    assert!(
        Path::new("/bin/busybox").exists(),
        "/bin/busybox is missing (apt-get install busybox-static)"
    );
}

/// How a world is made: `World::builder(tag)`, then options, then `build`.
pub struct Builder {
    tag: String,
    runtime: Option<String>,
    net: Option<network::Net>,
    project: bool,
    daemon: bool,
}

impl Builder {
    /// Point the daemon at the OCI runtime under test (`runtime()`) when one is named.
    pub fn runtime_from_env(mut self) -> Builder {
        self.runtime = runtime();
        self
    }

    /// Give the daemon its own link prefix and nftables table (`PREFIX` + pid % 10000 + a
    /// letter) and address pool (the /19 number `slot` (0-7) of 10.`octet`.0.0/16).
    pub fn network(mut self, prefix: &str, octet: u8, slot: u8) -> Builder {
        self.net = Some(network::Net::new(prefix, octet, slot));
        self
    }

    /// Run the CLI in a project folder (`World::project`).
    pub fn project(mut self) -> Builder {
        self.project = true;
        self
    }

    /// The tests of this world never start the daemon: teardown only removes the temp dir.
    pub fn without_daemon(mut self) -> Builder {
        self.daemon = false;
        self
    }

    /// Make the dirs and import the busybox image.
    pub fn build(self) -> World {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}-{}-", self.tag, std::process::id()))
            .tempdir()
            .unwrap();
        let project = self.project.then(|| {
            let p = dir.path().join("proj");
            std::fs::create_dir_all(&p).unwrap();
            p
        });
        let w = World {
            root: dir.path().join("root"),
            run: dir.path().join("run"),
            project,
            net: self.net,
            runtime: self.runtime,
            daemon: self.daemon,
            apps: RefCell::default(),
            env: RefCell::default(),
            dir,
        };
        daemon::import_busybox(&w.root);
        w
    }
}

/// One private daemon world.
pub struct World {
    dir: tempfile::TempDir,
    /// The root dir (CORRAL_ROOT).
    pub root: PathBuf,
    /// The run dir (CORRAL_RUN).
    pub run: PathBuf,
    project: Option<PathBuf>,
    net: Option<network::Net>,
    runtime: Option<String>,
    daemon: bool,
    /// Apps to take down before the daemon stops (`apps::app_name`).
    apps: RefCell<Vec<String>>,
    /// Variables for every later command (`set_env`).
    env: RefCell<Vec<(String, String)>>,
}

impl World {
    /// A world whose temp dir is named `TAG-PID-…`, with no options yet.
    pub fn builder(tag: &str) -> Builder {
        Builder {
            tag: tag.to_string(),
            runtime: None,
            net: None,
            project: false,
            daemon: true,
        }
    }

    /// The containers world (daemon_containers, host_exec, host_tty): the daemon's default
    /// networking, the OCI runtime under test when one is named.
    pub fn new() -> World {
        World::builder("daemon").runtime_from_env().build()
    }

    /// The temp dir holding everything of this world.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CLI with `args`, pointed at this world.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_corral"));
        c.args(args)
            .env("CORRAL_ROOT", &self.root)
            .env("CORRAL_RUN", &self.run)
            .env_remove("CORRAL_OCI_RUNTIME")
            .env_remove("CORRAL_CRASH_AT");
        if let Some(rt) = &self.runtime {
            c.env("CORRAL_OCI_RUNTIME", rt);
        }
        if let Some(net) = &self.net {
            c.env("CORRAL_NET_PREFIX", &net.prefix)
                .env("CORRAL_NET_POOL", &net.pool);
        }
        if let Some(p) = &self.project {
            c.current_dir(p);
        }
        c.envs(self.env.borrow().iter().cloned());
        c
    }

    /// Set a variable for every later command (and so for the daemon the next one starts).
    pub fn set_env(&self, key: &str, value: &str) {
        self.env.borrow_mut().push((key.into(), value.into()));
    }

    /// Run the CLI with `args`.
    pub fn corral(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
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

    /// Run and require failure; stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.corral(args);
        assert!(!out.status.success(), "corral {args:?} should have failed");
        String::from_utf8(out.stderr).unwrap()
    }

    /// Start the CLI with `args`, its stdin, stdout and stderr piped.
    pub fn spawn_piped(&self, args: &[&str]) -> Child {
        self.cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Run the CLI with `args` and `input` on its stdin (then closed), stdout and stderr
    /// captured; fails the test instead of hanging when it has not ended after 30 s.
    pub fn with_input(&self, args: &[&str], input: &'static [u8]) -> Output {
        const LIMIT: std::time::Duration = std::time::Duration::from_secs(30);
        let mut child = self.spawn_piped(args);
        let mut stdin = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            let _ = stdin.write_all(input);
        });
        let pid = child.id() as i32;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(LIMIT) {
            Ok(out) => out.unwrap(),
            Err(_) => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                panic!("corral {args:?} did not end within {LIMIT:?}");
            }
        }
    }

    /// `corral inspect NAME` as JSON.
    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let out = self.ok(&["inspect", name]);
        serde_json::from_str::<serde_json::Value>(&out).unwrap()[0].clone()
    }

    /// Containers the daemon knows (`ps -a`).
    pub fn containers(&self) -> Vec<serde_json::Value> {
        let out = self.ok(&["ps", "-a", "--format", "json"]);
        serde_json::from_str(&out).unwrap()
    }
}

impl Drop for World {
    /// Takes down the apps, removes the containers and networks a failed test left, stops the
    /// daemon and waits until it is gone, then deletes what is left of this world's prefix.
    fn drop(&mut self) {
        if self.daemon {
            for app in self.apps.borrow().iter() {
                let _ = self.corral(&["app", "down", "-v", "-p", app]);
            }
            daemon::stop_world(self);
        }
        if let Some(net) = &self.net {
            net.remove_leftovers();
        }
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
