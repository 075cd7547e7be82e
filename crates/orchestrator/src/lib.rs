//! Compose files and Kubernetes manifests as one desired-state model, and the reconcile loop
//! (replicas, restarts, rolling updates, scaling). It knows nothing of KVM or namespaces.
