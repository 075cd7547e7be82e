//! The inventory table (`ps --all-kinds`, `vm ls`, `stats`): live figures from the daemon.

use std::process::ExitCode;
use std::time::Duration;

use corral_api::Method;
use corral_api::{InstanceKind, InstanceState, InventoryRow};

use crate::commands::api_client::{human_bytes, human_secs, print_table, Api};

fn fetch(api: &Api) -> anyhow::Result<Vec<InventoryRow>> {
    Ok(api.block_on(api.client.inventory())?)
}

fn kind(k: InstanceKind) -> &'static str {
    match k {
        InstanceKind::Container => "container",
        InstanceKind::Vm => "vm",
    }
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".into())
}

fn render(rows: &[InventoryRow]) {
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                kind(r.kind).into(),
                r.state.as_str().into(),
                r.host.clone(),
                opt(r.cpu_percent, |c| format!("{c:.1}%")),
                opt(r.memory_demand, human_bytes),
                opt(r.memory_assigned, human_bytes),
                opt(r.memory_pressure, |p| format!("{p:.1}%")),
                opt(r.uptime_secs, human_secs),
                r.heartbeat.clone().unwrap_or_else(|| "n/a".into()),
            ]
        })
        .collect();
    print_table(
        &[
            "NAME",
            "KIND",
            "STATE",
            "HOST",
            "CPU %",
            "MEMORY DEMAND",
            "ASSIGNED MEMORY",
            "MEMORY PRESSURE",
            "UPTIME",
            "HEARTBEAT",
        ],
        &table,
    );
}

/// Show the inventory of `only` (or every kind), refreshing each second with `watch`.
pub fn show(
    api: &Api,
    only: Option<InstanceKind>,
    all: bool,
    format: &str,
    watch: bool,
) -> anyhow::Result<ExitCode> {
    let select = |rows: Vec<InventoryRow>| -> Vec<InventoryRow> {
        rows.into_iter()
            .filter(|r| only.is_none_or(|k| r.kind == k))
            .filter(|r| all || matches!(r.state, InstanceState::Running | InstanceState::Paused))
            .collect()
    };
    // Two samples a moment apart give CPU % on the first screen too.
    let _ = fetch(api)?;
    std::thread::sleep(Duration::from_millis(200));
    loop {
        let rows = select(fetch(api)?);
        if format == "json" {
            println!("{}", serde_json::to_string_pretty(&rows)?);
        } else {
            if watch {
                print!("\x1b[H\x1b[2J");
            }
            render(&rows);
        }
        if !watch {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// `corral stats`: the inventory of the named (or all running) containers.
pub fn stats(api: &Api, names: &[String], watch: bool) -> anyhow::Result<ExitCode> {
    let fetch_named = || -> anyhow::Result<Vec<InventoryRow>> {
        if names.is_empty() {
            return Ok(fetch(api)?
                .into_iter()
                .filter(|r| r.kind == InstanceKind::Container && r.state == InstanceState::Running)
                .collect());
        }
        names
            .iter()
            .map(|n| {
                Ok(api.block_on(api.client.call::<(), InventoryRow>(
                    Method::GET,
                    &format!("/v1/containers/{}/stats", corral_api::client::enc(n)),
                    None,
                ))?)
            })
            .collect()
    };
    let _ = fetch_named()?;
    std::thread::sleep(Duration::from_millis(200));
    loop {
        let rows = fetch_named()?;
        if watch {
            print!("\x1b[H\x1b[2J");
        }
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.id[..12].to_string(),
                    r.name.clone(),
                    opt(r.cpu_percent, |c| format!("{c:.1}%")),
                    format!(
                        "{} / {}",
                        opt(r.memory_demand, human_bytes),
                        opt(r.memory_assigned, human_bytes)
                    ),
                    opt(r.memory_pressure, |p| format!("{p:.1}%")),
                    opt(r.pids, |p| p.to_string()),
                ]
            })
            .collect();
        print_table(
            &[
                "CONTAINER ID",
                "NAME",
                "CPU %",
                "MEM USAGE / LIMIT",
                "MEM %",
                "PIDS",
            ],
            &table,
        );
        if !watch {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}
