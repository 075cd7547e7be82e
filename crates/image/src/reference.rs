//! Image references: `[REGISTRY/]REPOSITORY[:TAG][@DIGEST]`, with `latest` as the default tag.

use std::fmt;

/// The tag used when a reference names none.
pub const DEFAULT_TAG: &str = "latest";

/// A reference that could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct ReferenceError {
    /// The text as given.
    pub reference: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `host[:port]` when the first component names a registry.
    pub registry: Option<String>,
    /// The repository path, e.g. `library/busybox` or `busybox`.
    pub repository: String,
    /// The tag (`latest` when none was given and no digest either).
    pub tag: Option<String>,
    /// A `sha256:…` digest pinned with `@`.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses `[REGISTRY/]REPOSITORY[:TAG][@DIGEST]`.
    pub fn parse(s: &str) -> Result<ImageRef, ReferenceError> {
        let err = |reason| ReferenceError {
            reference: s.to_string(),
            reason,
        };
        if s.is_empty() || s.len() > 255 {
            return Err(err("empty or longer than 255 characters"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                if crate::digest::parse_sha256(d).is_none() {
                    return Err(err("the digest after @ is not sha256:<64 hex digits>"));
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(rest[last_slash + i + 1..].to_string()),
            ),
            None => (rest, None),
        };
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                && !t.starts_with(['.', '-']);
            if !ok {
                return Err(err(
                    "a tag is 1-128 of [A-Za-z0-9_.-], not starting with . or -",
                ));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (Some(first.to_string()), rest.to_string())
            }
            _ => (None, name.to_string()),
        };
        let repo_ok = !repository.is_empty()
            && repository.split('/').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    })
                    && c.as_bytes()[0].is_ascii_alphanumeric()
            });
        if !repo_ok {
            return Err(err(
                "a repository is lowercase [a-z0-9._-] components separated by /",
            ));
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            _ => tag,
        };
        Ok(ImageRef {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The name without tag or digest: `[REGISTRY/]REPOSITORY`.
    pub fn name(&self) -> String {
        match &self.registry {
            Some(r) => format!("{r}/{}", self.repository),
            None => self.repository.clone(),
        }
    }

    /// The tag or digest the registry is asked for.
    pub fn reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or(DEFAULT_TAG)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_shapes() {
        let r = ImageRef::parse("busybox").unwrap();
        assert_eq!((r.registry, r.tag.as_deref()), (None, Some("latest")));
        let r = ImageRef::parse("localhost:5000/team/app:v1").unwrap();
        assert_eq!(r.registry.as_deref(), Some("localhost:5000"));
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.to_string(), "localhost:5000/team/app:v1");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("127.0.0.1:5000/x@{d}")).unwrap();
        assert_eq!((r.tag.as_deref(), r.reference()), (None, d.as_str()));
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "",
            "UPPER",
            "a//b",
            "a:",
            "a:-x",
            "a@sha256:zz",
            "/a",
            "a/../b",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
