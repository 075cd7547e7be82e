//! COPY and ADD: a plan of (source, destination) pairs turned into a layer tar. Files land
//! owned by root (or `--chown`), with deterministic headers so an unchanged source tree hashes
//! the same and hits the cache. ADD unpacks local tarballs (safely) into the destination.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::context::{clean_relative, Context};
use super::parser::{expand, CopySpec};
use super::{BuildError, Builder, CacheEntry};
use crate::extract::{extract, ExtractPolicy};

pub(crate) struct CopyItem {
    src: PathBuf,
    dest: String,
    contents: bool,
    make_dest_dir: bool,
}

/// What one COPY/ADD writes.
pub(crate) struct CopyPlan {
    items: Vec<CopyItem>,
    uid: u64,
    gid: u64,
    chmod: Option<u32>,
    filter: Option<Context>,
    _unpacked: Vec<tempfile::TempDir>,
}

fn cerr(m: String) -> BuildError {
    BuildError::Context(m)
}

impl Builder<'_> {
    /// Resolves sources, destination and owner of a COPY/ADD.
    pub(crate) fn plan_copy(
        &mut self,
        spec: &CopySpec,
        vars: &dyn Fn(&str) -> Option<String>,
        state: &CacheEntry,
        is_add: bool,
    ) -> Result<CopyPlan, BuildError> {
        let x = |s: &str| expand(s, vars).map_err(cerr);
        let mut sources: Vec<PathBuf> = Vec::new();
        let mut filter = None;
        match &spec.from {
            Some(from) => {
                let root = self.flatten(&x(from)?)?;
                for s in &spec.sources {
                    sources.extend(stage_sources(&root, &x(s)?)?);
                }
            }
            None => {
                filter = Some(self.ctx.clone());
                for s in &spec.sources {
                    let s = x(s)?;
                    if is_add && (s.starts_with("http://") || s.starts_with("https://")) {
                        return Err(cerr(format!(
                            "ADD {s}: remote URLs are not supported; use RUN with a downloader"
                        )));
                    }
                    sources.extend(self.ctx.sources(&s)?);
                }
            }
        }
        let mut unpacked = Vec::new();
        if is_add {
            for s in sources.iter_mut() {
                if s.is_file() && is_tarball(s) {
                    let dir = tempfile::Builder::new()
                        .prefix(".add-")
                        .tempdir_in(self.store.layout_dir().join("ingest"))
                        .map_err(|e| cerr(e.to_string()))?;
                    let f = File::open(&*s).map_err(|e| cerr(format!("{}: {e}", s.display())))?;
                    let r = crate::layer::decompress_sniffed(io::BufReader::new(f))
                        .map_err(|e| cerr(e.to_string()))?;
                    let policy = ExtractPolicy {
                        same_owner: false,
                        ..Default::default()
                    };
                    extract(r, dir.path(), &policy)?;
                    *s = dir.path().to_path_buf();
                    unpacked.push(dir);
                    filter = None;
                }
            }
        }
        let workdir = state
            .config
            .config()
            .as_ref()
            .and_then(|c| c.working_dir().clone())
            .unwrap_or_else(|| "/".into());
        let dest_raw = x(&spec.dest)?;
        let joined = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            format!("{workdir}/{dest_raw}")
        };
        let dest = clean_relative(&joined)
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let layers = self.layer_dirs(state)?;
        let dest_is_dir = dest_raw.ends_with('/')
            || dest_raw == "."
            || sources.len() > 1
            || sources.first().is_some_and(|s| s.is_dir())
            || dest.is_empty()
            || dir_in_layers(&layers, &dest);
        let items = sources
            .into_iter()
            .map(|src| {
                if src.is_dir() {
                    CopyItem {
                        src,
                        dest: dest.clone(),
                        contents: true,
                        make_dest_dir: !dest.is_empty() && !dir_in_layers(&layers, &dest),
                    }
                } else {
                    let name = src
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let d = if dest_is_dir {
                        format!("{dest}/{name}").trim_start_matches('/').to_string()
                    } else {
                        dest.clone()
                    };
                    CopyItem {
                        src,
                        dest: d,
                        contents: false,
                        make_dest_dir: false,
                    }
                }
            })
            .collect();
        let (uid, gid) = match &spec.chown {
            Some(c) => resolve_owner(&layers, &x(c)?)?,
            None => (0, 0),
        };
        Ok(CopyPlan {
            items,
            uid,
            gid,
            chmod: spec.chmod,
            filter,
            _unpacked: unpacked,
        })
    }

    /// The extracted layer directories of a state, topmost first.
    pub(crate) fn layer_dirs(&self, state: &CacheEntry) -> Result<Vec<PathBuf>, BuildError> {
        state
            .layers
            .iter()
            .rev()
            .map(|l| Ok(crate::rootfs::extracted_layer(self.store, &l.descriptor)?))
            .collect()
    }

    /// A flattened copy of an earlier stage (or a local image) for COPY --from.
    fn flatten(&mut self, name: &str) -> Result<PathBuf, BuildError> {
        if let Some(d) = self.flattened.get(name) {
            return Ok(d.path().to_path_buf());
        }
        let state =
            match self.find_stage(name) {
                Some(s) => s.state.clone(),
                None => super::state_of(&self.store.resolve(name).map_err(|_| {
                    cerr(format!("COPY --from={name}: no such stage or local image"))
                })?),
            };
        let dir = tempfile::Builder::new()
            .prefix(".stage-")
            .tempdir_in(self.store.layout_dir().join("ingest"))
            .map_err(|e| cerr(e.to_string()))?;
        let policy = ExtractPolicy::default();
        for l in &state.layers {
            let c = crate::layer::Compression::from_media_type(l.descriptor.media_type())?;
            let r = crate::layer::decompress(
                io::BufReader::new(self.store.open_blob(l.descriptor.digest())?),
                c,
            )
            .map_err(|e| cerr(e.to_string()))?;
            extract(r, dir.path(), &policy)?;
        }
        let p = dir.path().to_path_buf();
        self.flattened.insert(name.to_string(), dir);
        Ok(p)
    }
}

