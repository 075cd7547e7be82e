//! The Compose file as written (versions 2, 3 and the unversioned Compose spec): serde shapes
//! that accept every spelling Compose accepts, converted to the model by the parent module.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::raw_common::{MapOrList, Scalar, StringOrList};

/// The top level.
#[derive(Debug, Default, Deserialize)]
pub struct RawCompose {
    pub version: Option<Scalar>,
    pub name: Option<String>,
    #[serde(default)]
    pub services: BTreeMap<String, RawService>,
    #[serde(default)]
    pub volumes: BTreeMap<String, Option<RawTopVolume>>,
    #[serde(default)]
    pub networks: BTreeMap<String, Option<RawTopNetwork>>,
}

/// One service.
#[derive(Debug, Default, Deserialize)]
pub struct RawService {
    pub image: Option<String>,
    pub build: Option<RawBuild>,
    pub command: Option<StringOrList>,
    pub entrypoint: Option<StringOrList>,
    pub environment: Option<MapOrList>,
    pub env_file: Option<StringOrList>,
    #[serde(default)]
    pub ports: Vec<RawPort>,
    #[serde(default)]
    pub expose: Vec<Scalar>,
    pub depends_on: Option<RawDependsOn>,
    pub healthcheck: Option<RawHealthcheck>,
    pub restart: Option<String>,
    pub deploy: Option<RawDeploy>,
    #[serde(default)]
    pub volumes: Vec<RawVolumeMount>,
    pub networks: Option<RawNetworks>,
    pub labels: Option<MapOrList>,
    #[serde(default)]
    pub stdin_open: bool,
    #[serde(default)]
    pub tty: bool,
    pub working_dir: Option<String>,
    pub user: Option<Scalar>,
    /// Version 2's memory limit.
    pub mem_limit: Option<Scalar>,
    /// Version 2.2+'s CPU limit.
    pub cpus: Option<Scalar>,
    pub pids_limit: Option<i64>,
    /// Version 2's and the spec's replica count.
    pub scale: Option<u32>,
    #[serde(rename = "x-corral-lb")]
    pub x_corral_lb: Option<String>,
    #[serde(rename = "x-corral-isolation")]
    pub x_corral_isolation: Option<String>,
}

/// `build: ./dir` or the long form.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawBuild {
    Context(String),
    Long(RawBuildLong),
}

/// The long `build:` form.
#[derive(Debug, Default, Deserialize)]
pub struct RawBuildLong {
    #[serde(default)]
    pub context: Option<String>,
    pub dockerfile: Option<String>,
    pub args: Option<MapOrList>,
}

/// A `ports:` item: `"8080:80/tcp"`, `80`, or the long form.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawPort {
    Short(Scalar),
    Long(RawPortLong),
}

/// The long port form.
#[derive(Debug, Deserialize)]
pub struct RawPortLong {
    pub target: u16,
    pub published: Option<Scalar>,
    pub protocol: Option<String>,
    pub host_ip: Option<String>,
    pub mode: Option<String>,
    pub name: Option<String>,
    pub app_protocol: Option<String>,
}

/// `depends_on:` as a list or a map with conditions.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawDependsOn {
    List(Vec<String>),
    Map(BTreeMap<String, RawDependency>),
}

/// One long-form dependency.
#[derive(Debug, Default, Deserialize)]
pub struct RawDependency {
    pub condition: Option<String>,
    #[serde(default)]
    pub restart: bool,
    pub required: Option<bool>,
}

/// `healthcheck:`.
#[derive(Debug, Default, Deserialize)]
pub struct RawHealthcheck {
    pub test: Option<StringOrList>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub retries: Option<u32>,
    pub start_period: Option<String>,
    pub start_interval: Option<String>,
    #[serde(default)]
    pub disable: bool,
}

/// `deploy:` (version 3 and the spec).
#[derive(Debug, Default, Deserialize)]
pub struct RawDeploy {
    pub mode: Option<String>,
    pub replicas: Option<u32>,
    pub resources: Option<RawResources>,
    pub update_config: Option<RawUpdateConfig>,
    pub restart_policy: Option<RawRestartPolicy>,
    pub labels: Option<MapOrList>,
}

/// `deploy.resources`.
#[derive(Debug, Default, Deserialize)]
pub struct RawResources {
    pub limits: Option<RawLimits>,
    pub reservations: Option<RawLimits>,
}

/// `deploy.resources.limits`.
#[derive(Debug, Default, Deserialize)]
pub struct RawLimits {
    pub cpus: Option<Scalar>,
    pub memory: Option<Scalar>,
    pub pids: Option<i64>,
}

/// `deploy.update_config`.
#[derive(Debug, Default, Deserialize)]
pub struct RawUpdateConfig {
    pub parallelism: Option<u32>,
    pub delay: Option<String>,
    pub order: Option<String>,
    pub failure_action: Option<String>,
    pub monitor: Option<String>,
    pub max_failure_ratio: Option<f64>,
}

/// `deploy.restart_policy`.
#[derive(Debug, Default, Deserialize)]
pub struct RawRestartPolicy {
    pub condition: Option<String>,
    pub delay: Option<String>,
    pub max_attempts: Option<u32>,
    pub window: Option<String>,
}

/// A `volumes:` item: `name:/path:ro` or the long form.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawVolumeMount {
    Short(String),
    Long(RawVolumeLong),
}

/// The long volume form.
#[derive(Debug, Deserialize)]
pub struct RawVolumeLong {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub source: Option<String>,
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
}

/// `networks:` of a service: a list, or a map with per-network options.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawNetworks {
    List(Vec<String>),
    Map(BTreeMap<String, Option<serde_yaml::Value>>),
}

/// A top-level volume.
#[derive(Debug, Default, Deserialize)]
pub struct RawTopVolume {
    pub driver: Option<String>,
    pub external: Option<serde_yaml::Value>,
    pub labels: Option<MapOrList>,
    pub name: Option<String>,
    pub driver_opts: Option<BTreeMap<String, Scalar>>,
}

/// A top-level network.
#[derive(Debug, Default, Deserialize)]
pub struct RawTopNetwork {
    pub driver: Option<String>,
    pub external: Option<serde_yaml::Value>,
    pub labels: Option<MapOrList>,
    pub name: Option<String>,
    pub internal: Option<bool>,
    pub ipam: Option<serde_yaml::Value>,
}
