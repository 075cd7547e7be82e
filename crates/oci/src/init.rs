//! The container's init, run in the cloned child: join or finish namespaces, build the
//! rootfs, set identity and limits, report ready, wait on the exec fifo for `start`, exec.

use std::os::fd::{FromRawFd, RawFd};
use std::path::Path;

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::cgroups::CgroupRecord;
use crate::process::{self, ProcessError};
use crate::rootfs::{self, RootfsContext, RootfsError};
use crate::sync::{self, Channel, Message};
use crate::syscall::{LinuxSyscall, Syscall};

/// A failed init step (sent to the runtime as text).
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A rootfs step.
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    /// A process step.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// A plain system call.
    #[error("{step}: {source}")]
    Sys {
        /// What was done.
        step: String,
        /// The errno.
        source: nix::Error,
    },
    /// Something else, already described.
    #[error("{0}")]
    Other(String),
}

fn sys(step: impl Into<String>) -> impl FnOnce(nix::Error) -> InitError {
    let step = step.into();
    move |source| InitError::Sys { step, source }
}

/// Everything the init needs, prepared by the runtime before the clone.
#[derive(Debug)]
pub struct InitArgs<'a> {
    /// The container id.
    pub id: &'a str,
    /// The spec.
    pub spec: &'a Spec,
    /// Absolute rootfs.
    pub rootfs: &'a Path,
    /// Absolute bundle.
    pub bundle: &'a Path,
    /// The init's end of the sync channel.
    pub channel: &'a Channel,
    /// An `O_PATH` descriptor of the exec fifo (None for `run`-style immediate start).
    pub fifo: Option<RawFd>,
    /// `--no-pivot`.
    pub no_pivot: bool,
    /// The container's cgroups.
    pub cgroup: &'a CgroupRecord,
    /// Whether the init moves itself into them (when clone3 did not start it there).
    pub join_cgroup: bool,
    /// Whether the runtime made a new user namespace.
    pub userns: bool,
    /// Whether a cgroup namespace is wanted (unshared after joining the cgroup).
    pub cgroupns: bool,
    /// Whether the runtime runs prestart/createRuntime hooks (the `H` step).
    pub runtime_hooks: bool,
    /// The console socket, when `process.terminal` is set.
    pub console_socket: Option<RawFd>,
    /// Descriptors 3..3+n the process keeps (`--preserve-fds`).
    pub preserve_fds: u32,
}

/// Run the init; never returns. On failure the error goes to the runtime and the child exits 1.
pub fn run(args: &InitArgs) -> ! {
    let err = match setup(args) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let _ = args.channel.send(sync::ERROR, err.to_string().as_bytes());
    crate::spawn::exit_now(1)
}

fn wait_go(ch: &Channel) -> Result<(), InitError> {
    match ch.recv().map_err(sys("read from runtime"))? {
        Message::Msg(sync::GO, _) => Ok(()),
        _ => Err(InitError::Other("the runtime went away".into())),
    }
}

enum Never {}