fn stage_sources(root: &Path, src: &str) -> Result<Vec<PathBuf>, BuildError> {
    let rel = clean_relative(src)
        .ok_or_else(|| cerr(format!("source {src:?} climbs out of the stage")))?;
    let canon_root = fs::canonicalize(root).map_err(|e| cerr(e.to_string()))?;
    let pat = format!(
        "{}/{}",
        glob::Pattern::escape(&canon_root.to_string_lossy()),
        rel.to_string_lossy()
    );
    let mut out = Vec::new();
    for p in glob::glob(&pat).map_err(|e| cerr(format!("bad glob {src:?}: {e}")))? {
        let p = p.map_err(|e| cerr(e.to_string()))?;
        let parent = p
            .parent()
            .map(fs::canonicalize)
            .transpose()
            .map_err(|e| cerr(e.to_string()))?;
        if !parent.is_some_and(|pp| pp.starts_with(&canon_root)) {
            return Err(cerr(format!(
                "source {src:?} resolves outside the stage's filesystem"
            )));
        }
        out.push(p);
    }
    if out.is_empty() {
        return Err(cerr(format!("source {src:?}: no such file in the stage")));
    }
    Ok(out)
}

fn dir_in_layers(layers: &[PathBuf], rel: &str) -> bool {
    use std::os::unix::fs::FileTypeExt;
    for l in layers {
        if let Ok(m) = fs::symlink_metadata(l.join(rel)) {
            return m.is_dir() && !m.file_type().is_char_device();
        }
    }
    false
}

fn is_tarball(p: &Path) -> bool {
    let Ok(f) = File::open(p) else { return false };
    let Ok(mut r) = crate::layer::decompress_sniffed(io::BufReader::new(f)) else {
        return false;
    };
    let mut head = [0u8; 512];
    r.read_exact(&mut head).is_ok() && tar_checksum_ok(&head)
}

