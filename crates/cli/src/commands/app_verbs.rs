//! The app verbs against the daemon: `app up/down/ps/logs/scale/restart`, and the tables
//! and waits they share with `corral get`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use corral_api::{AppStatus, ComposeUpRequest, ManifestText, ScaleRequest};
use corral_orchestrator::compose;

use super::api_client::{age, print_table, Api};
use super::app::{AppDownArgs, AppLogsArgs, AppProjectArgs, AppScaleArgs, AppUpArgs};
use crate::cli::GlobalArgs;

/// How long `app up` waits for every replica to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The Compose files named, or the default one in the current folder.
fn compose_files(files: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    if !files.is_empty() {
        return Ok(files.to_vec());
    }
    let cwd = std::env::current_dir().context("finding the current folder")?;
    compose::DEFAULT_FILES
        .iter()
        .map(|f| cwd.join(f))
        .find(|p| p.is_file())
        .map(|p| vec![p])
        .with_context(|| {
            format!(
                "no {} in {} (use -f FILE)",
                compose::DEFAULT_FILES.join(" or "),
                cwd.display()
            )
        })
}

/// The app's name: `-p`, else what the Compose files say (their `name:` or their folder).
fn project_name(p: &AppProjectArgs) -> anyhow::Result<String> {
    if let Some(name) = &p.project {
        return Ok(compose::normalize_project_name(name));
    }
    let files = compose_files(&p.files)?;
    let cwd = std::env::current_dir().context("finding the current folder")?;
    let parsed = compose::load(&files, &cwd, None)?;
    Ok(parsed.app.name)
}

/// Every replica is ready (or ran to completion), or a replica failed for good. Err names
/// the failing replicas.
fn settled(app: &AppStatus) -> Result<bool, String> {
    let failed: Vec<String> = app
        .replicas
        .iter()
        .filter(|r| matches!(r.status.as_str(), "CrashLoopBackOff" | "Error"))
        .map(|r| format!("{} is {}", r.name, r.status))
        .collect();
    if !failed.is_empty() {
        return Err(failed.join(", "));
    }
    Ok(app.services.iter().all(|s| {
        let mine = app.replicas.iter().filter(|r| r.service == s.name);
        let done = mine.filter(|r| r.ready || r.status == "Completed").count() as u32;
        done >= s.desired && s.current == s.desired && s.up_to_date == s.desired
    }))
}

