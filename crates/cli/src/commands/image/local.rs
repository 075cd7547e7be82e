//! The verbs that work on the local store only: ls, inspect, import, load, save, export, tag,
//! rm, prune.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use corral_image::archive::{self, ArchiveFormat};
use corral_image::{gc, ImageRef, ImageStore};

use super::{
    ExportArgs, ImageLsArgs, ImageRefArgs, ImageRmArgs, ImportArgs, LoadArgs, PruneArgs, SaveArgs,
    TagArgs,
};
use crate::cli::GlobalArgs;

/// Opens the image store under the root dir.
pub fn store(global: &GlobalArgs) -> anyhow::Result<ImageStore> {
    let root = global.paths().root;
    ImageStore::open(&root)
        .with_context(|| format!("opening the image store under {}", root.display()))
}

/// Normalises a user-given NAME[:TAG] to the stored `name:tag`.
pub fn normalise(name: &str) -> anyhow::Result<String> {
    let r = ImageRef::parse(name)?;
    anyhow::ensure!(r.digest.is_none(), "{name}: a tag cannot carry a digest");
    Ok(format!("{}:{}", r.name(), r.reference()))
}

fn open_input(p: &Path) -> anyhow::Result<Box<dyn Read>> {
    if p == Path::new("-") {
        return Ok(Box::new(io::stdin().lock()));
    }
    let f = File::open(p).with_context(|| format!("opening {}", p.display()))?;
    Ok(Box::new(BufReader::with_capacity(256 * 1024, f)))
}

/// Human size like Docker's: 4.26MB.
pub fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
            + units[i]
    }
}

impl ImageLsArgs {
    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let list = store(global)?.list()?;
        match self.format.as_str() {
            "json" => println!("{}", serde_json::to_string_pretty(&list)?),
            "table" => {
                let w = list
                    .iter()
                    .map(|i| i.repository.len())
                    .max()
                    .unwrap_or(0)
                    .max(10);
                let tw = list.iter().map(|i| i.tag.len()).max().unwrap_or(0).max(3);
                println!(
                    "{:<w$}   {:<tw$}   {:<12}   {:<16}   SIZE",
                    "REPOSITORY", "TAG", "IMAGE ID", "CREATED"
                );
                for i in list {
                    let id = i.id.trim_start_matches("sha256:");
                    println!(
                        "{:<w$}   {:<tw$}   {:<12}   {:<16}   {}",
                        i.repository,
                        i.tag,
                        &id[..12.min(id.len())],
                        i.created
                            .as_deref()
                            .map_or_else(|| "N/A".into(), crate::commands::api_client::ago),
                        human_size(i.size)
                    );
                }
            }
            other => anyhow::bail!("unknown --format {other:?} (table or json)"),
        }
        Ok(ExitCode::SUCCESS)
    }
}

impl ImageRefArgs {
    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let st = store(global)?;
        let img = st.resolve(&self.image)?;
        let config: serde_json::Value = serde_json::from_slice(&st.read_blob(img.id())?)?;
        let manifest: serde_json::Value =
            serde_json::from_slice(&st.read_blob(img.manifest_desc.digest())?)?;
        let out = serde_json::json!({
            "Id": img.id().to_string(),
            "RepoTags": st.tags_of(img.manifest_desc.digest())?,
            "Digest": img.manifest_desc.digest().to_string(),
            "Size": img.size(),
            "Manifest": manifest,
            "Config": config,
        });
        println!("{}", serde_json::to_string_pretty(&[out])?);
        Ok(ExitCode::SUCCESS)
    }
}

impl ImportArgs {
    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let name = normalise(&self.name)?;
        let st = store(global)?;
        let cmd = (!self.cmd.is_empty()).then_some(self.cmd);
        let img = corral_image::import::import_rootfs(&st, open_input(&self.rootfs)?, &name, cmd)
            .with_context(|| format!("importing {}", self.rootfs.display()))?;
        println!("{}", img.id());
        Ok(ExitCode::SUCCESS)
    }
}

impl LoadArgs {
    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let st = store(global)?;
        let tags = archive::load(&st, open_input(&self.input)?)
            .with_context(|| format!("loading {}", self.input.display()))?;
        for t in tags {
            println!("Loaded image: {t}");
        }
        Ok(ExitCode::SUCCESS)
    }
}

impl SaveArgs {
    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let st = store(global)?;
        let format: ArchiveFormat = self.format.parse()?;
        let images = self
            .images
            .iter()
            .map(|i| st.resolve(i))
            .collect::<Result<Vec<_>, _>>()?;
        write_output(&self.output, |w| {
            Ok(archive::save(&st, &images, format, w)?)
        })
    }
}

/// Writes to a temp file beside `out` and renames it into place (or streams to stdout for `-`).
pub fn write_output(
    out: &Path,
    f: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>,
) -> anyhow::Result<ExitCode> {
    if out == Path::new("-") {
        let mut w = BufWriter::new(io::stdout().lock());
        f(&mut w)?;
        w.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    {
        let mut w = BufWriter::with_capacity(256 * 1024, tmp.as_file());
        f(&mut w)?;
        w.flush()?;
    }
    tmp.persist(out)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(ExitCode::SUCCESS)
}

impl ExportArgs {
    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let st = store(global)?;
        let img = st.resolve(&self.image)?;
        write_output(&self.output, |w| Ok(archive::export(&st, &img, w)?))
    }
}

impl TagArgs {
    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let st = store(global)?;
        let img = st.resolve(&self.source)?;
        st.set_tag(&normalise(&self.target)?, &img.manifest_desc)?;
        Ok(ExitCode::SUCCESS)
    }
}

impl ImageRmArgs {
    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let st = store(global)?;
        let mut failed = false;
        for i in &self.images {
            match gc::remove_image(&st, i, self.force) {
                Ok(r) => {
                    for t in r.untagged {
                        println!("Untagged: {t}");
                    }
                    if let Some(id) = r.deleted {
                        println!("Deleted: {id}");
                    }
                }
                Err(e) => {
                    eprintln!("corral: error: {e}");
                    failed = true;
                }
            }
        }
        Ok(if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    }
}

impl PruneArgs {
    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let st = store(global)?;
        let roots = corral_image::build_cache_roots(&st, self.cache)?;
        let r = gc::prune(&st, &roots)?;
        println!(
            "Deleted {} blobs, reclaimed {}",
            r.blobs.len(),
            human_size(r.bytes)
        );
        Ok(ExitCode::SUCCESS)
    }
}
