//! Container root filesystems: a shared read-only lower tree per image and one overlayfs
//! upper per container (`upper/`, `work/`, mounted on `rootfs/` in the container folder).
//!
//! Until images come from the image store, the one image is `busybox`, a lower tree built
//! once from the host's static busybox (Debian's busybox-static).

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{ApiError, ApiResult};

/// What the image contributes to a container.
#[derive(Debug, Clone, Default)]
pub struct ImageDefaults {
    /// The image's command.
    pub cmd: Vec<String>,
    /// Lower dirs, topmost first.
    pub lowerdirs: Vec<PathBuf>,
}

const BUSYBOX: &str = "/bin/busybox";

/// Resolve an image reference to its lower dirs and defaults.
pub fn resolve_image(root: &Path, image: &str) -> ApiResult<ImageDefaults> {
    let name = image.strip_suffix(":latest").unwrap_or(image);
    if name != "busybox" {
        return Err(ApiError::NotFound(format!(
            "no such image: {image} (this daemon knows the built-in `busybox` image)"
        )));
    }
    let base = busybox_base(root)?;
    Ok(ImageDefaults {
        cmd: vec!["sh".into()],
        lowerdirs: vec![base],
    })
}

/// The busybox lower tree, built once (into a temp dir, then renamed).
fn busybox_base(root: &Path) -> ApiResult<PathBuf> {
    let dest = root.join("base").join("busybox");
    if dest.join("bin/busybox").exists() {
        return Ok(dest);
    }
    if !Path::new(BUSYBOX).exists() {
        return Err(ApiError::Internal(format!(
            "{BUSYBOX} is missing: install Debian's busybox-static"
        )));
    }
    let tmp = root
        .join("base")
        .join(format!(".busybox-{}", std::process::id()));
    let err = |e: std::io::Error| ApiError::internal(format!("building {}", dest.display()), e);
    let _ = fs::remove_dir_all(&tmp);
    for d in [
        "bin", "etc", "proc", "sys", "dev", "tmp", "root", "home", "var", "run",
    ] {
        fs::create_dir_all(tmp.join(d)).map_err(err)?;
    }
    fs::copy(BUSYBOX, tmp.join("bin/busybox")).map_err(err)?;
    let list = std::process::Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .map_err(err)?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            let _ = std::os::unix::fs::symlink("busybox", tmp.join("bin").join(applet));
        }
    }
    fs::write(
        tmp.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .map_err(err)?;
    fs::write(tmp.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").map_err(err)?;
    match fs::rename(&tmp, &dest) {
        Ok(()) => {}
        Err(_) if dest.join("bin/busybox").exists() => {
            let _ = fs::remove_dir_all(&tmp);
        }
        Err(e) => return Err(err(e)),
    }
    Ok(dest)
}

/// Make `upper/`, `work/`, `rootfs/` in `dir` and mount the overlay (idempotent).
pub fn mount_rootfs(dir: &Path, image: &ImageDefaults) -> ApiResult<()> {
    let target = dir.join("rootfs");
    if is_mounted(&target) {
        return Ok(());
    }
    for d in ["upper", "work", "rootfs"] {
        fs::create_dir_all(dir.join(d))
            .map_err(|e| ApiError::internal(format!("creating {}", dir.join(d).display()), e))?;
    }
    let lower: Vec<String> = image
        .lowerdirs
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        dir.join("upper").display(),
        dir.join("work").display()
    );
    mount(
        Some("overlay"),
        &target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| ApiError::internal(format!("mounting overlay on {}", target.display()), e))
}

/// Unmount `rootfs/` if mounted.
pub fn unmount_rootfs(dir: &Path) -> ApiResult<()> {
    let target = dir.join("rootfs");
    match umount2(&target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(ApiError::internal(
            format!("unmounting {}", target.display()),
            e,
        )),
    }
}

/// Whether `path` is a mount point (listed in /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let want = path.display().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            m.lines()
                .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
        })
        .unwrap_or(false)
}
