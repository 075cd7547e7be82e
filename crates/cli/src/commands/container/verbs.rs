//! The container verbs' implementations over the API.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context};
use corral_api::Method;
use corral_api::{
    ContainerSpec, Instance, InstanceKind, KillRequest, LogLine, TopResponse, WaitResponse,
};

use super::*;
use crate::cli::GlobalArgs;
use crate::commands::api_client::{parse_size, print_table, Api};
use crate::commands::inventory;
use corral_api::client::enc;

fn read_env_file(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect())
}

/// Print log lines to stdout/stderr as they were written.
fn print_line(raw: &str) {
    if let Ok(l) = serde_json::from_str::<LogLine>(raw) {
        if l.stream == "stderr" {
            eprint!("{}", l.log);
        } else {
            print!("{}", l.log);
            let _ = std::io::stdout().flush();
        }
    }
}

impl RunArgs {
    pub(super) fn spec(&self) -> anyhow::Result<ContainerSpec> {
        let mut env = Vec::new();
        for f in &self.env_files {
            env.extend(read_env_file(f)?);
        }
        env.extend(self.env.iter().cloned());
        Ok(ContainerSpec {
            name: self.name.clone(),
            image: self.image.clone(),
            entrypoint: self.entrypoint.as_ref().map(|e| {
                if e.is_empty() {
                    vec![]
                } else {
                    vec![e.clone()]
                }
            }),
            command: self.command.clone(),
            env,
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            volumes: self.volumes.clone(),
            publish: self.publish.clone(),
            publish_all: self.publish_all,
            memory_bytes: self
                .memory
                .as_deref()
                .map(parse_size)
                .transpose()
                .context("--memory")?,
            cpus: self.cpus,
            pids_limit: self.pids_limit,
            read_only: self.read_only,
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            restart: Some(self.restart.clone()),
            network: self.network.clone(),
            aliases: self.network_aliases.clone(),
            labels: self
                .labels
                .iter()
                .map(|l| match l.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (l.clone(), String::new()),
                })
                .collect(),
            auto_remove: self.rm,
            tty: false,
            interactive: false,
        })
    }

    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        if self.tty && !self.detach {
            return self.run_tty(global);
        }
        if self.interactive && !self.detach {
            return self.run_stdio(global);
        }
        let mut spec = self.spec()?;
        spec.tty = self.tty;
        spec.interactive = self.interactive;
        let api = Api::connect(global)?;
        if self.detach {
            let inst = api.block_on(api.client.run_container(&spec))?;
            println!("{}", inst.id);
            return Ok(ExitCode::SUCCESS);
        }
        // Attach to the log before the start so no line (and no `--rm` exit) is missed.
        let code = api.block_on(async {
            let inst = api.client.create_container(&spec).await?;
            let _proxy = match self.sig_proxy {
                true => Some(super::sigproxy::start(&api.client, &inst.id)?),
                false => None,
            };
            let mut lines = api
                .client
                .lines(&format!("/v1/containers/{}/logs?follow=true", inst.id))
                .await?;
            if let Err(e) = api.client.start_container(&inst.id).await {
                if spec.auto_remove {
                    let _ = api.client.remove_container(&inst.id, true).await;
                }
                return Err(e.into());
            }
            while let Some(l) = lines.next_line().await? {
                print_line(&l);
            }
            let exit = api.client.wait_container(&inst.id).await?;
            if spec.auto_remove {
                // The daemon removes it too; whichever comes second finds it gone. Waiting
                // here means `run --rm` returns with the container really gone, as Docker's.
                let _ = api.client.remove_container(&inst.id, true).await;
            }
            anyhow::Ok(exit)
        })?;
        Ok(ExitCode::from(code.exit_code.clamp(0, 255) as u8))
    }
}

/// What a container runs: the daemon's resolved command, else the request's (older daemons).
fn command(i: &Instance, spec: &ContainerSpec) -> String {
    if i.command.is_empty() {
        spec.command.join(" ")
    } else {
        i.command.join(" ")
    }
}

fn short(id: &str) -> &str {
    &id[..12.min(id.len())]
}

fn status(i: &Instance) -> String {
    match (i.state, i.exit_code) {
        (corral_api::InstanceState::Exited, Some(c)) => format!("exited ({c})"),
        (corral_api::InstanceState::Dead, _) => {
            format!("dead: {}", i.reason.clone().unwrap_or_default())
        }
        (s, _) => s.as_str().to_string(),
    }
}

