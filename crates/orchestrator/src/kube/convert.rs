//! Decoded Kubernetes objects to model services: workloads first (with ConfigMaps and Secrets
//! resolved into env and files), then Services attach their ports to the workloads they select.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;

use super::raw;
use super::{Object, Origin, LB_ANNOTATION, VM_RUNTIME_CLASS};
use crate::error::ManifestError;
use crate::model::*;
use crate::units::{parse_bytes, parse_cpus};

type Data = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

struct Stores {
    config_maps: Data,
    secrets: Data,
}

pub(crate) fn into_app(
    objects: Vec<(Object, Origin)>,
    app: &mut App,
    warnings: &mut Vec<Warning>,
) -> Result<(), ManifestError> {
    let mut stores = Stores {
        config_maps: BTreeMap::new(),
        secrets: BTreeMap::new(),
    };
    let mut workloads = Vec::new();
    let mut services = Vec::new();
    for (obj, origin) in objects {
        match obj {
            Object::ConfigMap(c) => {
                let name = named(&c.metadata, &origin)?;
                let mut data: BTreeMap<String, Vec<u8>> = c
                    .data
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .collect();
                for (k, v) in c.binary_data {
                    data.insert(
                        k.clone(),
                        b64(&v).map_err(|m| origin.err(&["binaryData", &k], m))?,
                    );
                }
                stores.config_maps.insert(name, data);
            }
            Object::Secret(s) => {
                let name = named(&s.metadata, &origin)?;
                let mut data = BTreeMap::new();
                for (k, v) in s.data {
                    data.insert(
                        k.clone(),
                        b64(&v).map_err(|m| origin.err(&["data", &k], m))?,
                    );
                }
                for (k, v) in s.string_data {
                    data.insert(k, v.into_bytes());
                }
                stores.secrets.insert(name, data);
            }
            Object::Deployment(d) => workloads.push((Workload::Deployment(d), origin)),
            Object::Pod(p) => workloads.push((Workload::Pod(p), origin)),
            Object::Service(s) => services.push((s, origin)),
        }
    }
    for (w, origin) in workloads {
        for spec in workload(w, &origin, &stores, warnings)? {
            if app.services.contains_key(&spec.name) {
                return Err(origin.err(
                    &["metadata", "name"],
                    format!("{} is defined twice", spec.name),
                ));
            }
            app.services.insert(spec.name.clone(), spec);
        }
    }
    for (s, origin) in services {
        let exposure = service(*s, &origin, app, warnings)?;
        app.exposures.insert(exposure.name.clone(), exposure);
    }
    Ok(())
}

enum Workload {
    Deployment(Box<raw::Deployment>),
    Pod(Box<raw::Pod>),
}

fn named(meta: &raw::Meta, origin: &Origin) -> Result<String, ManifestError> {
    match &meta.name {
        Some(n) if valid_name(n) => Ok(n.clone()),
        Some(n) => Err(origin.err(
            &["metadata", "name"],
            format!("{n:?} is not a valid name (lowercase letters, digits, '-', '.')"),
        )),
        None => Err(origin.err(&["metadata"], "metadata.name is required")),
    }
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && n.starts_with(|c: char| c.is_ascii_alphanumeric())
}

fn b64(v: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(v.trim())
        .map_err(|e| format!("not base64: {e}"))
}

fn quantity(s: &crate::raw_common::Scalar) -> Option<Quantity> {
    match s {
        crate::raw_common::Scalar::Int(n) => u32::try_from(*n).ok().map(Quantity::Count),
        crate::raw_common::Scalar::Str(t) => match t.strip_suffix('%') {
            Some(p) => p.parse().ok().map(Quantity::Percent),
            None => t.parse().ok().map(Quantity::Count),
        },
        _ => None,
    }
}

