//! cgroup v2 device rules: the BPF device filter attached by the v2 manager is enforced by the
//! kernel. Runs on a scratch directory of the host's cgroup2 mount (on a hybrid host, the
//! unified tree) with a shell moved into it; the v1 devices cgroup of that shell allows
//! everything, so only the BPF program can deny. Needs root and a cgroup2 mount.

use std::path::{Path, PathBuf};
use std::process::Command;

use corral_oci::cgroups::{CgroupLayout, CgroupManager, V2Manager};
use oci_spec::runtime::{LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxResourcesBuilder};

fn cgroup2_root() -> Option<PathBuf> {
    if std::env::var("CORRAL_SKIP_HOST_TESTS").as_deref() == Ok("1") {
        eprintln!("skipped: CORRAL_SKIP_HOST_TESTS=1");
        return None;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "this host test needs root (it attaches a BPF program to a cgroup)"
    );
    match CgroupLayout::detect(Path::new("/")).expect("reading the cgroup layout") {
        CgroupLayout::V2 { mount } | CgroupLayout::Hybrid { v2: mount, .. } => Some(mount.path),
        CgroupLayout::V1 { .. } => panic!("this host test needs a cgroup2 mount"),
    }
}

/// Removes the scratch cgroup even when an assertion fails.
struct Scratch(V2Manager);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self.0.remove();
    }
}

#[test]
fn host_v2_device_filter_denies_what_the_rules_do_not_allow() {
    let Some(root) = cgroup2_root() else { return };
    let dir = root.join(format!("corral-oci-bpf-{}", std::process::id()));
    let rules = vec![
        LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .unwrap(),
        LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(1)
            .minor(3)
            .access("rw")
            .build()
            .unwrap(),
        // Read-only /dev/full: a write open must fail.
        LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(1)
            .minor(7)
            .access("r")
            .build()
            .unwrap(),
    ];
    let resources = LinuxResourcesBuilder::default()
        .devices(rules)
        .build()
        .unwrap();
    let cg = Scratch(V2Manager::new(dir.clone(), root));
    cg.0.create(Some(&resources)).expect("create + attach");

    // The shell moves itself in, then tries each device.
    let script = format!(
        "echo $$ > {}/cgroup.procs || exit 9
         (: < /dev/null && : > /dev/null) && echo null-ok
         (: < /dev/zero) 2>/dev/null && echo zero-open || echo zero-denied
         (: < /dev/full) && echo full-read-ok
         (: > /dev/full) 2>/dev/null && echo full-write-open || echo full-write-denied",
        dir.display()
    );
    let out = Command::new("/bin/sh")
        .args(["-c", &script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "null-ok",
            "zero-denied",
            "full-read-ok",
            "full-write-denied"
        ],
        "{text}"
    );
    // The same opens succeed outside the filtered cgroup (the denials are the program's).
    let out = Command::new("/bin/sh")
        .args(["-c", ": < /dev/zero && : > /dev/full && echo ok"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}
