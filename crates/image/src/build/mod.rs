//! The Containerfile builder: parser, build cache, context handling, COPY/ADD layers, RUN
//! through a `RunStep` executor (implemented outside this crate, so the image crate never
//! depends on the OCI runtime), and the step driver with Docker-style output and timings.

pub mod cache;
pub mod context;
mod copy;
pub mod diff;
mod mount_points;
pub mod parser;
mod run;
mod steps;
pub mod user;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use oci_spec::image::ImageConfiguration;
use sha2::{Digest as _, Sha256};

use crate::commit::LayerRef;
use crate::extract::ExtractError;
use crate::rootfs::RootfsError;
use crate::store::{Image, ImageStore, StoreError};
use cache::{BuildCache, CacheEntry};
use context::Context;
use parser::{Instruction, ParseError};

/// What a RUN step asks the executor to do: run `argv` in the mounted `rootfs` and wait.
#[derive(Debug)]
pub struct RunRequest<'a> {
    /// The merged root filesystem (writable; changes become the step's layer).
    pub rootfs: &'a Path,
    /// The command (already wrapped in the shell for shell form).
    pub argv: &'a [String],
    /// `KEY=VALUE` environment (image ENV plus build args).
    pub env: &'a [String],
    /// Working directory inside the rootfs.
    pub cwd: &'a str,
    /// `USER` (`name`, `uid`, `uid:gid`, or empty for root).
    pub user: &'a str,
}

/// Runs RUN steps in a container. The CLI implements it with the OCI runtime.
pub trait RunStep {
    /// Runs the command to completion, streaming its output (stdout and stderr) to `out` as
    /// it comes; an error message if it could not run or exited non-zero.
    fn run(&self, req: &RunRequest<'_>, out: &mut dyn Write) -> Result<(), String>;
}

/// Failures of a build.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Containerfile does not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A problem with the context or a COPY/ADD source.
    #[error("{0}")]
    Context(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Preparing a RUN rootfs or a stage's layers failed.
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    /// A step failed.
    #[error("step {step} (line {line}) `{text}`: {message}")]
    Step {
        /// 1-based step number.
        step: usize,
        /// Containerfile line.
        line: usize,
        /// The instruction.
        text: String,
        /// What went wrong.
        message: String,
    },
    /// Unpacking an ADD tarball failed.
    #[error("ADD: {0}")]
    Extract(#[from] ExtractError),
}

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The Containerfile text.
    pub containerfile: String,
    /// Tags for the result (`name:tag`, already normalised).
    pub tags: Vec<String>,
    /// `--build-arg K=V`.
    pub build_args: HashMap<String, String>,
    /// Stop after this stage.
    pub target: Option<String>,
    /// Ignore the layer cache.
    pub no_cache: bool,
}

/// The result of a build.
#[derive(Debug)]
pub struct BuildOutcome {
    /// The image (tagged with the first tag, if any).
    pub image: Image,
    /// Steps served from the cache.
    pub cached_steps: usize,
    /// Steps executed.
    pub executed_steps: usize,
}

pub(crate) struct Stage {
    alias: Option<String>,
    key: String,
    state: CacheEntry,
}

/// The driver's per-build state shared by the step implementations.
pub(crate) struct Builder<'a> {
    pub(crate) store: &'a ImageStore,
    pub(crate) ctx: Context,
    pub(crate) executor: Option<&'a dyn RunStep>,
    pub(crate) stages: Vec<Stage>,
    pub(crate) flattened: HashMap<String, tempfile::TempDir>,
}

