//! `exec`: a new process in a running container's namespaces and cgroups, with the spec's
//! process settings (from `--process` or the container's own process with overrides).

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use nix::sched::CloneFlags;
use oci_spec::runtime::Process;

use crate::cgroups;
use crate::container::{step, Container, ContainerError, Spawned};
use crate::process;
use crate::spawn::{self, Forked};
use crate::state::Status;
use crate::sync::{self, Channel, Message};

/// Options of `exec`.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// The process to run.
    pub process: Option<Process>,
    /// Where to write its pid.
    pub pid_file: Option<PathBuf>,
    /// Unix socket to send the pty master to.
    pub console_socket: Option<PathBuf>,
    /// Descriptors 3..3+n the process inherits.
    pub preserve_fds: u32,
}

/// Namespaces in the order they are joined (user first, so the rest are permitted).
const ORDER: [(&str, CloneFlags); 7] = [
    ("user", CloneFlags::CLONE_NEWUSER),
    ("time", CloneFlags::from_bits_retain(libc::CLONE_NEWTIME)),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

fn same_ns(pid: i32, name: &str) -> bool {
    let a = fs::metadata(format!("/proc/{pid}/ns/{name}"));
    let b = fs::metadata(format!("/proc/self/ns/{name}"));
    matches!((a, b), (Ok(a), Ok(b)) if a.ino() == b.ino() && a.dev() == b.dev())
}

/// Start `opts.process` inside `c`; returns once it is about to exec.
pub fn exec(c: &Container, opts: &ExecOptions) -> Result<Spawned, ContainerError> {
    let id = c.id();
    let status = c.status();
    if !matches!(status, Status::Running | Status::Created) {
        return Err(step(
            id,
            "exec",
            format!("container is {}", status.as_str()),
        ));
    }
    let spec = c.spec()?;
    let proc_ = match &opts.process {
        Some(p) => p.clone(),
        None => spec
            .process()
            .clone()
            .ok_or_else(|| step(id, "exec", "no process"))?,
    };
    if proc_.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(step(id, "exec", "process.args must name a program"));
    }
    let init = c.state.pid;
    let mut joins = Vec::new();
    for (name, flag) in ORDER {
        if !same_ns(init, name) {
            let f = fs::File::open(format!("/proc/{init}/ns/{name}"))
                .map_err(|e| step(id, "open namespace", format!("{name}: {e}")))?;
            joins.push((name, flag, f));
        }
    }
    if !same_ns(init, "pid") {
        let f = fs::File::open(format!("/proc/{init}/ns/pid"))
            .map_err(|e| step(id, "open namespace", format!("pid: {e}")))?;
        nix::sched::setns(f, CloneFlags::CLONE_NEWPID)
            .map_err(|e| step(id, "join pid namespace", e))?;
    }
    let userns = joins.iter().any(|(n, _, _)| *n == "user");
    let console = match &opts.console_socket {
        Some(p) => Some(crate::console::connect(p).map_err(|e| {
            step(
                id,
                "connect console socket",
                format!("{}: {e}", p.display()),
            )
        })?),
        None => None,
    };
    let seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(s) => Some(crate::seccomp::compile(s).map_err(|e| step(id, "seccomp", e))?),
        None => None,
    };
    let cg = cgroups::from_record(&c.state.cgroup);
    let cg_dir = match cg.clone_into_fd() {
        Some(p) => Some(fs::File::open(&p).map_err(|e| step(id, "open cgroup", e))?),
        None => None,
    };
    let (parent_ch, child_ch) = Channel::pair().map_err(|e| step(id, "socketpair", e))?;
    let forked = spawn::clone3(CloneFlags::empty(), cg_dir.as_ref().map(|f| f.as_raw_fd()))
        .map_err(|e| step(id, "clone", e))?;
    let (pid, pidfd) = match forked {
        Forked::Child => {
            drop(parent_ch);
            let r = match cg_dir.is_none().then(|| cg.join_self()) {
                Some(Err(e)) => crate::init::InitError::Other(e.to_string()),
                _ => child(
                    &child_ch,
                    &proc_,
                    joins,
                    userns,
                    console.as_ref().map(|c| c.as_raw_fd()),
                    seccomp.as_ref(),
                    opts.preserve_fds,
                ),
            };
            let _ = child_ch.send(sync::ERROR, r.to_string().as_bytes());
            spawn::exit_now(1)
        }
        Forked::Parent { pid, pidfd } => (pid, pidfd),
    };
    drop(child_ch);
    drop(console);
    let fail = |e: ContainerError| {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        e
    };
    parent_ch
        .send(sync::GO, b"")
        .map_err(|e| fail(step(id, "signal exec process", e)))?;
    match parent_ch
        .recv()
        .map_err(|e| fail(step(id, "read from exec process", e)))?
    {
        Message::Msg(sync::READY, _) => {}
        Message::Msg(sync::ERROR, m) => {
            return Err(fail(step(id, "exec", String::from_utf8_lossy(&m))))
        }
        _ => {
            return Err(fail(step(
                id,
                "exec",
                "the process exited before it was set up",
            )))
        }
    }
    if let Some(p) = &opts.pid_file {
        crate::container::write_pid_file(p, pid).map_err(|e| step(id, "write pid file", e))?;
    }
    Ok(Spawned { pid, pidfd })
}

