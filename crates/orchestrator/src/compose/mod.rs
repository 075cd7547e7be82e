//! Compose files (versions 2 and 3, and the unversioned Compose spec) into the desired-state
//! model: several files merge in order, `${VAR}` interpolates from the environment over `.env`,
//! unknown keys warn, invalid values fail naming the key path and line.

mod ports;
pub mod raw;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::decode::{decode, invalid, LineOf};
use crate::error::ManifestError;
use crate::interp::{interpolate_value, Vars};
use crate::model::*;
use crate::raw_common::StringOrList;
use crate::units::{parse_bytes, parse_cpus, parse_duration};
use crate::yaml_pos::LineIndex;
use raw::*;

/// A parsed app and what the parser noticed.
#[derive(Debug)]
pub struct Parsed {
    /// The desired state.
    pub app: App,
    /// Unknown keys and ignored options.
    pub warnings: Vec<Warning>,
}

/// One Compose file's name and text.
#[derive(Debug, Clone)]
pub struct ComposeFile {
    /// The name used in messages (usually the path).
    pub name: String,
    /// The YAML.
    pub text: String,
}

/// The default file names, in Compose's order of preference.
pub const DEFAULT_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];

/// Reads `files` (or the default file in `dir`), the `.env` beside the first, and parses them.
pub fn load(files: &[PathBuf], dir: &Path, project: Option<&str>) -> Result<Parsed, ManifestError> {
    let paths: Vec<PathBuf> = if files.is_empty() {
        let found = DEFAULT_FILES
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
            .ok_or_else(|| ManifestError::Read {
                path: dir.join(DEFAULT_FILES[0]).display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no compose.yaml or docker-compose.yml here (use -f FILE)",
                ),
            })?;
        vec![found]
    } else {
        files.to_vec()
    };
    let mut inputs = Vec::new();
    for p in &paths {
        let text = std::fs::read_to_string(p).map_err(|source| ManifestError::Read {
            path: p.display().to_string(),
            source,
        })?;
        inputs.push(ComposeFile {
            name: p.display().to_string(),
            text,
        });
    }
    let project_dir = paths[0]
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(dir);
    let env_text = std::fs::read_to_string(project_dir.join(".env")).ok();
    let vars = Vars::from_env_file_and_process(env_text.as_deref());
    let dir_name = std::fs::canonicalize(project_dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "default".into());
    parse(&inputs, project, &dir_name, &vars)
}

/// Makes a Compose project name: lowercase letters, digits, `-` and `_`.
pub fn normalize_project_name(name: &str) -> String {
    let s: String = name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    if s.is_empty() {
        "default".into()
    } else {
        s
    }
}

