//! The Kubernetes objects corral reads, as written (camelCase), with only the fields it uses or
//! knowingly ignores; anything else is reported as an unknown key.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::raw_common::Scalar;

/// Metadata.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    pub name: Option<String>,
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub creation_timestamp: Option<serde_yaml::Value>,
}

/// A Deployment (apps/v1, extensions/v1beta1, apps/v1beta1, apps/v1beta2).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: Meta,
    pub spec: DeploymentSpec,
    pub status: Option<serde_yaml::Value>,
}

/// Deployment spec.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentSpec {
    pub replicas: Option<u32>,
    pub selector: Option<LabelSelector>,
    pub strategy: Option<Strategy>,
    pub template: PodTemplate,
    pub min_ready_seconds: Option<u32>,
    pub revision_history_limit: Option<u32>,
    pub progress_deadline_seconds: Option<u32>,
}

/// A label selector.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// Deployment strategy.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Strategy {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub rolling_update: Option<RollingUpdate>,
}

/// Rolling update parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollingUpdate {
    pub max_surge: Option<Scalar>,
    pub max_unavailable: Option<Scalar>,
}

/// A pod template.
#[derive(Debug, Deserialize)]
pub struct PodTemplate {
    #[serde(default)]
    pub metadata: Meta,
    pub spec: PodSpec,
}

/// A Pod.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: Meta,
    pub spec: PodSpec,
    pub status: Option<serde_yaml::Value>,
}

/// Pod spec.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    pub containers: Vec<Container>,
    pub restart_policy: Option<String>,
    pub runtime_class_name: Option<String>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    pub termination_grace_period_seconds: Option<u32>,
    pub hostname: Option<String>,
}

/// A container.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    pub image: Option<String>,
    pub command: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    #[serde(default)]
    pub env: Vec<EnvVar>,
    #[serde(default)]
    pub env_from: Vec<EnvFrom>,
    #[serde(default)]
    pub ports: Vec<ContainerPort>,
    pub resources: Option<ResourceRequirements>,
    pub readiness_probe: Option<Probe>,
    pub liveness_probe: Option<Probe>,
    #[serde(default)]
    pub stdin: bool,
    #[serde(default)]
    pub tty: bool,
    pub working_dir: Option<String>,
    #[serde(default)]
    pub volume_mounts: Vec<VolumeMount>,
    pub image_pull_policy: Option<String>,
}

/// One `env` entry.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    pub name: String,
    pub value: Option<String>,
    pub value_from: Option<EnvSource>,
}

/// `valueFrom`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvSource {
    pub config_map_key_ref: Option<KeyRef>,
    pub secret_key_ref: Option<KeyRef>,
}

/// A key of a ConfigMap or Secret.
#[derive(Debug, Deserialize)]
pub struct KeyRef {
    pub name: String,
    pub key: String,
    #[serde(default)]
    pub optional: bool,
}

/// `envFrom`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvFrom {
    pub config_map_ref: Option<NameRef>,
    pub secret_ref: Option<NameRef>,
    pub prefix: Option<String>,
}

/// A reference by name.
#[derive(Debug, Deserialize)]
pub struct NameRef {
    pub name: String,
    #[serde(default)]
    pub optional: bool,
}

/// A container port.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    pub container_port: u16,
    pub name: Option<String>,
    pub protocol: Option<String>,
    pub host_port: Option<u16>,
}

/// Resources.
#[derive(Debug, Default, Deserialize)]
pub struct ResourceRequirements {
    #[serde(default)]
    pub limits: BTreeMap<String, Scalar>,
    #[serde(default)]
    pub requests: BTreeMap<String, Scalar>,
}

/// A probe.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    pub http_get: Option<HttpGet>,
    pub tcp_socket: Option<TcpSocket>,
    pub exec: Option<ExecAction>,
    pub initial_delay_seconds: Option<u32>,
    pub period_seconds: Option<u32>,
    pub timeout_seconds: Option<u32>,
    pub failure_threshold: Option<u32>,
    pub success_threshold: Option<u32>,
}

/// `httpGet`.
#[derive(Debug, Deserialize)]
pub struct HttpGet {
    pub path: Option<String>,
    pub port: Scalar,
    pub scheme: Option<String>,
}

/// `tcpSocket`.
#[derive(Debug, Deserialize)]
pub struct TcpSocket {
    pub port: Scalar,
}

/// `exec`.
#[derive(Debug, Deserialize)]
pub struct ExecAction {
    pub command: Vec<String>,
}

/// A pod volume.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub name: String,
    pub config_map: Option<ConfigMapVolume>,
    pub secret: Option<SecretVolume>,
    pub empty_dir: Option<serde_yaml::Value>,
    pub host_path: Option<HostPath>,
}

/// A ConfigMap volume.
#[derive(Debug, Deserialize)]
pub struct ConfigMapVolume {
    pub name: String,
    #[serde(default)]
    pub items: Vec<KeyToPath>,
}

/// A Secret volume.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretVolume {
    pub secret_name: String,
    #[serde(default)]
    pub items: Vec<KeyToPath>,
}

/// A key projected to a file.
#[derive(Debug, Deserialize)]
pub struct KeyToPath {
    pub key: String,
    pub path: String,
}

/// A host folder.
#[derive(Debug, Deserialize)]
pub struct HostPath {
    pub path: String,
}

/// A container's volume mount.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: String,
    #[serde(default)]
    pub read_only: bool,
}

/// A Service.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: Meta,
    pub spec: ServiceSpec,
    pub status: Option<serde_yaml::Value>,
}

/// Service spec.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    pub session_affinity: Option<String>,
    #[serde(rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    pub external_traffic_policy: Option<String>,
}

/// A Service port.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: u16,
    pub target_port: Option<Scalar>,
    pub node_port: Option<u16>,
    pub protocol: Option<String>,
    pub app_protocol: Option<String>,
}

/// A ConfigMap.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMap {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: Meta,
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    #[serde(default)]
    pub binary_data: BTreeMap<String, String>,
}

/// A Secret.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: Meta,
    #[serde(rename = "type")]
    pub kind_of_secret: Option<String>,
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    #[serde(default)]
    pub string_data: BTreeMap<String, String>,
}