/// Poll until the app settles; the last status.
pub fn wait_ready(api: &Api, name: &str) -> anyhow::Result<AppStatus> {
    let start = Instant::now();
    loop {
        let st = api.block_on(api.client.app(name))?;
        match settled(&st) {
            Ok(true) => return Ok(st),
            Ok(false) if start.elapsed() < READY_TIMEOUT => {}
            Ok(false) => {
                print_ps(std::slice::from_ref(&st));
                bail!("app {name} is not ready after {}s", READY_TIMEOUT.as_secs());
            }
            Err(why) => {
                print_ps(std::slice::from_ref(&st));
                bail!("app {name}: {why} (see `corral app logs -p {name}`)");
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `app ps`'s table.
pub fn print_ps(apps: &[AppStatus]) {
    let mut rows = Vec::new();
    for app in apps {
        for r in &app.replicas {
            let ports = app
                .services
                .iter()
                .find(|s| s.name == r.service)
                .map(|s| s.ports.join(", "))
                .unwrap_or_default();
            rows.push(vec![
                r.name.clone(),
                r.service.clone(),
                r.status.clone(),
                r.restarts.to_string(),
                r.ip.clone().unwrap_or_else(|| "-".into()),
                r.started.as_deref().map(age).unwrap_or_else(|| "-".into()),
                ports,
            ]);
        }
        if let Some(e) = &app.error {
            eprintln!("app {}: last reconcile step failed: {e}", app.name);
        }
    }
    print_table(
        &["NAME", "SERVICE", "STATUS", "RESTARTS", "IP", "UP", "PORTS"],
        &rows,
    );
}

/// `corral app up`.
pub fn up(args: AppUpArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let files = compose_files(&args.project.files)?;
    super::app_build::build_services(&files, args.project.project.as_deref(), args.build, global)?;
    let mut texts = Vec::new();
    for f in &files {
        texts.push(ManifestText {
            name: f.display().to_string(),
            text: std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?,
        });
    }
    let first = std::fs::canonicalize(&files[0])
        .with_context(|| format!("resolving {}", files[0].display()))?;
    let dir = first.parent().unwrap_or(Path::new("/")).to_path_buf();
    let req = ComposeUpRequest {
        files: texts,
        project: args.project.project.clone(),
        dir_name: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        project_dir: dir.display().to_string(),
        env_file: std::fs::read_to_string(dir.join(".env")).ok(),
        env: std::env::vars().collect::<BTreeMap<_, _>>(),
    };
    let api = Api::connect(global)?;
    let change = api.block_on(api.client.compose_up(&req))?;
    for w in &change.warnings {
        eprintln!("warning: {w}");
    }
    let name = change
        .app
        .as_ref()
        .map(|a| a.name.clone())
        .context("the daemon did not return the app")?;
    let st = wait_ready(&api, &name)?;
    print_ps(std::slice::from_ref(&st));
    if !args.detach {
        eprintln!("app {name} is up; following its output (Ctrl-C stops following, the app keeps running)");
        follow_logs(&api, &st, None, true)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `corral app down`.
pub fn down(args: AppDownArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let name = project_name(&args.project)?;
    let api = Api::connect(global)?;
    api.block_on(api.client.app_down(&name, args.volumes))?;
    eprintln!("app {name} removed");
    Ok(ExitCode::SUCCESS)
}

/// `corral app ps`: one app, or every app when there is no `-p` and no Compose file here.
pub fn ps(args: AppProjectArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let one = if args.project.is_some() || !args.files.is_empty() {
        Some(project_name(&args)?)
    } else {
        project_name(&args).ok()
    };
    let api = Api::connect(global)?;
    let apps = match one {
        Some(name) => vec![api.block_on(api.client.app(&name))?],
        None => api.block_on(api.client.apps())?,
    };
    print_ps(&apps);
    Ok(ExitCode::SUCCESS)
}

/// `corral app scale SERVICE=N…`.
pub fn scale(args: AppScaleArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let name = project_name(&args.project)?;
    let mut replicas = BTreeMap::new();
    for pair in &args.services {
        let (svc, n) = pair
            .split_once('=')
            .with_context(|| format!("{pair:?}: expected SERVICE=N"))?;
        let n: u32 = n
            .parse()
            .with_context(|| format!("{pair:?}: {n:?} is not a replica count"))?;
        replicas.insert(svc.to_string(), n);
    }
    let api = Api::connect(global)?;
    api.block_on(api.client.app_scale(&name, &ScaleRequest { replicas }))?;
    let st = wait_ready(&api, &name)?;
    print_ps(std::slice::from_ref(&st));
    Ok(ExitCode::SUCCESS)
}

/// `corral app restart`.
pub fn restart(args: AppProjectArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let name = project_name(&args)?;
    let api = Api::connect(global)?;
    api.block_on(api.client.app_restart(&name))?;
    let st = wait_ready(&api, &name)?;
    print_ps(std::slice::from_ref(&st));
    Ok(ExitCode::SUCCESS)
}

/// `corral app logs [-f] [SERVICE]`.
pub fn logs(args: AppLogsArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let name = project_name(&AppProjectArgs {
        files: args.files.clone(),
        project: args.project.clone(),
    })?;
    let api = Api::connect(global)?;
    let st = api.block_on(api.client.app(&name))?;
    if let Some(s) = &args.service {
        if !st.services.iter().any(|x| &x.name == s) {
            bail!("app {name} has no service {s}");
        }
    }
    follow_logs(&api, &st, args.service.as_deref(), args.follow)?;
    Ok(ExitCode::SUCCESS)
}

/// How a replica is named in front of its lines: Compose's `service-N` (the project left
/// out, as `docker compose logs` does), a pod's own name.
fn log_prefix(app: &str, replica: &str) -> String {
    replica
        .strip_prefix(app)
        .and_then(|r| r.strip_prefix('-'))
        .unwrap_or(replica)
        .to_string()
}

/// Print the app's output, `prefix | line`; with `follow`, on as replicas come and go, until
/// the app is removed or Ctrl-C.
fn follow_logs(
    api: &Api,
    st: &AppStatus,
    service: Option<&str>,
    follow: bool,
) -> anyhow::Result<()> {
    // Compose pads prefixes to the longest; replicas that join later widen it.
    let mut width = st
        .replicas
        .iter()
        .filter(|r| service.is_none_or(|s| r.service == s))
        .map(|r| log_prefix(&st.name, &r.name).len())
        .max()
        .unwrap_or(0);
    let mut path = format!("/v1/apps/{}/logs?follow={follow}", st.name);
    if let Some(s) = service {
        path += &format!("&service={s}");
    }
    api.block_on(async {
        use std::io::Write;
        let mut lines = api.client.lines(&path).await?;
        let mut out = std::io::stdout().lock();
        while let Some(l) = lines.next_line().await? {
            let Ok(line) = serde_json::from_str::<corral_api::AppLogLine>(&l) else {
                continue;
            };
            let prefix = log_prefix(&st.name, &line.replica);
            width = width.max(prefix.len());
            writeln!(
                out,
                "{prefix:<width$} | {}",
                line.log.trim_end_matches(['\r', '\n'])
            )?;
            out.flush()?;
        }
        Ok::<_, anyhow::Error>(())
    })
}
