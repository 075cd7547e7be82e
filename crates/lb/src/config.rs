//! Service configuration: what to listen on, how to proxy, which algorithm, which health
//! check, which backends. The daemon builds these from the desired state; the `corral-lb`
//! example reads them from a TOML file.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::algorithm::Algorithm;
use crate::error::LbError;

/// L4 or L7 proxying.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Byte streams: each client connection goes to one backend.
    Tcp,
    /// HTTP/1.1: each request is balanced, with keep-alive on both sides.
    #[default]
    Http,
}

/// How an active health check probes a backend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum HealthCheckKind {
    /// A TCP connect succeeds.
    Tcp,
    /// `GET path` answers with a 2xx or 3xx status.
    Http {
        /// The request path.
        path: String,
    },
}

/// An active health check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// The probe.
    #[serde(flatten)]
    pub kind: HealthCheckKind,
    /// Time between probes, in milliseconds.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// A probe slower than this fails, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Consecutive successes that bring a backend back.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Consecutive failures that take a backend out.
    #[serde(default = "default_fall")]
    pub fall: u32,
}

fn default_interval_ms() -> u64 {
    2000
}
fn default_timeout_ms() -> u64 {
    1000
}
fn default_rise() -> u32 {
    2
}
fn default_fall() -> u32 {
    3
}

impl HealthCheck {
    /// A check with HAProxy's default cadence (2 s, rise 2, fall 3).
    pub fn new(kind: HealthCheckKind) -> Self {
        HealthCheck {
            kind,
            interval_ms: default_interval_ms(),
            timeout_ms: default_timeout_ms(),
            rise: default_rise(),
            fall: default_fall(),
        }
    }

    /// Time between probes.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms.max(10))
    }

    /// Probe timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }
}

/// One balanced service port.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceConfig {
    /// The service's name (logs, status).
    pub name: String,
    /// Where clients connect.
    pub listen: SocketAddr,
    /// L4 or L7.
    #[serde(default)]
    pub mode: Mode,
    /// The balancing algorithm.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// The backends at start (changed live later with `ServiceHandle::set_backends`).
    #[serde(default)]
    pub backends: Vec<SocketAddr>,
    /// The active health check, if any (passive ejection is always on).
    #[serde(default)]
    pub health: Option<HealthCheck>,
    /// How long a drain waits for in-flight work, in milliseconds.
    #[serde(default = "default_drain_ms")]
    pub drain_timeout_ms: u64,
}

fn default_drain_ms() -> u64 {
    30_000
}

impl ServiceConfig {
    /// An HTTP round-robin service with no backends yet.
    pub fn new(name: impl Into<String>, listen: SocketAddr) -> Self {
        ServiceConfig {
            name: name.into(),
            listen,
            mode: Mode::Http,
            algorithm: Algorithm::RoundRobin,
            backends: Vec::new(),
            health: None,
            drain_timeout_ms: default_drain_ms(),
        }
    }

    /// How long a drain waits.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }
}

/// A balancer configuration file: `[[service]]` tables.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LbConfig {
    /// The services.
    #[serde(default, rename = "service")]
    pub services: Vec<ServiceConfig>,
}

impl LbConfig {
    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<Self, LbError> {
        let text = std::fs::read_to_string(path).map_err(|e| LbError::Config {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::parse(&text).map_err(|message| LbError::Config {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_config_file_with_defaults() {
        let cfg = LbConfig::parse(
            r#"
            [[service]]
            name = "web"
            listen = "127.0.0.1:8080"
            algorithm = "hash:header=X-User"
            backends = ["127.0.0.1:9001", "127.0.0.1:9002"]
            health = { kind = "http", path = "/healthz", interval_ms = 500 }

            [[service]]
            name = "db"
            listen = "127.0.0.1:5432"
            mode = "tcp"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.services.len(), 2);
        let web = &cfg.services[0];
        assert_eq!(web.mode, Mode::Http);
        assert_eq!(web.algorithm.to_string(), "hash:header=x-user");
        assert_eq!(web.backends.len(), 2);
        let h = web.health.as_ref().unwrap();
        assert_eq!(
            h.kind,
            HealthCheckKind::Http {
                path: "/healthz".into()
            }
        );
        assert_eq!((h.interval_ms, h.rise, h.fall), (500, 2, 3));
        assert_eq!(cfg.services[1].mode, Mode::Tcp);
        assert_eq!(cfg.services[1].algorithm, Algorithm::RoundRobin);
    }

    #[test]
    fn bad_algorithm_is_reported() {
        let err =
            LbConfig::parse("[[service]]\nname='x'\nlisten='127.0.0.1:1'\nalgorithm='fastest'\n")
                .unwrap_err();
        assert!(err.contains("fastest"), "{err}");
    }
}
