//! The one desired-state model both Compose files and Kubernetes manifests become. It is what
//! the state store keeps (as JSON, versioned by [`MODEL_VERSION`]) and what the reconciler
//! drives toward.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The model's format version, stored with it.
pub const MODEL_VERSION: u32 = 1;

/// Where an app's desired state came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A Compose project.
    Compose,
    /// Kubernetes manifests (one app per namespace).
    Kubernetes,
}

/// A multi-service app.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct App {
    /// The model version.
    pub version: u32,
    /// The project (Compose) or namespace (Kubernetes) name.
    pub name: String,
    /// Where it came from.
    pub source: Source,
    /// Services by name.
    pub services: BTreeMap<String, ServiceSpec>,
    /// Named volumes the app declares.
    pub volumes: BTreeMap<String, VolumeSpec>,
    /// Networks the app declares (a `default` one is implied).
    pub networks: BTreeMap<String, NetworkSpec>,
    /// Kubernetes Services as declared (their ports are also on the services they select).
    pub exposures: BTreeMap<String, Exposure>,
}

/// What kind of object a service came from (for `corral get`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadKind {
    /// A Compose service.
    #[default]
    Compose,
    /// A Kubernetes Deployment.
    Deployment,
    /// A Kubernetes Pod.
    Pod,
}

/// A Kubernetes Service type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExposureType {
    /// ClusterIP (served on the host by corral's balancer).
    ClusterIP,
    /// NodePort.
    NodePort,
    /// LoadBalancer.
    LoadBalancer,
}

/// A Kubernetes Service: a balanced entry point to the services it selects.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exposure {
    /// The Service's name.
    pub name: String,
    /// Its type.
    pub kind: ExposureType,
    /// Its ports (published = the Service or node port, target = the container port).
    pub ports: Vec<PortSpec>,
    /// The corral services it selects.
    pub targets: Vec<String>,
    /// The balancing algorithm.
    pub lb: String,
}

impl App {
    /// An empty app.
    pub fn new(name: impl Into<String>, source: Source) -> Self {
        App {
            version: MODEL_VERSION,
            name: name.into(),
            source,
            services: BTreeMap::new(),
            volumes: BTreeMap::new(),
            networks: BTreeMap::new(),
            exposures: BTreeMap::new(),
        }
    }

    /// Services in an order that starts dependencies first (names break ties).
    pub fn start_order(&self) -> Vec<&ServiceSpec> {
        let mut done: Vec<&str> = Vec::new();
        let mut order = Vec::new();
        while order.len() < self.services.len() {
            let before = order.len();
            for (name, svc) in &self.services {
                if done.contains(&name.as_str()) {
                    continue;
                }
                let ready = svc.depends_on.iter().all(|d| {
                    done.contains(&d.service.as_str()) || !self.services.contains_key(&d.service)
                });
                if ready {
                    done.push(name);
                    order.push(svc);
                }
            }
            if order.len() == before {
                // A cycle (rejected by the parsers); keep the remaining ones in name order.
                for (name, svc) in &self.services {
                    if !done.contains(&name.as_str()) {
                        done.push(name);
                        order.push(svc);
                    }
                }
            }
        }
        order
    }
}

/// Where a replica runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// A container (namespaces and cgroups).
    #[default]
    Container,
    /// A microVM.
    Vm,
}

