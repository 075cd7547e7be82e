//! The `RunStep` executor of `corral build`: each RUN step is a container of corral's own
//! runtime (the `corral-oci` library, called in this process: create, bring up loopback,
//! start, wait, delete). The container gets fresh pid, mount, ipc, uts and cgroup namespaces,
//! a private network namespace with loopback up (the host's with `--network host`, plus the
//! host's resolv.conf and hosts read-only), oci-spec's
//! default mounts and masked paths, and Docker's default capability set, so package managers
//! can chown and switch users. Its stdout and stderr are streamed into the build output.
//!
//! Whatever happens (a failing command, a runtime error, Ctrl-C), the container is killed and
//! deleted (its cgroups and state directory) and the bundle is removed before `run` returns.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};

use corral_image::build::user::{resolve_in_rootfs, RunUser};
use corral_image::build::{RunRequest, RunStep};
use corral_oci::container::{Container, CreateOptions};
use corral_oci::state::StateRoot;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::{
    Capabilities, LinuxCapabilitiesBuilder, LinuxNamespaceType, Mount, MountBuilder, RootBuilder,
    Spec, UserBuilder,
};

/// The network a RUN step sees (`corral build --network`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildNetwork {
    /// A private network namespace with only loopback (the default).
    Private,
    /// The host's network namespace.
    Host,
}

impl BuildNetwork {
    /// Parses `--network` (`none`/`default` or `host`).
    pub fn parse(s: &str) -> anyhow::Result<BuildNetwork> {
        match s {
            "" | "none" | "default" => Ok(BuildNetwork::Private),
            "host" => Ok(BuildNetwork::Host),
            other => anyhow::bail!(
                "--network {other:?}: RUN steps support `none` (a private namespace with loopback, the default) or `host`"
            ),
        }
    }
}

/// Runs RUN steps as containers of corral's OCI runtime.
#[derive(Debug)]
pub struct OciExecutor {
    state_root: StateRoot,
    bundles: PathBuf,
    network: BuildNetwork,
}

/// Numbers the containers of one build process.
static SEQ: AtomicU32 = AtomicU32::new(0);
/// The init of the running step, killed by the interrupt handler.
static RUNNING: AtomicI32 = AtomicI32::new(0);
/// Whether the build was interrupted while a step ran.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn interrupt(_sig: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
    let pid = RUNNING.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// While alive, SIGINT/SIGTERM/SIGHUP kill the step's container instead of this process, so
/// the build unwinds and removes what it made; the previous handlers come back on drop.
struct InterruptGuard {
    old: Vec<(Signal, SigAction)>,
}

impl InterruptGuard {
    fn install() -> InterruptGuard {
        INTERRUPTED.store(false, Ordering::SeqCst);
        let act = SigAction::new(
            SigHandler::Handler(interrupt),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        let old = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP]
            .into_iter()
            // SAFETY: the handler only touches atomics and calls kill(2).
            .filter_map(|s| unsafe { sigaction(s, &act) }.ok().map(|o| (s, o)))
            .collect();
        InterruptGuard { old }
    }
}

impl Drop for InterruptGuard {
    fn drop(&mut self) {
        RUNNING.store(0, Ordering::SeqCst);
        for (s, o) in &self.old {
            // SAFETY: restoring the disposition that was in place before.
            let _ = unsafe { sigaction(*s, o) };
        }
    }
}

/// How a step's process ended.
enum Ended {
    /// It exited with this status.
    Exited(i32),
    /// A signal killed it.
    Killed(Signal),
}

/// Kills, reaps and deletes a step's container however the step ends.
struct Running {
    container: Option<Container>,
    pid: i32,
    reaped: bool,
}

impl Running {
    /// Waits for the init (our child): how it ended.
    fn wait(&mut self) -> Result<Ended, String> {
        loop {
            match waitpid(Pid::from_raw(self.pid), None) {
                Ok(WaitStatus::Exited(_, code)) => {
                    self.reaped = true;
                    return Ok(Ended::Exited(code));
                }
                Ok(WaitStatus::Signaled(_, sig, _)) => {
                    self.reaped = true;
                    return Ok(Ended::Killed(sig));
                }
                Ok(_) | Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(format!("waiting for the RUN container: {e}")),
            }
        }
    }

