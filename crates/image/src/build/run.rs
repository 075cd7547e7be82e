//! RUN: mount an overlay of the current layers with a fresh upper dir, hand it to the
//! `RunStep` executor, unmount, and turn the upper dir into the step's layer.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;

use super::parser::Command;
use super::{steps, BuildError, Builder, CacheEntry, RunRequest};
use crate::commit::{LayerRef, LayerWriter};
use crate::rootfs::MountSpec;

/// Unmounts and removes a RUN step's scratch dirs however the step ends.
struct RunDir {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.mounted {
            let _ = nix::mount::umount2(
                &self.dir.path().join("rootfs"),
                nix::mount::MntFlags::MNT_DETACH,
            );
        }
    }
}

impl Builder<'_> {
    pub(crate) fn run_step(
        &mut self,
        cmd: &Command,
        state: &CacheEntry,
        args: &HashMap<String, String>,
        out: &mut dyn Write,
    ) -> Result<LayerRef, BuildError> {
        let Some(executor) = self.executor else {
            return Err(BuildError::Context(
                "RUN needs a container executor and none is available in this build".into(),
            ));
        };
        let cfg = state.config.config().clone().unwrap_or_default();
        let argv = steps::argv(cmd, &steps::shell_of(&state.config));
        let mut env: Vec<String> = cfg.env().clone().unwrap_or_default();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
        }
        for (k, v) in args {
            if !env
                .iter()
                .any(|e| e.split_once('=').map(|(ek, _)| ek) == Some(k.as_str()))
            {
                env.push(format!("{k}={v}"));
            }
        }
        let cwd = cfg
            .working_dir()
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into());
        let user = cfg.user().clone().unwrap_or_default();
        let base = self.store.corral_root().join("image-cache/run");
        std::fs::create_dir_all(&base)
            .map_err(|e| BuildError::Context(format!("{}: {e}", base.display())))?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("run-{}-", std::process::id()))
            .tempdir_in(&base)
            .map_err(|e| BuildError::Context(e.to_string()))?;
        let mut rd = RunDir {
            dir,
            mounted: false,
        };
        let mut lowerdirs = self.layer_dirs(state)?;
        if lowerdirs.is_empty() {
            let empty = crate::rootfs::layers_dir(self.store).join("empty");
            std::fs::create_dir_all(&empty).map_err(|e| BuildError::Context(e.to_string()))?;
            lowerdirs.push(empty);
        }
        let p = rd.dir.path().to_path_buf();
        let spec = MountSpec {
            lowerdirs,
            upperdir: p.join("upper"),
            workdir: p.join("work"),
            target: p.join("rootfs"),
        };
        for d in [&spec.upperdir, &spec.workdir, &spec.target] {
            std::fs::create_dir_all(d)
                .map_err(|e| BuildError::Context(format!("{}: {e}", d.display())))?;
        }
        spec.mount()?;
        rd.mounted = true;
        // The working directory is created inside the rootfs, resolving symlinks as if it were /.
        let root: OwnedFd = File::open(&spec.target)
            .map_err(|e| BuildError::Context(e.to_string()))?
            .into();
        let comps: Vec<OsString> = super::context::clean_relative(&cwd)
            .unwrap_or_default()
            .iter()
            .map(|c| c.to_os_string())
            .collect();
        crate::extract::ensure_dir_in_root(&root, &comps)
            .map_err(|e| BuildError::Context(format!("WORKDIR {cwd}: {e}")))?;
        drop(root);
        let absent = super::mount_points::AbsentMountPoints::before_step(&spec.target);
        let _ = out.flush();
        executor
            .run(
                &RunRequest {
                    rootfs: &spec.target,
                    argv: &argv,
                    env: &env,
                    cwd: &cwd,
                    user: &user,
                },
                out,
            )
            .map_err(BuildError::Context)?;
        nix::mount::umount2(&spec.target, nix::mount::MntFlags::empty()).map_err(|errno| {
            crate::rootfs::RootfsError::Mount {
                op: "umount",
                target: spec.target.clone(),
                errno,
            }
        })?;
        rd.mounted = false;
        absent
            .remove_from_upper(&spec.upperdir)
            .map_err(|e| BuildError::Context(format!("tidying the RUN mount points: {e}")))?;
        let mut lw = LayerWriter::new(self.store)?;
        super::diff::diff_upper(&spec.upperdir, &mut lw)
            .map_err(|e| BuildError::Context(format!("diffing the RUN result: {e}")))?;
        Ok(lw.finish()?)
    }
}