fn setup(a: &InitArgs) -> Result<Never, InitError> {
    let sys_ = LinuxSyscall;
    let spec = a.spec;
    let linux = spec
        .linux()
        .as_ref()
        .ok_or(InitError::Other("no linux section".into()))?;
    let process = spec
        .process()
        .as_ref()
        .ok_or(InitError::Other("no process".into()))?;
    // Die with the runtime while it sets us up.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    wait_go(a.channel)?;
    if a.join_cgroup {
        crate::cgroups::from_record(a.cgroup)
            .join_self()
            .map_err(|e| InitError::Other(e.to_string()))?;
    }

    // Namespaces given by path (pid was joined by the runtime before the clone).
    let namespaces = linux.namespaces().clone().unwrap_or_default();
    let order = [
        LinuxNamespaceType::User,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Cgroup,
        LinuxNamespaceType::Mount,
    ];
    for typ in order {
        if let Some(path) = namespaces
            .iter()
            .find(|n| n.typ() == typ)
            .and_then(|n| n.path().as_ref())
        {
            let f = std::fs::File::open(path)
                .map_err(|e| InitError::Other(format!("open namespace {}: {e}", path.display())))?;
            nix::sched::setns(f, CloneFlags::empty())
                .map_err(sys(format!("setns {}", path.display())))?;
        }
    }
    if a.userns {
        nix::unistd::setresgid(0.into(), 0.into(), 0.into()).map_err(sys("setresgid 0"))?;
        nix::unistd::setresuid(0.into(), 0.into(), 0.into()).map_err(sys("setresuid 0"))?;
    }
    if let Some(time) = namespaces
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Time)
    {
        match time.path() {
            Some(path) => crate::timens::join(path)?,
            None => crate::timens::enter_new(linux.time_offsets().as_ref())?,
        }
    }
    if a.cgroupns {
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
            .map_err(sys("unshare cgroup namespace"))?;
    }
    nix::unistd::setsid().map_err(sys("setsid"))?;

    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        sys_.sethostname(h).map_err(sys("sethostname"))?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        sys_.setdomainname(d).map_err(sys("setdomainname"))?;
    }

    let ctx = RootfsContext {
        rootfs: a.rootfs,
        bundle: a.bundle,
        cgroup: a.cgroup,
        userns: a.userns,
    };
    rootfs::prepare(&sys_, a.rootfs, linux.rootfs_propagation().as_deref())?;
    for m in spec.mounts().iter().flatten() {
        rootfs::mount_one(&sys_, &ctx, m)?;
    }
    rootfs::create_devices(&sys_, &ctx, linux.devices().as_deref().unwrap_or(&[]))?;
    let console = match (process.terminal() == Some(true), a.console_socket) {
        (true, Some(sock)) => Some(crate::console::setup(&sys_, a.rootfs, sock)?),
        (true, None) => {
            return Err(InitError::Other(
                "process.terminal is set but no --console-socket was given".into(),
            ))
        }
        _ => None,
    };

    if a.runtime_hooks {
        a.channel
            .send(sync::HOOKS, b"")
            .map_err(sys("write to runtime"))?;
        wait_go(a.channel)?;
    }
    let hooks = spec.hooks().clone().unwrap_or_default();
    if let Some(h) = hooks.create_container().as_ref().filter(|h| !h.is_empty()) {
        let state = hook_state(a);
        crate::hooks::run("createContainer", h, &state)
            .map_err(|e| InitError::Other(e.to_string()))?;
    }

    rootfs::enter(&sys_, a.rootfs, a.no_pivot)?;
    for (k, v) in linux.sysctl().iter().flatten() {
        let path = Path::new("/proc/sys").join(k.replace('.', "/"));
        std::fs::write(&path, v)
            .map_err(|e| InitError::Other(format!("sysctl {k}: {}: {e}", path.display())))?;
    }
    let root_ro = spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false);
    rootfs::finish(
        &sys_,
        linux.masked_paths().as_deref().unwrap_or(&[]),
        linux.readonly_paths().as_deref().unwrap_or(&[]),
        root_ro,
    )?;
    if let Some(prop) = linux
        .rootfs_propagation()
        .as_deref()
        .and_then(rootfs::propagation_flag)
    {
        sys_.mount(None, Path::new("/"), None, prop, None)
            .map_err(sys("set rootfs propagation"))?;
    }

    if let Some(adj) = process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(|e| InitError::Other(format!("oomScoreAdj: {e}")))?;
    }
    process::set_rlimits(process)?;
    if let Some(pty) = console {
        crate::console::make_controlling(pty)?;
    }
    // The runtime binary stays unreachable from the container: nobody may open our
    // /proc/<pid>/exe or memory while we still run host code (CVE-2019-5736 class).
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };

    let nnp = process.no_new_privileges() == Some(true);
    let seccomp = match linux.seccomp() {
        Some(s) => Some(crate::seccomp::compile(s).map_err(|e| InitError::Other(e.to_string()))?),
        None => None,
    };
    crate::process_attrs::apply_process(process)?;
    if let Some(p) = linux.personality() {
        crate::process_attrs::apply_personality(p)?;
    }
    process::drop_bounding(process.capabilities().as_ref())?;
    process::set_user(process, a.userns)?;
    let env = process::environment(process);
    nix::unistd::chdir(process.cwd()).map_err(sys(format!("chdir {}", process.cwd().display())))?;
    let args = process.args().clone().unwrap_or_default();
    let prog = process::lookup(&args[0], &env)?;
    process::refuse_runtime_binary(&prog)?;
    if let (Some(f), false) = (&seccomp, nnp) {
        // Without no_new_privileges the filter needs CAP_SYS_ADMIN: load before dropping.
        crate::seccomp::load(f).map_err(|e| InitError::Other(e.to_string()))?;
    }
    process::set_caps(process.capabilities().as_ref())?;
    if nnp {
        process::set_no_new_privs()?;
    }
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
    a.channel
        .send(sync::READY, b"")
        .map_err(sys("write to runtime"))?;

    if let Some(fifo) = a.fifo {
        // Blocks until `start` opens the other end.
        let path = format!("/proc/self/fd/{fifo}");
        let fd = nix::fcntl::open(
            path.as_str(),
            nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(sys("open exec fifo"))?;
        // SAFETY: `open` returned a new descriptor that we own.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        nix::unistd::write(&fd, &[0]).map_err(sys("write exec fifo"))?;
        drop(fd);
    }
    if let Some(h) = hooks.start_container().as_ref().filter(|h| !h.is_empty()) {
        crate::hooks::run("startContainer", h, &hook_state(a))
            .map_err(|e| InitError::Other(e.to_string()))?;
    }
    process::cloexec_from(3 + a.preserve_fds)?;
    if let (Some(f), true) = (&seccomp, nnp) {
        crate::seccomp::load(f).map_err(|e| InitError::Other(e.to_string()))?;
    }
    Err(process::exec(&prog, &args, &env).into())
}

fn hook_state(a: &InitArgs) -> crate::state::StateReport {
    crate::state::StateReport {
        oci_version: crate::state::OCI_VERSION.into(),
        id: a.id.to_owned(),
        pid: std::process::id() as i32,
        status: crate::state::Status::Creating,
        bundle: a.bundle.to_path_buf(),
        rootfs: a.rootfs.to_path_buf(),
        created: String::new(),
        owner: String::new(),
        annotations: a.spec.annotations().clone().unwrap_or_default(),
    }
}