    /// Deletes the container (cgroups, state directory).
    fn delete(&mut self) -> Result<(), String> {
        if !self.reaped {
            let _ = nix::sys::signal::kill(Pid::from_raw(self.pid), Signal::SIGKILL);
            let _ = self.wait();
        }
        match self.container.take() {
            Some(c) => c
                .delete(true)
                .map_err(|e| format!("removing the RUN container: {e}")),
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Err(e) = self.delete() {
            tracing::warn!("{e}");
        }
    }
}

/// Points fds 0, 1 and 2 at /dev/null and a pipe while alive (the init inherits them), and
/// puts the originals back on drop.
struct Redirect {
    saved: Vec<OwnedFd>,
}

impl Redirect {
    fn to(pipe: &OwnedFd) -> Result<Redirect, String> {
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        let null = File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
        let mut r = Redirect { saved: Vec::new() };
        for fd in 0..3 {
            let copy = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))
                .map_err(|e| format!("saving fd {fd}: {e}"))?;
            // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that we own.
            r.saved
                .push(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(copy) });
        }
        let targets: [RawFd; 3] = [null.as_raw_fd(), pipe.as_raw_fd(), pipe.as_raw_fd()];
        for (fd, src) in targets.into_iter().enumerate() {
            nix::unistd::dup2(src, fd as RawFd).map_err(|e| format!("redirecting fd {fd}: {e}"))?;
        }
        Ok(r)
    }
}

impl Drop for Redirect {
    fn drop(&mut self) {
        for (fd, saved) in self.saved.iter().enumerate() {
            let _ = nix::unistd::dup2(saved.as_raw_fd(), fd as RawFd);
        }
    }
}

impl OciExecutor {
    /// An executor keeping container state under `run_dir/build` and bundles under `run_dir`.
    pub fn new(run_dir: &Path, network: BuildNetwork) -> OciExecutor {
        OciExecutor {
            state_root: StateRoot::new(run_dir.join("build")),
            bundles: run_dir.join("build-bundles"),
            network,
        }
    }

    /// The container spec of one step.
    fn spec(&self, req: &RunRequest<'_>, user: &RunUser) -> Result<Spec, String> {
        let e = |e: oci_spec::OciSpecError| e.to_string();
        let mut spec = Spec::default();
        let mut process = spec.process().clone().unwrap_or_default();
        let mut env = req.env.to_vec();
        if !env.iter().any(|v| v.starts_with("HOME=")) {
            env.push(format!("HOME={}", user.home));
        }
        let caps = corral_oci::capabilities::docker_default();
        // A non-root user starts without capabilities, as in Docker; the bounding set still
        // lets setuid binaries (su, sudo) gain them.
        let live = if user.uid == 0 {
            caps.clone()
        } else {
            Capabilities::new()
        };
        process.set_terminal(Some(false));
        process.set_args(Some(req.argv.to_vec()));
        process.set_env(Some(env));
        process.set_cwd(req.cwd.into());
        process.set_user(
            UserBuilder::default()
                .uid(user.uid)
                .gid(user.gid)
                .additional_gids(user.additional_gids.clone())
                .build()
                .map_err(e)?,
        );
        process.set_capabilities(Some(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps)
                .effective(live.clone())
                .permitted(live)
                .inheritable(Capabilities::new())
                .ambient(Capabilities::new())
                .build()
                .map_err(e)?,
        ));
        process.set_no_new_privileges(Some(false));
        spec.set_process(Some(process));
        spec.set_root(Some(
            RootBuilder::default()
                .path(req.rootfs)
                .readonly(false)
                .build()
                .map_err(e)?,
        ));
        spec.set_hostname(Some("corral-build".into()));
        if self.network == BuildNetwork::Host {
            if let Some(ns) = spec
                .linux_mut()
                .as_mut()
                .and_then(|l| l.namespaces_mut().as_mut())
            {
                ns.retain(|n| n.typ() != LinuxNamespaceType::Network);
            }
            let mut mounts = spec.mounts().clone().unwrap_or_default();
            mounts.extend(host_name_service_mounts().map_err(e)?);
            spec.set_mounts(Some(mounts));
        }
        Ok(spec)
    }
}

