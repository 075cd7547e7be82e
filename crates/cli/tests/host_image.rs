//! `corral build` RUN steps in corral's own runtime (isolation, environment, streaming,
//! failure and interrupt cleanup) and `corral image to-disk` checked with e2fsprogs. Needs
//! root (overlay mounts, namespaces, cgroups) and busybox-static, e2fsprogs on the host.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod world;

use world::{skip, World};

/// A world of its own with the busybox image imported; `corral build` and `image` need no
/// daemon, so its teardown starts none.
fn world(tag: &str) -> World {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (overlay mounts, namespaces, cgroups)"
    );
    World::builder(&format!("image-{tag}"))
        .without_daemon()
        .build()
}

/// What the build tests ask of their world.
impl World {
    /// The paths in `image`'s flattened root filesystem, without `./` and trailing slashes.
    fn exported_paths(&self, image: &str) -> Vec<String> {
        let tar = self.dir().join(format!("{}.tar", image.replace(':', "_")));
        self.ok(&["image", "export", "-o", tar.to_str().unwrap(), image]);
        let out = Command::new("tar").arg("-tf").arg(&tar).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// A context directory holding `containerfile`.
    fn context(&self, name: &str, containerfile: &str) -> PathBuf {
        let ctx = self.dir().join(name);
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join("Containerfile"), containerfile).unwrap();
        ctx
    }

    /// Nothing of a build by process `pid` is left: containers, bundles, RUN scratch dirs,
    /// mounts and cgroups.
    fn assert_no_build_left(&self, pid: u32) {
        for d in [
            self.run.join("build"),
            self.run.join("build-bundles"),
            self.root.join("image-cache/run"),
        ] {
            let left: Vec<_> = std::fs::read_dir(&d)
                .map(|r| r.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "{} still holds {left:?}", d.display());
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let ours = self.dir().to_string_lossy().into_owned();
        assert!(
            !mounts.contains(&ours),
            "mounts left under {ours}:\n{mounts}"
        );
        let prefix = format!("corral-build-{pid}-");
        let mut left = Vec::new();
        find_named("/sys/fs/cgroup".as_ref(), &prefix, 5, &mut left);
        assert!(left.is_empty(), "cgroups left: {left:?}");
    }
}

/// Directories under `dir` (to `depth` levels) whose name starts with `prefix`.
fn find_named(dir: &Path, prefix: &str, depth: u32, found: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if e.file_name().to_string_lossy().starts_with(prefix) {
            found.push(e.path());
        } else if depth > 0 {
            find_named(&e.path(), prefix, depth - 1, found);
        }
    }
}

/// The field `key=` of a `key=value` line of `text`.
fn field<'a>(text: &'a str, key: &str) -> &'a str {
    let pat = format!("{key}=");
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(pat.as_str()))
        .unwrap_or_else(|| panic!("no {key}= in\n{text}"))
}

