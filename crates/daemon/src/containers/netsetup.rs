//! A container's networking: on a corral network it gets its own network namespace (bound at
//! `<run>/netns/<id>`, joined by the OCI runtime) with a veth on the network's bridge, an
//! address, published ports, and `/etc/hosts`, `/etc/resolv.conf` (the network's DNS responder
//! first) and `/etc/hostname` written in its folder and bind-mounted. With `--network host` it
//! gets copies of the host's hosts and resolv.conf; with `none`, loopback only.

use std::sync::Arc;

use corral_api::ContainerSpec;
use corral_net::Attachment;
use corral_store::InstanceRecord;

use super::oci_config::OciInputs;
use super::spec::{self, NetMode};
use crate::error::ApiResult;
use crate::network::write_file;
use crate::state::AppState;

/// "container NAME" for an instance id (errors about who holds a port).
fn describe(state: &AppState) -> impl Fn(&str) -> String + '_ {
    move |id| match state.store().get_instance(id) {
        Ok(r) => format!("container {}", r.name),
        Err(_) => format!("instance {id}"),
    }
}

/// Names a container answers to on its network: its name, its short id, its aliases.
fn names(rec: &InstanceRecord, spec: &ContainerSpec) -> Vec<String> {
    let mut names = vec![rec.name.to_ascii_lowercase(), rec.id[..12].to_string()];
    for a in &spec.aliases {
        let a = a.to_ascii_lowercase();
        if !names.contains(&a) {
            names.push(a);
        }
    }
    names
}

/// Write the hosts, resolv.conf and hostname files for `att` into the container folder.
fn write_files(
    state: &AppState,
    rec: &InstanceRecord,
    att: &Attachment,
) -> ApiResult<Vec<(std::path::PathBuf, String)>> {
    let dir = state.config.container_dir(&rec.id);
    let short = &rec.id[..12];
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let hosts = corral_net::hosts_file(&format!("{short} {}", rec.name), att.address.addr(), &[]);
    Ok(vec![
        (write_file(&dir, "hosts", &hosts)?, "/etc/hosts".into()),
        (
            write_file(
                &dir,
                "resolv.conf",
                &corral_net::resolv_conf(att.gateway, &host_resolv),
            )?,
            "/etc/resolv.conf".into(),
        ),
        (
            write_file(&dir, "hostname", &format!("{short}\n"))?,
            "/etc/hostname".into(),
        ),
    ])
}

/// Plug a container being created into its network and fill `inputs` (namespace, files).
/// On failure the caller's teardown removes whatever was made.
pub async fn setup(
    state: &Arc<AppState>,
    rec: &InstanceRecord,
    spec: &ContainerSpec,
    inputs: &mut OciInputs,
) -> ApiResult<()> {
    let dir = state.config.container_dir(&rec.id);
    match spec::net_mode(spec) {
        NetMode::Bridge(network) => {
            let ports = spec::ports(spec)?;
            let att = state
                .net
                .attach_container(&rec.id, &network, names(rec, spec), ports, describe(state))
                .await?;
            inputs.files.extend(write_files(state, rec, &att)?);
            inputs.netns = Some(state.net.netns_path(&rec.id));
        }
        NetMode::Host => {
            for f in ["hosts", "resolv.conf"] {
                let text = std::fs::read_to_string(format!("/etc/{f}")).unwrap_or_default();
                inputs
                    .files
                    .push((write_file(&dir, f, &text)?, format!("/etc/{f}")));
            }
        }
        NetMode::None => {}
    }
    Ok(())
}

/// Before a start: a container on a network whose namespace or link is gone (a host reboot
/// empties /run and removes links) is plugged in again, at the same namespace path.
pub async fn ensure(state: &Arc<AppState>, rec: &InstanceRecord) -> ApiResult<()> {
    let spec = super::spec_of(rec);
    let NetMode::Bridge(network) = spec::net_mode(&spec) else {
        return Ok(());
    };
    if state.net.is_plugged(&rec.id).await {
        return Ok(());
    }
    tracing::warn!(id = %rec.id, "network namespace or link missing: plugging in again");
    state.net.detach(&rec.id).await?;
    let att = state
        .net
        .attach_container(
            &rec.id,
            &network,
            names(rec, &spec),
            spec::ports(&spec)?,
            describe(state),
        )
        .await?;
    write_files(state, rec, &att)?;
    Ok(())
}
