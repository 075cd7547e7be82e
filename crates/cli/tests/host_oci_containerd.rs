//! containerd drives corral like runc (needs root and Debian's containerd): a private
//! containerd, a busybox image built here as an OCI layout tar, `ctr run --runc-binary
//! corral-runc`, and the container's output and exit status back through containerd.

mod oci_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use oci_support::{corral, host_ready, unique};
use serde_json::json;

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Write a blob into `layout/blobs/sha256`, returning (digest, size).
fn blob(layout: &Path, bytes: &[u8]) -> (String, usize) {
    let tmp = layout.join("blob.tmp");
    std::fs::write(&tmp, bytes).unwrap();
    let hex = sh(&format!("sha256sum {} | cut -d' ' -f1", tmp.display()));
    std::fs::rename(&tmp, layout.join("blobs/sha256").join(&hex)).unwrap();
    (format!("sha256:{hex}"), bytes.len())
}

/// An OCI image layout tar holding a busybox rootfs as one uncompressed layer.
fn busybox_image(dir: &Path, name: &str) -> PathBuf {
    let rootfs = dir.join("img-rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for a in ["sh", "echo", "cat", "hostname"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
    }
    let layout = dir.join("layout");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let layer_tar = dir.join("layer.tar");
    sh(&format!(
        "tar -C {} -cf {} .",
        rootfs.display(),
        layer_tar.display()
    ));
    let (layer, layer_size) = blob(&layout, &std::fs::read(&layer_tar).unwrap());
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [layer]}
    });
    let (config_digest, config_size) = blob(&layout, config.to_string().as_bytes());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_size}]
    });
    let (manifest_digest, manifest_size) = blob(&layout, manifest.to_string().as_bytes());
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest_size,
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": "latest"}
        }]
    });
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let tar = dir.join("image.tar");
    sh(&format!(
        "tar -C {} -cf {} oci-layout index.json blobs",
        layout.display(),
        tar.display()
    ));
    tar
}

struct Containerd {
    child: Child,
    sock: PathBuf,
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_containerd(dir: &Path) -> Containerd {
    let sock = dir.join("containerd.sock");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n[debug]\n  address = \"{sock}.debug\"\n",
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            sock = sock.display(),
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
    let child = Command::new("containerd")
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("this test needs Debian's containerd (scripts/setup.sh installs it)");
    let d = Containerd { child, sock };
    // Ready when the API answers.
    for _ in 0..200 {
        let ok = Command::new("ctr")
            .arg("-a")
            .arg(&d.sock)
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return d;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!(
        "containerd did not come up: {}",
        std::fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
    );
}

#[test]
fn host_oci_containerd_runs_busybox_through_corral_runc() {
    if !host_ready() {
        return;
    }
    assert!(
        Path::new("/usr/bin/containerd-shim-runc-v2").exists(),
        "this test needs containerd-shim-runc-v2 (Debian's containerd)"
    );
    let dir = tempfile::Builder::new()
        .prefix("corral-oci-ctrd-")
        .tempdir()
        .unwrap();
    let runc = dir.path().join("corral-runc");
    std::os::unix::fs::symlink(corral(), &runc).unwrap();
    let name = "docker.io/library/corral-busybox:latest";
    let image = busybox_image(dir.path(), name);
    let ctrd = start_containerd(dir.path());
    let ns = unique("ctrd");
    let ctr = |args: &[&str]| {
        let mut c = Command::new("ctr");
        c.arg("-a").arg(&ctrd.sock).arg("-n").arg(&ns).args(args);
        c.stdin(Stdio::null());
        c.output().unwrap()
    };
    let out = ctr(&[
        "images",
        "import",
        "--snapshotter",
        "native",
        image.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = unique("c");
    let out = ctr(&[
        "run",
        "--rm",
        "--snapshotter",
        "native",
        "--runtime",
        "io.containerd.runc.v2",
        "--runc-binary",
        runc.to_str().unwrap(),
        name,
        &id,
        "sh",
        "-c",
        "echo hello from $(hostname); exit 3",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("hello from "),
        "stdout {stdout:?}, stderr {}, containerd log: {}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(dir.path().join("containerd.log")).unwrap_or_default()
    );
    assert_eq!(out.status.code(), Some(3), "exit status through containerd");
    let _ = ctr(&["images", "rm", name]);
    drop(ctrd);
    let _ = Command::new("umount")
        .arg("-R")
        .arg(dir.path().join("state"))
        .output();
    // The shim's cgroupsPath is /<namespace>/<id>: the runtime removes the leaf, the
    // namespace level (like runc's) is the test's to remove.
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let _ = std::fs::remove_dir(h.path().join(&ns));
    }
}