#[test]
fn host_build_run_steps_run_isolated_in_corral_containers() {
    if skip() {
        return;
    }
    let w = world("run");
    let ctx = w.context(
        "isolated",
        "FROM busybox\n\
         ARG GREETING=hello\n\
         ENV WHO=world\n\
         WORKDIR /work/dir\n\
         RUN echo \"facts greeting=$GREETING who=$WHO cwd=$(pwd) pid=$$ host=$(hostname) \
         user=$(id -u):$(id -g) home=$HOME ifaces=$(ls /sys/class/net | tr '\\n' ,) \
         loflags=$(cat /sys/class/net/lo/flags) $(grep CapEff /proc/self/status | tr -d '\\t' | tr : =)\" \
         && echo made > made && echo to-stderr >&2\n\
         USER nobody\n\
         RUN echo \"nobody user=$(id -u) $(grep CapEff /proc/self/status | tr -d '\\t' | tr : =)\"\n",
    );
    let out = w.ok(&[
        "build",
        "-t",
        "isolated:1",
        "--build-arg",
        "GREETING=hi",
        ctx.to_str().unwrap(),
    ]);
    let facts = out
        .lines()
        .find(|l| l.starts_with("facts "))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        field(facts, "greeting"),
        "hi",
        "build arg in the environment"
    );
    assert_eq!(field(facts, "who"), "world", "ENV in the environment");
    assert_eq!(field(facts, "cwd"), "/work/dir", "WORKDIR");
    assert_eq!(field(facts, "pid"), "1", "own pid namespace");
    assert_eq!(field(facts, "host"), "corral-build", "own uts namespace");
    assert_eq!(field(facts, "user"), "0:0");
    assert_eq!(field(facts, "home"), "/root");
    assert_eq!(field(facts, "ifaces"), "lo,", "a private network namespace");
    assert_eq!(field(facts, "loflags"), "0x9", "loopback is up");
    assert_eq!(
        field(facts, "CapEff"),
        "00000000a80425fb",
        "Docker's default capabilities"
    );
    // Streamed in step order, stderr included.
    let step3 = out.find("STEP 5/7: RUN").unwrap_or_else(|| panic!("{out}"));
    assert!(out[step3..].contains("to-stderr"), "{out}");
    let nobody = out
        .lines()
        .find(|l| l.starts_with("nobody "))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(field(nobody, "user"), "65534", "USER");
    assert_eq!(field(nobody, "CapEff"), "0000000000000000");
    // The step's changes are the image's layer.
    let tar = w.dir().join("isolated.tar");
    w.ok(&["image", "export", "-o", tar.to_str().unwrap(), "isolated:1"]);
    let listing = Command::new("tar").arg("-tf").arg(&tar).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing
            .lines()
            .any(|l| l.trim_start_matches("./") == "work/dir/made"),
        "{listing}"
    );
    // An unchanged rebuild comes from the cache without running anything.
    let again = w.ok(&[
        "build",
        "-t",
        "isolated:1",
        "--build-arg",
        "GREETING=hi",
        ctx.to_str().unwrap(),
    ]);
    assert!(!again.lines().any(|l| l.starts_with("facts ")), "{again}");
    assert_eq!(again.matches("Using cache").count(), 6, "{again}");

    // --network host shares the host's interfaces and name service files (read-only).
    let ctx = w.context(
        "hostnet",
        "FROM busybox\nRUN echo \"ifaces=$(ls /sys/class/net | sort | tr '\\n' ,)\" \
         \"resolv=$(md5sum < /etc/resolv.conf | cut -c1-32)\" \
         \"rw=$(echo x 2>/dev/null >> /etc/resolv.conf && echo yes || echo no)\"\n",
    );
    let out = w.ok(&[
        "build",
        "--network",
        "host",
        "-t",
        "hostnet:1",
        ctx.to_str().unwrap(),
    ]);
    let mut host: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    host.sort();
    let seen = field(&out, "ifaces");
    assert!(host.len() > 1, "the host has only {host:?}");
    assert!(
        seen.split(',').filter(|s| !s.is_empty()).count() > 1,
        "{seen} vs host {host:?}"
    );
    let md5 = Command::new("sh")
        .args(["-c", "md5sum < /etc/resolv.conf | cut -c1-32"])
        .output()
        .unwrap();
    assert_eq!(
        field(&out, "resolv"),
        String::from_utf8_lossy(&md5.stdout).trim()
    );
    assert_eq!(
        field(&out, "rw"),
        "no",
        "the host's resolv.conf is read-only"
    );
    let listing = w.exported_paths("hostnet:1");
    assert!(
        !listing.contains(&"etc/resolv.conf".to_string()),
        "the bind mount point is not part of the layer: {listing:?}"
    );
    // A root without /proc, /sys and /dev: the runtime's mount points stay out of the layer.
    let ctx = w.context(
        "bare",
        "FROM busybox AS tools\n\
         FROM scratch\n\
         COPY --from=tools /bin/busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"touch\", \"/made\"]\n",
    );
    w.ok(&["build", "-t", "bare:1", ctx.to_str().unwrap()]);
    let mut listing = w.exported_paths("bare:1");
    listing.sort();
    assert_eq!(listing, ["bin", "bin/busybox", "made"], "{listing:?}");
    let e = w.corral(&[
        "build",
        "--network",
        "bridge",
        "-t",
        "x:1",
        ctx.to_str().unwrap(),
    ]);
    assert!(!e.status.success());
    assert!(String::from_utf8_lossy(&e.stderr).contains("--network \"bridge\""));
}

