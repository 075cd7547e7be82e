//! `corral completion <shell>`.

use std::process::ExitCode;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::cli::Cli;

/// Print a completion script for a shell.
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: Shell,
}

impl CompletionArgs {
    /// Write the script to stdout.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        clap_complete::generate(
            self.shell,
            &mut Cli::command(),
            "corral",
            &mut std::io::stdout(),
        );
        Ok(ExitCode::SUCCESS)
    }
}
