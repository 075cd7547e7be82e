//! The OCI `config.json` of a validated container request: oci-spec's defaults for
//! namespaces, mounts and masked paths; Docker's capabilities ([`super::caps`]); the image's
//! command, environment and working directory under the request's; the user resolved in the
//! image (uid, gid, supplementary groups, `HOME`); volumes, injected files, the network
//! namespace, and resource limits.

use corral_api::ContainerSpec;
use corral_image::build::user::RunUser;
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, MountBuilder, Spec,
};

use super::spec::{net_mode, parse_volume, NetMode};
use crate::error::{ApiError, ApiResult};

/// What besides the request goes into `config.json`.
#[derive(Debug, Clone, Default)]
pub struct OciInputs {
    /// The image's defaults (command, env, workdir).
    pub image: crate::containers::rootfs::ImageDefaults,
    /// The user resolved in the image (`-u`, else the image's; root when None).
    pub user: Option<RunUser>,
    /// A network namespace to join instead of making a new one.
    pub netns: Option<std::path::PathBuf>,
    /// Host files bind-mounted over container paths (`/etc/hosts`, `/etc/resolv.conf`, …).
    pub files: Vec<(std::path::PathBuf, String)>,
}

fn oci_err(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal("building config.json", e)
}

/// The environment: the image's, `PATH` when the image has none, `HOSTNAME`, then the
/// request's (a request variable replaces an image variable of the same name).
fn environment(image_env: &[String], request_env: &[String], hostname: &str) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    let mut set = |kv: &str| {
        let key = kv.split('=').next().unwrap_or(kv);
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.to_string());
    };
    set("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for e in image_env {
        set(e);
    }
    set(&format!("HOSTNAME={hostname}"));
    for e in request_env {
        set(e);
    }
    env
}

