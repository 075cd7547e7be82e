//! A container request: validation with field paths, and the OCI `config.json` made from it
//! (oci-spec's defaults for namespaces, mounts and masked paths; Docker's capabilities).

use std::path::Path;

use corral_api::ContainerSpec;
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, MountBuilder, Spec,
};

use crate::error::{ApiError, ApiResult};

/// A restart policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Never restart.
    No,
    /// Restart after a non-zero exit, at most N times (None: unlimited).
    OnFailure(Option<u32>),
    /// Always restart unless stopped by the user.
    Always,
}

impl Restart {
    /// Parse `no`, `always`, `on-failure[:N]`.
    pub fn parse(s: &str) -> Option<Restart> {
        match s {
            "" | "no" => Some(Restart::No),
            "always" => Some(Restart::Always),
            "on-failure" => Some(Restart::OnFailure(None)),
            _ => {
                let n = s.strip_prefix("on-failure:")?.parse().ok()?;
                Some(Restart::OnFailure(Some(n)))
            }
        }
    }

    /// Whether a run that ended with `code` after `restarts` restarts is restarted.
    pub fn should_restart(self, code: i32, restarts: i64) -> bool {
        match self {
            Restart::No => false,
            Restart::Always => true,
            Restart::OnFailure(max) => code != 0 && max.is_none_or(|m| restarts < m as i64),
        }
    }
}

/// A bind mount parsed from `SRC:DST[:ro|rw]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    /// Host path.
    pub source: String,
    /// Container path.
    pub target: String,
    /// Read-only.
    pub read_only: bool,
}

fn parse_volume(s: &str, field: &str) -> ApiResult<Volume> {
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [s, t] => (*s, *t, "rw"),
        [s, t, m] => (*s, *t, *m),
        _ => return Err(ApiError::invalid(field, "expected SRC:DST[:ro]")),
    };
    if !source.starts_with('/') {
        return Err(ApiError::invalid(
            field,
            format!("source {source:?} must be an absolute host path"),
        ));
    }
    if !Path::new(source).exists() {
        return Err(ApiError::invalid(
            field,
            format!("source {source} does not exist"),
        ));
    }
    if !target.starts_with('/') || target.split('/').any(|c| c == "..") {
        return Err(ApiError::invalid(
            field,
            format!("target {target:?} must be an absolute path without `..`"),
        ));
    }
    let read_only = match mode {
        "ro" => true,
        "rw" => false,
        m => {
            return Err(ApiError::invalid(
                field,
                format!("unknown mode {m:?}, use ro or rw"),
            ))
        }
    };
    Ok(Volume {
        source: source.into(),
        target: target.into(),
        read_only,
    })
}

fn valid_user_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && (s.bytes().all(|b| b.is_ascii_digit())
            || (s.as_bytes()[0].is_ascii_alphabetic() || s.as_bytes()[0] == b'_')
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)))
}

fn check_user(s: &str) -> ApiResult<()> {
    let ok = match s.split_once(':') {
        Some((u, g)) => valid_user_part(u) && valid_user_part(g),
        None => valid_user_part(s),
    };
    if !ok {
        return Err(ApiError::invalid(
            "user",
            format!("{s:?}: expected name|uid[:group|gid]"),
        ));
    }
    Ok(())
}

fn valid_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// How a container is networked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetMode {
    /// On a corral network (a bridge), with its own namespace, address and DNS.
    Bridge(String),
    /// A private namespace with loopback only.
    None,
    /// The host's namespace.
    Host,
}

/// The network mode a request asks for (`default` when it names none).
pub fn net_mode(spec: &ContainerSpec) -> NetMode {
    match spec.network.as_deref() {
        None | Some("") => NetMode::Bridge(corral_net::DEFAULT_NETWORK.into()),
        Some("none") => NetMode::None,
        Some("host") => NetMode::Host,
        Some(n) => NetMode::Bridge(n.to_string()),
    }
}

/// The published ports of a (validated) request.
pub fn ports(spec: &ContainerSpec) -> ApiResult<Vec<corral_net::PortMapping>> {
    let mut out: Vec<corral_net::PortMapping> = Vec::new();
    for (i, p) in spec.publish.iter().enumerate() {
        let field = format!("publish[{i}]");
        let m: corral_net::PortMapping = p
            .parse()
            .map_err(|e: corral_net::PortSpecError| ApiError::invalid(&field, e.to_string()))?;
        if out
            .iter()
            .any(|q| q.host_port == m.host_port && q.protocol == m.protocol)
        {
            return Err(ApiError::invalid(
                field,
                format!("host port {} is published twice", m.host_port),
            ));
        }
        out.push(m);
    }
    Ok(out)
}

