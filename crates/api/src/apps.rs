//! Apps: Compose projects and Kubernetes namespaces as desired state (`/v1/apps`,
//! `/v1/kube/apply`, `/v1/kube/delete`), and their observed status.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One manifest file as the client read it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ManifestText {
    /// The name used in messages (usually the path).
    pub name: String,
    /// The YAML.
    pub text: String,
}

/// `POST /v1/apps`: bring a Compose project up (create it, or change it to these files).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(default)]
pub struct ComposeUpRequest {
    /// The Compose files, merged in order.
    pub files: Vec<ManifestText>,
    /// The project name (default: `dir_name`).
    pub project: Option<String>,
    /// The project folder's name (the default project name).
    pub dir_name: String,
    /// The project folder (absolute): relative bind mounts resolve against it.
    pub project_dir: String,
    /// The `.env` file's text, if there is one.
    pub env_file: Option<String>,
    /// The client's environment for `${VAR}` interpolation (it overrides `.env`).
    pub env: BTreeMap<String, String>,
}

/// `POST /v1/kube/apply` and `/v1/kube/delete`: Kubernetes manifests (multi-document YAML).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(default)]
pub struct KubeRequest {
    /// The manifest files.
    pub files: Vec<ManifestText>,
}

/// What an apply or up did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct AppChange {
    /// The app as it now stands (None once a delete removed its last workload).
    pub app: Option<AppStatus>,
    /// What the parser noticed but accepted (unknown keys…), one line each.
    pub warnings: Vec<String>,
    /// What changed, one line per object (`deployment.apps/chat created`).
    pub changes: Vec<String>,
}

/// `POST /v1/apps/{name}/scale`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(default)]
pub struct ScaleRequest {
    /// Replica counts by service.
    pub replicas: BTreeMap<String, u32>,
}

/// An app and what runs for it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct AppStatus {
    /// The project (Compose) or namespace (Kubernetes).
    pub name: String,
    /// `compose` or `kubernetes`.
    pub source: String,
    /// First up/apply, RFC 3339.
    pub created: String,
    /// Last change, RFC 3339.
    pub updated: String,
    /// Services (Compose services, Deployments, Pods).
    pub services: Vec<ServiceStatus>,
    /// Replicas of every service.
    pub replicas: Vec<ReplicaStatus>,
    /// Balanced entry points (published ports, Kubernetes Services).
    pub endpoints: Vec<EndpointStatus>,
    /// The last reconcile error, if the last step failed.
    pub error: Option<String>,
}

/// One service of an app.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ServiceStatus {
    /// Its name.
    pub name: String,
    /// `compose`, `deployment` or `pod`.
    pub kind: String,
    /// The image.
    pub image: String,
    /// Desired replicas.
    pub desired: u32,
    /// Replicas running the current spec.
    pub up_to_date: u32,
    /// Ready replicas (in the balancer).
    pub ready: u32,
    /// Replicas that exist.
    pub current: u32,
    /// Published ports, `HOST:PORT->TARGET/PROTO`.
    pub ports: Vec<String>,
    /// The balancing algorithm.
    pub lb: String,
}

/// One replica.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ReplicaStatus {
    /// Compose: `<project>-<service>-<n>`; a Deployment's pod: `<name>-<template hash>-<suffix>`;
    /// a Pod: its name. Also the container's name.
    pub name: String,
    /// Its service.
    pub service: String,
    /// The container id.
    pub id: String,
    /// kubectl's status: Running, ContainerCreating, NotReady, CrashLoopBackOff, Completed,
    /// Error, Terminating.
    pub status: String,
    /// In the balancer.
    pub ready: bool,
    /// Restarts so far.
    pub restarts: u32,
    /// Its address on the container network, when it has one.
    pub ip: Option<String>,
    /// Last start, RFC 3339.
    pub started: Option<String>,
    /// Creation, RFC 3339.
    pub created: String,
    /// The spec revision it runs.
    pub revision: String,
    /// Exit status of the last run, when it exited.
    pub exit_code: Option<i32>,
}

/// A balanced entry point.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct EndpointStatus {
    /// The Kubernetes Service's name, or the Compose service's.
    pub name: String,
    /// `ClusterIP`, `NodePort`, `LoadBalancer`, or `Published` (Compose).
    pub kind: String,
    /// Where the balancer listens, `IP:PORT` (None while it is not bound).
    pub listen: Option<String>,
    /// The port inside the replicas.
    pub target: u16,
    /// `tcp` (L4) or `http` (L7).
    pub mode: String,
    /// The service whose replicas it balances to.
    pub service: String,
    /// Current backends, `IP:PORT`.
    pub backends: Vec<String>,
}

impl crate::Client {
    /// `GET /v1/apps`: every app with its replicas.
    pub async fn apps(&self) -> Result<Vec<AppStatus>, crate::ClientError> {
        self.call::<(), _>(hyper::Method::GET, "/v1/apps", None)
            .await
    }

    /// `GET /v1/apps/{name}`.
    pub async fn app(&self, name: &str) -> Result<AppStatus, crate::ClientError> {
        let path = format!("/v1/apps/{}", crate::client::enc(name));
        self.call::<(), _>(hyper::Method::GET, &path, None).await
    }

    /// `POST /v1/apps`: create or update a Compose project.
    pub async fn compose_up(
        &self,
        req: &ComposeUpRequest,
    ) -> Result<AppChange, crate::ClientError> {
        self.call(hyper::Method::POST, "/v1/apps", Some(req)).await
    }

    /// `DELETE /v1/apps/{name}?volumes=`: remove everything the app made.
    pub async fn app_down(&self, name: &str, volumes: bool) -> Result<(), crate::ClientError> {
        let path = format!("/v1/apps/{}?volumes={volumes}", crate::client::enc(name));
        self.text(hyper::Method::DELETE, &path, None)
            .await
            .map(|_| ())
    }

    /// `POST /v1/apps/{name}/scale`.
    pub async fn app_scale(
        &self,
        name: &str,
        req: &ScaleRequest,
    ) -> Result<AppStatus, crate::ClientError> {
        let path = format!("/v1/apps/{}/scale", crate::client::enc(name));
        self.call(hyper::Method::POST, &path, Some(req)).await
    }

    /// `POST /v1/apps/{name}/restart`: restart every replica (one at a time per service).
    pub async fn app_restart(&self, name: &str) -> Result<AppStatus, crate::ClientError> {
        let path = format!("/v1/apps/{}/restart", crate::client::enc(name));
        self.call::<(), _>(hyper::Method::POST, &path, None).await
    }

    /// `POST /v1/kube/apply`.
    pub async fn kube_apply(&self, req: &KubeRequest) -> Result<AppChange, crate::ClientError> {
        self.call(hyper::Method::POST, "/v1/kube/apply", Some(req))
            .await
    }

    /// `POST /v1/kube/delete`.
    pub async fn kube_delete(&self, req: &KubeRequest) -> Result<AppChange, crate::ClientError> {
        self.call(hyper::Method::POST, "/v1/kube/delete", Some(req))
            .await
    }
}

/// One line of an app's output (`GET /v1/apps/{name}/logs`, JSON lines).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct AppLogLine {
    /// The replica (container) that wrote it.
    pub replica: String,
    /// Its service.
    pub service: String,
    /// RFC 3339 with nanoseconds.
    pub time: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The text, with its newline if it had one.
    pub log: String,
}