/// Merges `over` into `base`: maps merge key by key, anything else is replaced.
fn merge(base: &mut serde_yaml::Value, over: serde_yaml::Value) {
    match (base, over) {
        (serde_yaml::Value::Mapping(b), serde_yaml::Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// Parses Compose files (merged in order) with these variables.
pub fn parse(
    files: &[ComposeFile],
    project: Option<&str>,
    dir_name: &str,
    vars: &Vars,
) -> Result<Parsed, ManifestError> {
    let mut merged = serde_yaml::Value::Mapping(Default::default());
    let mut indexes = Vec::new();
    for f in files {
        let index = LineIndex::build(&f.text);
        let mut doc: serde_yaml::Value =
            serde_yaml::from_str(&f.text).map_err(|e| ManifestError::Syntax {
                file: f.name.clone(),
                line: e.location().map(|l| l.line()),
                message: e.to_string(),
            })?;
        if doc.is_null() {
            doc = serde_yaml::Value::Mapping(Default::default());
        }
        if !doc.is_mapping() {
            return Err(ManifestError::Invalid {
                file: f.name.clone(),
                path: "(top level)".into(),
                line: Some(1),
                message: "a Compose file is a mapping with a `services` key".into(),
            });
        }
        let mut path = Vec::new();
        interpolate_value(&mut doc, vars, &mut path).map_err(|(p, source)| {
            let segs: Vec<String> = p.split('.').map(String::from).collect();
            ManifestError::Interpolation {
                file: f.name.clone(),
                line: index.line(0, &segs),
                path: p,
                source,
            }
        })?;
        merge(&mut merged, doc);
        indexes.push(index);
    }
    let file_label = files
        .iter()
        .map(|f| f.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    // A path's line comes from the last file that has it.
    let line_of = |p: &[String]| indexes.iter().rev().find_map(|i| i.line(0, p));
    let line_of: LineOf<'_> = &line_of;
    let mut warnings = Vec::new();
    let raw: RawCompose = decode(merged, &file_label, &[], line_of, &mut warnings)?;
    if let Some(v) = &raw.version {
        let v = v.text();
        if v.starts_with('1') {
            return Err(invalid(
                &file_label,
                &["version".into()],
                line_of,
                format!("Compose file version {v} is not supported (use 2, 3 or no version)"),
            ));
        }
        if !(v.starts_with('2') || v.starts_with('3')) {
            warnings.push(Warning {
                file: file_label.clone(),
                path: "version".into(),
                line: line_of(&["version".into()]),
                message: format!("unknown Compose version {v:?}; reading it as the Compose spec"),
            });
        }
    }
    if raw.services.is_empty() {
        return Err(invalid(
            &file_label,
            &["services".into()],
            line_of,
            "no services defined",
        ));
    }
    let name = normalize_project_name(project.or(raw.name.as_deref()).unwrap_or(dir_name));
    let mut app = App::new(name, Source::Compose);
    let service_names: Vec<String> = raw.services.keys().cloned().collect();
    for (svc_name, rs) in raw.services {
        let ctx = Ctx {
            file: &file_label,
            line_of,
            base: vec!["services".into(), svc_name.clone()],
            vars,
        };
        let spec = convert_service(&ctx, &svc_name, rs, &service_names, &mut warnings)?;
        app.services.insert(svc_name, spec);
    }
    for (name, v) in raw.volumes {
        let v = v.unwrap_or_default();
        app.volumes.insert(
            name,
            VolumeSpec {
                external: is_external(&v.external),
                labels: labels(v.labels.as_ref()),
            },
        );
    }
    for (name, n) in raw.networks {
        let n = n.unwrap_or_default();
        app.networks.insert(
            name,
            NetworkSpec {
                external: is_external(&n.external),
                labels: labels(n.labels.as_ref()),
            },
        );
    }
    check_references(&app, &file_label, line_of)?;
    Ok(Parsed { app, warnings })
}

fn is_external(v: &Option<serde_yaml::Value>) -> bool {
    match v {
        Some(serde_yaml::Value::Bool(b)) => *b,
        Some(serde_yaml::Value::Mapping(_)) => true,
        _ => false,
    }
}

fn labels(l: Option<&crate::raw_common::MapOrList>) -> BTreeMap<String, String> {
    l.map(|l| {
        l.entries()
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect()
    })
    .unwrap_or_default()
}

/// Where a service's keys live, for messages.
pub(crate) struct Ctx<'a> {
    pub(crate) file: &'a str,
    pub(crate) line_of: LineOf<'a>,
    pub(crate) base: Vec<String>,
    pub(crate) vars: &'a Vars,
}

impl Ctx<'_> {
    pub(crate) fn path(&self, rest: &[&str]) -> Vec<String> {
        self.base
            .iter()
            .cloned()
            .chain(rest.iter().map(|s| s.to_string()))
            .collect()
    }

    pub(crate) fn err(&self, rest: &[&str], msg: impl Into<String>) -> ManifestError {
        invalid(self.file, &self.path(rest), self.line_of, msg)
    }

    fn duration(
        &self,
        rest: &[&str],
        s: &Option<String>,
    ) -> Result<Option<Duration>, ManifestError> {
        match s {
            None => Ok(None),
            Some(s) => parse_duration(s).map(Some).ok_or_else(|| {
                self.err(rest, format!("{s:?} is not a duration (like 30s, 1m30s)"))
            }),
        }
    }
}

fn convert_service(
    ctx: &Ctx<'_>,
    name: &str,
    rs: RawService,
    all: &[String],
    warnings: &mut Vec<Warning>,
) -> Result<ServiceSpec, ManifestError> {
    if rs.image.is_none() && rs.build.is_none() {
        return Err(ctx.err(&[], "a service needs `image` or `build`"));
    }
    let mut spec = ServiceSpec {
        name: name.to_string(),
        image: rs.image,
        replicas: 1,
        stdin_open: rs.stdin_open,
        tty: rs.tty,
        working_dir: rs.working_dir,
        user: rs.user.map(|u| u.text()),
        command: rs.command.as_ref().map(StringOrList::argv),
        entrypoint: rs.entrypoint.as_ref().map(StringOrList::argv),
        labels: labels(rs.labels.as_ref()),
        lb: "round_robin".into(),
        // Compose's default order is stop-first; corral starts the new replica first so an
        // update never leaves a service without a ready replica.
        update: UpdateStrategy::RollingUpdate {
            max_surge: Quantity::Count(1),
            max_unavailable: Quantity::Count(0),
        },
        ..Default::default()
    };
    spec.build = rs.build.map(|b| match b {
        RawBuild::Context(c) => BuildSpec {
            context: c,
            ..Default::default()
        },
        RawBuild::Long(l) => BuildSpec {
            context: l.context.unwrap_or_else(|| ".".into()),
            dockerfile: l.dockerfile,
            args: labels(l.args.as_ref()),
        },
    });
    if let Some(env) = &rs.environment {
        for (k, v) in env.entries() {
            // A bare key takes its value from the environment, or is left out.
            if let Some(v) = v.or_else(|| ctx.vars.get(&k).map(String::from)) {
                spec.env.insert(k, v);
            }
        }
    }
    if let Some(files) = &rs.env_file {
        for (i, f) in files.items().iter().enumerate() {
            let text = std::fs::read_to_string(f).map_err(|e| {
                ctx.err(
                    &["env_file", &i.to_string()],
                    format!("cannot read {f}: {e}"),
                )
            })?;
            for (k, v) in crate::interp::parse_env_file(&text) {
                spec.env.entry(k).or_insert(v);
            }
        }
    }
    for (i, p) in rs.ports.iter().enumerate() {
        spec.ports
            .extend(ports::convert(p).map_err(|m| ctx.err(&["ports", &i.to_string()], m))?);
    }
    for (i, e) in rs.expose.iter().enumerate() {
        let text = e.text();
        let port = text.split('/').next().unwrap_or("");
        spec.expose.push(port.parse().map_err(|_| {
            ctx.err(
                &["expose", &i.to_string()],
                format!("{text:?} is not a port"),
            )
        })?);
    }
    if let Some(deps) = rs.depends_on {
        let entries: Vec<(String, Option<String>)> = match deps {
            RawDependsOn::List(l) => l.into_iter().map(|s| (s, None)).collect(),
            RawDependsOn::Map(m) => m.into_iter().map(|(k, d)| (k, d.condition)).collect(),
        };
        for (dep, cond) in entries {
            if !all.contains(&dep) {
                return Err(ctx.err(
                    &["depends_on", &dep],
                    format!("depends on unknown service {dep:?}"),
                ));
            }
            let condition = match cond.as_deref() {
                None | Some("service_started") => DependencyCondition::ServiceStarted,
                Some("service_healthy") => DependencyCondition::ServiceHealthy,
                Some("service_completed_successfully") => {
                    DependencyCondition::ServiceCompletedSuccessfully
                }
                Some(other) => {
                    return Err(ctx.err(&["depends_on", &dep, "condition"], format!("unknown condition {other:?} (service_started, service_healthy, service_completed_successfully)")))
                }
            };
            spec.depends_on.push(Dependency {
                service: dep,
                condition,
            });
        }
    }
    if let Some(hc) = rs.healthcheck {
        spec.readiness = healthcheck(ctx, hc)?;
    }
    spec.restart = match rs.restart.as_deref() {
        None | Some("no") | Some("\"no\"") => RestartPolicy::No,
        Some("always") => RestartPolicy::Always,
        Some("unless-stopped") => RestartPolicy::UnlessStopped,
        Some(s) if s.starts_with("on-failure") => {
            let max = match s.strip_prefix("on-failure:") {
                Some(n) => Some(n.parse().map_err(|_| {
                    ctx.err(
                        &["restart"],
                        format!("{s:?}: the retry count must be a number"),
                    )
                })?),
                None if s == "on-failure" => None,
                None => return Err(ctx.err(&["restart"], format!("unknown restart policy {s:?}"))),
            };
            RestartPolicy::OnFailure { max_retries: max }
        }
        Some(s) => {
            return Err(ctx.err(
                &["restart"],
                format!(
                    "unknown restart policy {s:?} (no, always, on-failure[:N], unless-stopped)"
                ),
            ))
        }
    };
    if let Some(scale) = rs.scale {
        spec.replicas = scale;
    }
    if let Some(m) = &rs.mem_limit {
        spec.resources.memory_bytes = Some(
            parse_bytes(&m.text())
                .ok_or_else(|| ctx.err(&["mem_limit"], format!("{:?} is not a size", m.text())))?,
        );
    }
    if let Some(c) = &rs.cpus {
        spec.resources.cpus = Some(
            parse_cpus(&c.text())
                .ok_or_else(|| ctx.err(&["cpus"], format!("{:?} is not a CPU count", c.text())))?,
        );
    }
    if let Some(p) = rs.pids_limit {
        spec.resources.pids = u64::try_from(p).ok();
    }
    if let Some(d) = rs.deploy {
        deploy(ctx, d, &mut spec, warnings)?;
    }
    for (i, v) in rs.volumes.into_iter().enumerate() {
        spec.volumes
            .push(volume(v).map_err(|m| ctx.err(&["volumes", &i.to_string()], m))?);
    }
    spec.networks = match rs.networks {
        None => vec!["default".into()],
        Some(RawNetworks::List(l)) => l,
        Some(RawNetworks::Map(m)) => m.into_keys().collect(),
    };
    if let Some(lb) = rs.x_corral_lb {
        check_lb(&lb).map_err(|m| ctx.err(&["x-corral-lb"], m))?;
        spec.lb = lb;
    }
    spec.isolation = match rs.x_corral_isolation.as_deref() {
        None | Some("container") => Isolation::Container,
        Some("vm") => Isolation::Vm,
        Some(o) => {
            return Err(ctx.err(
                &["x-corral-isolation"],
                format!("unknown isolation {o:?} (container or vm)"),
            ))
        }
    };
    Ok(spec)
}

/// The algorithm names the balancer knows (its full syntax is checked again when it starts).
pub const LB_ALGORITHMS: &[&str] = &[
    "round_robin",
    "random",
    "least_connections",
    "least_load",
    "hash",
    "sticky",
];

/// Checks an `x-corral-lb` / annotation value's algorithm name.
pub fn check_lb(value: &str) -> Result<(), String> {
    let name = value
        .split(':')
        .next()
        .unwrap_or("")
        .trim()
        .replace('-', "_");
    if LB_ALGORITHMS.contains(&name.as_str()) {
        Ok(())
    } else {
        Err(format!(
            "unknown load-balancing algorithm {value:?} (one of {})",
            LB_ALGORITHMS.join(", ")
        ))
    }
}

fn healthcheck(ctx: &Ctx<'_>, hc: RawHealthcheck) -> Result<Option<Probe>, ManifestError> {
    if hc.disable {
        return Ok(None);
    }
    let Some(test) = hc.test else {
        return Ok(None);
    };
    let action = match test {
        StringOrList::Str(s) => ProbeAction::Shell { script: s },
        StringOrList::List(_) => {
            let items = test.items();
            match items.first().map(String::as_str) {
                Some("NONE") => return Ok(None),
                Some("CMD") if items.len() > 1 => ProbeAction::Exec { command: items[1..].to_vec() },
                Some("CMD-SHELL") if items.len() == 2 => ProbeAction::Shell { script: items[1].clone() },
                _ => return Err(ctx.err(&["healthcheck", "test"], "test must be a string, [\"CMD\", args…], [\"CMD-SHELL\", \"command\"] or [\"NONE\"]")),
            }
        }
    };
    // Compose's defaults: 30 s interval, 30 s timeout, 3 retries.
    let mut p = Probe::new(action);
    p.interval = ctx
        .duration(&["healthcheck", "interval"], &hc.interval)?
        .unwrap_or(Duration::from_secs(30));
    p.timeout = ctx
        .duration(&["healthcheck", "timeout"], &hc.timeout)?
        .unwrap_or(Duration::from_secs(30));
    p.initial_delay = ctx
        .duration(&["healthcheck", "start_period"], &hc.start_period)?
        .unwrap_or_default();
    ctx.duration(&["healthcheck", "start_interval"], &hc.start_interval)?;
    p.failure_threshold = hc.retries.unwrap_or(3).max(1);
    Ok(Some(p))
}

fn deploy(
    ctx: &Ctx<'_>,
    d: RawDeploy,
    spec: &mut ServiceSpec,
    warnings: &mut Vec<Warning>,
) -> Result<(), ManifestError> {
    if let Some(mode) = d.mode.as_deref() {
        if mode != "replicated" {
            warnings.push(Warning {
                file: ctx.file.to_string(),
                path: ctx.path(&["deploy", "mode"]).join("."),
                line: (ctx.line_of)(&ctx.path(&["deploy", "mode"])),
                message: format!("mode {mode:?} runs as replicated on one host"),
            });
        }
    }
    if let Some(r) = d.replicas {
        spec.replicas = r;
    }
    if let Some(limits) = d.resources.and_then(|r| r.limits) {
        if let Some(c) = limits.cpus {
            spec.resources.cpus = Some(parse_cpus(&c.text()).ok_or_else(|| {
                ctx.err(
                    &["deploy", "resources", "limits", "cpus"],
                    format!("{:?} is not a CPU count", c.text()),
                )
            })?);
        }
        if let Some(m) = limits.memory {
            spec.resources.memory_bytes = Some(parse_bytes(&m.text()).ok_or_else(|| {
                ctx.err(
                    &["deploy", "resources", "limits", "memory"],
                    format!("{:?} is not a size (like 512m, 1g)", m.text()),
                )
            })?);
        }
        if let Some(p) = limits.pids {
            spec.resources.pids = u64::try_from(p).ok();
        }
    }
    if let Some(u) = d.update_config {
        let n = u.parallelism.unwrap_or(1).max(1);
        ctx.duration(&["deploy", "update_config", "delay"], &u.delay)?;
        spec.update = match u.order.as_deref() {
            None | Some("stop-first") => UpdateStrategy::RollingUpdate {
                max_surge: Quantity::Count(0),
                max_unavailable: Quantity::Count(n),
            },
            Some("start-first") => UpdateStrategy::RollingUpdate {
                max_surge: Quantity::Count(n),
                max_unavailable: Quantity::Count(0),
            },
            Some(o) => {
                return Err(ctx.err(
                    &["deploy", "update_config", "order"],
                    format!("unknown order {o:?} (start-first or stop-first)"),
                ))
            }
        };
    }
    if let Some(rp) = d.restart_policy {
        spec.restart = match rp.condition.as_deref() {
            None | Some("any") => RestartPolicy::Always,
            Some("on-failure") => RestartPolicy::OnFailure {
                max_retries: rp.max_attempts,
            },
            Some("none") => RestartPolicy::No,
            Some(o) => {
                return Err(ctx.err(
                    &["deploy", "restart_policy", "condition"],
                    format!("unknown condition {o:?} (none, on-failure, any)"),
                ))
            }
        };
        ctx.duration(&["deploy", "restart_policy", "delay"], &rp.delay)?;
    }
    Ok(())
}

fn volume(v: RawVolumeMount) -> Result<VolumeMount, String> {
    match v {
        RawVolumeMount::Short(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            let (source, target, opts) = match parts.as_slice() {
                [t] => (None, *t, None),
                [s, t] => (Some(*s), *t, None),
                [s, t, o] => (Some(*s), *t, Some(*o)),
                _ => return Err(format!("{s:?} is not SOURCE:TARGET[:ro|rw]")),
            };
            if !target.starts_with('/') {
                return Err(format!("target {target:?} must be an absolute path"));
            }
            let read_only = match opts {
                None | Some("rw") => false,
                Some("ro") => true,
                Some(o)
                    if o.split(',').all(|x| {
                        [
                            "ro",
                            "rw",
                            "z",
                            "Z",
                            "cached",
                            "delegated",
                            "consistent",
                            "nocopy",
                        ]
                        .contains(&x)
                    }) =>
                {
                    o.split(',').any(|x| x == "ro")
                }
                Some(o) => return Err(format!("unknown volume option {o:?}")),
            };
            let bind = source
                .is_some_and(|s| s.starts_with('/') || s.starts_with('.') || s.starts_with('~'));
            Ok(VolumeMount {
                source: source.map(String::from),
                target: target.to_string(),
                read_only,
                bind,
            })
        }
        RawVolumeMount::Long(l) => {
            let bind = match l.kind.as_deref() {
                None | Some("volume") => false,
                Some("bind") => true,
                Some("tmpfs") => false,
                Some(o) => return Err(format!("unknown volume type {o:?} (volume, bind, tmpfs)")),
            };
            if !l.target.starts_with('/') {
                return Err(format!("target {:?} must be an absolute path", l.target));
            }
            Ok(VolumeMount {
                source: l.source,
                target: l.target,
                read_only: l.read_only,
                bind,
            })
        }
    }
}

fn check_references(app: &App, file: &str, line_of: LineOf<'_>) -> Result<(), ManifestError> {
    for (name, svc) in &app.services {
        for (i, v) in svc.volumes.iter().enumerate() {
            if let (Some(src), false) = (&v.source, v.bind) {
                if !app.volumes.contains_key(src) {
                    return Err(invalid(
                        file,
                        &[
                            "services".into(),
                            name.clone(),
                            "volumes".into(),
                            i.to_string(),
                        ],
                        line_of,
                        format!("named volume {src:?} is not declared under top-level `volumes`"),
                    ));
                }
            }
        }
        for n in &svc.networks {
            if n != "default" && !app.networks.contains_key(n) {
                return Err(invalid(
                    file,
                    &["services".into(), name.clone(), "networks".into()],
                    line_of,
                    format!("network {n:?} is not declared under top-level `networks`"),
                ));
            }
        }
    }
    // Dependency cycles.
    for start in app.services.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        while let Some((cur, trail)) = stack.pop() {
            for d in &app.services[&cur].depends_on {
                if d.service == *start {
                    let mut cycle = trail.clone();
                    cycle.push(start.clone());
                    return Err(invalid(
                        file,
                        &["services".into(), start.clone(), "depends_on".into()],
                        line_of,
                        format!("dependency cycle: {}", cycle.join(" -> ")),
                    ));
                }
                if !trail.contains(&d.service) {
                    let mut t = trail.clone();
                    t.push(d.service.clone());
                    stack.push((d.service.clone(), t));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