/// Published ports as Docker shows them (`0.0.0.0:8080->80/tcp`).
fn ports(i: &Instance) -> String {
    let Some(n) = &i.network else {
        return String::new();
    };
    if n.ports.is_empty() {
        return String::new();
    }
    n.ports
        .iter()
        .map(|p| {
            // [HOSTIP:]HOSTPORT:PORT/PROTO
            let (addr, proto) = p.rsplit_once('/').unwrap_or((p, "tcp"));
            let mut parts: Vec<&str> = addr.split(':').collect();
            let port = parts.pop().unwrap_or_default();
            let host = if parts.len() == 2 {
                format!("{}:{}", parts[0], parts[1])
            } else {
                format!("0.0.0.0:{}", parts.first().copied().unwrap_or_default())
            };
            format!("{host}->{port}/{proto}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl PsArgs {
    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let api = Api::connect(global)?;
        if self.all_kinds {
            return inventory::show(&api, None, self.all, &self.format, self.watch);
        }
        if self.watch {
            return inventory::show(
                &api,
                Some(InstanceKind::Container),
                self.all,
                &self.format,
                true,
            );
        }
        let list: Vec<Instance> = api.block_on(api.client.call::<(), _>(
            Method::GET,
            "/v1/containers",
            None,
        ))?;
        let list: Vec<Instance> = list
            .into_iter()
            .filter(|i| self.all || i.state == corral_api::InstanceState::Running)
            .collect();
        if self.format == "json" {
            println!("{}", serde_json::to_string_pretty(&list)?);
            return Ok(ExitCode::SUCCESS);
        }
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|i| {
                let spec: ContainerSpec =
                    serde_json::from_value(i.spec.clone()).unwrap_or_default();
                let command = format!("{:?}", command(i, &spec));
                vec![
                    short(&i.id).to_string(),
                    spec.image,
                    command,
                    crate::commands::api_client::ago(&i.created),
                    status(i),
                    ports(i),
                    i.name.clone(),
                ]
            })
            .collect();
        print_table(
            &[
                "CONTAINER ID",
                "IMAGE",
                "COMMAND",
                "CREATED",
                "STATUS",
                "PORTS",
                "NAMES",
            ],
            &rows,
        );
        Ok(ExitCode::SUCCESS)
    }
}

impl LogsArgs {
    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let api = Api::connect(global)?;
        let mut path = format!(
            "/v1/containers/{}/logs?follow={}",
            enc(&self.container),
            self.follow
        );
        if let Some(n) = self.tail {
            path += &format!("&tail={n}");
        }
        if let Some(s) = &self.since {
            path += &format!("&since={}", enc(s));
        }
        api.block_on(async {
            let mut lines = api.client.lines(&path).await?;
            while let Some(l) = lines.next_line().await? {
                print_line(&l);
            }
            Ok::<_, anyhow::Error>(())
        })?;
        Ok(ExitCode::SUCCESS)
    }
}

impl ExecArgs {
    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        self.run_session(global)
    }
}

/// Apply `f` to each name, printing the name on success and the error otherwise.
fn each(
    names: &[String],
    mut f: impl FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    for n in names {
        match f(n) {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("corral: error: {n}: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

impl StartArgs {
    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let api = Api::connect(global)?;
        each(&self.containers, |n| {
            api.block_on(api.client.start_container(n))?;
            Ok(())
        })
    }
}

impl StopArgs {
    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let api = Api::connect(global)?;
        each(&self.containers, |n| {
            api.block_on(api.client.stop_container(n, self.time))?;
            Ok(())
        })
    }
}

impl KillArgs {
    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let api = Api::connect(global)?;
        let body = KillRequest {
            signal: Some(self.signal.clone()),
        };
        each(&self.containers, |n| {
            api.block_on(api.client.call::<_, Instance>(
                Method::POST,
                &format!("/v1/containers/{}/kill", enc(n)),
                Some(&body),
            ))?;
            Ok(())
        })
    }
}

impl RmArgs {
    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let api = Api::connect(global)?;
        each(&self.containers, |n| {
            api.block_on(api.client.remove_container(n, self.force))?;
            Ok(())
        })
    }
}

impl InspectArgs {
    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let api = Api::connect(global)?;
        let mut out = Vec::new();
        for n in &self.objects {
            let c = api.block_on(api.client.container(n));
            let found = match c {
                Ok(i) => serde_json::to_value(i)?,
                Err(e) if e.status() == Some(404) => {
                    match api.block_on(api.client.call::<(), Instance>(
                        Method::GET,
                        &format!("/v1/vms/{}", enc(n)),
                        None,
                    )) {
                        Ok(i) => serde_json::to_value(i)?,
                        // An exec session's id (its status outlives the daemon it ran under).
                        Err(e2) if e2.status() == Some(404) => {
                            match api.block_on(api.client.exec_session(n)) {
                                Ok(s) => serde_json::to_value(s)?,
                                Err(e3) if e3.status() == Some(404) => {
                                    bail!("no container or VM named {n:?} (nor an exec session)")
                                }
                                Err(e3) => return Err(e3.into()),
                            }
                        }
                        Err(e2) => return Err(e2.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            };
            out.push(found);
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        Ok(ExitCode::SUCCESS)
    }
}

impl WaitArgs {
    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let api = Api::connect(global)?;
        for n in &self.containers {
            let w: WaitResponse = api.block_on(api.client.wait_container(n))?;
            println!("{}", w.exit_code);
        }
        Ok(ExitCode::SUCCESS)
    }
}

impl TopArgs {
    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let api = Api::connect(global)?;
        let top: TopResponse = api.block_on(api.client.call::<(), _>(
            Method::GET,
            &format!("/v1/containers/{}/top", enc(&self.container)),
            None,
        ))?;
        let titles: Vec<&str> = top.titles.iter().map(String::as_str).collect();
        print_table(&titles, &top.processes);
        Ok(ExitCode::SUCCESS)
    }
}

impl StatsArgs {
    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let api = Api::connect(global)?;
        inventory::stats(&api, &self.containers, self.watch)
    }
}
