//! Instructions that only change the image config: ENV, ARG, WORKDIR, USER, CMD, ENTRYPOINT,
//! EXPOSE, LABEL, VOLUME, STOPSIGNAL, HEALTHCHECK, SHELL.

use std::collections::HashMap;

use oci_spec::image::{Config, ImageConfiguration};

use super::parser::{expand, Command, Instruction};
use super::BuildError;

/// The label that carries HEALTHCHECK (the OCI config has no field for it).
pub const HEALTHCHECK_LABEL: &str = "io.corral.healthcheck";
/// The label that carries SHELL for later RUN steps.
pub const SHELL_LABEL: &str = "io.corral.shell";

/// The config's environment as a map.
pub fn env_map(config: &ImageConfiguration) -> HashMap<String, String> {
    config
        .config()
        .as_ref()
        .and_then(|c| c.env().clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// The shell RUN/CMD shell forms use.
pub fn shell_of(config: &ImageConfiguration) -> Vec<String> {
    config
        .config()
        .as_ref()
        .and_then(|c| c.labels().as_ref())
        .and_then(|l| l.get(SHELL_LABEL))
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_else(|| vec!["/bin/sh".to_string(), "-c".to_string()])
}

/// A command as argv: exec form as is, shell form through the shell.
pub fn argv(cmd: &Command, shell: &[String]) -> Vec<String> {
    match cmd {
        Command::Exec(v) => v.clone(),
        Command::Shell(s) => shell
            .iter()
            .cloned()
            .chain(std::iter::once(s.clone()))
            .collect(),
    }
}

fn err(m: String) -> BuildError {
    BuildError::Context(m)
}

/// Applies a config-only instruction.
pub fn apply_config(
    config: &mut ImageConfiguration,
    ins: &Instruction,
    vars: &dyn Fn(&str) -> Option<String>,
) -> Result<(), BuildError> {
    let x = |s: &str| expand(s, vars).map_err(err);
    let shell = shell_of(config);
    let mut c: Config = config.config().clone().unwrap_or_default();
    match ins {
        Instruction::Env(pairs) => {
            let mut env: Vec<String> = c.env().clone().unwrap_or_default();
            for (k, v) in pairs {
                let v = x(v)?;
                env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k.as_str()));
                env.push(format!("{k}={v}"));
            }
            c.set_env(Some(env));
        }
        Instruction::Arg(..)
        | Instruction::From { .. }
        | Instruction::Run(_)
        | Instruction::Copy(_)
        | Instruction::Add(_) => {}
        Instruction::Workdir(w) => {
            let w = x(w)?;
            let base = c.working_dir().clone().unwrap_or_else(|| "/".into());
            let joined = if w.starts_with('/') {
                w
            } else {
                format!("{}/{w}", base.trim_end_matches('/'))
            };
            let clean = super::context::clean_relative(&joined).unwrap_or_default();
            c.set_working_dir(Some(format!("/{}", clean.display())));
        }
        Instruction::User(u) => {
            c.set_user(Some(x(u)?));
        }
        Instruction::Cmd(cmd) => {
            c.set_cmd(Some(argv(cmd, &shell)));
        }
        Instruction::Entrypoint(cmd) => {
            c.set_entrypoint(Some(argv(cmd, &shell)));
            c.set_cmd(None);
        }
        Instruction::Expose(ports) => {
            let mut p = c.exposed_ports().clone().unwrap_or_default();
            for port in ports {
                let port = x(port)?;
                let port = if port.contains('/') {
                    port
                } else {
                    format!("{port}/tcp")
                };
                if !p.contains(&port) {
                    p.push(port);
                }
            }
            c.set_exposed_ports(Some(p));
        }
        Instruction::Label(pairs) => {
            let mut l = c.labels().clone().unwrap_or_default();
            for (k, v) in pairs {
                l.insert(x(k)?, x(v)?);
            }
            c.set_labels(Some(l));
        }
        Instruction::Volume(vols) => {
            let mut v = c.volumes().clone().unwrap_or_default();
            for vol in vols {
                let vol = x(vol)?;
                if !v.contains(&vol) {
                    v.push(vol);
                }
            }
            c.set_volumes(Some(v));
        }
        Instruction::StopSignal(s) => {
            c.set_stop_signal(Some(x(s)?));
        }
        Instruction::Healthcheck(h) => {
            let mut l = c.labels().clone().unwrap_or_default();
            l.insert(
                HEALTHCHECK_LABEL.into(),
                serde_json::to_string(h).expect("serializes"),
            );
            c.set_labels(Some(l));
        }
        Instruction::Shell(s) => {
            let mut l = c.labels().clone().unwrap_or_default();
            l.insert(
                SHELL_LABEL.into(),
                serde_json::to_string(s).expect("serializes"),
            );
            c.set_labels(Some(l));
        }
    }
    config.set_config(Some(c));
    Ok(())
}
