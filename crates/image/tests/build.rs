//! The builder: config instructions, COPY/ADD, multi-stage, ignore files, the cache, and RUN
//! through a test executor (chroot; needs root for the overlay mount).

mod common;

use std::collections::HashMap;
use std::fs;
use std::os::unix::process::CommandExt;

use common::*;
use corral_image::build::{build, BuildError, BuildOptions, RunRequest, RunStep};
use corral_image::{archive, import::import_rootfs, ImageStore};

fn opts(file: &str, tag: &str) -> BuildOptions {
    BuildOptions {
        containerfile: file.to_string(),
        tags: vec![tag.to_string()],
        ..Default::default()
    }
}

fn exported(s: &ImageStore, name: &str) -> tempfile::TempDir {
    let img = s.resolve(name).unwrap();
    let mut tar = Vec::new();
    archive::export(s, &img, &mut tar).unwrap();
    let d = tempdir();
    corral_image::extract(&tar[..], d.path(), &Default::default()).unwrap();
    d
}

fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempdir();
    for (p, c) in files {
        let p = d.path().join(p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, c).unwrap();
    }
    d
}

const FILE: &str = "FROM scratch\nARG VERSION=1\nENV APP=/app V=$VERSION\nWORKDIR $APP\nCOPY *.txt ./\nCOPY --chown=10:20 --chmod=700 conf/ /etc/app/\n\
LABEL version=$VERSION\nEXPOSE 8080\nUSER 10\nVOLUME /data\nSTOPSIGNAL SIGTERM\nHEALTHCHECK --interval=5s CMD [\"/bin/true\"]\nENTRYPOINT [\"/app/run\"]\nCMD [\"--serve\"]\n";

#[test]
fn copy_and_config_instructions_and_an_instant_cached_rebuild() {
    let root = tempdir();
    let s = ImageStore::open(root.path()).unwrap();
    let ctx = context(&[
        ("a.txt", "A"),
        ("b.txt", "B"),
        ("skip.md", "no"),
        ("conf/app.toml", "x=1"),
        ("conf/sub/more", "m"),
    ]);
    let mut out = Vec::new();
    let first = build(&s, ctx.path(), &opts(FILE, "app:1"), None, &mut out).unwrap();
    let log = String::from_utf8(out).unwrap();
    assert!(log.contains("STEP 1/14: FROM scratch"), "{log}");
    assert!(log.contains("Successfully tagged app:1"), "{log}");
    let img = s.resolve("app:1").unwrap();
    let c = img.config.config().clone().unwrap();
    assert!(c.env().clone().unwrap().contains(&"V=1".to_string()));
    assert_eq!(c.working_dir().as_deref(), Some("/app"));
    assert_eq!(c.user().as_deref(), Some("10"));
    assert_eq!(c.entrypoint().clone().unwrap(), vec!["/app/run"]);
    assert_eq!(c.cmd().clone().unwrap(), vec!["--serve"]);
    assert_eq!(c.exposed_ports().clone().unwrap(), vec!["8080/tcp"]);
    assert_eq!(c.labels().clone().unwrap()["version"], "1");
    assert!(c.labels().clone().unwrap()["io.corral.healthcheck"].contains("5s"));
    assert_eq!(img.manifest.layers().len(), 2);
    let t = exported(&s, "app:1");
    assert_eq!(fs::read_to_string(t.path().join("app/a.txt")).unwrap(), "A");
    assert!(!t.path().join("app/skip.md").exists());
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(t.path().join("etc/app/sub/more")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o777), (10, 20, 0o700));

    // Unchanged: every step from the cache, same image ID.
    let again = build(&s, ctx.path(), &opts(FILE, "app:1"), None, &mut Vec::new()).unwrap();
    assert_eq!(again.executed_steps, 0);
    assert_eq!(again.image.id(), first.image.id());
    // A changed source re-runs that COPY and everything after it.
    fs::write(ctx.path().join("b.txt"), "B2").unwrap();
    let changed = build(&s, ctx.path(), &opts(FILE, "app:1"), None, &mut Vec::new()).unwrap();
    assert_eq!(changed.cached_steps, 3);
    assert_ne!(changed.image.id(), first.image.id());
    // A build arg changes the result; --no-cache runs everything.
    let mut o = opts(FILE, "app:2");
    o.build_args = HashMap::from([("VERSION".to_string(), "2".to_string())]);
    o.no_cache = true;
    let v2 = build(&s, ctx.path(), &o, None, &mut Vec::new()).unwrap();
    assert_eq!(v2.cached_steps, 0);
    assert_eq!(
        v2.image
            .config
            .config()
            .clone()
            .unwrap()
            .labels()
            .clone()
            .unwrap()["version"],
        "2"
    );
}

#[test]
fn multi_stage_copy_from_target_and_ignore_file() {
    let root = tempdir();
    let s = ImageStore::open(root.path()).unwrap();
    let ctx = context(&[
        ("src/main.c", "int main;"),
        ("secret.key", "k"),
        (".containerignore", "*.key\n"),
    ]);
    let file = "FROM scratch AS build\nCOPY . /src/\nFROM scratch AS final\nCOPY --from=build /src/src/main.c /out/main.c\nCMD [\"/out\"]\n";
    build(&s, ctx.path(), &opts(file, "ms:1"), None, &mut Vec::new()).unwrap();
    let t = exported(&s, "ms:1");
    assert_eq!(
        fs::read_to_string(t.path().join("out/main.c")).unwrap(),
        "int main;"
    );
    assert!(!t.path().join("src").exists());
    let mut o = opts(file, "ms:build");
    o.target = Some("build".into());
    build(&s, ctx.path(), &o, None, &mut Vec::new()).unwrap();
    let t = exported(&s, "ms:build");
    assert!(t.path().join("src/src/main.c").exists());
    assert!(
        !t.path().join("src/secret.key").exists(),
        ".containerignore not honoured"
    );
    let mut o = opts(file, "x:1");
    o.target = Some("nope".into());
    assert!(build(&s, ctx.path(), &o, None, &mut Vec::new()).is_err());
}