fn child(
    ch: &Channel,
    p: &Process,
    joins: Vec<(&str, CloneFlags, fs::File)>,
    userns: bool,
    console: Option<i32>,
    seccomp: Option<&crate::seccomp::Compiled>,
    preserve_fds: u32,
) -> crate::init::InitError {
    use crate::init::InitError;
    let run = || -> Result<std::convert::Infallible, InitError> {
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
        match ch.recv() {
            Ok(Message::Msg(sync::GO, _)) => {}
            _ => return Err(InitError::Other("the runtime went away".into())),
        }
        for (name, flag, f) in joins {
            nix::sched::setns(f, flag).map_err(|source| InitError::Sys {
                step: format!("setns {name}"),
                source,
            })?;
        }
        let pty = match (p.terminal() == Some(true), console) {
            (true, Some(sock)) => Some(crate::console::open_pty_in_container(sock)?),
            (true, None) => {
                return Err(InitError::Other(
                    "process.terminal is set but no --console-socket was given".into(),
                ))
            }
            _ => None,
        };
        nix::unistd::setsid().map_err(|source| InitError::Sys {
            step: "setsid".into(),
            source,
        })?;
        if let Some(pty) = pty {
            crate::console::make_controlling(pty)?;
        }
        process::set_rlimits(p)?;
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
        crate::process_attrs::apply_process(p)?;
        process::drop_bounding(p.capabilities().as_ref())?;
        process::set_user(p, userns)?;
        let env = process::environment(p);
        nix::unistd::chdir(p.cwd()).map_err(|source| InitError::Sys {
            step: format!("chdir {}", p.cwd().display()),
            source,
        })?;
        let args = p.args().clone().unwrap_or_default();
        let prog = process::lookup(&args[0], &env)?;
        process::refuse_runtime_binary(&prog)?;
        let nnp = p.no_new_privileges() == Some(true);
        if let (Some(f), false) = (seccomp, nnp) {
            crate::seccomp::load(f).map_err(|e| InitError::Other(e.to_string()))?;
        }
        process::set_caps(p.capabilities().as_ref())?;
        if nnp {
            process::set_no_new_privs()?;
            if let Some(f) = seccomp {
                crate::seccomp::load(f).map_err(|e| InitError::Other(e.to_string()))?;
            }
        }
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
        ch.send(sync::READY, b"").map_err(|source| InitError::Sys {
            step: "write to runtime".into(),
            source,
        })?;
        process::cloexec_from(3 + preserve_fds)?;
        Err(process::exec(&prog, &args, &env).into())
    };
    match run() {
        Ok(never) => match never {},
        Err(e) => e,
    }
}