#[test]
fn host_build_failing_run_names_the_step_and_leaves_nothing() {
    if skip() {
        return;
    }
    let w = world("fail");
    let ctx = w.context(
        "fail",
        "FROM busybox\nRUN echo first\nRUN echo before-failing; exit 7\n",
    );
    let child = w
        .cmd(&["build", "-t", "failed:1", ctx.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("before-failing"), "{stdout}");
    assert!(
        stderr.contains("step 3")
            && stderr.contains("RUN echo before-failing; exit 7")
            && stderr.contains("non-zero code: 7"),
        "{stderr}"
    );
    let images = w.ok(&["image", "ls"]);
    assert!(!images.contains("failed"), "{images}");
    w.assert_no_build_left(pid);

    // An exit status above 128 is still an exit status, not a signal.
    let ctx = w.context("exit130", "FROM busybox\nRUN exit 130\n");
    let out = w.corral(&["build", "-t", "exit:1", ctx.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("non-zero code: 130"), "{stderr}");

    // A USER the image does not know fails the step before anything starts.
    let ctx = w.context("ghost", "FROM busybox\nUSER ghost\nRUN true\n");
    let out = w.corral(&["build", "-t", "ghost:1", ctx.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("ghost") && stderr.contains("/etc/passwd"),
        "{stderr}"
    );
}

#[test]
fn host_build_interrupted_run_is_cleaned_up() {
    if skip() {
        return;
    }
    let w = world("int");
    let ctx = w.context(
        "int",
        "FROM busybox\nRUN echo started-sleeping && sleep 600\n",
    );
    let mut child = w
        .cmd(&["build", "-t", "int:1", ctx.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    for l in lines.by_ref() {
        let l = l.unwrap();
        seen.push_str(&l);
        seen.push('\n');
        if l == "started-sleeping" {
            break;
        }
    }
    assert!(seen.contains("started-sleeping"), "{seen}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("interrupted"), "{stderr}");
    w.assert_no_build_left(pid);
}

#[test]
fn host_image_to_disk_makes_a_clean_ext4_with_the_image_files() {
    if skip() {
        return;
    }
    let w = world("disk");
    let disk = w.dir().join("bb.ext4");
    let out = w.ok(&[
        "image",
        "to-disk",
        "busybox",
        disk.to_str().unwrap(),
        "--size",
        "64M",
    ]);
    assert!(out.contains("ext4"), "{out}");
    assert_eq!(std::fs::metadata(&disk).unwrap().len(), 64 << 20);
    let fsck = Command::new("e2fsck")
        .arg("-fn")
        .arg(&disk)
        .output()
        .expect("e2fsck (e2fsprogs)");
    assert!(
        fsck.status.success(),
        "e2fsck -fn: {}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    let cat = Command::new("debugfs")
        .args(["-R", "cat /etc/passwd"])
        .arg(&disk)
        .output()
        .expect("debugfs (e2fsprogs)");
    let passwd = String::from_utf8_lossy(&cat.stdout);
    assert!(passwd.starts_with("root:x:0:0:"), "{passwd}");
    let stat = Command::new("debugfs")
        .args(["-R", "stat /bin/busybox"])
        .arg(&disk)
        .output()
        .unwrap();
    let stat = String::from_utf8_lossy(&stat.stdout);
    let size = std::fs::metadata("/bin/busybox").unwrap().len();
    assert!(stat.contains(&format!("Size: {size}")), "{stat}");

    // Too small, or not a size: a clear error and no file.
    for (size, want) in [("1M", "too small"), ("lots", "expected e.g. 512M")] {
        let bad = w.dir().join(format!("bad-{size}.ext4"));
        let out = w.corral(&[
            "image",
            "to-disk",
            "busybox",
            bad.to_str().unwrap(),
            "--size",
            size,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(want),
            "--size {size}: {err}"
        );
        assert!(!bad.exists(), "{} was left", bad.display());
    }
    let left: Vec<_> = std::fs::read_dir(w.dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".to-disk-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
