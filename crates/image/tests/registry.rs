//! Push and pull against Debian's `docker-registry` on 127.0.0.1 (a host package: the test
//! fails saying so when it is missing; CORRAL_SKIP_HOST_TESTS=1 skips it).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use common::*;
use corral_image::registry::{self, ClientOptions, LayerProgress, NoProgress, TransferProgress};
use corral_image::{gc, import::import_rootfs, ImageStore};

struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry() -> Option<Registry> {
    if std::env::var("CORRAL_SKIP_HOST_TESTS").as_deref() == Ok("1") {
        return None;
    }
    let bin = ["/usr/bin/docker-registry", "/usr/sbin/docker-registry"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("docker-registry is not installed (apt-get install docker-registry, or scripts/setup.sh --deps-only)");
    let dir = tempdir();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.path().join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(bin)
        .arg("serve")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start docker-registry");
    // Readiness: the registry logs "listening on 127.0.0.1:PORT".
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    loop {
        match lines.next() {
            Some(Ok(l)) => {
                if l.contains("listening on") {
                    break;
                }
                seen.push(l);
            }
            _ => panic!("docker-registry exited before listening: {seen:?}"),
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Some(Registry {
        child,
        port,
        _dir: dir,
    })
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

struct Rec<'a>(&'a Recorder);

impl LayerProgress for Rec<'_> {
    fn advance(&self, _n: u64) {}
    fn finish(&self, status: &str) {
        self.0 .0.lock().unwrap().push(status.to_string());
    }
}

impl TransferProgress for Recorder {
    fn start(&self, _d: &str, _t: u64) -> Box<dyn LayerProgress + '_> {
        Box::new(Rec(self))
    }
}

fn opts(chunk: u64) -> ClientOptions {
    ClientOptions {
        insecure: true,
        chunk_size: chunk,
        ..ClientOptions::default()
    }
}

#[test]
fn host_registry_push_pull_round_trip() {
    let Some(reg) = start_registry() else { return };
    let d = tempdir();
    let s = ImageStore::open(d.path()).unwrap();
    let big: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let rootfs = tarball(&[dir("bin"), file("bin/a", b"a"), file("data/big", &big)]);
    let name = format!("127.0.0.1:{}/corral/app:v1", reg.port);
    let img = import_rootfs(&s, &rootfs[..], &name, None).unwrap();

    // Chunked upload (64 KiB chunks), then a push of the same blobs to another repo: mounted.
    registry::push(&s, &name, &name, opts(64 << 10), &NoProgress).unwrap();
    let other = format!("127.0.0.1:{}/corral/other:v1", reg.port);
    let rec = Recorder::default();
    registry::push(&s, &name, &other, opts(16 << 20), &rec).unwrap();
    let statuses = rec.0.lock().unwrap().clone();
    assert!(
        statuses
            .iter()
            .all(|st| st == "Mounted" || st == "Layer already exists"),
        "{statuses:?}"
    );
    assert!(statuses.iter().any(|st| st == "Mounted"), "{statuses:?}");

    // Delete locally, then pull back: same manifest digest and image ID.
    gc::remove_image(&s, &name, false).unwrap();
    gc::prune(&s, &[]).unwrap();
    assert!(s.blobs().unwrap().is_empty());

    // A corrupt partial download is caught by the digest check and leaves nothing behind …
    let layer = img.manifest.layers()[0].clone();
    let hex = layer.digest().digest().to_string();
    let partial = s.layout_dir().join("ingest").join(format!("partial-{hex}"));
    std::fs::write(&partial, vec![0xAAu8; 100]).unwrap();
    let r = registry::pull(&s, &name, opts(16 << 20), &NoProgress);
    assert!(r.is_err(), "a corrupt resumed download was accepted");
    assert!(s.list().unwrap().is_empty());
    assert!(!partial.exists());
    // … and a correct partial prefix is resumed with a Range request.
    let blob_bytes = {
        let d2 = tempdir();
        let s2 = ImageStore::open(d2.path()).unwrap();
        registry::pull(&s2, &name, opts(16 << 20), &NoProgress).unwrap();
        s2.read_blob(layer.digest()).unwrap()
    };
    std::fs::write(&partial, &blob_bytes[..blob_bytes.len() / 2]).unwrap();
    let back = registry::pull(&s, &name, opts(16 << 20), &NoProgress).unwrap();
    assert_eq!(back.manifest_desc.digest(), img.manifest_desc.digest());
    assert_eq!(back.id(), img.id());
    assert_eq!(s.resolve(&name).unwrap().id(), img.id());
    let other_back = registry::pull(&s, &other, opts(16 << 20), &NoProgress).unwrap();
    assert_eq!(
        other_back.manifest_desc.digest(),
        img.manifest_desc.digest()
    );

    // Pulling something that is not there is a clear error.
    let missing = format!("127.0.0.1:{}/corral/nope:v1", reg.port);
    let e = registry::pull(&s, &missing, opts(16 << 20), &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(e.contains("404"), "{e}");
}