fn key_of(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Builds an image from `opts.containerfile` with `context_dir` as the context.
pub fn build(
    store: &ImageStore,
    context_dir: &Path,
    opts: &BuildOptions,
    executor: Option<&dyn RunStep>,
    out: &mut dyn Write,
) -> Result<BuildOutcome, BuildError> {
    let file = parser::parse(&opts.containerfile)?;
    let last = match &opts.target {
        None => file.stages.len() - 1,
        Some(t) => file
            .stages
            .iter()
            .position(|s| matches!(&s[0].instruction, Instruction::From { alias: Some(a), .. } if a.eq_ignore_ascii_case(t)))
            .ok_or_else(|| BuildError::Context(format!("--target {t}: no stage has that name")))?,
    };
    let total: usize = file.stages[..=last].iter().map(Vec::len).sum();
    let cache = BuildCache::open(store)?;
    let mut b = Builder {
        store,
        ctx: Context::open(context_dir)?,
        executor,
        stages: Vec::new(),
        flattened: HashMap::new(),
    };
    let global: HashMap<String, String> = file
        .global_args
        .iter()
        .filter_map(|(k, d)| {
            opts.build_args
                .get(k)
                .cloned()
                .or_else(|| d.clone())
                .map(|v| (k.clone(), v))
        })
        .collect();
    let (mut n, mut cached, mut executed) = (0, 0, 0);
    for stage in &file.stages[..=last] {
        let mut args: HashMap<String, String> = HashMap::new();
        let mut cur: Option<Stage> = None;
        for step in stage {
            n += 1;
            let started = Instant::now();
            let fail = |message: String| BuildError::Step {
                step: n,
                line: step.line,
                text: step.text.clone(),
                message,
            };
            let _ = writeln!(out, "STEP {n}/{total}: {}", step.text);
            if let Instruction::From { image, alias } = &step.instruction {
                let image = parser::expand(image, &|k| global.get(k).cloned()).map_err(fail)?;
                let (key, state) = b.base(&image).map_err(|e| match e {
                    BuildError::Context(m) => fail(m),
                    other => other,
                })?;
                let _ = writeln!(out, " ---> {}", &key[..12]);
                cur = Some(Stage {
                    alias: alias.clone(),
                    key,
                    state,
                });
                continue;
            }
            let st = cur.as_mut().expect("a stage starts with FROM");
            if let Instruction::Arg(k, default) = &step.instruction {
                let v = opts
                    .build_args
                    .get(k)
                    .cloned()
                    .or_else(|| default.clone())
                    .or_else(|| global.get(k).cloned());
                if let Some(v) = v {
                    args.insert(k.clone(), v);
                }
            }
            let env = steps::env_map(&st.state.config);
            let lookup = |k: &str| env.get(k).cloned().or_else(|| args.get(k).cloned());
            let inputs = b
                .inputs(step, &lookup, &st.state, &args)
                .map_err(|e| match e {
                    BuildError::Context(m) => fail(m),
                    other => other,
                })?;
            let key = key_of(&[&st.key, &step.text, &inputs]);
            let hit = if opts.no_cache {
                None
            } else {
                cache.get(store, &key)
            };
            let next = match hit {
                Some(e) => {
                    cached += 1;
                    let _ = writeln!(out, " ---> Using cache");
                    e
                }
                None => {
                    executed += 1;
                    let e =
                        b.execute(step, &lookup, &st.state, &args, out)
                            .map_err(|e| match e {
                                BuildError::Context(m) => fail(m),
                                other => other,
                            })?;
                    cache.put(&key, &e)?;
                    e
                }
            };
            st.key = key;
            st.state = next;
            let _ = writeln!(
                out,
                " ---> {} ({:.2}s)",
                &st.key[..12],
                started.elapsed().as_secs_f64()
            );
        }
        b.stages.push(cur.expect("every stage has FROM"));
    }
    let fin = b.stages.pop().expect("at least one stage");
    let image = crate::commit::commit_image(
        store,
        fin.state.config.clone(),
        &fin.state.layers,
        opts.tags.first().map(String::as_str),
    )?;
    for t in opts.tags.iter().skip(1) {
        store.set_tag(t, &image.manifest_desc)?;
    }
    let _ = writeln!(out, "Successfully built {}", &image.id().digest()[..12]);
    for t in &opts.tags {
        let _ = writeln!(out, "Successfully tagged {t}");
    }
    Ok(BuildOutcome {
        image,
        cached_steps: cached,
        executed_steps: executed,
    })
}

impl Builder<'_> {
    /// The starting state of a stage: scratch, an earlier stage, or a local image.
    fn base(&self, image: &str) -> Result<(String, CacheEntry), BuildError> {
        if image.eq_ignore_ascii_case("scratch") {
            let mut config = crate::commit::base_config();
            config.set_created(None);
            return Ok((
                key_of(&["scratch"]),
                CacheEntry {
                    layers: Vec::new(),
                    config,
                },
            ));
        }
        if let Some(s) = self.find_stage(image) {
            return Ok((s.key.clone(), s.state.clone()));
        }
        let img = self.store.resolve(image).map_err(|e| match e {
            StoreError::NoSuchImage(_) => BuildError::Context(format!(
                "base image {image} is not in the local store (pull, load or import it first)"
            )),
            other => other.into(),
        })?;
        Ok((
            key_of(&["image", img.manifest_desc.digest().as_ref()]),
            state_of(&img),
        ))
    }

    pub(crate) fn find_stage(&self, name: &str) -> Option<&Stage> {
        match name.parse::<usize>() {
            Ok(i) => self.stages.get(i),
            Err(_) => self.stages.iter().find(|s| {
                s.alias
                    .as_deref()
                    .is_some_and(|a| a.eq_ignore_ascii_case(name))
            }),
        }
    }

    /// A digest of everything a step depends on besides its text and parent.
    fn inputs(
        &mut self,
        step: &parser::Step,
        vars: &dyn Fn(&str) -> Option<String>,
        state: &CacheEntry,
        args: &HashMap<String, String>,
    ) -> Result<String, BuildError> {
        match &step.instruction {
            Instruction::Copy(spec) | Instruction::Add(spec) => {
                let plan = self.plan_copy(
                    spec,
                    vars,
                    state,
                    matches!(step.instruction, Instruction::Add(_)),
                )?;
                let mut hw = crate::digest::HashingWriter::new(std::io::sink());
                copy::write_tar(&plan, &mut hw)
                    .map_err(|e| BuildError::Context(format!("reading sources: {e}")))?;
                Ok(hw.finish().0.to_string())
            }
            Instruction::Run(_) => {
                let mut a: Vec<_> = args.iter().map(|(k, v)| format!("{k}={v}")).collect();
                a.sort();
                Ok(a.join("\n"))
            }
            _ => {
                let _ = (vars, state);
                Ok(String::new())
            }
        }
    }

    fn execute(
        &mut self,
        step: &parser::Step,
        vars: &dyn Fn(&str) -> Option<String>,
        state: &CacheEntry,
        args: &HashMap<String, String>,
        out: &mut dyn Write,
    ) -> Result<CacheEntry, BuildError> {
        let mut next = state.clone();
        let now = crate::commit::now_rfc3339();
        next.config.set_created(Some(now.clone()));
        let layer: Option<LayerRef> = match &step.instruction {
            Instruction::Copy(spec) | Instruction::Add(spec) => {
                let plan = self.plan_copy(
                    spec,
                    vars,
                    state,
                    matches!(step.instruction, Instruction::Add(_)),
                )?;
                let mut lw = crate::commit::LayerWriter::new(self.store)?;
                copy::write_tar(&plan, &mut lw)
                    .map_err(|e| BuildError::Context(format!("writing layer: {e}")))?;
                Some(lw.finish()?)
            }
            Instruction::Run(cmd) => Some(self.run_step(cmd, state, args, out)?),
            other => {
                steps::apply_config(&mut next.config, other, vars)?;
                None
            }
        };
        let mut history = next.config.history().clone().unwrap_or_default();
        history.push(crate::commit::history(&step.text, layer.is_none(), &now));
        next.config.set_history(Some(history));
        if let Some(l) = layer {
            next.layers.push(l);
        }
        Ok(next)
    }
}

/// The builder state of an existing image.
pub(crate) fn state_of(img: &Image) -> CacheEntry {
    let layers = img
        .manifest
        .layers()
        .iter()
        .zip(img.config.rootfs().diff_ids())
        .map(|(d, diff)| LayerRef {
            descriptor: d.clone(),
            diff_id: diff.clone(),
        })
        .collect();
    let config: ImageConfiguration = img.config.clone();
    CacheEntry { layers, config }
}
