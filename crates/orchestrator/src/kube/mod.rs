//! Kubernetes manifests (Pod, Deployment apps/v1 and extensions/v1beta1, Service ClusterIP /
//! NodePort / LoadBalancer, ConfigMap, Secret; multi-document YAML) into the desired-state
//! model. One apply is one namespace, which is the app.

mod convert;
pub mod raw;

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::decode::{decode, invalid};
use crate::error::ManifestError;
use crate::model::{App, Source, Warning};
use crate::yaml_pos::LineIndex;

pub use crate::compose::Parsed;

/// The annotation that picks a service's balancing algorithm.
pub const LB_ANNOTATION: &str = "corral.dev/lb";
/// The runtime class that runs replicas as microVMs.
pub const VM_RUNTIME_CLASS: &str = "corral-vm";

/// One manifest file's name and text.
#[derive(Debug, Clone)]
pub struct ManifestFile {
    /// The name used in messages.
    pub name: String,
    /// The YAML (one or more documents).
    pub text: String,
}

/// One decoded object with where it came from.
pub(crate) enum Object {
    Deployment(Box<raw::Deployment>),
    Pod(Box<raw::Pod>),
    Service(Box<raw::Service>),
    ConfigMap(raw::ConfigMap),
    Secret(raw::Secret),
}

/// Where an object came from, for messages.
pub(crate) struct Origin {
    pub(crate) file: String,
    pub(crate) doc: usize,
    pub(crate) index: std::rc::Rc<LineIndex>,
}

impl Origin {
    pub(crate) fn err(&self, path: &[&str], msg: impl Into<String>) -> ManifestError {
        let segs: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        invalid(
            &self.file,
            &segs,
            &|p: &[String]| self.index.line(self.doc, p),
            msg,
        )
    }

    pub(crate) fn warn(&self, path: &[&str], msg: impl Into<String>) -> Warning {
        let segs: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        Warning {
            file: self.file.clone(),
            line: self.index.line(self.doc, &segs),
            path: segs.join("."),
            message: msg.into(),
        }
    }
}

/// The manifest files named by `paths`: files as given, folders' `*.yaml`, `*.yml` and
/// `*.json` files in name order.
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ManifestError> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|source| ManifestError::Read {
            path: p.display().to_string(),
            source,
        })?;
        if meta.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|source| ManifestError::Read {
                    path: p.display().to_string(),
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.is_file()
                        && matches!(
                            f.extension().and_then(|e| e.to_str()),
                            Some("yaml" | "yml" | "json")
                        )
                })
                .collect();
            entries.sort();
            out.extend(entries);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Reads and parses manifest files and folders.
pub fn load(paths: &[PathBuf]) -> Result<Parsed, ManifestError> {
    let mut files = Vec::new();
    for p in collect_files(paths)? {
        let text = std::fs::read_to_string(&p).map_err(|source| ManifestError::Read {
            path: p.display().to_string(),
            source,
        })?;
        files.push(ManifestFile {
            name: p.display().to_string(),
            text,
        });
    }
    parse(&files)
}

fn decode_doc(
    value: serde_yaml::Value,
    origin: &Origin,
    warnings: &mut Vec<Warning>,
) -> Result<Option<Object>, ManifestError> {
    if value.is_null() {
        return Ok(None);
    }
    let kind = value.get("kind").and_then(|k| k.as_str()).map(String::from);
    let api = value
        .get("apiVersion")
        .and_then(|k| k.as_str())
        .map(String::from);
    let (Some(kind), Some(api)) = (kind, api) else {
        return Err(origin.err(&[], "a manifest needs `apiVersion` and `kind`"));
    };
    let line_of = |p: &[String]| origin.index.line(origin.doc, p);
    let file = origin.file.as_str();
    let obj = match (kind.as_str(), api.as_str()) {
        ("Deployment", "apps/v1" | "extensions/v1beta1" | "apps/v1beta1" | "apps/v1beta2") => {
            Object::Deployment(Box::new(decode(value, file, &[], &line_of, warnings)?))
        }
        ("Pod", "v1") => Object::Pod(Box::new(decode(value, file, &[], &line_of, warnings)?)),
        ("Service", "v1") => {
            Object::Service(Box::new(decode(value, file, &[], &line_of, warnings)?))
        }
        ("ConfigMap", "v1") => Object::ConfigMap(decode(value, file, &[], &line_of, warnings)?),
        ("Secret", "v1") => Object::Secret(decode(value, file, &[], &line_of, warnings)?),
        ("Deployment" | "Pod" | "Service" | "ConfigMap" | "Secret", _) => {
            return Err(origin.err(&["apiVersion"], format!("{kind} does not exist in {api}")))
        }
        _ => {
            return Err(origin.err(
                &["kind"],
                format!(
                    "kind {kind} is not supported (Deployment, Pod, Service, ConfigMap, Secret)"
                ),
            ))
        }
    };
    Ok(Some(obj))
}

/// Parses manifest files into one app (the namespace).
pub fn parse(files: &[ManifestFile]) -> Result<Parsed, ManifestError> {
    let mut warnings = Vec::new();
    let mut objects = Vec::new();
    for f in files {
        let index = std::rc::Rc::new(LineIndex::build(&f.text));
        for (doc, de) in serde_yaml::Deserializer::from_str(&f.text).enumerate() {
            let value = serde::Deserialize::deserialize(de).map_err(|e: serde_yaml::Error| {
                ManifestError::Syntax {
                    file: f.name.clone(),
                    line: e.location().map(|l| l.line()),
                    message: e.to_string(),
                }
            })?;
            let origin = Origin {
                file: f.name.clone(),
                doc,
                index: index.clone(),
            };
            if let Some(obj) = decode_doc(value, &origin, &mut warnings)? {
                objects.push((obj, origin));
            }
        }
    }
    if objects.is_empty() {
        return Err(ManifestError::Invalid {
            file: files
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            path: "(top level)".into(),
            line: None,
            message: "no Kubernetes objects found".into(),
        });
    }
    let namespace = namespace_of(&objects)?;
    let mut app = App::new(namespace, Source::Kubernetes);
    convert::into_app(objects, &mut app, &mut warnings)?;
    Ok(Parsed { app, warnings })
}

fn namespace_of(objects: &[(Object, Origin)]) -> Result<String, ManifestError> {
    let mut found: BTreeMap<String, &Origin> = BTreeMap::new();
    for (obj, origin) in objects {
        let meta = match obj {
            Object::Deployment(d) => &d.metadata,
            Object::Pod(p) => &p.metadata,
            Object::Service(s) => &s.metadata,
            Object::ConfigMap(c) => &c.metadata,
            Object::Secret(s) => &s.metadata,
        };
        let ns = meta.namespace.clone().unwrap_or_else(|| "default".into());
        found.entry(ns).or_insert(origin);
    }
    let all = found.keys().cloned().collect::<Vec<_>>().join(", ");
    if let Some((ns, origin)) = found.iter().nth(1) {
        return Err(origin.err(
            &["metadata", "namespace"],
            format!("one apply holds one namespace; found {all} ({ns} here)"),
        ));
    }
    Ok(found.into_keys().next().unwrap_or_else(|| "default".into()))
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