/// How one service runs and is exposed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// The service's name.
    pub name: String,
    /// The object it came from.
    pub kind: WorkloadKind,
    /// The image reference.
    pub image: Option<String>,
    /// How to build the image, when it is built locally.
    pub build: Option<BuildSpec>,
    /// Overrides the image's entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// Overrides the image's command (arguments to the entrypoint).
    pub command: Option<Vec<String>>,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Ports published through the balancer.
    pub ports: Vec<PortSpec>,
    /// Ports open to other services only.
    pub expose: Vec<u16>,
    /// Services that must start (or be healthy) first.
    pub depends_on: Vec<Dependency>,
    /// Desired replica count.
    pub replicas: u32,
    /// What happens when a replica exits.
    pub restart: RestartPolicy,
    /// Readiness probe: gates traffic.
    pub readiness: Option<Probe>,
    /// Liveness probe: failures restart the replica.
    pub liveness: Option<Probe>,
    /// How a changed spec replaces replicas.
    pub update: UpdateStrategy,
    /// Resource limits.
    pub resources: Resources,
    /// Mounted volumes and host folders.
    pub volumes: Vec<VolumeMount>,
    /// Files from ConfigMaps and Secrets.
    pub files: Vec<FileMount>,
    /// Networks joined.
    pub networks: Vec<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Keep stdin open.
    pub stdin_open: bool,
    /// Allocate a terminal.
    pub tty: bool,
    /// Working directory.
    pub working_dir: Option<String>,
    /// User (name or uid[:gid]).
    pub user: Option<String>,
    /// The balancing algorithm for its published ports (lb's syntax, e.g. `least_connections`).
    pub lb: String,
    /// Container or microVM replicas.
    pub isolation: Isolation,
}

impl ServiceSpec {
    /// The image it runs: `image:`, else `<project>-<service>` when it is built locally
    /// (Docker Compose's tag for a service with `build:` only).
    pub fn run_image(&self, project: &str) -> Option<String> {
        self.image.clone().or_else(|| {
            self.build
                .as_ref()
                .map(|_| format!("{project}-{}", self.name))
        })
    }
}

/// A local image build.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildSpec {
    /// The build context folder.
    pub context: String,
    /// The Containerfile/Dockerfile, relative to the context.
    pub dockerfile: Option<String>,
    /// Build arguments.
    pub args: BTreeMap<String, String>,
}

/// A transport protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

/// A published port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// The host port; `None` picks a free one.
    pub published: Option<u16>,
    /// The port inside the replica.
    pub target: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The host address to bind (all when `None`).
    pub host_ip: Option<IpAddr>,
    /// A name (Kubernetes port names).
    pub name: Option<String>,
    /// The application protocol (Kubernetes `appProtocol`, Compose `app_protocol`): `http`
    /// puts an L7 balancer in front.
    #[serde(default)]
    pub app_protocol: Option<String>,
}

/// When a dependency counts as started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DependencyCondition {
    /// Once it started.
    #[default]
    ServiceStarted,
    /// Once its health check passes.
    ServiceHealthy,
    /// Once it exited with status 0.
    ServiceCompletedSuccessfully,
}

/// One `depends_on` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    /// The service depended on.
    pub service: String,
    /// What it must reach first.
    pub condition: DependencyCondition,
}

/// The restart policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "policy")]
pub enum RestartPolicy {
    /// Never restart.
    #[default]
    No,
    /// Always restart.
    Always,
    /// Restart when the exit status is not 0, up to `max_retries` times (unbounded if `None`).
    OnFailure {
        /// The retry limit.
        max_retries: Option<u32>,
    },
    /// Restart unless a user stopped it.
    UnlessStopped,
}

/// What a probe does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ProbeAction {
    /// Run a command in the replica; exit 0 is success.
    Exec {
        /// argv.
        command: Vec<String>,
    },
    /// Run a shell command (`sh -c`) in the replica.
    Shell {
        /// The script.
        script: String,
    },
    /// An HTTP GET on the replica's port; 2xx/3xx is success.
    HttpGet {
        /// Path.
        path: String,
        /// Port in the replica.
        port: u16,
    },
    /// A TCP connect to the replica's port.
    TcpSocket {
        /// Port in the replica.
        port: u16,
    },
}

/// A health, readiness or liveness probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// What it runs.
    pub action: ProbeAction,
    /// Between probes.
    pub interval: Duration,
    /// A slower probe fails.
    pub timeout: Duration,
    /// Failures in a row that make the replica unhealthy/unready.
    pub failure_threshold: u32,
    /// Successes in a row that make it healthy/ready again.
    pub success_threshold: u32,
    /// Failures during this time after start do not count.
    pub initial_delay: Duration,
}

