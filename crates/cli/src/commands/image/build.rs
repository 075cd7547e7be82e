//! `corral build` / `corral image build`.

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::Context;
use corral_image::build::{build, BuildOptions, RunStep};

use super::local::{normalise, store};
use super::run_step::{BuildNetwork, OciExecutor};
use super::BuildArgs;
use crate::cli::GlobalArgs;

impl BuildArgs {
    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let file = match &self.file {
            Some(f) => f.clone(),
            None => ["Containerfile", "Dockerfile"]
                .iter()
                .map(|n| self.context.join(n))
                .find(|p| p.is_file())
                .with_context(|| {
                    format!(
                        "no Containerfile or Dockerfile in {}",
                        self.context.display()
                    )
                })?,
        };
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let tags = self
            .tags
            .iter()
            .map(|t| normalise(t))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut build_args = HashMap::new();
        for a in &self.build_args {
            match a.split_once('=') {
                Some((k, v)) => build_args.insert(k.to_string(), v.to_string()),
                None => build_args.insert(a.clone(), std::env::var(a).unwrap_or_default()),
            };
        }
        let network = BuildNetwork::parse(&self.network)?;
        let st = store(global)?;
        let executor = OciExecutor::new(&global.paths().run, network);
        let opts = BuildOptions {
            containerfile: text,
            tags,
            build_args,
            target: self.target.clone(),
            no_cache: self.no_cache,
        };
        let started = std::time::Instant::now();
        let mut out = std::io::stdout();
        let outcome = build(
            &st,
            &self.context,
            &opts,
            Some(&executor as &dyn RunStep),
            &mut out,
        )?;
        eprintln!(
            "Built {} in {:.2}s ({} steps run, {} from cache)",
            outcome.image.id(),
            started.elapsed().as_secs_f64(),
            outcome.executed_steps,
            outcome.cached_steps
        );
        Ok(ExitCode::SUCCESS)
    }
}