/// The OCI runtime spec for a validated request.
pub fn to_oci(spec: &ContainerSpec, id: &str, inputs: &OciInputs) -> ApiResult<Spec> {
    let mut oci = Spec::default();
    oci.set_hostname(Some(id[..12].to_string()));
    if let Some(root) = oci.root_mut() {
        root.set_path("rootfs".into());
        root.set_readonly(Some(spec.read_only));
    }
    let process = oci
        .process_mut()
        .as_mut()
        .ok_or_else(|| oci_err("no process"))?;
    let args = inputs.image.args(spec.entrypoint.as_deref(), &spec.command);
    if args.is_empty() {
        return Err(ApiError::invalid(
            "command",
            format!(
                "image {} has no command: give one after the image name",
                inputs.image.reference
            ),
        ));
    }
    process.set_args(Some(args));
    let mut env = environment(&inputs.image.env, &spec.env, &id[..12]);
    if spec.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    // HOME from the image's passwd unless set, as Docker (and runc's init) do.
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let home = inputs.user.as_ref().map_or("/root", |u| u.home.as_str());
        env.push(format!("HOME={home}"));
    }
    process.set_env(Some(env));
    process.set_terminal(Some(spec.tty));
    let cwd = spec
        .workdir
        .clone()
        .or_else(|| inputs.image.workdir.clone())
        .unwrap_or_else(|| "/".into());
    process.set_cwd(cwd.into());
    if let Some(u) = &inputs.user {
        process.user_mut().set_uid(u.uid);
        process.user_mut().set_gid(u.gid);
        process
            .user_mut()
            .set_additional_gids(Some(u.additional_gids.clone()).filter(|g| !g.is_empty()));
    }
    process.set_capabilities(Some(super::caps::process_capabilities(spec)?));

    let mut mounts = oci.mounts().clone().unwrap_or_default();
    for (i, v) in spec.volumes.iter().enumerate() {
        let v = parse_volume(v, &format!("volumes[{i}]"))?;
        let mut opts = vec!["rbind".to_string()];
        opts.push(if v.read_only { "ro" } else { "rw" }.into());
        mounts.push(
            MountBuilder::default()
                .destination(v.target)
                .typ("bind")
                .source(v.source)
                .options(opts)
                .build()
                .map_err(oci_err)?,
        );
    }
    for (src, dst) in &inputs.files {
        mounts.push(
            MountBuilder::default()
                .destination(dst)
                .typ("bind")
                .source(src)
                .options(vec!["rbind".to_string(), "rw".to_string()])
                .build()
                .map_err(oci_err)?,
        );
    }
    oci.set_mounts(Some(mounts));

    let linux = oci
        .linux_mut()
        .as_mut()
        .ok_or_else(|| oci_err("no linux section"))?;
    linux.set_cgroups_path(Some(format!("/corral/{id}").into()));
    if net_mode(spec) != NetMode::Host {
        // Unprivileged ICMP echo sockets in the container's own namespace (as Docker does), so
        // `ping` works without CAP_NET_RAW.
        let mut sysctl = linux.sysctl().clone().unwrap_or_default();
        sysctl.insert(
            "net.ipv4.ping_group_range".to_string(),
            "0 2147483647".to_string(),
        );
        linux.set_sysctl(Some(sysctl));
    }
    if let Some(ns) = linux.namespaces_mut() {
        match (net_mode(spec), &inputs.netns) {
            (NetMode::Host, _) => ns.retain(|n| n.typ() != LinuxNamespaceType::Network),
            (_, Some(path)) => {
                for n in ns.iter_mut() {
                    if n.typ() == LinuxNamespaceType::Network {
                        n.set_path(Some(path.clone()));
                    }
                }
            }
            _ => {}
        }
    }
    let mut res = LinuxResourcesBuilder::default();
    if let Some(m) = spec.memory_bytes {
        res = res.memory(
            LinuxMemoryBuilder::default()
                .limit(m as i64)
                .build()
                .map_err(oci_err)?,
        );
    }
    if let Some(c) = spec.cpus {
        let period = 100_000u64;
        res = res.cpu(
            LinuxCpuBuilder::default()
                .period(period)
                .quota((c * period as f64) as i64)
                .build()
                .map_err(oci_err)?,
        );
    }
    if let Some(p) = spec.pids_limit {
        res = res.pids(
            LinuxPidsBuilder::default()
                .limit(p)
                .build()
                .map_err(oci_err)?,
        );
    }
    linux.set_resources(Some(res.build().map_err(oci_err)?));
    Ok(oci)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> ContainerSpec {
        ContainerSpec {
            image: "busybox".into(),
            ..Default::default()
        }
    }

    #[test]
    fn config_carries_limits_caps_and_mounts() {
        let mut s = base();
        s.command = vec!["echo".into(), "hi".into()];
        s.memory_bytes = Some(64 << 20);
        s.pids_limit = Some(10);
        s.cap_drop = vec!["chown".into()];
        s.volumes = vec!["/tmp:/data:ro".into()];
        s.network = Some("host".into());
        let id = crate::ids::new_id();
        let mut inputs = OciInputs::default();
        inputs.image.cmd = vec!["sh".into()];
        inputs.image.env = vec!["PATH=/img".into(), "A=1".into()];
        inputs.image.workdir = Some("/srv".into());
        inputs.files = vec![("/x/hosts".into(), "/etc/hosts".into())];
        s.env = vec!["A=2".into()];
        let oci = to_oci(&s, &id, &inputs).unwrap();
        let json = serde_json::to_value(&oci).unwrap();
        assert_eq!(json["process"]["args"], serde_json::json!(["echo", "hi"]));
        assert_eq!(json["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(json["linux"]["resources"]["pids"]["limit"], 10);
        assert_eq!(json["linux"]["cgroupsPath"], format!("/corral/{id}"));
        let bounding = json["process"]["capabilities"]["bounding"].to_string();
        assert!(!bounding.contains("CAP_CHOWN"), "{bounding}");
        assert!(json["mounts"].to_string().contains("\"/data\""));
        assert!(!json["linux"]["namespaces"].to_string().contains("network"));
        let env = json["process"]["env"].to_string();
        assert!(env.contains("PATH=/img") && env.contains("A=2") && !env.contains("A=1"));
        assert_eq!(json["process"]["cwd"], "/srv");
        assert!(json["mounts"].to_string().contains("/x/hosts"));
    }

    #[test]
    fn the_user_brings_its_groups_and_home() {
        let mut s = base();
        s.command = vec!["id".into()];
        let id = crate::ids::new_id();
        let root = to_oci(&s, &id, &OciInputs::default()).unwrap();
        let p = root.process().as_ref().unwrap();
        assert!(p
            .env()
            .as_ref()
            .unwrap()
            .contains(&"HOME=/root".to_string()));
        let inputs = OciInputs {
            user: Some(RunUser {
                uid: 1000,
                gid: 100,
                additional_gids: vec![27, 44],
                home: "/home/u".into(),
            }),
            ..Default::default()
        };
        let oci = to_oci(&s, &id, &inputs).unwrap();
        let p = oci.process().as_ref().unwrap();
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 100));
        assert_eq!(p.user().additional_gids().as_deref(), Some(&[27, 44][..]));
        assert!(p
            .env()
            .as_ref()
            .unwrap()
            .contains(&"HOME=/home/u".to_string()));
        // A HOME the request sets wins.
        s.env = vec!["HOME=/data".into()];
        let oci = to_oci(&s, &id, &inputs).unwrap();
        let env = oci.process().as_ref().unwrap().env().clone().unwrap();
        assert!(
            env.contains(&"HOME=/data".to_string()) && !env.contains(&"HOME=/home/u".to_string())
        );
    }
}
