//! `corral vm …`: virtual machines.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::cli::GlobalArgs;
use crate::exit::not_implemented;

/// Virtual machine verbs.
#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Boot a VM in the foreground with its serial console on this terminal (Ctrl-A x quits).
    Run(VmRunArgs),
    /// Define a VM: writes vms/NAME/vm.toml under the root dir.
    Create(VmCreateArgs),
    /// Start a defined VM in the background under its own monitor process.
    Start(VmNameArgs),
    /// Ask the guest to power off (through its guest agent when one is connected, else
    /// Ctrl-Alt-Del); turn it off after the timeout.
    Shutdown(VmShutdownArgs),
    /// Turn a VM off now, without asking the guest.
    Off(VmNameArgs),
    /// Run a command in a running VM through its guest agent (`corral-agent`); exits with the
    /// command's status.
    Exec(VmExecArgs),
    /// Pause a running VM's vCPUs.
    Pause(VmNameArgs),
    /// Resume a paused VM, or restore a saved one.
    Resume(VmNameArgs),
    /// Save a running VM's state and memory to disk and stop it.
    Save(VmNameArgs),
    /// Attach to a running VM's serial console (Ctrl-] detaches).
    Console(VmNameArgs),
    /// Take, list or restore snapshots.
    #[command(subcommand)]
    Snapshot(VmSnapshotCommand),
    /// Clone a stopped VM (copy-on-write disks).
    Clone(VmCloneArgs),
    /// Export a VM as an appliance archive.
    Export(VmExportArgs),
    /// Import an appliance archive as a new VM.
    Import(VmImportArgs),
    /// Move a running VM to another corral host.
    Migrate(VmMigrateArgs),
    /// Change a VM's definition; changes apply at the next start.
    Edit(VmEditArgs),
    /// List VMs with state, CPU, memory demand and pressure, uptime and heartbeat.
    Ls(VmLsArgs),
    /// Show a VM's definition and live state as JSON.
    Inspect(VmNameArgs),
    /// Remove a stopped VM and its folder.
    Rm(VmRmArgs),
}

/// `corral vm run`.
#[derive(Debug, Args)]
pub struct VmRunArgs {
    /// Guest kernel: an uncompressed ELF vmlinux or a bzImage.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Initial ramdisk (cpio, optionally compressed).
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long, value_name = "STR")]
    pub cmdline: Option<String>,
    /// Number of vCPUs.
    #[arg(long, value_name = "N")]
    pub cpus: Option<u8>,
    /// Guest memory, e.g. 256M or 1G.
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// A virtio-blk disk image; append ",ro" for read-only. Repeatable.
    #[arg(long = "disk", value_name = "PATH[,ro]")]
    pub disks: Vec<String>,
    /// Network: a virtio-net NIC on an existing tap (tap=NAME, optional ,mac=…), or none.
    #[arg(long, value_name = "tap=NAME[,mac=MAC]|none")]
    pub net: Option<String>,
    /// A virtio-vsock device with this guest CID; host programs reach it through the Unix
    /// socket PATH (`CONNECT <port>` on it; default $TMPDIR/corral-vsock-<pid>.sock).
    #[arg(long, value_name = "CID[,uds=PATH]")]
    pub vsock: Option<String>,
    /// Where the serial console goes.
    #[arg(long, value_name = "stdio|file:PATH|none")]
    pub serial: Option<String>,
    /// CPU backend: kvm, the software CPU (emu), or auto (KVM only where it runs kernels at speed).
    #[arg(long, value_name = "auto|kvm|emu")]
    pub accel: Option<String>,
    /// A vm.toml; flags given on the command line override its values.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// `corral vm create`.
#[derive(Debug, Args)]
pub struct VmCreateArgs {
    /// Name of the new VM.
    pub name: String,
    /// Guest kernel.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Initial ramdisk.
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long, value_name = "STR")]
    pub cmdline: Option<String>,
    /// Number of vCPUs (overrides the instance type).
    #[arg(long, value_name = "N")]
    pub cpus: Option<u8>,
    /// Guest memory (overrides the instance type).
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// A disk image; append ",ro" for read-only. Repeatable.
    #[arg(long = "disk", value_name = "PATH[,ro]")]
    pub disks: Vec<String>,
    /// Network to join: a network name (a tap on its bridge, the address on the kernel command
    /// line as `ip=`), none, or tap=NAME for a tap made elsewhere.
    #[arg(long, visible_alias = "network", value_name = "NAME|none|tap=NAME")]
    pub net: Option<String>,
    /// Instance type: standard, high-mem or high-cpu.
    #[arg(long = "type", value_name = "TYPE", default_value = "standard")]
    pub instance_type: String,
}

