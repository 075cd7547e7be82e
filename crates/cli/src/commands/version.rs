//! `corral version`.

use std::process::ExitCode;

use clap::Args;

/// Print version and build information.
#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

impl VersionArgs {
    /// Print the version.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let info = serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "commit": env!("CORRAL_GIT_COMMIT"),
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
        });
        if self.json {
            println!("{}", serde_json::to_string_pretty(&info)?);
        } else {
            println!(
                "corral {} (commit {}, {}/{})",
                info["version"].as_str().unwrap_or_default(),
                info["commit"].as_str().unwrap_or_default(),
                info["os"].as_str().unwrap_or_default(),
                info["arch"].as_str().unwrap_or_default()
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}
