//! `corral doctor`: can this host run corral's VMs and containers?

mod checks;
mod guest_kernel;
mod render;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

pub use checks::{gather, Check, Status};

use crate::cli::GlobalArgs;

/// Check this host and print a table (or JSON).
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the checks as JSON.
    #[arg(long)]
    pub json: bool,
    /// Probe a different root tree (for tests of the probes).
    #[arg(long, hide = true, default_value = "/")]
    pub sysroot: PathBuf,
}

impl DoctorArgs {
    /// Run every check, print them, exit 1 when a must-have is missing.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let guest_kernel_env = std::env::var_os("CORRAL_GUEST_KERNEL").map(PathBuf::from);
        let checks = gather(&self.sysroot, &global.paths(), guest_kernel_env.as_deref());
        if self.json {
            println!("{}", serde_json::to_string_pretty(&checks)?);
        } else {
            print!("{}", render::table(&checks));
        }
        let missing: Vec<&Check> = checks
            .iter()
            .filter(|c| c.status == Status::Missing)
            .collect();
        if missing.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
        for check in missing {
            eprintln!(
                "corral doctor: missing must-have: {}: {}",
                check.name, check.detail
            );
        }
        Ok(ExitCode::FAILURE)
    }
}