/// Check every field of a request; the first problem is reported with its field path.
pub fn validate(spec: &ContainerSpec) -> ApiResult<()> {
    if let Some(name) = &spec.name {
        if !crate::ids::valid_name(name) {
            return Err(ApiError::invalid(
                "name",
                format!("{name:?}: use letters, digits, `_`, `.` and `-`, starting with a letter or digit (at most 64)"),
            ));
        }
    }
    if spec.image.is_empty() {
        return Err(ApiError::invalid("image", "an image is required"));
    }
    for (i, e) in spec.env.iter().enumerate() {
        if !e.contains('=') || e.starts_with('=') {
            return Err(ApiError::invalid(
                format!("env[{i}]"),
                format!("{e:?}: expected K=V"),
            ));
        }
    }
    for (i, v) in spec.volumes.iter().enumerate() {
        parse_volume(v, &format!("volumes[{i}]"))?;
    }
    if let Some(w) = &spec.workdir {
        if !w.starts_with('/') {
            return Err(ApiError::invalid(
                "workdir",
                format!("{w:?} must be absolute"),
            ));
        }
    }
    if let Some(u) = &spec.user {
        check_user(u)?;
    }
    if let Some(m) = spec.memory_bytes {
        if m < 4 << 20 {
            return Err(ApiError::invalid("memory_bytes", "the minimum is 4 MiB"));
        }
    }
    if let Some(c) = spec.cpus {
        if !(c > 0.0 && c <= 1024.0) {
            return Err(ApiError::invalid(
                "cpus",
                format!("{c} is not in (0, 1024]"),
            ));
        }
    }
    if let Some(p) = spec.pids_limit {
        if p == 0 || p < -1 {
            return Err(ApiError::invalid(
                "pids_limit",
                "must be positive (or -1 for no limit)",
            ));
        }
    }
    super::caps::validate(spec)?;
    if let Some(r) = &spec.restart {
        if Restart::parse(r).is_none() {
            return Err(ApiError::invalid(
                "restart",
                format!("{r:?}: use no, always or on-failure[:N]"),
            ));
        }
        if spec.auto_remove && r != "no" {
            return Err(ApiError::invalid(
                "restart",
                "--rm and a restart policy exclude each other",
            ));
        }
    }
    let mode = net_mode(spec);
    if let NetMode::Bridge(n) = &mode {
        let ok = n.len() <= 32
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
        if !ok {
            return Err(ApiError::invalid(
                "network",
                format!("{n:?}: a network name, `none` or `host`"),
            ));
        }
    }
    ports(spec)?;
    if !spec.publish.is_empty() && !matches!(mode, NetMode::Bridge(_)) {
        return Err(ApiError::invalid(
            "publish",
            "ports are published on a corral network, not with --network none or host",
        ));
    }
    for (i, a) in spec.aliases.iter().enumerate() {
        if !valid_dns_name(a) {
            return Err(ApiError::invalid(
                format!("aliases[{i}]"),
                format!("{a:?}: use 1-63 of letters, digits, `-`, `_`, `.`"),
            ));
        }
    }
    if !spec.aliases.is_empty() && !matches!(mode, NetMode::Bridge(_)) {
        return Err(ApiError::invalid(
            "aliases",
            "aliases are names on a corral network, not with --network none or host",
        ));
    }
    for k in spec.labels.keys() {
        if k.is_empty() || k.contains('=') {
            return Err(ApiError::invalid(
                format!("labels.{k}"),
                "a label key is non-empty and has no `=`",
            ));
        }
    }
    Ok(())
}

/// What besides the request goes into `config.json`.
#[derive(Debug, Clone, Default)]
pub struct OciInputs {
    /// The image's defaults (command, env, workdir).
    pub image: crate::containers::rootfs::ImageDefaults,
    /// The resolved user (`-u`, else the image's).
    pub user: Option<(u32, u32)>,
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
    process.set_env(Some(env));
    process.set_terminal(Some(spec.tty));
    let cwd = spec
        .workdir
        .clone()
        .or_else(|| inputs.image.workdir.clone())
        .unwrap_or_else(|| "/".into());
    process.set_cwd(cwd.into());
    if let Some((uid, gid)) = inputs.user {
        process.user_mut().set_uid(uid);
        process.user_mut().set_gid(gid);
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
    fn errors_name_the_field() {
        let mut s = base();
        s.volumes = vec!["/tmp:/data".into(), "relative:/x".into()];
        let e = validate(&s).unwrap_err();
        assert!(
            matches!(&e, ApiError::Invalid { field, .. } if field == "volumes[1]"),
            "{e}"
        );
        let mut s = base();
        s.env = vec!["NOEQUALS".into()];
        assert!(
            matches!(validate(&s).unwrap_err(), ApiError::Invalid { field, .. } if field == "env[0]")
        );
        let mut s = base();
        s.cap_add = vec!["NOT_A_CAP".into()];
        assert!(
            matches!(validate(&s).unwrap_err(), ApiError::Invalid { field, .. } if field == "cap_add[0]")
        );
        let mut s = base();
        s.restart = Some("sometimes".into());
        assert!(
            matches!(validate(&s).unwrap_err(), ApiError::Invalid { field, .. } if field == "restart")
        );
        validate(&base()).unwrap();
    }

    #[test]
    fn restart_policy() {
        assert_eq!(
            Restart::parse("on-failure:3"),
            Some(Restart::OnFailure(Some(3)))
        );
        assert!(Restart::OnFailure(Some(3)).should_restart(1, 2));
        assert!(!Restart::OnFailure(Some(3)).should_restart(1, 3));
        assert!(!Restart::OnFailure(None).should_restart(0, 0));
        assert!(Restart::Always.should_restart(0, 100));
        assert!(!Restart::No.should_restart(1, 0));
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
    fn network_fields_are_checked() {
        let mut s = base();
        s.publish = vec!["8080:80".into(), "8080:81".into()];
        assert!(
            matches!(validate(&s).unwrap_err(), ApiError::Invalid { field, .. } if field == "publish[1]")
        );
        let mut s = base();
        s.publish = vec!["8080:80".into()];
        s.network = Some("host".into());
        assert!(
            matches!(validate(&s).unwrap_err(), ApiError::Invalid { field, .. } if field == "publish")
        );
        let mut s = base();
        s.network = Some("Bad Net".into());
        assert!(
            matches!(validate(&s).unwrap_err(), ApiError::Invalid { field, .. } if field == "network")
        );
        let mut s = base();
        s.user = Some("www-data:staff".into());
        validate(&s).unwrap();
        s.user = Some("a b".into());
        assert!(validate(&s).is_err());
        assert_eq!(
            net_mode(&base()),
            NetMode::Bridge(corral_net::DEFAULT_NETWORK.into())
        );
    }
}
