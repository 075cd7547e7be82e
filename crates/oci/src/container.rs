//! The library API: create, start, state, kill, delete, pause, resume, pids and stats of one
//! container, over a runc-style state root. `corral oci` is a thin face over this.
//!
//! `create` forks (see [`crate::spawn`]), so call it from a single-threaded process; the
//! daemon's shim and the image builder run `corral oci` as a child instead.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};

use crate::bundle::{Bundle, BundleError};
use crate::cgroups::{self, CgroupError, CgroupLayout, CgroupManager, Stats};
use crate::hooks::{self, HookError};
use crate::init::{self, InitArgs};
use crate::spawn::{self, Forked};
use crate::state::{self, StateError, StateFile, StateReport, StateRoot, Status, EXEC_FIFO};
use crate::sync::{self, Channel, Message};

/// Errors of container operations; each names the container and the step.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The state directory.
    #[error(transparent)]
    State(#[from] StateError),
    /// The bundle.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// Cgroups.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// The host's cgroup layout.
    #[error(transparent)]
    Layout(#[from] crate::cgroups::LayoutError),
    /// A hook.
    #[error(transparent)]
    Hook(#[from] HookError),
    /// A step of create or start failed.
    #[error("{id}: {step}: {reason}")]
    Step {
        /// Container id.
        id: String,
        /// The step.
        step: &'static str,
        /// Why.
        reason: String,
    },
    /// The container is in the wrong status for the operation.
    #[error("{id}: {op} needs a {wanted} container, it is {status}")]
    WrongStatus {
        /// Container id.
        id: String,
        /// The operation.
        op: &'static str,
        /// Which status it needs.
        wanted: &'static str,
        /// The status it has.
        status: &'static str,
    },
}

/// A failed step of container `id`.
pub(crate) fn step(id: &str, step: &'static str, reason: impl ToString) -> ContainerError {
    ContainerError::Step {
        id: id.to_owned(),
        step,
        reason: reason.to_string(),
    }
}

/// Options of `create` (and `run`).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Container id.
    pub id: String,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// Where to write the init's pid.
    pub pid_file: Option<PathBuf>,
    /// Unix socket to send the pty master to (when `process.terminal`).
    pub console_socket: Option<PathBuf>,
    /// Use `MS_MOVE` + chroot instead of `pivot_root`.
    pub no_pivot: bool,
    /// Descriptors 3..3+n the process inherits.
    pub preserve_fds: u32,
    /// Start right away (as `run`) instead of waiting on the exec fifo for `start`.
    pub start_now: bool,
}

/// A created container's init as seen by its creator.
#[derive(Debug)]
pub struct Spawned {
    /// Pid of the init.
    pub pid: i32,
    /// A pidfd of the init (our child).
    pub pidfd: OwnedFd,
}

/// One container of a state root.
#[derive(Debug)]
pub struct Container {
    root: StateRoot,
    /// Its persisted state.
    pub state: StateFile,
}

fn clone_flag(t: LinuxNamespaceType) -> Option<CloneFlags> {
    Some(match t {
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        _ => return None,
    })
}

fn write_map(pid: i32, file: &str, maps: &[LinuxIdMapping]) -> std::io::Result<()> {
    let text: String = maps
        .iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect();
    fs::write(format!("/proc/{pid}/{file}"), text)
}

/// Everything `create` set up so far, undone on failure.
struct Undo<'a> {
    root: &'a StateRoot,
    id: &'a str,
    cgroup: Option<&'a dyn CgroupManager>,
    child: Option<i32>,
    armed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(pid) = self.child {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
        if let Some(cg) = self.cgroup {
            let _ = cg.remove();
        }
        let _ = self.root.remove(self.id);
    }
}

impl Container {
    /// Create a container: load the bundle, make its cgroups and state directory, clone the
    /// init into its namespaces and wait until the init is set up (status "created", or
    /// "running" with `start_now`). Whatever fails is undone.
    pub fn create(
        root: &StateRoot,
        opts: &CreateOptions,
    ) -> Result<(Container, Spawned), ContainerError> {
        let id = opts.id.as_str();
        state::validate_id(id)?;
        if root.dir(id).join("state.json").exists() {
            return Err(StateError::Exists(id.to_owned()).into());
        }
        let bundle = Bundle::load(&opts.bundle)?;
        let spec = &bundle.spec;
        let linux = spec.linux().as_ref().expect("validated");
        let namespaces = linux.namespaces().clone().unwrap_or_default();
        if !namespaces
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::Mount)
        {
            return Err(BundleError::Invalid {
                field: "linux.namespaces".into(),
                reason: "a mount namespace is required".into(),
            }
            .into());
        }
        let layout = CgroupLayout::detect(Path::new("/"))?;
        let cg = cgroups::for_new(
            &layout,
            linux.cgroups_path().as_deref(),
            id,
            linux.resources().as_ref(),
        )?;
        let dir = root.create_dir(id)?;
        let mut undo = Undo {
            root,
            id,
            cgroup: None,
            child: None,
            armed: true,
        };

