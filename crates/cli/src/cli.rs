//! The command line: one `Cli` with global flags and the command groups.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::commands::{
    app::AppCommand, container, daemon::DaemonArgs, image::ImageCommand, kube,
    network::NetworkCommand, oci::OciArgs, shim::ShimArgs, vm::VmCommand, vmm::VmmArgs,
};
use crate::paths::{Paths, DEFAULT_ROOT, DEFAULT_RUN};

/// corral runs microVMs, containers and load-balanced apps on one Linux host.
///
/// VMs boot real Linux kernels on KVM or on corral's own x86-64 software CPU; containers run
/// under corral's OCI runtime; Compose files and Kubernetes manifests become self-healing apps
/// behind a built-in load balancer. Every verb talks to the corral daemon, which the CLI starts
/// on first use.
#[derive(Debug, Parser)]
#[command(
    name = "corral",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Flags every command accepts.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides. Goes
    /// before the command (`corral -v run …`), as `-v` after `run` is Docker's volume flag.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Root dir for state, images and VMs.
    #[arg(long, env = "CORRAL_ROOT", default_value = DEFAULT_ROOT, global = true, value_name = "DIR")]
    pub root: PathBuf,
    /// Run dir for sockets and pid files.
    #[arg(long = "run-dir", env = "CORRAL_RUN", default_value = DEFAULT_RUN, global = true, value_name = "DIR")]
    pub run_dir: PathBuf,
}

impl GlobalArgs {
    /// The directories this invocation works with.
    pub fn paths(&self) -> Paths {
        Paths {
            root: self.root.clone(),
            run: self.run_dir.clone(),
        }
    }
}

/// The command groups.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Virtual machines: run one in the foreground, or create and manage them (virsh-style).
    #[command(subcommand)]
    Vm(VmCommand),

    /// Create and start a container from an image.
    Run(Box<container::RunArgs>),
    /// List containers.
    Ps(container::PsArgs),
    /// Show a container's output.
    Logs(container::LogsArgs),
    /// Run a command in a running container.
    Exec(container::ExecArgs),
    /// Attach this terminal to a running container's input and output.
    Attach(container::AttachArgs),
    /// Start created or stopped containers (in the background).
    Start(container::StartArgs),
    /// Stop containers: SIGTERM, then SIGKILL after a grace period.
    Stop(container::StopArgs),
    /// Send a signal to containers (SIGKILL by default).
    Kill(container::KillArgs),
    /// Remove containers.
    Rm(container::RmArgs),
    /// Show low-level details of containers, VMs or images as JSON.
    Inspect(container::InspectArgs),
    /// Block until containers stop, then print their exit codes.
    Wait(container::WaitArgs),
    /// Show the processes running in a container.
    Top(container::TopArgs),
    /// Show containers' live CPU, memory and process figures.
    Stats(container::StatsArgs),

    /// Images: build, list, pull, push, import, load, save, remove.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Build an image from a Containerfile (same as `image build`).
    Build(crate::commands::image::BuildArgs),

    /// Multi-service apps from Compose files.
    #[command(subcommand)]
    App(AppCommand),
    /// Apply Kubernetes manifests (Deployment, Service, Pod, ConfigMap, Secret) as desired state.
    Apply(kube::ApplyArgs),
    /// Delete what Kubernetes manifests describe.
    Delete(kube::DeleteArgs),
    /// List applied Kubernetes objects in kubectl's table shape.
    Get(kube::GetArgs),

    /// Networks: bridges with their own subnets that VMs and containers join.
    #[command(subcommand)]
    Network(NetworkCommand),

    /// Run the corral daemon (REST API over a Unix socket). The CLI starts it on demand.
    Daemon(DaemonArgs),
    /// The per-VM monitor process (started by the daemon; one process per VM).
    Vmm(VmmArgs),
    /// The per-container shim (started by the daemon; owns stdio, logs and exit status).
    Shim(ShimArgs),
    /// The runc-compatible OCI runtime face (also reachable as `corral-runc`).
    Oci(OciArgs),

    /// Check that this host can run corral's VMs and containers.
    Doctor(crate::doctor::DoctorArgs),
    /// Print version and build information.
    Version(crate::commands::version::VersionArgs),
    /// Print a shell completion script.
    Completion(crate::commands::completion::CompletionArgs),
}

impl Command {
    /// Whether this command is a long-running server (daemon, VMM, shim) rather than a client.
    pub fn is_server(&self) -> bool {
        matches!(
            self,
            Command::Daemon(_) | Command::Vmm(_) | Command::Shim(_)
        )
    }
}

/// The process arguments, with `corral-runc ARGS` rewritten to `corral oci ARGS` so containerd
/// can use corral through `BinaryName`.
pub fn args_with_face() -> Vec<OsString> {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let invoked_as = args.first().and_then(|a| {
        std::path::Path::new(a)
            .file_name()
            .map(|n| n.to_os_string())
    });
    if invoked_as.as_deref() == Some(std::ffi::OsStr::new("corral-runc")) {
        args.insert(1, "oci".into());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str) {
            for sub in cmd.get_subcommands() {
                let name = format!("{path} {}", sub.get_name());
                assert!(sub.get_about().is_some(), "`{name}` has no help text");
                walk(sub, &name);
            }
        }
        walk(&Cli::command(), "corral");
    }
}
