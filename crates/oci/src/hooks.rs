//! Running the spec's hooks with the container state on stdin.

use std::io::Write;
use std::process::{Command, Stdio};

use oci_spec::runtime::Hook;

use crate::spawn::{pidfd_open, wait_pidfd};
use crate::state::StateReport;

/// A hook that failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// It could not be started.
    #[error("{kind} hook {path}: {source}")]
    Spawn {
        /// Which hook list.
        kind: &'static str,
        /// Its program.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// It exited unsuccessfully.
    #[error("{kind} hook {path}: {status}")]
    Failed {
        /// Which hook list.
        kind: &'static str,
        /// Its program.
        path: String,
        /// How it ended.
        status: String,
    },
    /// It ran longer than its timeout and was killed.
    #[error("{kind} hook {path}: timed out after {secs} s")]
    Timeout {
        /// Which hook list.
        kind: &'static str,
        /// Its program.
        path: String,
        /// The timeout.
        secs: i64,
    },
}

/// Run `hooks` in order with `state` on stdin; stop at the first failure.
pub fn run(kind: &'static str, hooks: &[Hook], state: &StateReport) -> Result<(), HookError> {
    let json = serde_json::to_vec(state).unwrap_or_default();
    for h in hooks {
        let path = h.path().display().to_string();
        let spawn_err = |source| HookError::Spawn {
            kind,
            path: path.clone(),
            source,
        };
        let mut cmd = Command::new(h.path());
        let args = h.args().clone().unwrap_or_default();
        if let Some(a0) = args.first() {
            use std::os::unix::process::CommandExt;
            cmd.arg0(a0);
        }
        cmd.args(args.iter().skip(1));
        cmd.env_clear();
        for e in h.env().iter().flatten() {
            if let Some((k, v)) = e.split_once('=') {
                cmd.env(k, v);
            }
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .map_err(spawn_err)?;
        if let Some(mut stdin) = child.stdin.take() {
            // A hook that does not read its stdin is fine.
            let _ = stdin.write_all(&json);
        }
        if let Some(secs) = h.timeout().filter(|t| *t > 0) {
            let fd = pidfd_open(child.id() as i32).map_err(|e| spawn_err(e.into()))?;
            if !wait_pidfd(&fd, (secs * 1000).min(i64::from(i32::MAX)) as i32) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HookError::Timeout { kind, path, secs });
            }
        }
        let status = child.wait().map_err(spawn_err)?;
        if !status.success() {
            return Err(HookError::Failed {
                kind,
                path,
                status: status.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> StateReport {
        StateReport {
            oci_version: "1.0.2".into(),
            id: "hooktest".into(),
            pid: 1,
            status: crate::state::Status::Created,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: String::new(),
            owner: String::new(),
            annotations: Default::default(),
        }
    }

    #[test]
    fn hook_reads_state_and_failure_is_reported() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("out");
        let ok: Hook = serde_json::from_value(serde_json::json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("cat > {}", out.display())]
        }))
        .unwrap();
        run("prestart", &[ok], &state()).unwrap();
        assert!(std::fs::read_to_string(&out)
            .unwrap()
            .contains("\"hooktest\""));
        let bad: Hook = serde_json::from_value(serde_json::json!({"path": "/bin/false"})).unwrap();
        let err = run("poststop", &[bad], &state()).unwrap_err().to_string();
        assert!(err.contains("poststop hook /bin/false"), "{err}");
        let slow: Hook = serde_json::from_value(
            serde_json::json!({"path": "/bin/sleep", "args": ["sleep", "5"], "timeout": 1}),
        )
        .unwrap();
        assert!(matches!(
            run("poststart", &[slow], &state()),
            Err(HookError::Timeout { .. })
        ));
    }
}
