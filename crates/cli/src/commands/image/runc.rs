//! A `RunStep` executor for `corral build` that runs each RUN step with runc (Debian's
//! /usr/sbin/runc) on a generated bundle: its own pid, mount, ipc and uts namespaces, the host
//! network, the usual /proc, /dev and /sys mounts, and the image's env, workdir and user.
//! It stands in until corral's own OCI runtime offers a library API for this.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use corral_image::build::{RunRequest, RunStep};
use oci_spec::runtime::{LinuxNamespaceType, ProcessBuilder, RootBuilder, Spec, UserBuilder};

/// Runs RUN steps with runc.
#[derive(Debug)]
pub struct RuncExecutor {
    runc: PathBuf,
    state_root: PathBuf,
    bundles: PathBuf,
}

impl RuncExecutor {
    /// Finds runc on this host (`CORRAL_BUILD_RUNC`, then PATH, then /usr/sbin/runc).
    pub fn detect(run_dir: &Path, work_dir: &Path) -> Option<RuncExecutor> {
        let candidates = std::env::var_os("CORRAL_BUILD_RUNC")
            .map(PathBuf::from)
            .into_iter()
            .chain(std::env::var_os("PATH").into_iter().flat_map(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join("runc"))
                    .collect::<Vec<_>>()
            }))
            .chain([
                PathBuf::from("/usr/sbin/runc"),
                PathBuf::from("/usr/bin/runc"),
            ]);
        let runc = candidates.into_iter().find(|p| p.is_file())?;
        Some(RuncExecutor {
            runc,
            state_root: run_dir.join("build-runc"),
            bundles: work_dir.to_path_buf(),
        })
    }
}

fn lookup_user(rootfs: &Path, user: &str) -> Result<(u32, u32), String> {
    let (u, g) = user
        .split_once(':')
        .map(|(a, b)| (a, Some(b)))
        .unwrap_or((user, None));
    let field = |file: &str, name: &str| -> Option<(u32, u32)> {
        let text = std::fs::read_to_string(rootfs.join(file)).ok()?;
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name)).then(|| {
                Some((
                    f.get(2)?.parse().ok()?,
                    f.get(3).and_then(|x| x.parse().ok()).unwrap_or(0),
                ))
            })?
        })
    };
    let (uid, primary) = if u.is_empty() {
        (0, 0)
    } else if let Ok(n) = u.parse::<u32>() {
        (n, field("etc/passwd", u).map(|x| x.1).unwrap_or(n))
    } else {
        field("etc/passwd", u).ok_or_else(|| format!("USER {u}: not in the image's /etc/passwd"))?
    };
    let gid = match g {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => field("etc/group", g)
                .map(|x| x.0)
                .ok_or_else(|| format!("USER group {g}: not in /etc/group"))?,
        },
    };
    Ok((uid, gid))
}

impl RunStep for RuncExecutor {
    fn run(&self, req: &RunRequest<'_>) -> Result<(), String> {
        std::fs::create_dir_all(&self.bundles)
            .map_err(|e| format!("{}: {e}", self.bundles.display()))?;
        let bundle = tempfile::Builder::new()
            .prefix(&format!("bundle-{}-", std::process::id()))
            .tempdir_in(&self.bundles)
            .map_err(|e| e.to_string())?;
        let (uid, gid) = lookup_user(req.rootfs, req.user)?;
        let mut spec = Spec::default();
        let process = ProcessBuilder::default()
            .terminal(false)
            .args(req.argv.to_vec())
            .env(req.env.to_vec())
            .cwd(req.cwd)
            .user(
                UserBuilder::default()
                    .uid(uid)
                    .gid(gid)
                    .build()
                    .map_err(|e| e.to_string())?,
            )
            .capabilities(
                spec.process()
                    .as_ref()
                    .and_then(|p| p.capabilities().clone())
                    .unwrap_or_default(),
            )
            .no_new_privileges(true)
            .build()
            .map_err(|e| e.to_string())?;
        spec.set_process(Some(process));
        spec.set_root(Some(
            RootBuilder::default()
                .path(req.rootfs)
                .readonly(false)
                .build()
                .map_err(|e| e.to_string())?,
        ));
        spec.set_hostname(Some("corral-build".into()));
        if let Some(linux) = spec.linux_mut() {
            if let Some(ns) = linux.namespaces_mut() {
                ns.retain(|n| n.typ() != LinuxNamespaceType::Network);
            }
        }
        let cfg = serde_json::to_vec_pretty(&spec).map_err(|e| e.to_string())?;
        std::fs::write(bundle.path().join("config.json"), cfg).map_err(|e| e.to_string())?;
        let id = bundle
            .path()
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("corral-build")
            .to_string();
        let status = Command::new(&self.runc)
            .arg("--root")
            .arg(&self.state_root)
            .args(["run", "--bundle"])
            .arg(bundle.path())
            .arg(&id)
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("starting {}: {e}", self.runc.display()))?;
        // runc removes the container on exit; make sure nothing is left if it did not.
        let _ = Command::new(&self.runc)
            .arg("--root")
            .arg(&self.state_root)
            .args(["delete", "--force", &id])
            .stderr(Stdio::null())
            .status();
        if !status.success() {
            return Err(format!(
                "the command returned a non-zero code: {}",
                status.code().unwrap_or(-1)
            ));
        }
        Ok(())
    }
}
