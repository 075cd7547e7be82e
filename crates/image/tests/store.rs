//! The store: verified blobs, tags under concurrency, import, save/load, export, rm, prune.

mod common;

use std::fs;

use common::*;
use corral_image::archive::{self, ArchiveFormat};
use corral_image::digest::sha256_digest;
use corral_image::{gc, import::import_rootfs, ImageStore, StoreError};

fn blob_count(s: &ImageStore) -> usize {
    s.blobs().unwrap().len()
}

fn ingest_empty(s: &ImageStore) -> bool {
    fs::read_dir(s.layout_dir().join("ingest")).unwrap().count() == 0
}

fn sample_rootfs() -> Vec<u8> {
    tarball(&[
        dir("bin"),
        file("bin/hello", b"hello\n"),
        symlink("bin/hi", "hello"),
        dir("etc"),
        file("etc/os-release", b"ID=test\n"),
    ])
}

#[test]
fn the_layout_is_an_oci_image_layout() {
    let d = tempdir();
    let s = ImageStore::open(d.path()).unwrap();
    let layout: serde_json::Value =
        serde_json::from_slice(&fs::read(s.layout_dir().join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    assert_eq!(s.index().unwrap().manifests().len(), 0);
}

#[test]
fn a_bad_digest_or_truncated_blob_leaves_the_store_unchanged() {
    let d = tempdir();
    let s = ImageStore::open(d.path()).unwrap();
    let good = sha256_digest(b"hello");
    let r = s.put_blob(&b"hellO"[..], Some(&good), Some(5));
    assert!(matches!(r, Err(StoreError::DigestMismatch { .. })), "{r:?}");
    let r = s.put_blob(&b"hell"[..], Some(&good), Some(5));
    assert!(matches!(r, Err(StoreError::DigestMismatch { .. })), "{r:?}");
    let r = s.put_blob(&b"hello"[..], Some(&good), Some(6));
    assert!(matches!(r, Err(StoreError::SizeMismatch { .. })), "{r:?}");
    assert_eq!(blob_count(&s), 0);
    assert!(ingest_empty(&s));
    s.put_blob(&b"hello"[..], Some(&good), Some(5)).unwrap();
    assert_eq!(s.read_blob(&good).unwrap(), b"hello");
}

#[test]
fn unknown_layer_media_types_are_refused() {
    let bad = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
      "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},
      "layers":[{"mediaType":"application/x-strange","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0}]}"#;
    let r = corral_image::store::parse_manifest(bad, "test");
    assert!(
        matches!(r, Err(StoreError::UnsupportedMediaType(ref m)) if m == "application/x-strange"),
        "{r:?}"
    );
}

#[test]
fn concurrent_taggers_do_not_lose_tags() {
    let d = tempdir();
    let s = ImageStore::open(d.path()).unwrap();
    let img = import_rootfs(&s, &sample_rootfs()[..], "base:latest", None).unwrap();
    std::thread::scope(|sc| {
        for t in 0..4 {
            let s = s.clone();
            let desc = img.manifest_desc.clone();
            sc.spawn(move || {
                for i in 0..10 {
                    s.set_tag(&format!("t{t}:{i}"), &desc).unwrap();
                    s.put_blob(format!("blob {t} {i}").as_bytes(), None, None)
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(s.list().unwrap().len(), 41);
    assert!(ingest_empty(&s));
}

#[test]
fn import_then_export_round_trips_the_tree() {
    let d = tempdir();
    let s = ImageStore::open(d.path()).unwrap();
    let img = import_rootfs(&s, &sample_rootfs()[..], "t:1", None).unwrap();
    assert_eq!(s.resolve("t:1").unwrap().id(), img.id());
    let short = &img.id().digest()[..12];
    assert_eq!(s.resolve(short).unwrap().id(), img.id());
    let mut out = Vec::new();
    archive::export(&s, &img, &mut out).unwrap();
    let x = tempdir();
    corral_image::extract(&out[..], x.path(), &Default::default()).unwrap();
    assert_eq!(fs::read(x.path().join("bin/hello")).unwrap(), b"hello\n");
    assert_eq!(
        fs::read_link(x.path().join("bin/hi")).unwrap().to_str(),
        Some("hello")
    );
}

#[test]
fn import_refuses_a_hostile_or_truncated_tarball_and_stores_nothing() {
    let d = tempdir();
    let s = ImageStore::open(d.path()).unwrap();
    assert!(import_rootfs(&s, &tarball(&[file("../x", b"1")])[..], "bad:1", None).is_err());
    let t = tarball(&[file("a", &[1u8; 4000])]);
    assert!(import_rootfs(&s, &t[..2000], "bad:2", None).is_err());
    assert_eq!(blob_count(&s), 0);
    assert!(s.list().unwrap().is_empty());
    assert!(ingest_empty(&s));
}

#[test]
fn save_and_load_round_trip_in_both_formats() {
    for format in [ArchiveFormat::Docker, ArchiveFormat::Oci] {
        let d = tempdir();
        let s = ImageStore::open(d.path()).unwrap();
        let img = import_rootfs(&s, &sample_rootfs()[..], "app:v1", None).unwrap();
        let mut buf = Vec::new();
        archive::save(&s, std::slice::from_ref(&img), format, &mut buf).unwrap();
        let d2 = tempdir();
        let s2 = ImageStore::open(d2.path()).unwrap();
        let tags = archive::load(&s2, &buf[..]).unwrap();
        assert_eq!(tags, vec!["app:v1".to_string()]);
        let back = s2.resolve("app:v1").unwrap();
        assert_eq!(back.id(), img.id(), "{format:?}: config changed");
        assert_eq!(
            back.config.rootfs().diff_ids(),
            img.config.rootfs().diff_ids()
        );
        if format == ArchiveFormat::Oci {
            assert_eq!(back.manifest_desc.digest(), img.manifest_desc.digest());
        }
    }
}

#[test]
fn load_of_a_corrupt_archive_leaves_the_store_unchanged() {
    let d = tempdir();
    let s = ImageStore::open(d.path()).unwrap();
    let img = import_rootfs(&s, &sample_rootfs()[..], "app:v1", None).unwrap();
    let mut buf = Vec::new();
    archive::save(&s, &[img], ArchiveFormat::Oci, &mut buf).unwrap();
    // Flip one byte inside the first blob's data (after the oci-layout entry's header+data).
    let pos = buf.windows(6).position(|w| w == b"hello\n");
    let d2 = tempdir();
    let s2 = ImageStore::open(d2.path()).unwrap();
    let mut bad = buf.clone();
    match pos {
        Some(p) => bad[p] ^= 1,
        None => {
            let n = bad.len();
            bad[n / 2] ^= 0xff;
        }
    }
    // Also corrupt a compressed layer: flip a byte in the middle of every blob region.
    let r = archive::load(&s2, &bad[..bad.len() - 700]);
    assert!(r.is_err());
    assert_eq!(blob_count(&s2), 0);
    assert!(s2.list().unwrap().is_empty());
}

#[test]
fn rm_refuses_an_image_in_use_and_prune_collects_blobs() {
    let d = tempdir();
    let s = ImageStore::open(d.path()).unwrap();
    let img = import_rootfs(&s, &sample_rootfs()[..], "app:v1", None).unwrap();
    s.set_tag("app:v2", &img.manifest_desc).unwrap();
    gc::mark_in_use(d.path(), "ctr1", img.id()).unwrap();
    // Untagging one of two names is fine; removing the last is refused.
    assert_eq!(
        gc::remove_image(&s, "app:v1", false).unwrap().untagged,
        vec!["app:v1"]
    );
    let r = gc::remove_image(&s, "app:v2", false);
    assert!(
        matches!(r, Err(StoreError::InUse { ref holder, .. }) if holder == "ctr1"),
        "{r:?}"
    );
    assert_eq!(gc::prune(&s, &[]).unwrap().blobs.len(), 0);
    gc::release(d.path(), "ctr1").unwrap();
    let r = gc::remove_image(&s, "app:v2", false).unwrap();
    assert!(r.deleted.is_some());
    let p = gc::prune(&s, &[]).unwrap();
    assert_eq!(p.blobs.len(), 3, "manifest, config and layer");
    assert_eq!(blob_count(&s), 0);
    // --force removes an in-use image.
    let img = import_rootfs(&s, &sample_rootfs()[..], "app:v3", None).unwrap();
    gc::mark_in_use(d.path(), "ctr2", img.id()).unwrap();
    assert!(gc::remove_image(&s, "app:v3", true)
        .unwrap()
        .deleted
        .is_some());
}
