//! Shared helpers of the oci tests: busybox bundles and runtime invocations.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

/// Skip (return true) when CORRAL_SKIP_HOST_TESTS=1; otherwise insist on root and busybox.
pub fn host_ready() -> bool {
    if std::env::var("CORRAL_SKIP_HOST_TESTS").as_deref() == Ok("1") {
        eprintln!("skipped: CORRAL_SKIP_HOST_TESTS=1");
        return false;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "this host test needs root (containers need namespaces and cgroups)"
    );
    assert!(
        Path::new("/bin/busybox").exists(),
        "this host test needs /bin/busybox (Debian's busybox-static)"
    );
    true
}

/// The corral binary under test.
pub fn corral() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_corral"))
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A unique name with the area prefix and our pid.
pub fn unique(tag: &str) -> String {
    format!(
        "oci-{tag}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A bundle directory with a busybox rootfs and a default config.json (no terminal) whose
/// process runs `sh -c script`.
pub struct TestBundle {
    /// Temp dir holding bundle and state root.
    pub dir: tempfile::TempDir,
    /// The config.json as JSON, written by `write`.
    pub config: Value,
    /// Container id.
    pub id: String,
    /// cgroupsPath used.
    pub cgroup: String,
}

const APPLETS: &[&str] = &[
    "sh", "ls", "cat", "echo", "id", "hostname", "mount", "ps", "sleep", "true", "false", "touch",
    "chown", "mkdir", "dd", "grep", "head", "wc", "stat", "readlink", "ulimit", "kill", "cut",
    "uname", "ionice",
];

impl TestBundle {
    /// A new bundle running `script`.
    pub fn new(tag: &str, script: &str) -> TestBundle {
        let dir = tempfile::Builder::new()
            .prefix("corral-oci-")
            .tempdir()
            .unwrap();
        let root = dir.path().join("bundle/rootfs");
        for d in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).unwrap();
        }
        std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        let out = Command::new(corral())
            .args(["oci", "spec", "--bundle"])
            .arg(dir.path().join("bundle"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "corral oci spec: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(dir.path().join("bundle/config.json")).unwrap();
        let mut config: Value = serde_json::from_str(&text).unwrap();
        let id = unique(tag);
        let cgroup = format!("/{id}");
        config["process"]["terminal"] = false.into();
        config["root"]["readonly"] = false.into();
        config["process"]["args"] = serde_json::json!(["sh", "-c", script]);
        config["linux"]["cgroupsPath"] = cgroup.clone().into();
        TestBundle {
            dir,
            config,
            id,
            cgroup,
        }
    }

    /// The bundle directory.
    pub fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }

    /// The state root for `runtime` (kept apart per runtime).
    pub fn root(&self, runtime: &Path) -> PathBuf {
        let name = runtime.file_name().unwrap().to_string_lossy().to_string();
        self.dir.path().join(format!("state-{name}"))
    }

    /// Write config.json.
    pub fn write(&self) {
        std::fs::write(
            self.bundle().join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    /// Run `runtime --root <root> <args…>` (a runc-compatible binary; `corral` gets `oci`).
    pub fn rt(&self, runtime: &Path, args: &[&str]) -> Output {
        self.write();
        let mut cmd = Command::new(runtime);
        if runtime == corral() {
            cmd.arg("oci");
        }
        cmd.arg("--root").arg(self.root(runtime)).args(args);
        cmd.current_dir(self.bundle());
        // Files, not pipes: a created container's init keeps the runtime's stdio open, so
        // waiting for EOF on a pipe would wait for the container.
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let (o, e) = (
            self.dir.path().join(format!("out{n}")),
            self.dir.path().join(format!("err{n}")),
        );
        cmd.stdin(std::process::Stdio::null());
        cmd.stdout(std::fs::File::create(&o).unwrap())
            .stderr(std::fs::File::create(&e).unwrap());
        let status = cmd.status().unwrap();
        Output {
            status,
            stdout: std::fs::read(&o).unwrap(),
            stderr: std::fs::read(&e).unwrap(),
        }
    }

    /// `run` the bundle with corral: (exit code, stdout, stderr).
    pub fn run(&self) -> (i32, String, String) {
        let out = self.rt(&corral(), &["run", &self.id]);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Whether any v1 hierarchy (or the v2 tree) still has this bundle's cgroup.
    pub fn cgroup_exists(&self) -> bool {
        ["memory", "pids", "cpu", "freezer", "unified"]
            .iter()
            .any(|h| {
                Path::new("/sys/fs/cgroup")
                    .join(h)
                    .join(self.cgroup.trim_start_matches('/'))
                    .exists()
            })
    }
}

impl Drop for TestBundle {
    fn drop(&mut self) {
        // Leave nothing behind even when an assertion failed mid-test.
        let _ = Command::new(corral())
            .args(["oci", "--root"])
            .arg(self.root(&corral()))
            .args(["delete", "--force", &self.id])
            .output();
        if Path::new("/usr/sbin/runc").exists() {
            let _ = Command::new("/usr/sbin/runc")
                .arg("--root")
                .arg(self.root(Path::new("/usr/sbin/runc")))
                .args(["delete", "--force", &self.id])
                .output();
        }
    }
}

/// `state` JSON of a container.
pub fn state(b: &TestBundle, runtime: &Path) -> Option<Value> {
    let out = b.rt(runtime, &["state", &b.id]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

/// Wait (bounded, 10 s) for process `pid` to exit, through a pidfd.
pub fn wait_pid_exit(pid: i32) {
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return; // already gone
    }
    let mut p = libc::pollfd {
        fd: fd as i32,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd; then we close the descriptor we own.
    unsafe {
        libc::poll(&mut p, 1, 10_000);
        libc::close(fd as i32);
    }
}
