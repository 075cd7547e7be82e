//! `corral vm run`: boot a VM in the foreground with its serial console on this terminal.

use std::io::{IsTerminal, Write};
use std::os::fd::AsRawFd;
use std::process::ExitCode;

use anyhow::{bail, Context};
use corral_vmm::config::{DiskConfig, NetConfig, SerialConfig, VsockConfig};
use corral_vmm::console::ConsoleInput;
use corral_vmm::hypervisor::kvm::KvmHypervisor;
use corral_vmm::{Accel, Backend, Hypervisor, KvmProbe, Machine, VmConfig};
use event_manager::MutEventSubscriber;

use super::vm::VmRunArgs;

/// Merge `--config` and the flags (flags win) into one definition.
pub fn config_from_args(args: &VmRunArgs) -> anyhow::Result<VmConfig> {
    let mut cfg = match (&args.config, &args.kernel) {
        (Some(path), _) => VmConfig::load(path)?,
        (None, Some(kernel)) => VmConfig::new(kernel.clone()),
        (None, None) => bail!("--kernel PATH (or --config vm.toml) is required"),
    };
    if let Some(k) = &args.kernel {
        cfg.kernel = k.clone();
    }
    if let Some(i) = &args.initrd {
        cfg.initrd = Some(i.clone());
    }
    if let Some(c) = &args.cmdline {
        cfg.cmdline = Some(c.clone());
    }
    if let Some(n) = args.cpus {
        cfg.cpus = n;
    }
    if let Some(m) = &args.memory {
        cfg.memory = m.clone();
    }
    for d in &args.disks {
        cfg.disks.push(DiskConfig::parse_flag(d)?);
    }
    match args.net.as_deref() {
        None => {}
        Some("none") => cfg.net = None,
        Some(s) => cfg.net = Some(NetConfig::parse_flag(s)?),
    }
    if let Some(v) = &args.vsock {
        cfg.vsock = Some(VsockConfig::parse_flag(v)?);
    }
    if let Some(s) = &args.serial {
        cfg.serial = s.parse()?;
    }
    if let Some(a) = &args.accel {
        cfg.accel = a.parse()?;
    }
    cfg.validate()?;
    Ok(cfg)
}

/// Check host-side inputs before anything is created, so bad input leaves nothing behind.
pub fn check_host_inputs(cfg: &VmConfig) -> anyhow::Result<()> {
    let one_line = |what: &str, p: &std::path::Path, e: std::io::Error| {
        anyhow::anyhow!("{what} {}: {e}", p.display())
    };
    let meta = std::fs::metadata(&cfg.kernel).map_err(|e| one_line("kernel", &cfg.kernel, e))?;
    if !meta.is_file() {
        bail!("kernel {} is not a file", cfg.kernel.display());
    }
    if let Some(i) = &cfg.initrd {
        let size = std::fs::metadata(i)
            .map_err(|e| one_line("initrd", i, e))?
            .len();
        let mem = cfg.memory_bytes()?;
        if size >= mem {
            bail!(
                "initrd {} ({} MiB) is larger than guest memory ({} MiB)",
                i.display(),
                size >> 20,
                mem >> 20
            );
        }
    }
    for d in &cfg.disks {
        std::fs::metadata(&d.path).map_err(|e| one_line("disk", &d.path, e))?;
    }
    Ok(())
}

/// The backend chosen for `accel` on this host, or why not.
pub fn backend_for(accel: Accel) -> anyhow::Result<(Backend, String)> {
    let choice = accel.choose(&KvmProbe::probe(std::path::Path::new("/")))?;
    Ok((choice.backend, choice.reason))
}

/// Open the KVM backend.
pub fn kvm_backend() -> anyhow::Result<Box<dyn Hypervisor>> {
    Ok(Box::new(KvmHypervisor::new()?))
}

/// Puts the terminal in raw mode and restores it when dropped.
struct RawTerminal {
    saved: nix::sys::termios::Termios,
}

impl RawTerminal {
    fn enter() -> Option<Self> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.saved,
        );
    }
}

/// Run the VM in the foreground.
pub fn run(args: VmRunArgs) -> anyhow::Result<ExitCode> {
    let cfg = config_from_args(&args)?;
    check_host_inputs(&cfg)?;
    let (backend, reason) = backend_for(cfg.accel)?;
    tracing::info!("backend {backend}: {reason}");
    let hv: Box<dyn Hypervisor> = match backend {
        Backend::Kvm => kvm_backend()?,
        Backend::Emu => Box::new(corral_cpu_emu::EmuHypervisor::new()),
    };
    run_on(&cfg, hv.as_ref())
}

/// Run `cfg` on `hv` with the console per `cfg.serial`; the exit status follows the guest.
pub fn run_on(cfg: &VmConfig, hv: &dyn Hypervisor) -> anyhow::Result<ExitCode> {
    let out: Box<dyn Write + Send> = match &cfg.serial {
        SerialConfig::Stdio => Box::new(std::io::stdout()),
        SerialConfig::File(p) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("serial log {}", p.display()))?,
        ),
        SerialConfig::None => Box::new(std::io::sink()),
    };
    let machine = Machine::build(cfg, hv, out)?;
    if let Some(v) = &cfg.vsock {
        // Where host programs reach the guest (`CONNECT <port>`): say it, the default is
        // per process.
        eprint!(
            "corral: vsock CID {} on {}\r\n",
            v.cid,
            v.socket_path().display()
        );
    }
    let mut extra: Vec<Box<dyn MutEventSubscriber + Send>> = Vec::new();
    extra.push(Box::new(corral_vmm::signals::TerminationSignals::install(
        machine.handle(),
    )?));
    let mut _raw = None;
    if cfg.serial == SerialConfig::Stdio {
        let stdin = std::io::stdin();
        let tty = stdin.is_terminal();
        let pollable = tty || stdin_is_stream();
        if tty {
            _raw = RawTerminal::enter();
            eprint!("corral: console on this terminal; Ctrl-A x quits\r\n");
        }
        if pollable {
            extra.push(Box::new(ConsoleInput::new(
                stdin.as_raw_fd(),
                machine.handle(),
                tty,
            )));
        }
    }
    let exit = machine.run(extra)?;
    drop(_raw);
    if exit.is_clean() {
        tracing::info!("{exit}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("corral: error: {exit}");
        Ok(ExitCode::FAILURE)
    }
}

/// Whether stdin is a pipe or socket (epoll cannot watch regular files or /dev/null).
fn stdin_is_stream() -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata("/proc/self/fd/0")
        .map(|m| {
            m.file_type().is_fifo() || m.file_type().is_socket() || m.file_type().is_char_device()
        })
        .unwrap_or(false)
        && !is_dev_null()
}

fn is_dev_null() -> bool {
    std::fs::read_link("/proc/self/fd/0").is_ok_and(|p| p == std::path::Path::new("/dev/null"))
}
