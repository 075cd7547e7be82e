//! `corral vmm`: the per-VM monitor process. It runs one VM from its vm.toml and serves the
//! control socket (protocol: corral_vmm::control); it exits when the VM ends, 0 for a clean end.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use corral_vmm::control::{self, ControlServer};
use corral_vmm::{Backend, Hypervisor, Machine, VmConfig};
use event_manager::MutEventSubscriber;

use super::vm_run::{backend_for, check_host_inputs, kvm_backend};

/// Run one VM from its definition, serving its control socket.
#[derive(Debug, Args)]
pub struct VmmArgs {
    /// The VM's vm.toml.
    #[arg(long, value_name = "PATH")]
    pub config: PathBuf,
    /// Where to serve the control socket (JSON over a Unix socket).
    #[arg(long = "control-socket", value_name = "PATH")]
    pub control_socket: Option<PathBuf>,
    /// Also share the serial console on this socket (raw bytes; `vm console` attaches).
    #[arg(long = "console-socket", value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
}

impl VmmArgs {
    /// Run the verb.
    pub fn run(self, _global: &crate::cli::GlobalArgs) -> anyhow::Result<ExitCode> {
        let cfg = VmConfig::load(&self.config)?;
        cfg.validate()?;
        check_host_inputs(&cfg)?;
        let (backend, reason) = backend_for(cfg.accel)?;
        tracing::info!("backend {backend}: {reason}");
        let hv: Box<dyn Hypervisor> = match backend {
            Backend::Kvm => kvm_backend()?,
            Backend::Emu => Box::new(corral_cpu_emu::EmuHypervisor::new()),
        };
        let out: Box<dyn std::io::Write + Send> = match &cfg.serial {
            corral_vmm::config::SerialConfig::Stdio => Box::new(std::io::stdout()),
            corral_vmm::config::SerialConfig::File(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("serial log {}", p.display()))?,
            ),
            corral_vmm::config::SerialConfig::None => Box::new(std::io::sink()),
        };
        let console = corral_daemon::vm_console::Console::default();
        let out = match &self.console_socket {
            Some(_) => console.tee(out),
            None => out,
        };
        let machine = Machine::build(&cfg, hv.as_ref(), out)?;
        if let Some(path) = &self.console_socket {
            let handle = machine.handle();
            console
                .serve(path, move |b: &[u8]| handle.serial_input(b))
                .with_context(|| format!("console socket {}", path.display()))?;
        }
        // A guest agent reaches the host at vsock port 1024: listen for it beside the vsock
        // socket (kept until the VM ends; dropping it removes the socket file).
        let agent = match &cfg.vsock {
            Some(v) => Some(corral_vmm::agent::AgentListener::start(
                &corral_vmm::agent::socket_path(&v.socket_path()),
            )?),
            None => None,
        };
        let mut extra: Vec<Box<dyn MutEventSubscriber + Send>> = Vec::new();
        extra.push(Box::new(corral_vmm::signals::TerminationSignals::install(
            machine.handle(),
        )?));
        if let Some(path) = &self.control_socket {
            let listener = control::bind(path)?;
            extra.push(match &agent {
                Some(a) => Box::new(ControlServer::new(
                    listener,
                    path.clone(),
                    corral_vmm::agent::WithAgent {
                        vm: machine.handle(),
                        agent: a.handle(),
                    },
                )),
                None => Box::new(ControlServer::new(listener, path.clone(), machine.handle())),
            });
        }
        let exit = machine.run(extra)?;
        drop(agent);
        if exit.is_clean() {
            tracing::info!("{exit}");
            Ok(ExitCode::SUCCESS)
        } else {
            eprintln!("corral: error: {exit}");
            Ok(ExitCode::FAILURE)
        }
    }
}