impl Probe {
    /// A probe with Kubernetes' default timing (10 s period, 1 s timeout, 3 failures).
    pub fn new(action: ProbeAction) -> Self {
        Probe {
            action,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            failure_threshold: 3,
            success_threshold: 1,
            initial_delay: Duration::ZERO,
        }
    }
}

/// A count or a percentage of the replica count (Kubernetes' IntOrString).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantity {
    /// An absolute count.
    Count(u32),
    /// A percentage.
    Percent(u32),
}

impl Quantity {
    /// The count for `replicas`, rounding percentages up (surge) or down (unavailable).
    pub fn resolve(self, replicas: u32, round_up: bool) -> u32 {
        match self {
            Quantity::Count(n) => n,
            Quantity::Percent(p) => {
                let x = replicas as u64 * p as u64;
                (if round_up { x.div_ceil(100) } else { x / 100 }) as u32
            }
        }
    }
}

/// How replicas are replaced when the spec changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum UpdateStrategy {
    /// Replace gradually: up to `max_surge` extra, up to `max_unavailable` missing.
    RollingUpdate {
        /// Extra replicas allowed during the update.
        max_surge: Quantity,
        /// Ready replicas that may be missing during the update.
        max_unavailable: Quantity,
    },
    /// Remove all old replicas, then start the new ones.
    Recreate,
}

impl Default for UpdateStrategy {
    /// Kubernetes' default: 25 % surge, 25 % unavailable.
    fn default() -> Self {
        UpdateStrategy::RollingUpdate {
            max_surge: Quantity::Percent(25),
            max_unavailable: Quantity::Percent(25),
        }
    }
}

/// Resource limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// CPUs (fractions allowed).
    pub cpus: Option<f64>,
    /// Memory in bytes.
    pub memory_bytes: Option<u64>,
    /// Process count.
    pub pids: Option<u64>,
}

/// A mount of a named volume or a host folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMount {
    /// A named volume, or a host path (bind) when it starts with `/` or `.`.
    pub source: Option<String>,
    /// Where in the replica.
    pub target: String,
    /// Read-only.
    pub read_only: bool,
    /// Whether `source` is a host path.
    pub bind: bool,
}

/// A file written into the replica (from a ConfigMap or Secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMount {
    /// Absolute path in the replica.
    pub path: String,
    /// Contents.
    pub content: Vec<u8>,
    /// Whether it came from a Secret (written with mode 0400, never logged).
    pub secret: bool,
}

/// A named volume.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    /// Managed elsewhere; never created or removed by corral.
    pub external: bool,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// A network.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    /// Managed elsewhere; never created or removed by corral.
    pub external: bool,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// Something a parser noticed but accepted (an unknown key, an ignored option).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// The file.
    pub file: String,
    /// The key path, e.g. `services.web.mem_swappiness`.
    pub path: String,
    /// The line (1-based), when known.
    pub line: Option<usize>,
    /// What was noticed.
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}: {}", self.file, l, self.path, self.message),
            None => write!(f, "{}: {}: {}", self.file, self.path, self.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_resolve_like_kubernetes() {
        assert_eq!(Quantity::Percent(25).resolve(3, true), 1);
        assert_eq!(Quantity::Percent(25).resolve(3, false), 0);
        assert_eq!(Quantity::Percent(50).resolve(4, false), 2);
        assert_eq!(Quantity::Count(2).resolve(10, true), 2);
    }

    #[test]
    fn start_order_puts_dependencies_first() {
        let mut app = App::new("p", Source::Compose);
        for (name, deps) in [
            ("web", vec!["db", "cache"]),
            ("db", vec![]),
            ("cache", vec!["db"]),
        ] {
            let svc = ServiceSpec {
                name: name.into(),
                depends_on: deps
                    .into_iter()
                    .map(|d| Dependency {
                        service: d.into(),
                        condition: DependencyCondition::ServiceStarted,
                    })
                    .collect(),
                ..Default::default()
            };
            app.services.insert(name.into(), svc);
        }
        let order: Vec<_> = app.start_order().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(order, vec!["db", "cache", "web"]);
    }
}