        cg.create(linux.resources().as_ref())?;
        undo.cgroup = Some(cg.as_ref());
        let record = cg.record();

        let fifo = if opts.start_now {
            None
        } else {
            let path = dir.join(EXEC_FIFO);
            nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o622))
                .map_err(|e| step(id, "make exec fifo", e))?;
            // The umask took the write bits for others; the init writes it after dropping
            // to the container's (possibly unprivileged) user.
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o622))
                .map_err(|e| step(id, "make exec fifo", e))?;
            let fd = nix::fcntl::open(
                &path,
                nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| step(id, "open exec fifo", e))?;
            // SAFETY: `open` returned a new descriptor that we own.
            Some(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
        };
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

        let mut flags = CloneFlags::empty();
        for ns in &namespaces {
            match (ns.path(), clone_flag(ns.typ())) {
                (None, Some(f)) => flags |= f,
                (Some(p), _) if ns.typ() == LinuxNamespaceType::Pid => {
                    let f = fs::File::open(p).map_err(|e| step(id, "open pid namespace", e))?;
                    nix::sched::setns(f, CloneFlags::CLONE_NEWPID)
                        .map_err(|e| step(id, "join pid namespace", e))?;
                }
                _ => {}
            }
        }
        let userns = flags.contains(CloneFlags::CLONE_NEWUSER);
        let cgroupns = namespaces
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::Cgroup && n.path().is_none());
        let hooks = spec.hooks().clone().unwrap_or_default();
        #[allow(deprecated)]
        let runtime_hooks: Vec<_> = hooks
            .prestart()
            .iter()
            .flatten()
            .chain(hooks.create_runtime().iter().flatten())
            .cloned()
            .collect();

        let (parent_ch, child_ch) = Channel::pair().map_err(|e| step(id, "socketpair", e))?;
        let cg_dir = match cg.clone_into_fd() {
            Some(p) => Some(
                fs::File::open(&p)
                    .map_err(|e| step(id, "open cgroup", format!("{}: {e}", p.display())))?,
            ),
            None => None,
        };
        let forked = spawn::clone3(flags, cg_dir.as_ref().map(|f| f.as_raw_fd()))
            .map_err(|e| step(id, "clone", e))?;
        let (pid, pidfd) = match forked {
            Forked::Child => {
                drop(parent_ch);
                init::run(&InitArgs {
                    id,
                    spec,
                    rootfs: &bundle.rootfs,
                    bundle: &bundle.dir,
                    channel: &child_ch,
                    fifo: fifo.as_ref().map(|f| f.as_raw_fd()),
                    no_pivot: opts.no_pivot,
                    cgroup: &record,
                    join_cgroup: cg_dir.is_none(),
                    userns,
                    cgroupns,
                    runtime_hooks: !runtime_hooks.is_empty(),
                    console_socket: console.as_ref().map(|c| c.as_raw_fd()),
                    preserve_fds: opts.preserve_fds,
                })
            }
            Forked::Parent { pid, pidfd } => (pid, pidfd),
        };
        drop(child_ch);
        drop(console);
        undo.child = Some(pid);
        if userns {
            write_map(
                pid,
                "uid_map",
                linux.uid_mappings().as_deref().unwrap_or(&[]),
            )
            .map_err(|e| step(id, "write uid_map", e))?;
            write_map(
                pid,
                "gid_map",
                linux.gid_mappings().as_deref().unwrap_or(&[]),
            )
            .map_err(|e| step(id, "write gid_map", e))?;
        }
        let pid_start = state::process_start(pid).map(|(s, _)| s).unwrap_or(0);
        let mut st = StateFile {
            version: state::STATE_VERSION,
            id: id.to_owned(),
            pid,
            pid_start,
            bundle: bundle.dir.clone(),
            rootfs: bundle.rootfs.clone(),
            created: state::now_rfc3339(),
            owner: String::new(),
            annotations: spec.annotations().clone().unwrap_or_default(),
            cgroup: record.clone(),
            poststop: hooks.poststop().clone().unwrap_or_default(),
            poststart: hooks.poststart().clone().unwrap_or_default(),
            host_pid_ns: !namespaces
                .iter()
                .any(|n| n.typ() == LinuxNamespaceType::Pid),
        };
        parent_ch
            .send(sync::GO, b"")
            .map_err(|e| step(id, "signal init", e))?;
        loop {
            match parent_ch
                .recv()
                .map_err(|e| step(id, "read from init", e))?
            {
                Message::Msg(sync::READY, _) => break,
                Message::Msg(sync::HOOKS, _) => {
                    let report = report(&st, Status::Creating);
                    hooks::run("createRuntime", &runtime_hooks, &report)?;
                    parent_ch
                        .send(sync::GO, b"")
                        .map_err(|e| step(id, "signal init", e))?;
                }
                Message::Msg(sync::ERROR, msg) => {
                    return Err(step(id, "init", String::from_utf8_lossy(&msg)));
                }
                _ => return Err(step(id, "init", "exited before it was set up")),
            }
        }
        st.pid_start = state::process_start(pid)
            .map(|(s, _)| s)
            .unwrap_or(pid_start);
        root.save(&st)?;
        if let Some(p) = &opts.pid_file {
            write_pid_file(p, pid).map_err(|e| step(id, "write pid file", e))?;
        }
        undo.armed = false;
        drop(undo);
        Ok((
            Container {
                root: root.clone(),
                state: st,
            },
            Spawned { pid, pidfd },
        ))
    }

    /// Open an existing container.
    pub fn load(root: &StateRoot, id: &str) -> Result<Container, ContainerError> {
        Ok(Container {
            root: root.clone(),
            state: root.load(id)?,
        })
    }

    /// The id.
    pub fn id(&self) -> &str {
        &self.state.id
    }

    fn cgroup(&self) -> Box<dyn CgroupManager> {
        cgroups::from_record(&self.state.cgroup)
    }

    /// The current status, from the init's liveness, the exec fifo and the freezer.
    pub fn status(&self) -> Status {
        match state::process_start(self.state.pid) {
            Some((start, false)) if start == self.state.pid_start => {
                if self.root.dir(self.id()).join(EXEC_FIFO).exists() {
                    Status::Created
                } else if self.cgroup().is_frozen() {
                    Status::Paused
                } else {
                    Status::Running
                }
            }
            _ => Status::Stopped,
        }
    }

    /// The state as `corral oci state` prints it.
    pub fn report(&self) -> StateReport {
        let status = self.status();
        let mut r = report(&self.state, status);
        if status == Status::Stopped {
            r.pid = 0;
        }
        r
    }

    fn wrong(&self, op: &'static str, wanted: &'static str, status: Status) -> ContainerError {
        ContainerError::WrongStatus {
            id: self.id().to_owned(),
            op,
            wanted,
            status: status.as_str(),
        }
    }

    /// Let a created container's init exec the user process.
    pub fn start(&self) -> Result<(), ContainerError> {
        let status = self.status();
        if status != Status::Created {
            return Err(self.wrong("start", "created", status));
        }
        let id = self.id();
        let path = self.root.dir(id).join(EXEC_FIFO);
        // The pidfd first: once the fifo is open the process may run and exit at once.
        let pidfd = spawn::pidfd_open(self.state.pid).map_err(|e| step(id, "pidfd_open", e))?;
        let fifo = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| step(id, "open exec fifo", e))?;
        let mut fds = [
            libc::pollfd {
                fd: fifo.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        loop {
            // SAFETY: two valid pollfds.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if r < 0 && nix::Error::last() == nix::Error::EINTR {
                continue;
            }
            break;
        }
        let mut byte = [0u8; 1];
        let n = nix::unistd::read(fifo.as_raw_fd(), &mut byte).unwrap_or(0);
        let _ = fs::remove_file(&path);
        if n != 1 {
            return Err(step(
                id,
                "start",
                "the init exited before it could be started",
            ));
        }
        self.poststart()
    }

    /// Run the poststart hooks of the bundle.
    pub fn poststart(&self) -> Result<(), ContainerError> {
        if !self.state.poststart.is_empty() {
            hooks::run("poststart", &self.state.poststart, &self.report())?;
        }
        Ok(())
    }

    /// Send `sig` to the init, or with `all` to every process of the container.
    pub fn kill(&self, sig: Signal, all: bool) -> Result<(), ContainerError> {
        let status = self.status();
        if all {
            for pid in self.cgroup().pids()? {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
            }
            return Ok(());
        }
        if status == Status::Stopped {
            return Err(step(self.id(), "kill", "container not running"));
        }
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.state.pid), sig)
            .map_err(|e| step(self.id(), "kill", e))
    }

    /// Remove the container. A created container is killed first; a running or paused one
    /// only with `force`.
    pub fn delete(self, force: bool) -> Result<(), ContainerError> {
        let status = self.status();
        match status {
            Status::Stopped => {}
            Status::Created => self.kill_and_wait()?,
            Status::Running | Status::Paused if force => self.kill_and_wait()?,
            other => {
                return Err(ContainerError::WrongStatus {
                    id: self.id().to_owned(),
                    op: "delete",
                    wanted: "stopped (or use --force)",
                    status: other.as_str(),
                })
            }
        }
        self.destroy()
    }

    /// Remove a container whose init the caller has already reaped (`run`), without probing
    /// its status again. Sharing the host's pid namespace, the init's children may outlive it:
    /// those left in the cgroup are killed first.
    pub fn delete_reaped(self) -> Result<(), ContainerError> {
        if self.state.host_pid_ns {
            for pid in self.cgroup().pids().unwrap_or_default() {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        self.destroy()
    }

    fn kill_and_wait(&self) -> Result<(), ContainerError> {
        let cg = self.cgroup();
        let pidfd = spawn::pidfd_open(self.state.pid).ok();
        if self.state.host_pid_ns {
            for pid in cg.pids().unwrap_or_default() {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.state.pid), Signal::SIGKILL);
        if cg.is_frozen() {
            let _ = cg.set_frozen(false);
        }
        if let Some(fd) = pidfd {
            spawn::wait_pidfd(&fd, 10_000);
        }
        Ok(())
    }

    fn destroy(self) -> Result<(), ContainerError> {
        let report = report(&self.state, Status::Stopped);
        self.cgroup().remove()?;
        self.root.remove(self.id())?;
        if !self.state.poststop.is_empty() {
            if let Err(e) = hooks::run("poststop", &self.state.poststop, &report) {
                tracing::warn!("{}: {e}", self.id());
            }
        }
        Ok(())
    }

    /// Freeze every process.
    pub fn pause(&self) -> Result<(), ContainerError> {
        let status = self.status();
        if !matches!(status, Status::Running | Status::Created) {
            return Err(self.wrong("pause", "running", status));
        }
        Ok(self.cgroup().set_frozen(true)?)
    }

    /// Thaw a paused container.
    pub fn resume(&self) -> Result<(), ContainerError> {
        let status = self.status();
        if status != Status::Paused {
            return Err(self.wrong("resume", "paused", status));
        }
        Ok(self.cgroup().set_frozen(false)?)
    }

    /// Pids of every process in the container.
    pub fn pids(&self) -> Result<Vec<i32>, ContainerError> {
        Ok(self.cgroup().pids()?)
    }

    /// Resource statistics.
    pub fn stats(&self) -> Result<Stats, ContainerError> {
        Ok(self.cgroup().stats()?)
    }

    /// The spec of the bundle (for `exec` defaults).
    pub fn spec(&self) -> Result<Spec, ContainerError> {
        Ok(Bundle::load(&self.state.bundle)?.spec)
    }

    /// The state root.
    pub fn root(&self) -> &StateRoot {
        &self.root
    }
}

/// A state report of `st` with `status`.
pub fn report(st: &StateFile, status: Status) -> StateReport {
    StateReport {
        oci_version: state::OCI_VERSION.into(),
        id: st.id.clone(),
        pid: st.pid,
        status,
        bundle: st.bundle.clone(),
        rootfs: st.rootfs.clone(),
        created: st.created.clone(),
        owner: st.owner.clone(),
        annotations: st.annotations.clone(),
    }
}

/// Write a pid file atomically, without a newline (as runc).
pub fn write_pid_file(path: &Path, pid: i32) -> std::io::Result<()> {
    let tmp = path.with_extension("corral-tmp");
    fs::write(&tmp, pid.to_string())?;
    fs::rename(&tmp, path)
}
