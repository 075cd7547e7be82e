//! Container root filesystems: layers extracted once, overlay mounted (needs root), whiteouts
//! and opaque dirs honoured, cleanup leaves nothing.

mod common;

use std::fs;

use common::*;
use corral_image::rootfs::{cleanup_rootfs, layers_dir, prepare_rootfs};
use corral_image::{import::import_rootfs, ImageStore};

#[test]
fn host_overlay_rootfs_honours_whiteouts_and_cleans_up() {
    let root = tempdir();
    let s = ImageStore::open(root.path()).unwrap();
    let base = import_rootfs(
        &s,
        &tarball(&[
            dir("etc"),
            file("etc/a", b"a"),
            file("etc/b", b"b"),
            dir("o"),
            file("o/old", b"1"),
        ])[..],
        "base:1",
        None,
    )
    .unwrap();
    // A second image on top: delete etc/a, make o opaque with a new file.
    let ctx = tempdir();
    let layer2 = tarball(&[
        file("etc/.wh.a", b""),
        dir("o"),
        file("o/.wh..wh..opq", b""),
        file("o/new", b"2"),
    ]);
    fs::write(ctx.path().join("l2.tar"), layer2).unwrap();
    // The crafted layer goes into the store as is, on top of the base image's layer.
    let mut lw = corral_image::LayerWriter::new(&s).unwrap();
    std::io::Write::write_all(&mut lw, &fs::read(ctx.path().join("l2.tar")).unwrap()).unwrap();
    let l2 = lw.finish().unwrap();
    let mut layers: Vec<corral_image::LayerRef> = base
        .manifest
        .layers()
        .iter()
        .zip(base.config.rootfs().diff_ids())
        .map(|(d, id)| corral_image::LayerRef {
            descriptor: d.clone(),
            diff_id: id.clone(),
        })
        .collect();
    layers.push(l2);
    let top = corral_image::commit_image(&s, base.config.clone(), &layers, Some("top:1")).unwrap();

    let cdir = tempdir();
    let spec = prepare_rootfs(&s, &top, cdir.path()).unwrap();
    assert_eq!(spec.lowerdirs.len(), 2);
    assert!(spec.options().starts_with("lowerdir="));
    spec.mount().expect("overlay mount (needs root)");
    let m = &spec.target;
    let check = || -> Result<(), String> {
        if m.join("etc/a").exists() {
            return Err("whiteout ignored".into());
        }
        if fs::read(m.join("etc/b")).ok().as_deref() != Some(&b"b"[..]) {
            return Err("etc/b missing".into());
        }
        if m.join("o/old").exists() {
            return Err("opaque dir ignored".into());
        }
        if !m.join("o/new").exists() {
            return Err("o/new missing".into());
        }
        fs::write(m.join("etc/c"), b"c").map_err(|e| e.to_string())?;
        Ok(())
    };
    let r = check();
    // Writes land in the container's upper dir, never in the shared layers.
    assert!(spec.upperdir.join("etc/c").exists());
    cleanup_rootfs(cdir.path()).unwrap();
    r.unwrap();
    assert!(!cdir.path().join("rootfs").exists());
    assert!(!cdir.path().join("upper").exists());
    for l in &spec.lowerdirs {
        assert!(!l.join("etc/c").exists());
    }
    // Layers are extracted once: a second container reuses the same directories.
    let cdir2 = tempdir();
    let spec2 = prepare_rootfs(&s, &top, cdir2.path()).unwrap();
    assert_eq!(spec2.lowerdirs, spec.lowerdirs);
    let n = fs::read_dir(layers_dir(&s)).unwrap().count();
    assert_eq!(n, 2);
    cleanup_rootfs(cdir2.path()).unwrap();
}
