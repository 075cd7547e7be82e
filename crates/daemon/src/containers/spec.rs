//! A container request: what its fields mean (restart policy, volumes, network mode, published
//! ports) and their validation with field paths. The `config.json` made from a valid request
//! is [`super::oci_config`]'s.

use std::path::Path;

use corral_api::ContainerSpec;

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

/// Parse `SRC:DST[:ro|rw]`; `field` names it in errors.
pub fn parse_volume(s: &str, field: &str) -> ApiResult<Volume> {
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
