//! `corral daemon`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::cli::GlobalArgs;

/// Run the daemon in the foreground.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Also listen on TCP (loopback only), e.g. 127.0.0.1:7070; requires the bearer token.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// The OCI runtime binary containers run under (runc's command line). Default: this
    /// executable's `corral oci` face.
    #[arg(long = "oci-runtime", env = "CORRAL_OCI_RUNTIME", value_name = "PATH")]
    pub oci_runtime: Option<PathBuf>,
    /// Write "ready" to this file descriptor once the socket accepts connections.
    #[arg(long = "ready-fd", value_name = "FD", hide = true)]
    pub ready_fd: Option<i32>,
}

impl DaemonArgs {
    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let exe = std::env::current_exe().context("finding the corral executable")?;
        let mut config =
            corral_daemon::DaemonConfig::new(global.root.clone(), global.run_dir.clone(), exe);
        config.listen = self.listen;
        config.ready_fd = self.ready_fd;
        if let Some(rt) = self.oci_runtime {
            config.oci_runtime = rt;
            config.oci_runtime_args = Vec::new();
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("creating the async runtime")?;
        rt.block_on(corral_daemon::run(config))?;
        Ok(ExitCode::SUCCESS)
    }
}
