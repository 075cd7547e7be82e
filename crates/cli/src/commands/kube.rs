//! `corral apply`, `delete` and `get`: Kubernetes manifests as desired state.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use corral_api::{AppChange, AppStatus, KubeRequest, ManifestText};

use super::api_client::{age, print_table, Api};
use crate::cli::GlobalArgs;

/// `corral apply -f`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A manifest file or a folder of them (multi-document YAML). Repeatable.
    #[arg(short, long = "filename", value_name = "FILE|DIR", required = true)]
    pub files: Vec<PathBuf>,
}

/// `corral delete -f`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// A manifest file or a folder of them. Repeatable.
    #[arg(short, long = "filename", value_name = "FILE|DIR", required = true)]
    pub files: Vec<PathBuf>,
}

/// `corral get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// deployments, pods or services.
    pub kind: String,
    /// Output format: table or json.
    #[arg(short, long, default_value = "table")]
    pub output: String,
}

fn read_manifests(paths: &[PathBuf]) -> anyhow::Result<Vec<ManifestText>> {
    let mut out = Vec::new();
    for p in corral_orchestrator::kube::collect_files(paths)? {
        out.push(ManifestText {
            name: p.display().to_string(),
            text: std::fs::read_to_string(&p)
                .with_context(|| format!("reading {}", p.display()))?,
        });
    }
    if out.is_empty() {
        bail!("no manifest files (*.yaml, *.yml, *.json) in the given folders");
    }
    Ok(out)
}

fn print_change(change: &AppChange) {
    for w in &change.warnings {
        eprintln!("warning: {w}");
    }
    for c in &change.changes {
        println!("{c}");
    }
}

impl ApplyArgs {
    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let req = KubeRequest {
            files: read_manifests(&self.files)?,
        };
        let api = Api::connect(global)?;
        let change = api.block_on(api.client.kube_apply(&req))?;
        print_change(&change);
        Ok(ExitCode::SUCCESS)
    }
}

impl DeleteArgs {
    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let req = KubeRequest {
            files: read_manifests(&self.files)?,
        };
        let api = Api::connect(global)?;
        let change = api.block_on(api.client.kube_delete(&req))?;
        print_change(&change);
        Ok(ExitCode::SUCCESS)
    }
}

/// What `corral get` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resource {
    Deployments,
    Pods,
    Services,
}

fn resource(kind: &str) -> anyhow::Result<Resource> {
    Ok(match kind {
        "deployments" | "deployment" | "deploy" => Resource::Deployments,
        "pods" | "pod" | "po" => Resource::Pods,
        "services" | "service" | "svc" => Resource::Services,
        other => bail!("unknown resource type {other:?} (deployments, pods or services)"),
    })
}

/// The rows of `corral get` in kubectl's columns.
fn rows(kind: Resource, apps: &[AppStatus]) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let mut rows = Vec::new();
    let header = match kind {
        Resource::Deployments => vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        Resource::Pods => vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        Resource::Services => vec![
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE",
        ],
    };
    for app in apps.iter().filter(|a| a.source == "kubernetes") {
        match kind {
            Resource::Deployments => {
                for s in app.services.iter().filter(|s| s.kind == "deployment") {
                    rows.push(vec![
                        s.name.clone(),
                        format!("{}/{}", s.ready, s.desired),
                        s.up_to_date.to_string(),
                        s.ready.to_string(),
                        age(&app.created),
                    ]);
                }
            }
            Resource::Pods => {
                for r in &app.replicas {
                    rows.push(vec![
                        r.name.clone(),
                        format!("{}/1", u8::from(r.ready)),
                        r.status.clone(),
                        r.restarts.to_string(),
                        age(&r.created),
                    ]);
                }
            }
            Resource::Services => {
                let mut seen =
                    std::collections::BTreeMap::<String, Vec<&corral_api::EndpointStatus>>::new();
                for e in &app.endpoints {
                    seen.entry(e.name.clone()).or_default().push(e);
                }
                for (name, eps) in seen {
                    let ip = eps[0]
                        .listen
                        .as_deref()
                        .and_then(|l| l.rsplit_once(':'))
                        .map(|(ip, _)| ip.to_string())
                        .unwrap_or_else(|| "<pending>".into());
                    let ports: Vec<String> = eps
                        .iter()
                        .map(|e| {
                            let port = e
                                .listen
                                .as_deref()
                                .and_then(|l| l.rsplit_once(':'))
                                .map(|(_, p)| p)
                                .unwrap_or("?");
                            format!("{port}/TCP")
                        })
                        .collect();
                    let external = if eps[0].kind == "LoadBalancer" {
                        ip.clone()
                    } else {
                        "<none>".into()
                    };
                    rows.push(vec![
                        name,
                        eps[0].kind.clone(),
                        ip,
                        external,
                        ports.join(","),
                        age(&app.updated),
                    ]);
                }
            }
        }
    }
    (header, rows)
}

impl GetArgs {
    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let kind = resource(&self.kind)?;
        if !matches!(self.output.as_str(), "table" | "json" | "wide") {
            bail!("unknown output format {:?} (table or json)", self.output);
        }
        let api = Api::connect(global)?;
        let apps = api.block_on(api.client.apps())?;
        if self.output == "json" {
            let kube: Vec<&AppStatus> = apps.iter().filter(|a| a.source == "kubernetes").collect();
            println!("{}", serde_json::to_string_pretty(&kube)?);
            return Ok(ExitCode::SUCCESS);
        }
        let (header, rows) = rows(kind, &apps);
        if rows.is_empty() {
            eprintln!("No resources found in default namespace.");
        } else {
            print_table(&header, &rows);
        }
        Ok(ExitCode::SUCCESS)
    }
}