/// A command that names one VM.
#[derive(Debug, Args)]
pub struct VmNameArgs {
    /// The VM's name.
    pub name: String,
}

/// `corral vm shutdown`.
#[derive(Debug, Args)]
pub struct VmShutdownArgs {
    /// The VM's name.
    pub name: String,
    /// Seconds to wait for the guest before turning it off.
    #[arg(short, long, default_value_t = 30)]
    pub timeout: u64,
}

/// `corral vm exec`.
#[derive(Debug, Args)]
pub struct VmExecArgs {
    /// Seconds before the guest kills the command.
    #[arg(short, long, default_value_t = 60)]
    pub timeout: u64,
    /// The VM's name.
    pub name: String,
    /// The program and its arguments (no shell: use `sh -c '…'` for one).
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

/// `corral vm snapshot …`.
#[derive(Debug, Subcommand)]
pub enum VmSnapshotCommand {
    /// Take a snapshot of a VM.
    Create {
        /// The VM's name.
        vm: String,
        /// The snapshot's name.
        snapshot: String,
    },
    /// List a VM's snapshots.
    Ls {
        /// The VM's name.
        vm: String,
    },
    /// Restore a VM to a snapshot.
    Restore {
        /// The VM's name.
        vm: String,
        /// The snapshot's name.
        snapshot: String,
    },
    /// Delete a snapshot.
    Rm {
        /// The VM's name.
        vm: String,
        /// The snapshot's name.
        snapshot: String,
    },
}

/// `corral vm clone`.
#[derive(Debug, Args)]
pub struct VmCloneArgs {
    /// The VM to copy.
    pub source: String,
    /// The new VM's name.
    pub name: String,
}

/// `corral vm export`.
#[derive(Debug, Args)]
pub struct VmExportArgs {
    /// The VM's name.
    pub name: String,
    /// The archive to write.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
}

/// `corral vm import`.
#[derive(Debug, Args)]
pub struct VmImportArgs {
    /// The appliance archive.
    pub archive: PathBuf,
    /// Name for the imported VM (default: the name in the archive).
    #[arg(long)]
    pub name: Option<String>,
}

/// `corral vm migrate`.
#[derive(Debug, Args)]
pub struct VmMigrateArgs {
    /// The VM's name.
    pub name: String,
    /// The destination daemon, e.g. tcp://host:port.
    pub destination: String,
}

/// `corral vm edit`.
#[derive(Debug, Args)]
pub struct VmEditArgs {
    /// The VM's name.
    pub name: String,
    /// New number of vCPUs.
    #[arg(long)]
    pub cpus: Option<u8>,
    /// New memory size.
    #[arg(long)]
    pub memory: Option<String>,
    /// New kernel command line.
    #[arg(long)]
    pub cmdline: Option<String>,
}

/// `corral vm ls`.
#[derive(Debug, Args)]
pub struct VmLsArgs {
    /// Output format: table or json.
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Refresh every second.
    #[arg(long)]
    pub watch: bool,
}

/// `corral vm rm`.
#[derive(Debug, Args)]
pub struct VmRmArgs {
    /// The VMs' names.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Turn a running VM off first.
    #[arg(short, long)]
    pub force: bool,
}

impl VmCommand {
    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        use crate::commands::vm_daemon as d;
        match self {
            VmCommand::Run(args) => super::vm_run::run(args),
            VmCommand::Create(a) => d::create(a, global),
            VmCommand::Start(a) => d::start(a, global),
            VmCommand::Shutdown(a) => d::shutdown(a, global),
            VmCommand::Off(a) => d::off(a, global),
            VmCommand::Exec(a) => d::exec(a, global),
            VmCommand::Pause(a) => d::pause(a, global),
            VmCommand::Resume(a) => d::resume(a, global),
            VmCommand::Save(_) => not_implemented("vm save"),
            VmCommand::Console(a) => d::console(a, global),
            VmCommand::Snapshot(_) => not_implemented("vm snapshot"),
            VmCommand::Clone(_) => not_implemented("vm clone"),
            VmCommand::Export(_) => not_implemented("vm export"),
            VmCommand::Import(_) => not_implemented("vm import"),
            VmCommand::Migrate(_) => not_implemented("vm migrate"),
            VmCommand::Edit(a) => d::edit(a, global),
            VmCommand::Ls(a) => d::ls(a, global),
            VmCommand::Inspect(a) => d::inspect(a, global),
            VmCommand::Rm(a) => d::rm(a, global),
        }
    }
}
