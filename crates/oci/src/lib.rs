//! corral's OCI runtime: a `config.json` bundle to a process in namespaces and cgroups
//! (v1 and v2), with rootfs and mounts, devices, capabilities, seccomp, rlimits, hooks and
//! console handling, and a runc-style state directory. It knows nothing of images or the daemon.

pub mod cgroups;
pub mod namespaces;
