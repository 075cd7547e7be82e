//! The build context: the directory COPY/ADD read from, minus what `.containerignore` (or
//! `.dockerignore`) excludes. Patterns are globs relative to the context; `!` re-includes; the
//! last matching pattern wins; a pattern matching a directory excludes everything below it.

use std::fs;
use std::path::{Component, Path, PathBuf};

use super::BuildError;

/// A build context directory with its ignore rules.
#[derive(Debug, Clone)]
pub struct Context {
    root: PathBuf,
    rules: Vec<(bool, glob::Pattern)>,
}

impl Context {
    /// Opens a context directory and reads its ignore file.
    pub fn open(dir: &Path) -> Result<Context, BuildError> {
        let root = fs::canonicalize(dir)
            .map_err(|e| BuildError::Context(format!("{}: {e}", dir.display())))?;
        if !root.is_dir() {
            return Err(BuildError::Context(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        let mut rules = Vec::new();
        for name in [".containerignore", ".dockerignore"] {
            if let Ok(text) = fs::read_to_string(root.join(name)) {
                for l in text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                {
                    let (neg, pat) = match l.strip_prefix('!') {
                        Some(p) => (true, p.trim()),
                        None => (false, l),
                    };
                    let pat = pat
                        .trim_start_matches("./")
                        .trim_start_matches('/')
                        .trim_end_matches('/');
                    let p = glob::Pattern::new(pat).map_err(|e| {
                        BuildError::Context(format!("{name}: bad pattern {pat:?}: {e}"))
                    })?;
                    rules.push((neg, p));
                }
                break;
            }
        }
        Ok(Context { root, rules })
    }

    /// The context directory (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether a context-relative path is excluded.
    pub fn is_ignored(&self, rel: &Path) -> bool {
        let opts = glob::MatchOptions {
            require_literal_separator: true,
            ..Default::default()
        };
        let mut ignored = false;
        for (neg, p) in &self.rules {
            let hit = rel
                .ancestors()
                .filter(|a| !a.as_os_str().is_empty())
                .any(|a| p.matches_path_with(a, opts));
            if hit {
                ignored = !neg;
            }
        }
        ignored
    }

    /// Expands a COPY/ADD source (glob allowed) to existing, non-ignored context paths.
    pub fn sources(&self, src: &str) -> Result<Vec<PathBuf>, BuildError> {
        let rel = clean_relative(src)
            .ok_or_else(|| BuildError::Context(format!("source {src:?} is outside the context")))?;
        if rel.as_os_str().is_empty() {
            return Ok(vec![self.root.clone()]);
        }
        let pattern = self.root.join(&rel);
        let pat = pattern
            .to_str()
            .ok_or_else(|| BuildError::Context(format!("{src:?} is not UTF-8")))?;
        let escaped_root = glob::Pattern::escape(self.root.to_str().unwrap_or_default());
        let pat = format!(
            "{escaped_root}{}",
            &pat[self.root.to_str().unwrap_or_default().len()..]
        );
        let mut out = Vec::new();
        for p in
            glob::glob(&pat).map_err(|e| BuildError::Context(format!("bad glob {src:?}: {e}")))?
        {
            let p = p.map_err(|e| BuildError::Context(e.to_string()))?;
            let r = p.strip_prefix(&self.root).unwrap_or(&p).to_path_buf();
            if !self.is_ignored(&r) {
                out.push(p);
            }
        }
        out.sort();
        if out.is_empty() {
            return Err(BuildError::Context(format!(
                "COPY/ADD source {src:?}: no such file in the context"
            )));
        }
        Ok(out)
    }

    /// The context-relative path of an absolute path inside the context.
    pub fn relative<'a>(&self, p: &'a Path) -> &'a Path {
        p.strip_prefix(&self.root).unwrap_or(p)
    }
}

/// Normalises a relative path lexically; `None` if it climbs above its start.
pub fn clean_relative(p: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_rules_and_globs() {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "a.txt",
            "b.txt",
            "keep.log",
            "x.log",
            "target/big",
            "src/main.rs",
        ] {
            let p = d.path().join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, f).unwrap();
        }
        fs::write(d.path().join(".dockerignore"), "*.log\n!keep.log\ntarget\n").unwrap();
        let c = Context::open(d.path()).unwrap();
        assert!(c.is_ignored(Path::new("x.log")));
        assert!(!c.is_ignored(Path::new("keep.log")));
        assert!(c.is_ignored(Path::new("target/big")));
        assert!(!c.is_ignored(Path::new("src/main.rs")));
        assert_eq!(c.sources("*.txt").unwrap().len(), 2);
        assert_eq!(c.sources("*.log").unwrap().len(), 1);
        assert!(c.sources("../etc/passwd").is_err());
        assert!(c.sources("nope").is_err());
        assert_eq!(c.sources(".").unwrap(), vec![c.root().to_path_buf()]);
    }
}
