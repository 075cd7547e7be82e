//! The OCI runtime binary, driven through runc's command line from the daemon (the shim does
//! create/start/delete; the daemon does kill, exec, and forced deletes during cleanup).

use std::process::Stdio;

use tokio::process::Command;

use crate::config::DaemonConfig;
use crate::error::{ApiError, ApiResult};

/// The runtime with its leading arguments and `--root`, stdin closed.
pub fn base_command(cfg: &DaemonConfig) -> Command {
    let mut cmd = Command::new(&cfg.oci_runtime);
    cmd.args(&cfg.oci_runtime_args)
        .arg("--root")
        .arg(cfg.oci_root())
        .stdin(Stdio::null());
    cmd
}

/// `kill ID SIGNAL`.
pub async fn kill(cfg: &DaemonConfig, id: &str, signal: &str) -> ApiResult<()> {
    let out = base_command(cfg)
        .args(["kill", id, signal])
        .output()
        .await
        .map_err(|e| ApiError::internal(format!("running {}", cfg.oci_runtime.display()), e))?;
    if !out.status.success() {
        return Err(ApiError::Conflict(format!(
            "cannot signal container {}: {}",
            &id[..12.min(id.len())],
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// `delete --force ID`, ignoring "does not exist".
pub async fn delete_force(cfg: &DaemonConfig, id: &str) {
    let _ = base_command(cfg)
        .args(["delete", "--force", id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

/// `exec [--env K=V]… [--user U] ID CMD…`, capturing output.
pub async fn exec(
    cfg: &DaemonConfig,
    id: &str,
    command: &[String],
    env: &[String],
    user: Option<&str>,
) -> ApiResult<std::process::Output> {
    let mut cmd = base_command(cfg);
    cmd.arg("exec");
    for e in env {
        cmd.arg("--env").arg(e);
    }
    if let Some(u) = user {
        cmd.arg("--user").arg(u);
    }
    cmd.arg(id).args(command);
    cmd.output()
        .await
        .map_err(|e| ApiError::internal(format!("running {}", cfg.oci_runtime.display()), e))
}
