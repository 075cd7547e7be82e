//! `corral app …`: multi-service apps from Compose files.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::app_verbs;

/// App verbs.
#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Create and start an app's services from Compose files.
    Up(AppUpArgs),
    /// Stop and remove everything an app made.
    Down(AppDownArgs),
    /// List an app's replicas.
    Ps(AppProjectArgs),
    /// Set the number of replicas of services (SERVICE=N).
    Scale(AppScaleArgs),
    /// Show an app's output.
    Logs(AppLogsArgs),
    /// Restart an app's services.
    Restart(AppProjectArgs),
}

/// Selects the app: its Compose files and project name.
#[derive(Debug, Args)]
pub struct AppProjectArgs {
    /// Compose files (default: compose.yaml, docker-compose.yml in this folder). Repeatable.
    #[arg(short, long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Project name (default: the folder's name).
    #[arg(short, long = "project-name", value_name = "NAME")]
    pub project: Option<String>,
}

/// `corral app up`.
#[derive(Debug, Args)]
pub struct AppUpArgs {
    /// Which app.
    #[command(flatten)]
    pub project: AppProjectArgs,
    /// Return once the desired state is recorded instead of following logs.
    #[arg(short, long)]
    pub detach: bool,
    /// Build the images of services with `build:` even when they exist.
    #[arg(long)]
    pub build: bool,
}

/// `corral app down`.
#[derive(Debug, Args)]
pub struct AppDownArgs {
    /// Which app.
    #[command(flatten)]
    pub project: AppProjectArgs,
    /// Remove named volumes too.
    #[arg(short, long)]
    pub volumes: bool,
}

/// `corral app scale`.
#[derive(Debug, Args)]
pub struct AppScaleArgs {
    /// Which app.
    #[command(flatten)]
    pub project: AppProjectArgs,
    /// SERVICE=N pairs.
    #[arg(required = true, value_name = "SERVICE=N")]
    pub services: Vec<String>,
}

/// `corral app logs`.
#[derive(Debug, Args)]
pub struct AppLogsArgs {
    /// Compose files (`-f` is --follow here, as in `docker compose logs -f`). Repeatable.
    #[arg(long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Project name (default: the folder's name).
    #[arg(short, long = "project-name", value_name = "NAME")]
    pub project: Option<String>,
    /// Keep following new output.
    #[arg(short, long)]
    pub follow: bool,
    /// Only this service.
    pub service: Option<String>,
}

impl AppCommand {
    /// Run the verb.
    pub fn run(self, global: &crate::cli::GlobalArgs) -> anyhow::Result<std::process::ExitCode> {
        match self {
            AppCommand::Up(args) => app_verbs::up(args, global),
            AppCommand::Down(args) => app_verbs::down(args, global),
            AppCommand::Ps(args) => app_verbs::ps(args, global),
            AppCommand::Scale(args) => app_verbs::scale(args, global),
            AppCommand::Logs(args) => app_verbs::logs(args, global),
            AppCommand::Restart(args) => app_verbs::restart(args, global),
        }
    }
}
