//! One module per command group; each turns parsed arguments into work and an exit status.

pub mod api_client;
pub mod app;
pub mod app_build;
pub mod app_verbs;
pub mod completion;
pub mod container;
pub mod daemon;
pub mod image;
pub mod inventory;
pub mod kube;
pub mod network;
pub mod oci;
pub mod shim;
pub mod terminal;
pub mod version;
pub mod vm;
pub mod vm_daemon;
pub mod vm_run;
pub mod vmm;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Run the parsed command line.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let global = &cli.global;
    match cli.command {
        Command::Vm(cmd) => cmd.run(global),
        Command::Run(args) => args.run(global),
        Command::Ps(args) => args.run(global),
        Command::Logs(args) => args.run(global),
        Command::Exec(args) => args.run(global),
        Command::Attach(args) => args.run(global),
        Command::Start(args) => args.run(global),
        Command::Stop(args) => args.run(global),
        Command::Kill(args) => args.run(global),
        Command::Rm(args) => args.run(global),
        Command::Inspect(args) => args.run(global),
        Command::Wait(args) => args.run(global),
        Command::Top(args) => args.run(global),
        Command::Stats(args) => args.run(global),
        Command::Image(cmd) => cmd.run(global),
        Command::Build(args) => args.run(global),
        Command::App(cmd) => cmd.run(global),
        Command::Apply(args) => args.run(global),
        Command::Delete(args) => args.run(global),
        Command::Get(args) => args.run(global),
        Command::Network(cmd) => cmd.run(global),
        Command::Daemon(args) => args.run(global),
        Command::Vmm(args) => args.run(global),
        Command::Shim(args) => args.run(global),
        Command::Oci(args) => args.run(global),
        Command::Doctor(args) => args.run(global),
        Command::Version(args) => args.run(),
        Command::Completion(args) => args.run(),
    }
}
