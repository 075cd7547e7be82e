//! The verbs that talk to registries (pull, push, login) with indicatif bars per layer, and
//! `image to-disk`.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::Context;
use corral_image::registry::{self, ClientOptions, Credentials, LayerProgress, TransferProgress};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::local::{human_size, store};
use super::{LoginArgs, PullArgs, PushArgs, ToDiskArgs};
use crate::cli::GlobalArgs;

/// One indicatif bar per blob, drawn only on a terminal.
struct Bars {
    multi: MultiProgress,
    tty: bool,
}

impl Bars {
    fn new() -> Bars {
        let tty = std::io::stderr().is_terminal();
        let multi = MultiProgress::with_draw_target(if tty {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        Bars { multi, tty }
    }
}

struct Bar {
    bar: ProgressBar,
    short: String,
    tty: bool,
}

impl TransferProgress for Bars {
    fn start(&self, digest: &str, total: u64) -> Box<dyn LayerProgress + '_> {
        let short = digest
            .trim_start_matches("sha256:")
            .chars()
            .take(12)
            .collect::<String>();
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix}: {msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(short.clone());
        bar.set_message("Downloading");
        Box::new(Bar {
            bar,
            short,
            tty: self.tty,
        })
    }
}

impl LayerProgress for Bar {
    fn advance(&self, n: u64) {
        self.bar.inc(n);
    }

    fn finish(&self, status: &str) {
        self.bar.set_message(status.to_string());
        self.bar.finish();
        if !self.tty {
            println!("{}: {status}", self.short);
        }
    }
}

fn options(insecure: bool) -> ClientOptions {
    ClientOptions {
        insecure,
        ..ClientOptions::default()
    }
}

impl PullArgs {
    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let st = store(global)?;
        let bars = Bars::new();
        let img = registry::pull(&st, &self.image, options(self.insecure), &bars)
            .with_context(|| format!("pulling {}", self.image))?;
        println!("Digest: {}", img.manifest_desc.digest());
        println!(
            "Status: downloaded {} ({})",
            img.name.as_deref().unwrap_or(&self.image),
            img.id()
        );
        Ok(ExitCode::SUCCESS)
    }
}

impl PushArgs {
    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let st = store(global)?;
        let dest = self
            .destination
            .clone()
            .unwrap_or_else(|| self.image.clone());
        let bars = Bars::new();
        let d = registry::push(&st, &self.image, &dest, options(self.insecure), &bars)
            .with_context(|| format!("pushing {} to {dest}", self.image))?;
        println!("{dest}: digest: {d}");
        Ok(ExitCode::SUCCESS)
    }
}

impl LoginArgs {
    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let username = match self.username {
            Some(u) => u,
            None => anyhow::bail!("--username is required"),
        };
        anyhow::ensure!(
            self.password_stdin,
            "pass the password on stdin with --password-stdin"
        );
        let mut password = String::new();
        std::io::stdin().lock().read_line(&mut password)?;
        let password = password.trim_end_matches(['\n', '\r']).to_string();
        let root = global.paths().root;
        let c = Credentials { username, password };
        registry::login(&root, &self.registry, &c, self.insecure)
            .with_context(|| format!("logging in to {}", self.registry))?;
        println!("Login Succeeded");
        Ok(ExitCode::SUCCESS)
    }
}

impl ToDiskArgs {
    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let st = store(global)?;
        let img = st.resolve(&self.image)?;
        let size = match &self.size {
            Some(s) => Some(
                corral_image::disk::parse_size(s)
                    .with_context(|| format!("--size {s}: expected e.g. 512M or 2G"))?,
            ),
            None => None,
        };
        let n = corral_image::disk::to_disk(&st, &img, &self.output, size)?;
        println!("{}: ext4, {}", self.output.display(), human_size(n));
        Ok(ExitCode::SUCCESS)
    }
}
