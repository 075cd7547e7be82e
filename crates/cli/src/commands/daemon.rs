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
    /// Prefix of the host network objects this daemon owns (links `PREFIX…`, bridge
    /// `PREFIX0`, nftables table `PREFIX`; at most 8 bytes). Default: links `crl…`, bridge
    /// `corral0`, table `corral`. Tests give each daemon its own.
    #[arg(long = "net-prefix", env = "CORRAL_NET_PREFIX", value_name = "PREFIX")]
    pub net_prefix: Option<String>,
    /// The IPv4 range network subnets are carved from (default 10.213.0.0/16).
    #[arg(long = "net-pool", env = "CORRAL_NET_POOL", value_name = "CIDR")]
    pub net_pool: Option<String>,
    /// Rotate a container's log (into `container.log.1`) past this size, e.g. 10m.
    #[arg(
        long = "log-max-size",
        env = "CORRAL_LOG_MAX_SIZE",
        value_name = "SIZE"
    )]
    pub log_max_size: Option<String>,
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
        config.build = env!("CORRAL_GIT_COMMIT").into();
        if let Some(size) = &self.log_max_size {
            config.log_max_bytes = crate::commands::api_client::parse_size(size)
                .with_context(|| format!("--log-max-size {size:?}"))?;
        }
        if let Some(p) = &self.net_prefix {
            let ok = !p.is_empty()
                && p.len() <= 8
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            if !ok {
                anyhow::bail!("--net-prefix {p:?}: use 1-8 of a-z, 0-9");
            }
            config.set_net_prefix(p);
        }
        if let Some(pool) = &self.net_pool {
            config.net.pool = pool
                .parse()
                .with_context(|| format!("--net-pool {pool:?} is not an IPv4 CIDR"))?;
        }
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
