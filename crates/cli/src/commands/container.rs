//! The container verbs, Docker's way: `run`, `ps`, `logs`, `exec`, `attach`, `stop`, `kill`,
//! `rm`, `inspect`, `wait`, `top`, `stats`. They talk only to the daemon's API.

use std::path::PathBuf;

use clap::Args;

use crate::commands::terminal;

/// `corral run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run in the background and print the container ID.
    #[arg(short, long)]
    pub detach: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Name of the container.
    #[arg(long)]
    pub name: Option<String>,
    /// Set an environment variable (K=V). Repeatable.
    #[arg(short, long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Read environment variables from a file. Repeatable.
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// User (name|uid[:group|gid]) to run as.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Publish a port: [HOSTIP:]HOSTPORT:PORT[/tcp|udp]. Repeatable.
    #[arg(short, long = "publish", value_name = "SPEC")]
    pub publish: Vec<String>,
    /// Publish every port the image exposes on a free host port.
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Bind mount a volume: SRC:DST[:ro]. Repeatable.
    #[arg(short, long = "volume", value_name = "SRC:DST[:ro]")]
    pub volumes: Vec<String>,
    /// Memory limit, e.g. 256m.
    #[arg(long)]
    pub memory: Option<String>,
    /// CPU limit in CPUs, e.g. 0.5.
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Maximum number of processes.
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    /// Mount the root filesystem read-only.
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Add a Linux capability. Repeatable.
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a Linux capability. Repeatable.
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Restart policy: no, on-failure[:N] or always.
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Network: a network name, none or host (default: the `default` network, bridge corral0).
    #[arg(long)]
    pub network: Option<String>,
    /// Overrides the image's entrypoint (one program; `""` clears it); the image's command is
    /// then not used.
    #[arg(long, value_name = "PROGRAM")]
    pub entrypoint: Option<String>,
    /// Another name the container answers to on its network. Repeatable.
    #[arg(long = "network-alias", value_name = "NAME")]
    pub network_aliases: Vec<String>,
    /// Set a label (K=V). Repeatable.
    #[arg(short, long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    /// Keep stdin open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// The keys that detach from the container's terminal, leaving it running.
    #[arg(long = "detach-keys", value_name = "KEYS", default_value = terminal::DEFAULT_DETACH_KEYS)]
    pub detach_keys: String,
    /// Attached without a terminal: pass the signals this command gets (Ctrl-C, SIGTERM, …)
    /// to the container's process.
    #[arg(long = "sig-proxy", value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
        num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub sig_proxy: bool,
    /// Image to run.
    pub image: String,
    /// Command and arguments (default: the image's).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `corral ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show stopped containers too.
    #[arg(short, long)]
    pub all: bool,
    /// Show VMs as well as containers (the inventory).
    #[arg(long = "all-kinds")]
    pub all_kinds: bool,
    /// Output format: table or json.
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Refresh every second.
    #[arg(long)]
    pub watch: bool,
}

/// `corral logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Container name or ID.
    pub container: String,
    /// Keep following new output.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
    /// Only output since this time (RFC 3339 or a duration such as 10m).
    #[arg(long)]
    pub since: Option<String>,
}

/// `corral exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep stdin open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Set an environment variable (K=V). Repeatable.
    #[arg(short, long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// User to run as.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Container name or ID.
    pub container: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

/// `corral attach`.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// The keys that detach from the container, leaving it running.
    #[arg(long = "detach-keys", value_name = "KEYS", default_value = terminal::DEFAULT_DETACH_KEYS)]
    pub detach_keys: String,
    /// Do not send this terminal's input to the container.
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Without a terminal: pass the signals this command gets (Ctrl-C, SIGTERM, …) to the
    /// container's process.
    #[arg(long = "sig-proxy", value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
        num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub sig_proxy: bool,
    /// Container name or ID (or the ID of a running exec session, to join it again).
    pub container: String,
}

/// `corral start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Container names or IDs.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `corral stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait after SIGTERM before SIGKILL.
    #[arg(short, long, default_value_t = 10)]
    pub time: u64,
    /// Container names or IDs.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `corral kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send.
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    /// Container names or IDs.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `corral rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill a running container first.
    #[arg(short, long)]
    pub force: bool,
    /// Container names or IDs.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `corral inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Names or IDs of containers, VMs or images.
    #[arg(required = true)]
    pub objects: Vec<String>,
}

/// `corral wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Container names or IDs.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `corral top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Container name or ID.
    pub container: String,
}

/// `corral stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Container names or IDs (default: every running container).
    pub containers: Vec<String>,
    /// Print once and exit (the default; kept for Docker compatibility).
    #[arg(long = "no-stream")]
    pub no_stream: bool,
    /// Refresh every second.
    #[arg(long)]
    pub watch: bool,
}

mod attach;
mod interactive;
mod sigproxy;
mod verbs;