fn workload(
    w: Workload,
    origin: &Origin,
    stores: &Stores,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<ServiceSpec>, ManifestError> {
    let (name, kind, meta, pod_labels, pod, replicas, update) = match w {
        Workload::Deployment(d) => {
            let d = *d;
            let name = named(&d.metadata, origin)?;
            let labels = d.spec.template.metadata.labels.clone();
            match &d.spec.selector {
                Some(sel) => {
                    if let Some((k, v)) = sel
                        .match_labels
                        .iter()
                        .find(|(k, v)| labels.get(*k) != Some(v))
                    {
                        return Err(origin.err(
                            &["spec", "selector", "matchLabels", k],
                            format!("selector {k}={v} does not match the template's labels"),
                        ));
                    }
                }
                None if d.api_version == "apps/v1" => {
                    return Err(origin.err(&["spec"], "apps/v1 Deployments need spec.selector"));
                }
                None => {}
            }
            let update = strategy(d.spec.strategy.as_ref(), origin)?;
            match d.spec.template.spec.restart_policy.as_deref() {
                None | Some("Always") => {}
                Some(p) => {
                    return Err(origin.err(
                        &["spec", "template", "spec", "restartPolicy"],
                        format!("a Deployment's restartPolicy must be Always, not {p}"),
                    ))
                }
            }
            (
                name,
                WorkloadKind::Deployment,
                d.metadata,
                labels,
                d.spec.template.spec,
                d.spec.replicas.unwrap_or(1),
                update,
            )
        }
        Workload::Pod(p) => {
            let p = *p;
            let name = named(&p.metadata, origin)?;
            let labels = p.metadata.labels.clone();
            (
                name,
                WorkloadKind::Pod,
                p.metadata,
                labels,
                p.spec,
                1,
                UpdateStrategy::Recreate,
            )
        }
    };
    let spec_path: &[&str] = if kind == WorkloadKind::Deployment {
        &["spec", "template", "spec"]
    } else {
        &["spec"]
    };
    let at = |rest: &[&str]| -> Vec<String> {
        spec_path
            .iter()
            .chain(rest.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let err = |rest: &[&str], msg: String| {
        let p = at(rest);
        let refs: Vec<&str> = p.iter().map(String::as_str).collect();
        origin.err(&refs, msg)
    };
    let restart = match pod.restart_policy.as_deref() {
        None | Some("Always") => RestartPolicy::Always,
        Some("OnFailure") => RestartPolicy::OnFailure { max_retries: None },
        Some("Never") => RestartPolicy::No,
        Some(o) => {
            return Err(err(
                &["restartPolicy"],
                format!("unknown restartPolicy {o} (Always, OnFailure, Never)"),
            ))
        }
    };
    let isolation = match pod.runtime_class_name.as_deref() {
        None => Isolation::Container,
        Some(VM_RUNTIME_CLASS) => Isolation::Vm,
        Some(o) => {
            let p = at(&["runtimeClassName"]);
            let refs: Vec<&str> = p.iter().map(String::as_str).collect();
            warnings.push(origin.warn(&refs, format!("runtime class {o:?} is not known; using containers ({VM_RUNTIME_CLASS} runs microVMs)")));
            Isolation::Container
        }
    };
    let lb = meta.annotations.get(LB_ANNOTATION).cloned();
    if let Some(lb) = &lb {
        crate::compose::check_lb(lb)
            .map_err(|m| origin.err(&["metadata", "annotations", LB_ANNOTATION], m))?;
    }
    if pod.containers.is_empty() {
        return Err(err(
            &["containers"],
            "a pod needs at least one container".into(),
        ));
    }
    let multi = pod.containers.len() > 1;
    let volumes: BTreeMap<&str, &raw::Volume> =
        pod.volumes.iter().map(|v| (v.name.as_str(), v)).collect();
    let mut out = Vec::new();
    for (ci, c) in pod.containers.iter().enumerate() {
        let cpath = |rest: &[&str]| -> Vec<String> {
            let mut v = at(&["containers", &ci.to_string()]);
            v.extend(rest.iter().map(|s| s.to_string()));
            v
        };
        let cerr = |rest: &[&str], msg: String| {
            let p = cpath(rest);
            let refs: Vec<&str> = p.iter().map(String::as_str).collect();
            origin.err(&refs, msg)
        };
        let Some(image) = c.image.clone() else {
            return Err(cerr(&["image"], "a container needs an image".into()));
        };
        let mut spec = ServiceSpec {
            name: if multi {
                format!("{name}-{}", c.name)
            } else {
                name.clone()
            },
            kind,
            image: Some(image),
            // Kubernetes' command is the entrypoint, args the command.
            entrypoint: c.command.clone(),
            command: c.args.clone(),
            replicas,
            restart,
            update,
            labels: pod_labels.clone(),
            stdin_open: c.stdin,
            tty: c.tty,
            working_dir: c.working_dir.clone(),
            lb: lb.clone().unwrap_or_else(|| "round_robin".into()),
            isolation,
            networks: vec!["default".into()],
            ..Default::default()
        };
        for (ei, e) in c.env_from.iter().enumerate() {
            let prefix = e.prefix.clone().unwrap_or_default();
            let (store, r, what) = match (&e.config_map_ref, &e.secret_ref) {
                (Some(r), _) => (&stores.config_maps, r, "ConfigMap"),
                (None, Some(r)) => (&stores.secrets, r, "Secret"),
                (None, None) => continue,
            };
            match store.get(&r.name) {
                Some(data) => {
                    for (k, v) in data {
                        spec.env.insert(
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(v).into_owned(),
                        );
                    }
                }
                None if r.optional => {}
                None => {
                    return Err(cerr(
                        &["envFrom", &ei.to_string()],
                        format!("{what} {:?} is not in these manifests", r.name),
                    ))
                }
            }
        }
        for (ei, e) in c.env.iter().enumerate() {
            let value = match (&e.value, &e.value_from) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(src)) => {
                    let (store, r, what) = match (&src.config_map_key_ref, &src.secret_key_ref) {
                        (Some(r), _) => (&stores.config_maps, r, "ConfigMap"),
                        (None, Some(r)) => (&stores.secrets, r, "Secret"),
                        (None, None) => {
                            return Err(cerr(
                                &["env", &ei.to_string(), "valueFrom"],
                                "valueFrom needs configMapKeyRef or secretKeyRef".into(),
                            ))
                        }
                    };
                    match store.get(&r.name).and_then(|d| d.get(&r.key)) {
                        Some(v) => Some(String::from_utf8_lossy(v).into_owned()),
                        None if r.optional => None,
                        None => {
                            return Err(cerr(
                                &["env", &ei.to_string(), "valueFrom"],
                                format!(
                                    "{what} {:?} has no key {:?} in these manifests",
                                    r.name, r.key
                                ),
                            ))
                        }
                    }
                }
                (None, None) => Some(String::new()),
            };
            if let Some(v) = value {
                spec.env.insert(e.name.clone(), v);
            }
        }
        for (pi, p) in c.ports.iter().enumerate() {
            if let Some(proto) = &p.protocol {
                if proto != "TCP" && proto != "UDP" {
                    return Err(cerr(
                        &["ports", &pi.to_string(), "protocol"],
                        format!("unknown protocol {proto} (TCP or UDP)"),
                    ));
                }
            }
            spec.expose.push(p.container_port);
            if let Some(hp) = p.host_port {
                spec.ports.push(PortSpec {
                    published: Some(hp),
                    target: p.container_port,
                    protocol: if p.protocol.as_deref() == Some("UDP") {
                        Protocol::Udp
                    } else {
                        Protocol::Tcp
                    },
                    host_ip: None,
                    name: p.name.clone(),
                    app_protocol: None,
                });
            }
        }
        if let Some(r) = &c.resources {
            if let Some(cpu) = r.limits.get("cpu") {
                spec.resources.cpus = Some(parse_cpus(&cpu.text()).ok_or_else(|| {
                    cerr(
                        &["resources", "limits", "cpu"],
                        format!("{:?} is not a CPU quantity", cpu.text()),
                    )
                })?);
            }
            if let Some(mem) = r.limits.get("memory") {
                spec.resources.memory_bytes = Some(parse_bytes(&mem.text()).ok_or_else(|| {
                    cerr(
                        &["resources", "limits", "memory"],
                        format!("{:?} is not a memory quantity", mem.text()),
                    )
                })?);
            }
        }
        spec.readiness = c
            .readiness_probe
            .as_ref()
            .map(|p| probe(p, c))
            .transpose()
            .map_err(|m| cerr(&["readinessProbe"], m))?;
        spec.liveness = c
            .liveness_probe
            .as_ref()
            .map(|p| probe(p, c))
            .transpose()
            .map_err(|m| cerr(&["livenessProbe"], m))?;
        for (mi, m) in c.volume_mounts.iter().enumerate() {
            let Some(v) = volumes.get(m.name.as_str()) else {
                return Err(cerr(
                    &["volumeMounts", &mi.to_string(), "name"],
                    format!("no pod volume named {:?}", m.name),
                ));
            };
            mount(v, m, stores, &mut spec)
                .map_err(|msg| cerr(&["volumeMounts", &mi.to_string()], msg))?;
        }
        out.push(spec);
    }
    Ok(out)
}

fn mount(
    v: &raw::Volume,
    m: &raw::VolumeMount,
    stores: &Stores,
    spec: &mut ServiceSpec,
) -> Result<(), String> {
    let project = |data: Option<&BTreeMap<String, Vec<u8>>>,
                   items: &[raw::KeyToPath],
                   what: &str,
                   name: &str,
                   secret: bool,
                   spec: &mut ServiceSpec|
     -> Result<(), String> {
        let data = data.ok_or_else(|| format!("{what} {name:?} is not in these manifests"))?;
        let pairs: Vec<(String, String)> = if items.is_empty() {
            data.keys().map(|k| (k.clone(), k.clone())).collect()
        } else {
            items
                .iter()
                .map(|i| (i.key.clone(), i.path.clone()))
                .collect()
        };
        for (key, path) in pairs {
            let content = data
                .get(&key)
                .ok_or_else(|| format!("{what} {name:?} has no key {key:?}"))?;
            spec.files.push(FileMount {
                path: format!("{}/{}", m.mount_path.trim_end_matches('/'), path),
                content: content.clone(),
                secret,
            });
        }
        Ok(())
    };
    if let Some(c) = &v.config_map {
        project(
            stores.config_maps.get(&c.name),
            &c.items,
            "ConfigMap",
            &c.name,
            false,
            spec,
        )
    } else if let Some(s) = &v.secret {
        project(
            stores.secrets.get(&s.secret_name),
            &s.items,
            "Secret",
            &s.secret_name,
            true,
            spec,
        )
    } else if let Some(h) = &v.host_path {
        spec.volumes.push(VolumeMount {
            source: Some(h.path.clone()),
            target: m.mount_path.clone(),
            read_only: m.read_only,
            bind: true,
        });
        Ok(())
    } else if v.empty_dir.is_some() {
        spec.volumes.push(VolumeMount {
            source: None,
            target: m.mount_path.clone(),
            read_only: m.read_only,
            bind: false,
        });
        Ok(())
    } else {
        Err(format!(
            "volume {:?} has no supported source (configMap, secret, hostPath, emptyDir)",
            v.name
        ))
    }
}

fn port_of(p: &crate::raw_common::Scalar, c: &raw::Container) -> Result<u16, String> {
    let text = p.text();
    if let Ok(n) = text.parse::<u16>() {
        return Ok(n);
    }
    c.ports
        .iter()
        .find(|cp| cp.name.as_deref() == Some(text.as_str()))
        .map(|cp| cp.container_port)
        .ok_or_else(|| format!("port {text:?} is neither a number nor a named container port"))
}

fn probe(p: &raw::Probe, c: &raw::Container) -> Result<Probe, String> {
    let action = match (&p.http_get, &p.tcp_socket, &p.exec) {
        (Some(h), None, None) => {
            if h.scheme.as_deref().is_some_and(|s| s != "HTTP") {
                return Err("only HTTP probes are supported (not HTTPS)".into());
            }
            ProbeAction::HttpGet {
                path: h.path.clone().unwrap_or_else(|| "/".into()),
                port: port_of(&h.port, c)?,
            }
        }
        (None, Some(t), None) => ProbeAction::TcpSocket {
            port: port_of(&t.port, c)?,
        },
        (None, None, Some(e)) => ProbeAction::Exec {
            command: e.command.clone(),
        },
        _ => return Err("a probe needs exactly one of httpGet, tcpSocket, exec".into()),
    };
    let mut out = Probe::new(action);
    let secs = |v: Option<u32>, d: u64| Duration::from_secs(v.map_or(d, u64::from));
    out.interval = secs(p.period_seconds, 10);
    out.timeout = secs(p.timeout_seconds, 1);
    out.initial_delay = secs(p.initial_delay_seconds, 0);
    out.failure_threshold = p.failure_threshold.unwrap_or(3).max(1);
    out.success_threshold = p.success_threshold.unwrap_or(1).max(1);
    Ok(out)
}

fn strategy(s: Option<&raw::Strategy>, origin: &Origin) -> Result<UpdateStrategy, ManifestError> {
    let Some(s) = s else {
        return Ok(UpdateStrategy::default());
    };
    match s.kind.as_deref() {
        Some("Recreate") => Ok(UpdateStrategy::Recreate),
        None | Some("RollingUpdate") => {
            let ru = s.rolling_update.as_ref();
            let get = |v: Option<&crate::raw_common::Scalar>,
                       key: &str|
             -> Result<Quantity, ManifestError> {
                match v {
                    None => Ok(Quantity::Percent(25)),
                    Some(q) => quantity(q).ok_or_else(|| {
                        origin.err(
                            &["spec", "strategy", "rollingUpdate", key],
                            format!("{:?} is not a count or a percentage", q.text()),
                        )
                    }),
                }
            };
            let max_surge = get(ru.and_then(|r| r.max_surge.as_ref()), "maxSurge")?;
            let max_unavailable = get(
                ru.and_then(|r| r.max_unavailable.as_ref()),
                "maxUnavailable",
            )?;
            if matches!(max_surge, Quantity::Count(0) | Quantity::Percent(0))
                && matches!(max_unavailable, Quantity::Count(0) | Quantity::Percent(0))
            {
                return Err(origin.err(
                    &["spec", "strategy", "rollingUpdate"],
                    "maxSurge and maxUnavailable cannot both be 0",
                ));
            }
            Ok(UpdateStrategy::RollingUpdate {
                max_surge,
                max_unavailable,
            })
        }
        Some(o) => Err(origin.err(
            &["spec", "strategy", "type"],
            format!("unknown strategy {o} (RollingUpdate or Recreate)"),
        )),
    }
}

fn service(
    s: raw::Service,
    origin: &Origin,
    app: &mut App,
    warnings: &mut Vec<Warning>,
) -> Result<Exposure, ManifestError> {
    let name = named(&s.metadata, origin)?;
    let kind = match s.spec.kind.as_deref() {
        None | Some("ClusterIP") => ExposureType::ClusterIP,
        Some("NodePort") => ExposureType::NodePort,
        Some("LoadBalancer") => ExposureType::LoadBalancer,
        Some(o) => {
            return Err(origin.err(
                &["spec", "type"],
                format!("Service type {o} is not supported (ClusterIP, NodePort, LoadBalancer)"),
            ))
        }
    };
    let lb = match (
        s.metadata.annotations.get(LB_ANNOTATION),
        s.spec.session_affinity.as_deref(),
    ) {
        (Some(a), _) => {
            crate::compose::check_lb(a)
                .map_err(|m| origin.err(&["metadata", "annotations", LB_ANNOTATION], m))?;
            a.clone()
        }
        (None, Some("ClientIP")) => "sticky".into(),
        (None, None | Some("None")) => "round_robin".into(),
        (None, Some(o)) => {
            return Err(origin.err(
                &["spec", "sessionAffinity"],
                format!("unknown sessionAffinity {o} (None or ClientIP)"),
            ))
        }
    };
    if s.spec.selector.is_empty() {
        return Err(origin.err(
            &["spec", "selector"],
            "a Service without a selector selects nothing",
        ));
    }
    let targets: Vec<String> = app
        .services
        .values()
        .filter(|svc| {
            s.spec
                .selector
                .iter()
                .all(|(k, v)| svc.labels.get(k) == Some(v))
        })
        .map(|svc| svc.name.clone())
        .collect();
    if targets.is_empty() {
        warnings.push(origin.warn(
            &["spec", "selector"],
            format!("Service {name} selects no Deployment or Pod in these manifests"),
        ));
    }
    let mut ports = Vec::new();
    for (i, p) in s.spec.ports.iter().enumerate() {
        let protocol = match p.protocol.as_deref() {
            None | Some("TCP") => Protocol::Tcp,
            Some("UDP") => Protocol::Udp,
            Some(o) => {
                return Err(origin.err(
                    &["spec", "ports", &i.to_string(), "protocol"],
                    format!("unknown protocol {o} (TCP or UDP)"),
                ))
            }
        };
        if p.node_port.is_some() && kind == ExposureType::ClusterIP {
            return Err(origin.err(
                &["spec", "ports", &i.to_string(), "nodePort"],
                "nodePort needs type NodePort or LoadBalancer",
            ));
        }
        // A named targetPort resolves against each target's container ports; a number or
        // nothing (= port) is used as is.
        let target_text = p
            .target_port
            .as_ref()
            .map(|t| t.text())
            .unwrap_or_else(|| p.port.to_string());
        let published = match kind {
            ExposureType::NodePort => p.node_port.or(Some(p.port)),
            _ => Some(p.port),
        };
        let mut resolved = None;
        for t in &targets {
            let svc = app.services.get_mut(t).expect("targets are services");
            let target = match target_text.parse::<u16>() {
                Ok(n) => n,
                Err(_) => {
                    // Named ports: only those declared with the same name in the workload.
                    return Err(origin.err(&["spec", "ports", &i.to_string(), "targetPort"], format!("named targetPort {target_text:?} is not supported yet; use the container port number")));
                }
            };
            let spec = PortSpec {
                published,
                target,
                protocol,
                host_ip: None,
                name: p.name.clone(),
                app_protocol: p.app_protocol.clone(),
            };
            if !svc.ports.contains(&spec) {
                svc.ports.push(spec.clone());
            }
            svc.lb = lb.clone();
            resolved = Some(spec);
        }
        ports.push(resolved.unwrap_or(PortSpec {
            published,
            target: target_text.parse().unwrap_or(p.port),
            protocol,
            host_ip: None,
            name: p.name.clone(),
            app_protocol: p.app_protocol.clone(),
        }));
    }
    Ok(Exposure {
        name,
        kind,
        ports,
        targets,
        lb,
    })
}
