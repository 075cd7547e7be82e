//! `corral image …` and `corral build`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

mod build;
pub(crate) mod local;
mod remote;
mod run_step;

/// Image verbs.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build an image from a Containerfile.
    Build(BuildArgs),
    /// List images (repository, tag, id, created, size).
    Ls(ImageLsArgs),
    /// Show an image's manifest and config as JSON.
    Inspect(ImageRefArgs),
    /// Pull an image from a registry.
    Pull(PullArgs),
    /// Push an image to a registry.
    Push(PushArgs),
    /// Import a plain root filesystem tarball as an image.
    Import(ImportArgs),
    /// Load images from a docker-archive or OCI archive tarball.
    Load(LoadArgs),
    /// Save images to a docker-archive or OCI archive tarball.
    Save(SaveArgs),
    /// Export an image's flattened root filesystem as a tarball.
    Export(ExportArgs),
    /// Make an ext4 root disk for a microVM from an image.
    ToDisk(ToDiskArgs),
    /// Give an image another name.
    Tag(TagArgs),
    /// Remove images.
    Rm(ImageRmArgs),
    /// Remove blobs no image references.
    Prune(PruneArgs),
    /// Store credentials for a registry.
    Login(LoginArgs),
}

/// `corral build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Name and tag of the result, NAME[:TAG].
    #[arg(short, long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// The Containerfile (default: CONTEXT/Containerfile, then CONTEXT/Dockerfile).
    #[arg(short, long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Set a build argument (K=V). Repeatable.
    #[arg(long = "build-arg", value_name = "K=V")]
    pub build_args: Vec<String>,
    /// Build up to this stage.
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use the layer cache.
    #[arg(long = "no-cache")]
    pub no_cache: bool,
    /// The network of RUN steps: `none` (a private namespace with loopback, the default) or
    /// `host`.
    #[arg(long, value_name = "MODE", default_value = "none")]
    pub network: String,
    /// The build context directory.
    pub context: PathBuf,
}

/// `corral image ls`.
#[derive(Debug, Args)]
pub struct ImageLsArgs {
    /// Output format: table or json.
    #[arg(long, default_value = "table")]
    pub format: String,
}

/// A command that names one image.
#[derive(Debug, Args)]
pub struct ImageRefArgs {
    /// NAME[:TAG] or image ID.
    pub image: String,
}

/// `corral image pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Allow plain HTTP (for registries on localhost).
    #[arg(long)]
    pub insecure: bool,
    /// REGISTRY/NAME[:TAG].
    pub image: String,
}

/// `corral image push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Allow plain HTTP (for registries on localhost).
    #[arg(long)]
    pub insecure: bool,
    /// Local image to push.
    pub image: String,
    /// Destination REGISTRY/NAME[:TAG] (default: the image's own name).
    pub destination: Option<String>,
}

/// `corral image import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A root filesystem tarball (plain, gzip or zstd); `-` reads stdin.
    pub rootfs: PathBuf,
    /// Default command of the image (default /bin/sh), e.g. --cmd /bin/sh --cmd -c --cmd 'x'.
    #[arg(long = "cmd", value_name = "ARG")]
    pub cmd: Vec<String>,
    /// NAME[:TAG] for the new image.
    pub name: String,
}

/// `corral image load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The archive to read (plain, gzip or zstd); `-` reads stdin.
    #[arg(short, long, value_name = "FILE")]
    pub input: PathBuf,
}

/// `corral image save`.
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// The archive to write.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Archive format: docker or oci.
    #[arg(long, default_value = "docker")]
    pub format: String,
    /// Images to save.
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// `corral image export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The image.
    pub image: String,
    /// The tarball to write.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
}

/// `corral image to-disk`.
#[derive(Debug, Args)]
pub struct ToDiskArgs {
    /// The image.
    pub image: String,
    /// The ext4 file to write.
    pub output: PathBuf,
    /// Disk size, e.g. 1G (default: content plus headroom).
    #[arg(long)]
    pub size: Option<String>,
}

/// `corral image tag`.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// The existing image.
    pub source: String,
    /// The new NAME[:TAG].
    pub target: String,
}

/// `corral image rm`.
#[derive(Debug, Args)]
pub struct ImageRmArgs {
    /// Remove even if a container uses it.
    #[arg(short, long)]
    pub force: bool,
    /// Images to remove.
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// `corral image prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Also drop the build cache (its layers are otherwise kept).
    #[arg(long)]
    pub cache: bool,
}

/// `corral image login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Registry host[:port].
    pub registry: String,
    /// User name.
    #[arg(short, long)]
    pub username: Option<String>,
    /// Read the password from stdin.
    #[arg(long = "password-stdin")]
    pub password_stdin: bool,
    /// Allow plain HTTP (for registries on localhost).
    #[arg(long)]
    pub insecure: bool,
}

impl ImageCommand {
    /// Run the verb.
    pub fn run(self, global: &crate::cli::GlobalArgs) -> anyhow::Result<std::process::ExitCode> {
        match self {
            ImageCommand::Build(args) => args.run(global),
            ImageCommand::Ls(args) => args.run(global),
            ImageCommand::Inspect(args) => args.run(global),
            ImageCommand::Pull(args) => args.run(global),
            ImageCommand::Push(args) => args.run(global),
            ImageCommand::Import(args) => args.run(global),
            ImageCommand::Load(args) => args.run(global),
            ImageCommand::Save(args) => args.run(global),
            ImageCommand::Export(args) => args.run(global),
            ImageCommand::ToDisk(args) => args.run(global),
            ImageCommand::Tag(args) => args.run(global),
            ImageCommand::Rm(args) => args.run(global),
            ImageCommand::Prune(args) => args.run(global),
            ImageCommand::Login(args) => args.run(global),
        }
    }
}
