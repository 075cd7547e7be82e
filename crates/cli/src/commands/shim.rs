//! `corral shim`: the per-container supervisor, and with `--exec` the per-exec-session one.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::cli::GlobalArgs;

/// Supervise one container: own its stdio, log file and exit status (or with `--exec`, one
/// exec session's process in it).
#[derive(Debug, Args)]
pub struct ShimArgs {
    /// The container's ID.
    #[arg(long)]
    pub id: String,
    /// The container's OCI bundle (its folder: logs and status files go there too).
    #[arg(long, value_name = "DIR", required_unless_present = "exec")]
    pub bundle: Option<PathBuf>,
    /// Run the exec session whose folder (its request, pid and status files) is DIR in the
    /// running container instead (needs --attach-socket).
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with = "bundle",
        requires = "attach_socket"
    )]
    pub exec: Option<PathBuf>,
    /// An exec session's terminal size: rows.
    #[arg(long, requires = "cols")]
    pub rows: Option<u16>,
    /// An exec session's terminal size: columns.
    #[arg(long, requires = "rows")]
    pub cols: Option<u16>,
    /// The OCI runtime binary.
    #[arg(long, value_name = "PATH")]
    pub runtime: PathBuf,
    /// An argument put before the runtime's own (repeatable), e.g. `oci`.
    #[arg(long = "runtime-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub runtime_args: Vec<String>,
    /// The runtime's state root (`--root`).
    #[arg(long = "runtime-root", value_name = "DIR")]
    pub runtime_root: PathBuf,
    /// Rotate the container log past this many bytes.
    #[arg(long = "log-max-bytes", default_value_t = 10 << 20)]
    pub log_max_bytes: u64,
    /// Report readiness ("ok PID" or "err MESSAGE") on this file descriptor.
    #[arg(long = "ready-fd", value_name = "FD")]
    pub ready_fd: Option<i32>,
    /// Serve attaches on this socket: the terminal with --terminal, else the stdio.
    #[arg(long = "attach-socket", value_name = "PATH")]
    pub attach_socket: Option<PathBuf>,
    /// The container runs on a terminal the shim holds (needs --attach-socket).
    #[arg(long, requires = "attach_socket")]
    pub terminal: bool,
    /// Without a terminal: keep a stdin pipe open that attached clients write to.
    #[arg(long)]
    pub stdin: bool,
    /// A client attaches right after the start: wait up to this many ms after the end for it.
    #[arg(long = "first-attach-wait-ms", value_name = "MS")]
    pub first_attach_wait_ms: Option<u64>,
}

impl ShimArgs {
    /// Run the verb.
    pub fn run(self, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let first_attach_wait = self
            .first_attach_wait_ms
            .map(std::time::Duration::from_millis);
        if let (Some(dir), Some(socket)) = (self.exec, &self.attach_socket) {
            let cfg = corral_daemon::shim::exec::ExecShimConfig {
                container: self.id,
                dir,
                runtime: self.runtime,
                runtime_args: self.runtime_args,
                runtime_root: self.runtime_root,
                ready_fd: self.ready_fd,
                attach_socket: socket.clone(),
                first_attach_wait,
                size: self
                    .rows
                    .zip(self.cols)
                    .map(|(rows, cols)| corral_api::TtySize { rows, cols }),
            };
            corral_daemon::shim::exec::run(&cfg)?;
            return Ok(ExitCode::SUCCESS);
        }
        let bundle = self.bundle.expect("clap requires --bundle without --exec");
        let cfg = corral_daemon::shim::ShimConfig {
            id: self.id,
            dir: bundle.clone(),
            bundle,
            runtime: self.runtime,
            runtime_args: self.runtime_args,
            runtime_root: self.runtime_root,
            log_max_bytes: self.log_max_bytes,
            ready_fd: self.ready_fd,
            attach_socket: self.attach_socket,
            terminal: self.terminal,
            stdin: self.stdin,
            first_attach_wait,
        };
        corral_daemon::shim::run(&cfg)?;
        Ok(ExitCode::SUCCESS)
    }
}