/// The host's `/etc/resolv.conf` and `/etc/hosts`, read-only, for a step on the host's
/// network (as `docker build --network host` gives them), so names resolve as on the host.
fn host_name_service_mounts() -> Result<Vec<Mount>, oci_spec::OciSpecError> {
    ["/etc/resolv.conf", "/etc/hosts"]
        .into_iter()
        .filter(|f| Path::new(f).exists())
        .map(|f| {
            MountBuilder::default()
                .destination(f)
                .typ("bind")
                .source(f)
                .options(vec!["rbind".into(), "ro".into()])
                .build()
        })
        .collect()
}

/// Fails unless this process has a single thread: `Container::create` forks, and a fork of a
/// threaded process may inherit locks held by other threads.
fn single_threaded() -> Result<(), String> {
    let n = std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(1);
    if n > 1 {
        return Err(format!(
            "RUN steps are started from a single-threaded process and this one has {n} threads"
        ));
    }
    Ok(())
}

/// Sets loopback up in the network namespace of `pid` (a new namespace starts with it down).
fn loopback_up(pid: i32) -> Result<(), String> {
    use nix::sched::{setns, CloneFlags};
    let err = |what: &str, e: &dyn std::fmt::Display| {
        format!("loopback of the RUN container: {what}: {e}")
    };
    let own = File::open("/proc/self/ns/net").map_err(|e| err("our namespace", &e))?;
    let theirs = File::open(format!("/proc/{pid}/ns/net")).map_err(|e| err("its namespace", &e))?;
    setns(theirs.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| err("setns", &e))?;
    let r = set_up("lo");
    // Setns only changes this thread; going back must not fail silently.
    setns(own.as_fd(), CloneFlags::CLONE_NEWNET)
        .map_err(|e| err("returning to our namespace", &e))?;
    r.map_err(|e| err("SIOCSIFFLAGS lo", &e))
}

/// `ip link set NAME up` with SIOCGIFFLAGS/SIOCSIFFLAGS on a socket of this thread's namespace.
fn set_up(name: &str) -> nix::Result<()> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: a valid socket and a live ifreq with a NUL-terminated name.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) } < 0 {
        return Err(nix::Error::last());
    }
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe { ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above, with the flags to set.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) } < 0 {
        return Err(nix::Error::last());
    }
    Ok(())
}

/// Copies everything from `pipe` to `out` until every writer has closed it.
fn pump(pipe: OwnedFd, out: &mut dyn Write) {
    let mut f = File::from(pipe);
    let mut buf = [0u8; 8192];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let _ = out.write_all(&buf[..n]);
                let _ = out.flush();
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
}