/// Whether a 512-byte block is a tar header: its checksum field matches its bytes.
fn tar_checksum_ok(h: &[u8; 512]) -> bool {
    let field = String::from_utf8_lossy(&h[148..156]);
    let Ok(want) = u32::from_str_radix(field.trim_matches(|c: char| c == '\0' || c == ' '), 8)
    else {
        return false;
    };
    let sum: u32 = h
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    h[0] != 0 && sum == want
}

fn lookup(layers: &[PathBuf], file: &str, name: &str) -> Option<(u64, u64)> {
    for l in layers {
        if let Ok(text) = fs::read_to_string(l.join(file)) {
            return text.lines().find_map(|line| {
                let f: Vec<&str> = line.split(':').collect();
                if f.first() != Some(&name) {
                    return None;
                }
                Some((
                    f.get(2)?.parse().ok()?,
                    f.get(3).and_then(|g| g.parse().ok()).unwrap_or(0),
                ))
            });
        }
    }
    None
}

fn resolve_owner(layers: &[PathBuf], spec: &str) -> Result<(u64, u64), BuildError> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, primary) = match u.parse::<u64>() {
        Ok(n) => (n, n),
        Err(_) => lookup(layers, "etc/passwd", u).ok_or_else(|| {
            cerr(format!(
                "--chown: user {u:?} not in the image's /etc/passwd"
            ))
        })?,
    };
    let gid = match g {
        None => primary,
        Some(g) => match g.parse::<u64>() {
            Ok(n) => n,
            Err(_) => lookup(layers, "etc/group", g)
                .map(|(id, _)| id)
                .ok_or_else(|| {
                    cerr(format!(
                        "--chown: group {g:?} not in the image's /etc/group"
                    ))
                })?,
        },
    };
    Ok((uid, gid))
}

/// Writes the plan as a tar with deterministic headers.
pub(crate) fn write_tar(plan: &CopyPlan, out: impl Write) -> io::Result<()> {
    let mut tar = tar::Builder::new(out);
    for item in &plan.items {
        if item.contents {
            if item.make_dest_dir {
                append(&mut tar, plan, &item.src, &item.dest)?;
            }
            walk(&mut tar, plan, &item.src, Path::new(""), &item.dest)?;
        } else {
            append(&mut tar, plan, &item.src, &item.dest)?;
        }
    }
    tar.into_inner()?.flush()
}

fn walk<W: Write>(
    tar: &mut tar::Builder<W>,
    plan: &CopyPlan,
    base: &Path,
    rel: &Path,
    dest: &str,
) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(base.join(rel))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let r = rel.join(e.file_name());
        let path = e.path();
        if let Some(ctx) = &plan.filter {
            if ctx.is_ignored(ctx.relative(&path)) {
                continue;
            }
        }
        let name = if dest.is_empty() {
            r.to_string_lossy().into_owned()
        } else {
            format!("{dest}/{}", r.to_string_lossy())
        };
        append(tar, plan, &path, &name)?;
        if e.file_type()?.is_dir() {
            walk(tar, plan, base, &r, dest)?;
        }
    }
    Ok(())
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    plan: &CopyPlan,
    src: &Path,
    name: &str,
) -> io::Result<()> {
    let meta = fs::symlink_metadata(src)?;
    let mut h = tar::Header::new_gnu();
    h.set_metadata_in_mode(&meta, tar::HeaderMode::Deterministic);
    h.set_uid(plan.uid);
    h.set_gid(plan.gid);
    if let Some(m) = plan.chmod {
        if !meta.file_type().is_symlink() {
            h.set_mode(m);
        }
    }
    let ft = meta.file_type();
    if ft.is_symlink() {
        tar.append_link(&mut h, name, fs::read_link(src)?)
    } else if ft.is_dir() {
        h.set_size(0);
        tar.append_data(&mut h, name, io::empty())
    } else if ft.is_file() {
        tar.append_data(&mut h, name, File::open(src)?)
    } else {
        Ok(())
    }
}
