//! The oci verbs that supervise a process (`run`, `exec`), `events` and `features`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use corral_oci::container::{Container, CreateOptions};
use corral_oci::exec::ExecOptions;
use corral_oci::state::{StateRoot, Status};
use oci_spec::runtime::Process;

/// Options of `exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// A process.json to run instead of the command line.
    #[arg(short, long)]
    process: Option<PathBuf>,
    /// Allocate a pty (needs --console-socket).
    #[arg(short, long)]
    tty: bool,
    /// Return once the process runs.
    #[arg(short, long)]
    detach: bool,
    /// File to write the process's pid to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Unix socket receiving the pty master.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Extra environment (KEY=VALUE).
    #[arg(short, long)]
    env: Vec<String>,
    /// Working directory.
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// uid[:gid].
    #[arg(short, long)]
    user: Option<String>,
    /// Supplementary groups.
    #[arg(short = 'g', long = "additional-gids")]
    additional_gids: Vec<u32>,
    /// Set no_new_privileges.
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    /// Extra capabilities.
    #[arg(short, long = "cap")]
    cap: Vec<String>,
    /// Pass descriptors 3..3+N to the process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Refused: no SELinux support.
    #[arg(long = "process-label", hide = true)]
    process_label: Option<String>,
    /// Refused: no AppArmor support.
    #[arg(long, hide = true)]
    apparmor: Option<String>,
    /// Container id.
    id: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Forward the usual terminal and job-control signals to `pid`, as runc does.
fn forward_signals(pid: i32) {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    CHILD.store(pid, Ordering::Relaxed);
    let act = SigAction::new(
        SigHandler::Handler(forward),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
    ] {
        // SAFETY: the handler only calls kill(2), which is async-signal-safe.
        let _ = unsafe { sigaction(s, &act) };
    }
}

/// Wait for our child `pid`; its exit status, or 128+signal.
fn wait_exit(pid: i32) -> anyhow::Result<u8> {
    use nix::sys::wait::{waitpid, WaitStatus};
    loop {
        match waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code as u8),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128u8.wrapping_add(sig as u8)),
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(e) => bail!("waiting for pid {pid}: {e}"),
        }
    }
}

/// `run`: create and start; unless detached, wait, delete and exit with the process's status.
pub fn run(
    root: &StateRoot,
    opts: &CreateOptions,
    detach: bool,
    keep: bool,
) -> anyhow::Result<ExitCode> {
    let (c, spawned) = Container::create(root, opts)?;
    if detach {
        c.start()?;
        return Ok(ExitCode::SUCCESS);
    }
    forward_signals(spawned.pid);
    c.poststart()?;
    let code = wait_exit(spawned.pid)?;
    if !keep {
        c.delete_reaped()?;
    }
    Ok(ExitCode::from(code))
}

fn build_process(c: &Container, a: &ExecArgs) -> anyhow::Result<Process> {
    if let Some(path) = &a.process {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        return serde_path_to_error::deserialize(de).map_err(|e| {
            anyhow::anyhow!("{}: field `{}`: {}", path.display(), e.path(), e.inner())
        });
    }
    if a.command.is_empty() {
        bail!("exec needs a command (or --process)");
    }
    let spec = c.spec()?;
    let mut p = spec
        .process()
        .clone()
        .context("config.json has no process")?;
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    let mut env = p.env().clone().unwrap_or_default();
    env.extend(a.env.iter().cloned());
    p.set_env(Some(env));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some(u) = &a.user {
        let (uid, gid) = u.split_once(':').unwrap_or((u, ""));
        p.user_mut().set_uid(
            uid.parse()
                .with_context(|| format!("--user {u:?}: uid is not a number"))?,
        );
        if !gid.is_empty() {
            p.user_mut().set_gid(
                gid.parse()
                    .with_context(|| format!("--user {u:?}: gid is not a number"))?,
            );
        }
    }
    if !a.additional_gids.is_empty() {
        p.user_mut()
            .set_additional_gids(Some(a.additional_gids.clone()));
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !a.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        let extra: Vec<oci_spec::runtime::Capability> = a
            .cap
            .iter()
            .map(|c| {
                serde_json::from_value(serde_json::Value::String(c.clone()))
                    .with_context(|| format!("--cap {c:?} is not a capability"))
            })
            .collect::<anyhow::Result<_>>()?;
        let add = |set: &Option<oci_spec::runtime::Capabilities>| {
            let mut s = set.clone().unwrap_or_default();
            s.extend(extra.iter().copied());
            Some(s)
        };
        caps.set_bounding(add(caps.bounding()));
        caps.set_effective(add(caps.effective()));
        caps.set_permitted(add(caps.permitted()));
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

/// `exec`.
pub fn exec(root: &StateRoot, a: ExecArgs) -> anyhow::Result<ExitCode> {
    if a.process_label.is_some() {
        bail!("--process-label is not supported: this runtime has no SELinux support");
    }
    if a.apparmor.is_some() {
        bail!("--apparmor is not supported: this runtime has no AppArmor support");
    }
    let c = Container::load(root, &a.id)?;
    let p = build_process(&c, &a)?;
    if p.terminal() == Some(true) && a.console_socket.is_none() {
        bail!("--tty needs --console-socket (corral does not proxy terminals)");
    }
    let spawned = corral_oci::exec::exec(
        &c,
        &ExecOptions {
            process: Some(p),
            pid_file: a.pid_file.clone(),
            console_socket: a.console_socket.clone(),
            preserve_fds: a.preserve_fds,
        },
    )?;
    if a.detach {
        return Ok(ExitCode::SUCCESS);
    }
    forward_signals(spawned.pid);
    Ok(ExitCode::from(wait_exit(spawned.pid)?))
}

fn parse_interval(s: &str) -> anyhow::Result<Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().with_context(|| format!("--interval {s:?}"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        _ => bail!("--interval {s:?}: use ms, s or m"),
    })
}

/// `events`: with `--stats` one statistics record; otherwise one every interval until the
/// container stops.
pub fn events(root: &StateRoot, id: &str, once: bool, interval: &str) -> anyhow::Result<ExitCode> {
    let every = parse_interval(interval)?;
    let c = Container::load(root, id)?;
    loop {
        if c.status() == Status::Stopped {
            bail!("container {id} is not running");
        }
        let data = c.stats()?;
        println!(
            "{}",
            serde_json::json!({"type": "stats", "id": id, "data": data})
        );
        if once {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(every);
    }
}

/// What `features` prints (runtime-spec features.md).
pub fn features() -> serde_json::Value {
    let caps: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": corral_oci::state::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": ["async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec",
            "mand", "noatime", "nodev", "nodiratime", "noexec", "nomand", "norelatime",
            "nostrictatime", "nosuid", "private", "rbind", "relatime", "remount", "ro",
            "rprivate", "rshared", "rslave", "runbindable", "rw", "shared", "slave",
            "strictatime", "suid", "sync", "unbindable"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE",
                    "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86_64"]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false}
        },
        "annotations": {"io.github.corral.runtime": "corral-runc"}
    })
}