impl RunStep for OciExecutor {
    fn run(&self, req: &RunRequest<'_>, out: &mut dyn Write) -> Result<(), String> {
        single_threaded()?;
        let user = resolve_in_rootfs(req.rootfs, req.user).map_err(|e| e.to_string())?;
        let spec = self.spec(req, &user)?;
        std::fs::create_dir_all(&self.bundles)
            .map_err(|e| format!("{}: {e}", self.bundles.display()))?;
        let id = format!(
            "corral-build-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let bundle = tempfile::Builder::new()
            .prefix(&format!("{id}-"))
            .tempdir_in(&self.bundles)
            .map_err(|e| format!("{}: {e}", self.bundles.display()))?;
        spec.save(bundle.path().join("config.json"))
            .map_err(|e| format!("writing the RUN bundle: {e}"))?;
        let (rd, wr) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
        let opts = CreateOptions {
            id: id.clone(),
            bundle: bundle.path().to_path_buf(),
            ..Default::default()
        };
        let _interrupts = InterruptGuard::install();
        let created = {
            let _redirect = Redirect::to(&wr)?;
            Container::create(&self.state_root, &opts)
        };
        drop(wr);
        let (container, spawned) =
            created.map_err(|e| format!("starting the RUN container: {e}"))?;
        RUNNING.store(spawned.pid, Ordering::SeqCst);
        let mut running = Running {
            container: Some(container),
            pid: spawned.pid,
            reaped: false,
        };
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Err("interrupted".into());
        }
        if self.network == BuildNetwork::Private {
            loopback_up(spawned.pid)?;
        }
        let c = running.container.as_ref().expect("not deleted yet");
        c.start()
            .map_err(|e| format!("starting the RUN container: {e}"))?;
        pump(rd, out);
        let ended = running.wait()?;
        running.delete()?;
        drop(bundle);
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Err("interrupted".into());
        }
        match ended {
            Ended::Exited(0) => Ok(()),
            Ended::Exited(c) => Err(format!("the command returned a non-zero code: {c}")),
            Ended::Killed(sig) => Err(format!("the command was killed by {}", sig.as_str())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::Capability;

    fn req<'a>(argv: &'a [String], env: &'a [String]) -> RunRequest<'a> {
        RunRequest {
            rootfs: Path::new("/rootfs"),
            argv,
            env,
            cwd: "/work",
            user: "",
        }
    }

    fn root() -> RunUser {
        RunUser {
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            home: "/root".into(),
        }
    }

    #[test]
    fn spec_isolates_and_carries_the_step() {
        let argv = vec!["/bin/sh".to_string(), "-c".into(), "true".into()];
        let env = vec!["PATH=/bin".to_string(), "A=1".into()];
        let x = OciExecutor::new(Path::new("/run/x"), BuildNetwork::Private);
        let spec = x.spec(&req(&argv, &env), &root()).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &argv);
        assert_eq!(p.cwd(), Path::new("/work"));
        let env = p.env().as_ref().unwrap();
        assert!(env.contains(&"A=1".to_string()) && env.contains(&"HOME=/root".to_string()));
        let caps = p.capabilities().as_ref().unwrap();
        assert_eq!(
            caps.effective().as_ref().unwrap().len(),
            corral_oci::capabilities::DOCKER_DEFAULT.len()
        );
        assert!(!caps
            .bounding()
            .as_ref()
            .unwrap()
            .contains(&Capability::SysAdmin));
        let ns: Vec<_> = spec
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect();
        for t in [
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
        ] {
            assert!(ns.contains(&t), "{t:?} missing from {ns:?}");
        }
        let host = OciExecutor::new(Path::new("/run/x"), BuildNetwork::Host);
        let spec = host.spec(&req(&argv, &[]), &root()).unwrap();
        let ns = spec
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap();
        assert!(ns.iter().all(|n| n.typ() != LinuxNamespaceType::Network));
        let resolv = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == Path::new("/etc/resolv.conf"))
            .expect("the host's resolv.conf is bound");
        assert!(resolv.options().as_ref().unwrap().contains(&"ro".into()));
    }

    #[test]
    fn a_non_root_user_starts_without_capabilities() {
        let x = OciExecutor::new(Path::new("/run/x"), BuildNetwork::Private);
        let user = RunUser {
            uid: 1000,
            gid: 1000,
            additional_gids: vec![27],
            home: "/home/u".into(),
        };
        let spec = x.spec(&req(&["id".into()], &[]), &user).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.user().uid(), 1000);
        assert_eq!(p.user().additional_gids().as_ref().unwrap(), &vec![27]);
        let caps = p.capabilities().as_ref().unwrap();
        assert!(caps.effective().as_ref().unwrap().is_empty());
        assert_eq!(
            caps.bounding().as_ref().unwrap().len(),
            corral_oci::capabilities::DOCKER_DEFAULT.len()
        );
    }

    #[test]
    fn network_values() {
        assert_eq!(BuildNetwork::parse("none").unwrap(), BuildNetwork::Private);
        assert_eq!(BuildNetwork::parse("host").unwrap(), BuildNetwork::Host);
        let e = BuildNetwork::parse("bridge").unwrap_err().to_string();
        assert!(e.contains("bridge") && e.contains("host"), "{e}");
    }
}
