//! What a VM test boots: the guest kernel and a busybox initramfs.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The guest kernel: CORRAL_GUEST_KERNEL (scripts/test.sh sets it), else the shared
/// ready-made one beside the checkout (/work/main) or the worktrees' folder (/work/wt/<area>).
pub fn kernel() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let k = std::env::var_os("CORRAL_GUEST_KERNEL")
        .map(PathBuf::from)
        .or_else(|| {
            [
                "../../../shared/guest/vmlinux-microvm",
                "../../../../shared/guest/vmlinux-microvm",
            ]
            .iter()
            .map(|p| manifest.join(p))
            .find(|p| p.exists())
        })
        .expect("this test needs a guest kernel: set CORRAL_GUEST_KERNEL (scripts/test.sh does)");
    assert!(k.exists(), "guest kernel {} is missing", k.display());
    k
}

/// A new initramfs tree `DIR/initramfs` with the folders `dirs` and /bin/busybox; its path.
pub fn busybox_tree(dir: &Path, dirs: &[&str]) -> PathBuf {
    let root = dir.join("initramfs");
    for d in ["bin"].iter().chain(dirs) {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    root
}

/// Write `init` as the tree's executable /init and pack the tree as a newc archive
/// `DIR/initramfs.cpio` beside it; the archive's path.
pub fn pack(root: &Path, init: &str) -> PathBuf {
    std::fs::write(root.join("init"), init).unwrap();
    std::fs::set_permissions(
        root.join("init"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = root.parent().unwrap().join("initramfs.cpio");
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd {} && find . | cpio -o -H newc --quiet > {}",
            root.display(),
            out.display()
        ))
        .status()
        .expect("cpio (apt-get install cpio)");
    assert!(st.success(), "building the initramfs");
    out
}
