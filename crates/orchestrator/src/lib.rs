//! Compose files and Kubernetes manifests as one desired-state model, and the reconcile loop
//! (replicas, restarts, rolling updates, scaling). It knows nothing of KVM or namespaces: the
//! daemon implements [`reconcile::Driver`] over its containers and VMs and its balancer.

pub mod compose;
mod decode;
pub mod error;
pub mod interp;
pub mod kube;
pub mod model;
pub mod raw_common;
pub mod reconcile;
pub mod units;
pub mod yaml_pos;

pub use error::ManifestError;
pub use model::{App, ServiceSpec, Source, Warning};
