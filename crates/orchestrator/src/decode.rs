//! Typed decoding of a (possibly interpolated) YAML tree: errors carry the key path and line,
//! keys nobody reads become warnings naming the key (except `x-` extension keys).

use serde::de::DeserializeOwned;

use crate::error::ManifestError;
use crate::model::Warning;

/// Finds the line of a key path.
pub(crate) type LineOf<'a> = &'a dyn Fn(&[String]) -> Option<usize>;

fn ignored_segments(path: &serde_ignored::Path<'_>, out: &mut Vec<String>) {
    use serde_ignored::Path;
    match path {
        Path::Root => {}
        Path::Seq { parent, index } => {
            ignored_segments(parent, out);
            out.push(index.to_string());
        }
        Path::Map { parent, key } => {
            ignored_segments(parent, out);
            out.push(key.clone());
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_segments(parent, out),
    }
}

fn error_segments(path: &serde_path_to_error::Path) -> Vec<String> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|s| match s {
            Segment::Seq { index } => Some(index.to_string()),
            Segment::Map { key } => Some(key.clone()),
            Segment::Enum { variant } => Some(variant.clone()),
            Segment::Unknown => None,
        })
        .collect()
}

/// Decodes `value` as `T`.
pub(crate) fn decode<T: DeserializeOwned>(
    value: serde_yaml::Value,
    file: &str,
    prefix: &[String],
    line_of: LineOf<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<T, ManifestError> {
    let mut ignored: Vec<Vec<String>> = Vec::new();
    let mut on_ignored = |p: serde_ignored::Path<'_>| {
        let mut segs = Vec::new();
        ignored_segments(&p, &mut segs);
        ignored.push(segs);
    };
    let de = serde_ignored::Deserializer::new(value, &mut on_ignored);
    let result: Result<T, _> = serde_path_to_error::deserialize(de);
    match result {
        Ok(v) => {
            for segs in ignored {
                if segs.last().is_some_and(|k| k.starts_with("x-")) {
                    continue;
                }
                let full: Vec<String> = prefix.iter().cloned().chain(segs).collect();
                warnings.push(Warning {
                    file: file.to_string(),
                    line: line_of(&full),
                    path: full.join("."),
                    message: "unknown key, ignored".into(),
                });
            }
            Ok(v)
        }
        Err(e) => {
            let full: Vec<String> = prefix
                .iter()
                .cloned()
                .chain(error_segments(e.path()))
                .collect();
            Err(ManifestError::Invalid {
                file: file.to_string(),
                line: line_of(&full),
                path: if full.is_empty() {
                    "(top level)".into()
                } else {
                    full.join(".")
                },
                message: e.into_inner().to_string(),
            })
        }
    }
}

/// An `Invalid` error for a path found during conversion.
pub(crate) fn invalid(
    file: &str,
    path: &[String],
    line_of: LineOf<'_>,
    message: impl Into<String>,
) -> ManifestError {
    ManifestError::Invalid {
        file: file.to_string(),
        path: path.join("."),
        line: line_of(path),
        message: message.into(),
    }
}
