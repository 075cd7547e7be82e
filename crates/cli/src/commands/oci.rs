//! `corral oci …` (and `corral-runc …`): the runc-compatible command line. It is parsed on
//! its own (before the main CLI) because its global `--root` means runc's state root.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use corral_oci::container::{Container, CreateOptions};
use corral_oci::state::{now_rfc3339, StateRoot};

#[path = "oci_run.rs"]
mod run;

/// Where state lives when `--root` is not given.
pub const DEFAULT_OCI_ROOT: &str = "/run/corral/oci";

/// The runc command line: create, start, state, kill, delete, run, exec, ps, list, pause,
/// resume, events, features, spec.
#[derive(Debug, Args)]
pub struct OciArgs {
    /// runc-style global flags and subcommand.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<String>,
}

impl OciArgs {
    /// Run the verb (reached as `corral [flags] oci …`).
    pub fn run(self, _global: &crate::cli::GlobalArgs) -> anyhow::Result<ExitCode> {
        let mut argv: Vec<OsString> = vec!["corral oci".into()];
        argv.extend(self.args.into_iter().map(OsString::from));
        Ok(main(argv))
    }
}

/// runc's command line.
#[derive(Debug, Parser)]
#[command(name = "corral oci", version, about = "runc-compatible OCI runtime")]
struct Runc {
    /// State root.
    #[arg(long, default_value = DEFAULT_OCI_ROOT, global = true)]
    root: PathBuf,
    /// Log file (errors and, with --debug, debug lines).
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long = "log-format", default_value = "text", global = true)]
    log_format: String,
    /// Debug logging.
    #[arg(long, global = true)]
    debug: bool,
    /// Refused: systemd cgroups are not supported.
    #[arg(long = "systemd-cgroup", global = true, hide = true)]
    systemd_cgroup: bool,
    /// Refused: no checkpointing.
    #[arg(long, global = true, hide = true)]
    criu: Option<String>,
    /// Rootless mode: only "false" and "auto" are accepted.
    #[arg(long, global = true, hide = true, num_args = 0..=1, default_missing_value = "true")]
    rootless: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

/// Options shared by create and run.
#[derive(Debug, Args)]
struct CreateArgs {
    /// Bundle directory.
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Unix socket receiving the pty master.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// File to write the init's pid to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Use MS_MOVE and chroot instead of pivot_root.
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Accepted: corral never creates a session keyring.
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Pass descriptors 3..3+N to the process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Container id.
    id: String,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create a container (its init waits for `start`).
    Create(CreateArgs),
    /// Start a created container.
    Start {
        /// Container id.
        id: String,
    },
    /// Print a container's state as JSON.
    State {
        /// Container id.
        id: String,
    },
    /// Send a signal (default SIGTERM) to the init, or with --all to every process.
    Kill {
        /// Every process of the container.
        #[arg(short, long)]
        all: bool,
        /// Container id.
        id: String,
        /// Signal name or number.
        signal: Option<String>,
    },
    /// Delete a container.
    Delete {
        /// Kill a running container first.
        #[arg(short, long)]
        force: bool,
        /// Container id.
        id: String,
    },
    /// Create and start a container, wait for it and delete it.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return after start.
        #[arg(short, long)]
        detach: bool,
        /// Keep the container after it exits.
        #[arg(long)]
        keep: bool,
    },
    /// Run a process in a running container.
    Exec(run::ExecArgs),
    /// List the processes of a container.
    Ps {
        /// table or json.
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Container id.
        id: String,
        /// Arguments for ps(1).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// List containers.
    List {
        /// table or json.
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Only ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Freeze every process of a container.
    Pause {
        /// Container id.
        id: String,
    },
    /// Thaw a paused container.
    Resume {
        /// Container id.
        id: String,
    },
    /// Print resource statistics (and OOM events) of a container.
    Events {
        /// Print statistics once and exit.
        #[arg(long)]
        stats: bool,
        /// Interval between statistics.
        #[arg(long, default_value = "5s")]
        interval: String,
        /// Container id.
        id: String,
    },
    /// Print what this runtime supports, as JSON.
    Features,
    /// Write a default config.json.
    Spec {
        /// Bundle directory.
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
    /// Not supported yet: update resources.
    Update {
        /// Arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// Entry of the oci face: parse `argv` (argv[0] included) and run; errors are logged as runc
/// does and give exit status 1.
pub fn main(argv: Vec<OsString>) -> ExitCode {
    // CVE-2019-5736 class: every process of the runtime (the `run` parent a host-pid-namespace
    // container can see, the init and exec children that inherit this while they run host
    // code in a container's pid namespace) is non-dumpable from the start, so no container
    // process without CAP_SYS_PTRACE over the host can open its /proc/<pid>/exe.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let cli = match Runc::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let log = Logger {
        path: cli.log.clone(),
        json: cli.log_format == "json",
    };
    if cli.debug {
        init_debug(cli.log.as_deref());
    }
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            // thiserror sources are often already part of the message: print each once.
            let mut msg = e.to_string();
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                if !msg.contains(&c) {
                    msg = format!("{msg}: {c}");
                }
            }
            log.error(&msg);
            ExitCode::FAILURE
        }
    }
}

