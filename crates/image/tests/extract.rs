//! Hostile tarballs: extraction never writes outside the target, caps hold, bad input errors.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use common::*;
use corral_image::extract::{extract, DevicePolicy, ExtractError, ExtractPolicy, WhiteoutMode};
use tar::EntryType;

fn run(
    entries: &[Raw],
    policy: &ExtractPolicy,
) -> (
    tempfile::TempDir,
    Result<corral_image::extract::ExtractStats, ExtractError>,
) {
    // The sandbox: `outside/` next to `target/` must never be touched.
    let base = tempdir();
    fs::create_dir(base.path().join("target")).unwrap();
    fs::create_dir(base.path().join("outside")).unwrap();
    let r = extract(&tarball(entries)[..], &base.path().join("target"), policy);
    (base, r)
}

fn outside_untouched(base: &tempfile::TempDir) {
    let n = fs::read_dir(base.path().join("outside")).unwrap().count();
    assert_eq!(n, 0, "something was written outside the target");
    let top: Vec<_> = fs::read_dir(base.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(top.len(), 2, "extra files beside the target: {top:?}");
}

#[test]
fn a_normal_tree_extracts_with_modes_and_links() {
    let (base, r) = run(
        &[
            dir("bin"),
            file("bin/tool", b"#!/bin/sh\n"),
            symlink("bin/sh", "/bin/tool"),
            hardlink("bin/tool2", "bin/tool"),
        ],
        &ExtractPolicy::default(),
    );
    let stats = r.unwrap();
    assert_eq!(stats.entries, 4);
    let t = base.path().join("target");
    assert_eq!(fs::read(t.join("bin/tool")).unwrap(), b"#!/bin/sh\n");
    assert_eq!(
        fs::read_link(t.join("bin/sh")).unwrap().to_str(),
        Some("/bin/tool")
    );
    assert_eq!(
        fs::metadata(t.join("bin/tool2")).unwrap().ino(),
        fs::metadata(t.join("bin/tool")).unwrap().ino()
    );
    assert_eq!(
        fs::metadata(t.join("bin/tool")).unwrap().mode() & 0o777,
        0o644
    );
}

#[test]
fn dotdot_paths_are_rejected() {
    let (base, r) = run(&[file("../outside/pwned", b"x")], &ExtractPolicy::default());
    assert!(matches!(r, Err(ExtractError::PathEscape(_))), "{r:?}");
    outside_untouched(&base);
    let (base, r) = run(
        &[file("a/../../outside/pwned", b"x")],
        &ExtractPolicy::default(),
    );
    assert!(matches!(r, Err(ExtractError::PathEscape(_))), "{r:?}");
    outside_untouched(&base);
}

#[test]
fn absolute_paths_land_inside_the_target() {
    let (base, r) = run(&[file("/etc/passwd", b"root")], &ExtractPolicy::default());
    r.unwrap();
    assert_eq!(
        fs::read(base.path().join("target/etc/passwd")).unwrap(),
        b"root"
    );
    outside_untouched(&base);
}

#[test]
fn writing_through_a_planted_symlink_stays_inside() {
    // The classic: a symlink to somewhere outside, then a file "through" it.
    let outside = "../outside";
    for link in [outside, "/", "../../../../../.."] {
        let (base, r) = run(
            &[symlink("evil", link), file("evil/pwned", b"x")],
            &ExtractPolicy::default(),
        );
        let _ = r;
        outside_untouched(&base);
    }
    // An absolute symlink to a directory resolves inside the target.
    let (base, r) = run(
        &[
            dir("etc"),
            symlink("cfg", "/etc"),
            file("cfg/app.conf", b"ok"),
        ],
        &ExtractPolicy::default(),
    );
    r.unwrap();
    assert_eq!(
        fs::read(base.path().join("target/etc/app.conf")).unwrap(),
        b"ok"
    );
    outside_untouched(&base);
}

#[test]
fn a_symlink_as_the_final_component_is_replaced_not_followed() {
    let base = tempdir();
    let target = base.path().join("target");
    fs::create_dir(&target).unwrap();
    fs::write(base.path().join("victim"), b"original").unwrap();
    let tar = tarball(&[symlink("f", "../victim"), file("f", b"overwritten")]);
    extract(&tar[..], &target, &ExtractPolicy::default()).unwrap();
    assert_eq!(fs::read(base.path().join("victim")).unwrap(), b"original");
    assert_eq!(fs::read(target.join("f")).unwrap(), b"overwritten");
    assert!(!fs::symlink_metadata(target.join("f"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn hardlinks_to_outside_files_are_refused() {
    let base = tempdir();
    let target = base.path().join("target");
    fs::create_dir(&target).unwrap();
    fs::write(base.path().join("secret"), b"s").unwrap();
    for link in ["../secret", "/../secret"] {
        let r = extract(
            &tarball(&[hardlink("x", link)])[..],
            &target,
            &ExtractPolicy::default(),
        );
        assert!(r.is_err(), "hardlink to {link} accepted");
    }
    // Through a symlink to outside: the link resolves inside the target, where nothing is.
    let r = extract(
        &tarball(&[symlink("up", "/.."), hardlink("y", "up/secret")])[..],
        &target,
        &ExtractPolicy::default(),
    );
    assert!(
        matches!(r, Err(ExtractError::HardlinkTarget { .. })),
        "{r:?}"
    );
    assert_eq!(fs::metadata(base.path().join("secret")).unwrap().nlink(), 1);
}

#[test]
fn devices_follow_the_policy() {
    let dev = Raw {
        name: b"dev/sda",
        kind: EntryType::Block,
        link: b"",
        data: b"",
        mode: 0o600,
    };
    let (_b, r) = run(
        &[dev],
        &ExtractPolicy {
            devices: DevicePolicy::Reject,
            ..Default::default()
        },
    );
    assert!(matches!(r, Err(ExtractError::DeviceNotAllowed(_))), "{r:?}");
    let dev = Raw {
        name: b"dev/sda",
        kind: EntryType::Block,
        link: b"",
        data: b"",
        mode: 0o600,
    };
    let (b, r) = run(
        &[dev],
        &ExtractPolicy {
            devices: DevicePolicy::Skip,
            ..Default::default()
        },
    );
    assert_eq!(r.unwrap().skipped_devices, 1);
    assert!(!b.path().join("target/dev/sda").exists());
}

#[test]
fn setuid_bits_are_stripped_when_policy_says_so() {
    let su = Raw {
        name: b"bin/su",
        kind: EntryType::Regular,
        link: b"",
        data: b"x",
        mode: 0o4755,
    };
    let (b, r) = run(
        &[su],
        &ExtractPolicy {
            keep_setid: false,
            ..Default::default()
        },
    );
    r.unwrap();
    assert_eq!(
        fs::metadata(b.path().join("target/bin/su")).unwrap().mode() & 0o7777,
        0o755
    );
    let su = Raw {
        name: b"bin/su",
        kind: EntryType::Regular,
        link: b"",
        data: b"x",
        mode: 0o4755,
    };
    let (b, r) = run(
        &[su],
        &ExtractPolicy {
            keep_setid: true,
            ..Default::default()
        },
    );
    r.unwrap();
    assert_eq!(
        fs::metadata(b.path().join("target/bin/su")).unwrap().mode() & 0o7777,
        0o4755
    );
}

#[test]
fn caps_on_entries_and_bytes_hold() {
    let names: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
    let entries: Vec<Raw> = names.iter().map(|n| file(n, b"")).collect();
    let (_b, r) = run(
        &entries,
        &ExtractPolicy {
            max_entries: 10,
            ..Default::default()
        },
    );
    assert!(matches!(r, Err(ExtractError::TooManyEntries(10))), "{r:?}");
    let big = vec![0u8; 10_000];
    let (_b, r) = run(
        &[file("big", &big)],
        &ExtractPolicy {
            max_bytes: 4096,
            ..Default::default()
        },
    );
    assert!(matches!(r, Err(ExtractError::TooLarge(4096))), "{r:?}");
}

#[test]
fn a_gzip_bomb_stops_at_the_cap() {
    // 64 MiB of zeros compresses to ~64 KiB; the cap stops it long before it is all written.
    let mut h = tar::Header::new_gnu();
    h.set_size(64 << 20);
    h.set_mode(0o644);
    h.set_cksum();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    {
        let mut b = tar::Builder::new(&mut enc);
        b.append_data(&mut h, "bomb", std::io::repeat(0).take_compat(64 << 20))
            .unwrap();
        b.finish().unwrap();
    }
    let gz = enc.finish().unwrap();
    assert!(gz.len() < 1 << 20);
    let base = tempdir();
    let r = extract(
        flate2::read::GzDecoder::new(&gz[..]),
        base.path(),
        &ExtractPolicy {
            max_bytes: 1 << 20,
            ..Default::default()
        },
    );
    assert!(matches!(r, Err(ExtractError::TooLarge(_))), "{r:?}");
}

trait TakeCompat: std::io::Read + Sized {
    fn take_compat(self, n: u64) -> std::io::Take<Self> {
        std::io::Read::take(self, n)
    }
}
impl<R: std::io::Read> TakeCompat for R {}

#[test]
fn truncated_archives_are_an_error() {
    let t = tarball(&[file("a", &[7u8; 3000])]);
    let base = tempdir();
    let r = extract(&t[..1500], base.path(), &ExtractPolicy::default());
    assert!(matches!(r, Err(ExtractError::Read(_))), "{r:?}");
}

#[test]
fn whiteouts_delete_in_apply_mode() {
    let base = tempdir();
    let t = base.path();
    extract(
        &tarball(&[
            dir("a"),
            file("a/keep", b"1"),
            file("a/gone", b"2"),
            dir("o"),
            file("o/old", b"3"),
        ])[..],
        t,
        &ExtractPolicy::default(),
    )
    .unwrap();
    let layer2 = tarball(&[
        file("a/.wh.gone", b""),
        file("o/new", b"4"),
        file("o/.wh..wh..opq", b""),
    ]);
    let s = extract(&layer2[..], t, &ExtractPolicy::default()).unwrap();
    assert_eq!(s.whiteouts, 2);
    assert!(t.join("a/keep").exists());
    assert!(!t.join("a/gone").exists());
    assert!(!t.join("a/.wh.gone").exists());
    assert!(!t.join("o/old").exists(), "opaque dir kept a lower entry");
    assert!(
        t.join("o/new").exists(),
        "opaque dir dropped this layer's own entry"
    );
}

#[test]
fn host_whiteouts_become_overlay_whiteouts_in_overlay_mode() {
    // Needs root: mknod of a 0/0 char device and trusted.* xattrs.
    let base = tempdir();
    let t = base.path();
    let p = ExtractPolicy {
        whiteouts: WhiteoutMode::Overlay,
        ..Default::default()
    };
    extract(
        &tarball(&[dir("d"), file("d/.wh.x", b""), file("d/.wh..wh..opq", b"")])[..],
        t,
        &p,
    )
    .unwrap();
    let m = fs::symlink_metadata(t.join("d/x")).expect("whiteout device (needs root)");
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), 0);
    let mut buf = [0u8; 4];
    let path = std::ffi::CString::new(t.join("d").to_str().unwrap()).unwrap();
    // SAFETY: path is NUL-terminated and buf is a live 4-byte buffer.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            buf.as_mut_ptr().cast(),
            4,
        )
    };
    assert_eq!(n, 1, "opaque xattr missing (needs root)");
    assert_eq!(buf[0], b'y');
}

#[test]
fn whiteout_names_cannot_escape() {
    let (base, r) = run(&[file(".wh...", b"")], &ExtractPolicy::default());
    assert!(r.is_err());
    outside_untouched(&base);
}