#[test]
fn add_unpacks_local_tarballs_and_refuses_urls() {
    let root = tempdir();
    let s = ImageStore::open(root.path()).unwrap();
    let ctx = context(&[]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tarball(&[dir("pkg"), file("pkg/lib.so", b"ELF")]))
        .unwrap();
    fs::write(ctx.path().join("pkg.tar.gz"), gz.finish().unwrap()).unwrap();
    build(
        &s,
        ctx.path(),
        &opts("FROM scratch\nADD pkg.tar.gz /opt/\n", "add:1"),
        None,
        &mut Vec::new(),
    )
    .unwrap();
    let t = exported(&s, "add:1");
    assert_eq!(fs::read(t.path().join("opt/pkg/lib.so")).unwrap(), b"ELF");
    let e = build(
        &s,
        ctx.path(),
        &opts("FROM scratch\nADD https://example.invalid/x /x\n", "add:2"),
        None,
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("not supported"), "{e}");
}

#[test]
fn errors_name_the_step_and_leave_no_tag() {
    let root = tempdir();
    let s = ImageStore::open(root.path()).unwrap();
    let ctx = context(&[("a", "a")]);
    let e = build(
        &s,
        ctx.path(),
        &opts("FROM scratch\nCOPY missing /x\n", "bad:1"),
        None,
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            BuildError::Step {
                step: 2,
                line: 2,
                ..
            }
        ),
        "{e}"
    );
    let e = build(
        &s,
        ctx.path(),
        &opts("FROM scratch\nCOPY ../../etc/passwd /x\n", "bad:1"),
        None,
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("outside the context"), "{e}");
    let e = build(
        &s,
        ctx.path(),
        &opts("FROM nosuchimage\n", "bad:1"),
        None,
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("not in the local store"), "{e}");
    let e = build(
        &s,
        ctx.path(),
        &opts("FROM scratch\nRUN true\n", "bad:1"),
        None,
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("executor"), "{e}");
    assert!(s.list().unwrap().is_empty());
}

/// Runs RUN steps with chroot (test stand-in for the OCI runtime executor).
struct Chroot;

impl RunStep for Chroot {
    fn run(&self, req: &RunRequest<'_>, _out: &mut dyn std::io::Write) -> Result<(), String> {
        let root = req.rootfs.to_path_buf();
        let cwd = req.cwd.to_string();
        let mut cmd = std::process::Command::new(&req.argv[0]);
        cmd.args(&req.argv[1..]).env_clear();
        for kv in req.env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
        // SAFETY: chroot and chdir are async-signal-safe and run in the forked child only.
        unsafe {
            cmd.pre_exec(move || {
                std::os::unix::fs::chroot(&root)?;
                std::env::set_current_dir(&cwd)
            });
        }
        let st = cmd.status().map_err(|e| e.to_string())?;
        if st.success() {
            Ok(())
        } else {
            Err(format!("exit {st}"))
        }
    }
}

fn busybox_image(s: &ImageStore) {
    let bb = fs::read("/bin/busybox").expect("/bin/busybox (busybox-static) is needed");
    let entries = [
        dir("bin"),
        Raw {
            name: b"bin/busybox",
            kind: tar::EntryType::Regular,
            link: b"",
            data: &bb,
            mode: 0o755,
        },
        symlink("bin/sh", "busybox"),
        dir("etc"),
        file("etc/old", b"old"),
    ];
    import_rootfs(s, &tarball(&entries)[..], "bb:latest", None).unwrap();
}

#[test]
fn host_run_steps_become_layers_with_whiteouts() {
    let root = tempdir();
    let s = ImageStore::open(root.path()).unwrap();
    busybox_image(&s);
    let ctx = context(&[]);
    let file = "FROM bb\nWORKDIR /work\nRUN echo hi > out && rm /etc/old && /bin/busybox mkdir -p /made\nRUN [\"/bin/busybox\", \"touch\", \"/made/x\"]\n";
    let o = build(
        &s,
        ctx.path(),
        &opts(file, "ran:1"),
        Some(&Chroot),
        &mut Vec::new(),
    )
    .expect("RUN build (needs root for overlay)");
    assert_eq!(o.image.manifest.layers().len(), 3);
    let t = exported(&s, "ran:1");
    assert_eq!(
        fs::read_to_string(t.path().join("work/out")).unwrap(),
        "hi\n"
    );
    assert!(
        !t.path().join("etc/old").exists(),
        "the whiteout did not delete /etc/old"
    );
    assert!(t.path().join("made/x").exists());
    let again = build(
        &s,
        ctx.path(),
        &opts(file, "ran:1"),
        Some(&Chroot),
        &mut Vec::new(),
    )
    .unwrap();
    assert_eq!(again.executed_steps, 0);
    let e = build(
        &s,
        ctx.path(),
        &opts("FROM bb\nRUN exit 3\n", "ran:2"),
        Some(&Chroot),
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("exit"), "{e}");
    // No mounts or scratch dirs are left behind.
    let run_dir = root.path().join("image-cache/run");
    assert_eq!(fs::read_dir(&run_dir).unwrap().count(), 0);
}