fn init_debug(log: Option<&Path>) {
    let builder = tracing_subscriber::fmt().with_max_level(tracing::Level::DEBUG);
    match log.and_then(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .ok()
    }) {
        Some(f) => builder
            .with_writer(std::sync::Mutex::new(f))
            .with_ansi(false)
            .init(),
        None => builder.with_writer(std::io::stderr).init(),
    }
}

/// runc-style error logging: the log file (text or json lines) and stderr.
struct Logger {
    path: Option<PathBuf>,
    json: bool,
}

impl Logger {
    fn error(&self, msg: &str) {
        eprintln!("corral-runc: {msg}");
        let Some(path) = &self.path else { return };
        let line = if self.json {
            serde_json::json!({"level": "error", "msg": msg, "time": now_rfc3339()}).to_string()
        } else {
            format!("time={:?} level=error msg={msg:?}", now_rfc3339())
        };
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

fn dispatch(cli: Runc) -> anyhow::Result<ExitCode> {
    if cli.systemd_cgroup {
        bail!("--systemd-cgroup is not supported: corral manages cgroupfs paths only");
    }
    if cli.criu.is_some() {
        bail!("--criu is not supported: corral does not checkpoint containers");
    }
    if let Some(r) = cli
        .rootless
        .as_deref()
        .filter(|r| *r != "false" && *r != "auto")
    {
        bail!("--rootless={r} is not supported: run corral as root");
    }
    if !["text", "json"].contains(&cli.log_format.as_str()) {
        bail!(
            "--log-format must be text or json, not {:?}",
            cli.log_format
        );
    }
    let root = StateRoot::new(&cli.root);
    match cli.cmd {
        Cmd::Create(a) => {
            Container::create(&root, &create_opts(&a, false))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Start { id } => {
            Container::load(&root, &id)?.start()?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::State { id } => {
            let c = Container::load(&root, &id)?;
            println!("{}", serde_json::to_string_pretty(&c.report())?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Kill { all, id, signal } => {
            let sig = corral_oci::signal::parse(signal.as_deref().unwrap_or("SIGTERM"))?;
            Container::load(&root, &id)?.kill(sig, all)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Delete { force, id } => match Container::load(&root, &id) {
            Ok(c) => {
                c.delete(force)?;
                Ok(ExitCode::SUCCESS)
            }
            Err(corral_oci::ContainerError::State(corral_oci::state::StateError::NotFound(_)))
                if force =>
            {
                // runc: deleting a missing container with --force succeeds.
                let _ = root.remove(&id);
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Err(e.into()),
        },
        Cmd::Run {
            create,
            detach,
            keep,
        } => run::run(&root, &create_opts(&create, !detach), detach, keep),
        Cmd::Exec(a) => run::exec(&root, a),
        Cmd::Ps {
            format,
            id,
            ps_args,
        } => ps(&root, &format, &id, &ps_args),
        Cmd::List { format, quiet } => list(&root, &format, quiet),
        Cmd::Pause { id } => {
            Container::load(&root, &id)?.pause()?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Resume { id } => {
            Container::load(&root, &id)?.resume()?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Events {
            stats,
            interval,
            id,
        } => run::events(&root, &id, stats, &interval),
        Cmd::Features => {
            println!("{}", serde_json::to_string_pretty(&run::features())?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Spec { bundle } => {
            let path = bundle.join("config.json");
            if path.exists() {
                bail!("File {} exists. Remove it first", path.display());
            }
            let spec = oci_spec::runtime::Spec::default();
            std::fs::write(&path, serde_json::to_string_pretty(&spec)?)
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Update { .. } => Err(crate::exit::NotImplemented { verb: "oci update" }.into()),
    }
}

fn create_opts(a: &CreateArgs, start_now: bool) -> CreateOptions {
    let _ = a.no_new_keyring;
    CreateOptions {
        id: a.id.clone(),
        bundle: a.bundle.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        no_pivot: a.no_pivot,
        preserve_fds: a.preserve_fds,
        start_now,
    }
}

fn ps(root: &StateRoot, format: &str, id: &str, ps_args: &[String]) -> anyhow::Result<ExitCode> {
    let c = Container::load(root, id)?;
    let pids = c.pids()?;
    match format {
        "json" => println!("{}", serde_json::to_string(&pids)?),
        "table" => {
            let args: Vec<String> = if ps_args.is_empty() {
                vec!["-ef".into()]
            } else {
                ps_args.to_vec()
            };
            let out = std::process::Command::new("ps")
                .args(&args)
                .output()
                .context("running ps")?;
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or_default();
            let col = header
                .split_whitespace()
                .position(|h| h == "PID")
                .context("ps output has no PID column")?;
            println!("{header}");
            for l in lines {
                let pid = l
                    .split_whitespace()
                    .nth(col)
                    .and_then(|p| p.parse::<i32>().ok());
                if pid.is_some_and(|p| pids.contains(&p)) {
                    println!("{l}");
                }
            }
        }
        other => bail!("invalid format option {other:?}: use table or json"),
    }
    Ok(ExitCode::SUCCESS)
}

fn list(root: &StateRoot, format: &str, quiet: bool) -> anyhow::Result<ExitCode> {
    let mut reports = Vec::new();
    for id in root.ids()? {
        if let Ok(c) = Container::load(root, &id) {
            reports.push(c.report());
        }
    }
    if quiet {
        for r in &reports {
            println!("{}", r.id);
        }
        return Ok(ExitCode::SUCCESS);
    }
    match format {
        "json" => println!("{}", serde_json::to_string(&reports)?),
        "table" => {
            let rows: Vec<[String; 6]> = reports
                .iter()
                .map(|r| {
                    [
                        r.id.clone(),
                        r.pid.to_string(),
                        r.status.as_str().to_owned(),
                        r.bundle.display().to_string(),
                        r.created.clone(),
                        r.owner.clone(),
                    ]
                })
                .collect();
            let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
            let mut widths = [12usize; 6];
            for row in std::iter::once(&header).chain(&rows) {
                for (w, cell) in widths.iter_mut().zip(row) {
                    *w = (*w).max(cell.len() + 3);
                }
            }
            for row in std::iter::once(&header).chain(&rows) {
                let line: String = row
                    .iter()
                    .zip(widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                println!("{}", line.trim_end());
            }
        }
        other => bail!("invalid format option {other:?}: use table or json"),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn runc_command_tree_is_consistent() {
        Runc::command().debug_assert();
    }

    #[test]
    fn containerd_style_invocations_parse() {
        let parse = |s: &str| Runc::try_parse_from(s.split(' ')).map(|_| ());
        parse(
            "r --root /run/x --log /l.json --log-format json create --bundle /b --pid-file /p id",
        )
        .unwrap();
        parse("r --root /run/x kill --all id 9").unwrap();
        parse("r delete --force id").unwrap();
        parse("r exec --process /p.json --detach --pid-file /p id").unwrap();
        parse("r ps --format json id").unwrap();
        assert!(parse("r create --no-such-flag id").is_err());
    }
}
