//! Request and response bodies. Each derives `ToSchema` so the daemon's OpenAPI document is
//! generated from the same types the handlers use.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every error the API returns: a stable machine code, a human message, and details (e.g. the
/// field path that failed validation).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ErrorBody {
    /// Stable code, e.g. `not_found`, `invalid_argument`, `conflict`, `internal`.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// Structured details, e.g. `{"field": "volumes[0]"}`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// What an instance is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InstanceKind {
    /// A container.
    Container,
    /// A virtual machine.
    Vm,
}

/// Lifecycle state of an instance.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    /// Being set up.
    Creating,
    /// Set up, not running.
    Created,
    /// Running.
    Running,
    /// Paused (VMs).
    Paused,
    /// Being stopped.
    Stopping,
    /// Ended with a known exit status.
    Exited,
    /// Its supervisor died without recording an exit status.
    Dead,
    /// Being removed.
    Removing,
}

impl InstanceState {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Creating => "creating",
            InstanceState::Created => "created",
            InstanceState::Running => "running",
            InstanceState::Paused => "paused",
            InstanceState::Stopping => "stopping",
            InstanceState::Exited => "exited",
            InstanceState::Dead => "dead",
            InstanceState::Removing => "removing",
        }
    }
}

/// A VM or container as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Instance {
    /// 64 hex digits.
    pub id: String,
    /// Unique per kind.
    pub name: String,
    /// VM or container.
    pub kind: InstanceKind,
    /// Lifecycle state.
    pub state: InstanceState,
    /// Why it is in this state, when that is not obvious.
    pub reason: Option<String>,
    /// Creation time, RFC 3339.
    pub created: String,
    /// Last start, RFC 3339.
    pub started: Option<String>,
    /// Last exit, RFC 3339.
    pub finished: Option<String>,
    /// Exit status of the last run.
    pub exit_code: Option<i32>,
    /// Pid of the supervisor (shim or vmm).
    pub supervisor_pid: Option<i32>,
    /// Restarts done by the restart policy.
    pub restart_count: i64,
    /// The definition: a [`ContainerSpec`] or a [`VmSpec`] as JSON.
    #[schema(value_type = Object)]
    pub spec: serde_json::Value,
    /// Its place on a corral network (absent with `--network none|host`).
    #[serde(default)]
    pub network: Option<NetworkAttachment>,
    /// What a container runs: its request's command, or the image's Entrypoint and Cmd when
    /// the request gave none (read from its bundle); empty for VMs.
    #[serde(default)]
    pub command: Vec<String>,
    /// A running VM's guest agent as `vm inspect` shows it (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_agent: Option<GuestAgent>,
}

/// What a running VM's guest agent (`corral-agent`) last reported.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct GuestAgent {
    /// An agent is connected now.
    pub connected: bool,
    /// The agent's version.
    pub version: Option<String>,
    /// Time since the last heartbeat: "3s ago", "lost 40s" when they stopped coming, "n/a"
    /// when none ever arrived.
    pub heartbeat: String,
    /// The guest's uptime at the last heartbeat, seconds.
    pub guest_uptime_secs: Option<u64>,
    /// The guest's MemTotal, bytes.
    pub mem_total: Option<u64>,
    /// The guest's MemAvailable, bytes.
    pub mem_available: Option<u64>,
    /// The guest's load averages over 1, 5 and 15 minutes.
    pub load: Option<Vec<f64>>,
    /// Where the inventory's MEMORY DEMAND of this VM comes from.
    pub memory_demand_source: String,
}

/// An instance's place on a network: what `inspect` shows and apps read back.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct NetworkAttachment {
    /// The network's name.
    pub network: String,
    /// The instance's IPv4 address.
    pub ip: String,
    /// Prefix length of the network's subnet.
    pub prefix_len: u8,
    /// The gateway, which is also the instance's DNS server.
    pub gateway: String,
    /// MAC address of the instance's interface.
    pub mac: String,
    /// The host-side link (veth end or tap).
    pub host_link: String,
    /// Names other instances of the network resolve to `ip`.
    pub names: Vec<String>,
    /// Published ports, `[HOSTIP:]HOSTPORT:PORT/PROTO`.
    pub ports: Vec<String>,
}

/// A bind mount.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct VolumeSpec {
    /// Host path.
    pub source: String,
    /// Path inside the container.
    pub target: String,
    /// Mount read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// What to run in a container (`POST /v1/containers`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(default)]
pub struct ContainerSpec {
    /// Name; generated when empty.
    pub name: Option<String>,
    /// Image reference, e.g. `busybox`.
    pub image: String,
    /// Overrides the image's entrypoint (`[]` clears it); when set, the image's command is not
    /// used either (Docker's `--entrypoint`, Compose's `entrypoint:`, Kubernetes' `command:`).
    pub entrypoint: Option<Vec<String>>,
    /// Command and arguments; the image's default when empty.
    pub command: Vec<String>,
    /// Environment, `K=V`.
    pub env: Vec<String>,
    /// Working directory.
    pub workdir: Option<String>,
    /// `uid[:gid]`.
    pub user: Option<String>,
    /// Bind mounts as `SRC:DST[:ro]`.
    pub volumes: Vec<String>,
    /// Published ports `[IP:]HOST:CONTAINER[/proto]`.
    pub publish: Vec<String>,
    /// Also publish every port the image exposes (its config's ExposedPorts) on a free host
    /// port; the ports chosen show in the instance's `network.ports`.
    pub publish_all: bool,
    /// Memory limit in bytes.
    pub memory_bytes: Option<u64>,
    /// CPU limit in CPUs.
    pub cpus: Option<f64>,
    /// Maximum number of processes.
    pub pids_limit: Option<i64>,
    /// Read-only root filesystem.
    pub read_only: bool,
    /// Capabilities to add (e.g. `NET_ADMIN`).
    pub cap_add: Vec<String>,
    /// Capabilities to drop.
    pub cap_drop: Vec<String>,
    /// `no`, `on-failure[:N]` or `always`.
    pub restart: Option<String>,
    /// A network name, `none` (loopback only) or `host`; default: the `default` network
    /// (bridge `corral0`).
    pub network: Option<String>,
    /// Extra names the container answers to on its network (e.g. a service name).
    pub aliases: Vec<String>,
    /// Free-form key/value labels (e.g. the app and service a replica belongs to).
    pub labels: std::collections::BTreeMap<String, String>,
    /// Remove when it exits.
    pub auto_remove: bool,
    /// Give the process a terminal (`-t`): its output goes to the log as `stdout` and clients
    /// attach to it with `POST /v1/containers/{id}/attach`.
    pub tty: bool,
    /// Keep the process's input open for attached clients (`-i`): on its terminal with `tty`,
    /// else on a pipe the shim holds (see [`crate::tty`]).
    pub interactive: bool,
}

/// A container's exit (`POST /v1/containers/{id}/wait`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct WaitResponse {
    /// Exit status (128+N for signal N).
    pub exit_code: i32,
}

/// `POST /v1/containers/{id}/exec`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(default)]
pub struct ExecRequest {
    /// Command and arguments.
    pub command: Vec<String>,
    /// Extra environment, `K=V`.
    pub env: Vec<String>,
    /// `uid[:gid]`.
    pub user: Option<String>,
    /// Run it on a terminal (`exec -t`); only in a session (`POST /v1/containers/{id}/execs`,
    /// attached with `POST /v1/execs/{exec}/start`).
    pub tty: bool,
    /// Give it a stdin the session's attach writes to (`exec -i`); only in a session.
    pub interactive: bool,
}

/// The result of an exec.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ExecResponse {
    /// Exit status.
    pub exit_code: i32,
    /// Standard output (lossy UTF-8).
    pub stdout: String,
    /// Standard error (lossy UTF-8).
    pub stderr: String,
}

/// `POST /v1/containers/{id}/stop`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(default)]
pub struct StopRequest {
    /// Seconds between SIGTERM and SIGKILL (default 10).
    pub timeout_secs: Option<u64>,
}

/// `POST /v1/containers/{id}/kill`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(default)]
pub struct KillRequest {
    /// Signal name or number (default KILL).
    pub signal: Option<String>,
}

/// One line of a container's log.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct LogLine {
    /// RFC 3339 with nanoseconds.
    pub time: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The text, with its newline if it had one.
    pub log: String,
}

/// Processes of a container (`GET /v1/containers/{id}/top`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct TopResponse {
    /// Column titles.
    pub titles: Vec<String>,
    /// One row per process.
    pub processes: Vec<Vec<String>>,
}

/// Live figures of one instance: the inventory row.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct InventoryRow {
    /// Instance id.
    pub id: String,
    /// Name.
    pub name: String,
    /// VM or container.
    pub kind: InstanceKind,
    /// Lifecycle state.
    pub state: InstanceState,
    /// The host it runs on.
    pub host: String,
    /// CPU use over the last sample interval, percent of one CPU.
    pub cpu_percent: Option<f64>,
    /// Memory in use (bytes): cgroup usage for containers; for VMs the guest's MemTotal -
    /// MemAvailable while its agent's heartbeats arrive, else the VMM's resident set.
    pub memory_demand: Option<u64>,
    /// Memory assigned (bytes): the limit or the guest size.
    pub memory_assigned: Option<u64>,
    /// demand / assigned, percent.
    pub memory_pressure: Option<f64>,
    /// Seconds since start.
    pub uptime_secs: Option<u64>,
    /// Last guest-agent heartbeat, or None when there is no agent.
    pub heartbeat: Option<String>,
    /// Number of processes (containers).
    pub pids: Option<u64>,
}

/// A state change on the event stream (`GET /v1/events`, Server-Sent Events).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Event {
    /// RFC 3339.
    pub time: String,
    /// VM or container.
    pub kind: InstanceKind,
    /// Instance id.
    pub id: String,
    /// Instance name.
    pub name: String,
    /// What happened: create, start, die, stop, destroy, pause, resume, dead, oom.
    pub action: String,
    /// The state after it.
    pub state: InstanceState,
}

/// Daemon information (`GET /v1/info`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Info {
    /// corral version.
    pub version: String,
    /// The git commit the daemon was built from.
    #[serde(default)]
    pub commit: String,
    /// Daemon pid.
    pub pid: u32,
    /// Root dir.
    pub root: String,
    /// OCI runtime binary used for containers.
    pub oci_runtime: String,
    /// Host name.
    pub host: String,
    /// Number of containers.
    pub containers: usize,
    /// Number of VMs.
    pub vms: usize,
}

/// A VM definition (`POST /v1/vms`), written to `vms/NAME/vm.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(default)]
pub struct VmSpec {
    /// Unique VM name.
    pub name: String,
    /// Guest kernel path.
    pub kernel: Option<String>,
    /// Initrd path.
    pub initrd: Option<String>,
    /// Kernel command line.
    pub cmdline: Option<String>,
    /// vCPUs (default from the instance type).
    pub cpus: Option<u8>,
    /// Memory in MiB (default from the instance type).
    pub memory_mib: Option<u64>,
    /// Disks, `PATH[,ro]`.
    pub disks: Vec<String>,
    /// Network: a corral network's name (the daemon makes a tap on its bridge and puts the
    /// address on the kernel command line), `none`, or `tap=NAME` (a tap made elsewhere).
    pub net: Option<String>,
    /// standard, high-mem or high-cpu.
    pub instance_type: Option<String>,
}

/// Changes to a VM definition (`PATCH /v1/vms/{name}`), applied at the next start.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(default)]
pub struct VmEdit {
    /// New vCPU count.
    pub cpus: Option<u8>,
    /// New memory size in MiB.
    pub memory_mib: Option<u64>,
    /// New kernel command line.
    pub cmdline: Option<String>,
}

/// `POST /v1/vms/{name}/shutdown`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(default)]
pub struct ShutdownRequest {
    /// Seconds to wait for the guest before turning it off (default 30).
    pub timeout_secs: Option<u64>,
}

/// `POST /v1/vms/{name}/exec`: run a command in the guest through its guest agent.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(default)]
pub struct VmExecRequest {
    /// Program and arguments (no shell).
    pub cmd: Vec<String>,
    /// Seconds before the guest kills the command (default 60).
    pub timeout_secs: Option<u64>,
}

/// How a command run through the guest agent ended, and its output.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct VmExecResponse {
    /// Its exit status, when it exited.
    pub exit_code: Option<i32>,
    /// The signal that killed it (also when its timeout expired).
    pub signal: Option<i32>,
    /// Why it could not start.
    pub error: Option<String>,
    /// Standard output (UTF-8, invalid bytes replaced).
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Output beyond 1 MiB per stream was dropped.
    pub truncated: bool,
}

/// `POST /v1/networks`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(default)]
pub struct NetworkCreate {
    /// Unique name: 1-32 of a-z, 0-9, `-`, `_`, `.`; not `none` or `host`.
    pub name: String,
    /// IPv4 subnet in CIDR notation; default: a free /24 from the daemon's pool.
    pub subnet: Option<String>,
}

/// One instance on a network, as `network inspect` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct NetworkEndpoint {
    /// The instance's id.
    pub instance: String,
    /// The instance's name, when the daemon knows it.
    pub name: Option<String>,
    /// `veth` (container) or `tap` (VM).
    pub kind: String,
    /// Its address.
    pub ip: String,
    /// Its MAC address.
    pub mac: String,
    /// The host-side link.
    pub host_link: String,
    /// Names it answers to on the network.
    pub names: Vec<String>,
    /// Published ports.
    pub ports: Vec<String>,
}

/// A network (`GET /v1/networks/{name}`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Network {
    /// Its name.
    pub name: String,
    /// Its IPv4 subnet.
    pub subnet: String,
    /// The bridge's address: the instances' gateway and DNS server.
    pub gateway: String,
    /// The bridge's interface name.
    pub bridge: String,
    /// Instances on it.
    pub endpoints: Vec<NetworkEndpoint>,
}

/// What `POST /v1/networks/prune` removed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct NetworkPruneResponse {
    /// Networks removed (nobody used them).
    pub networks: Vec<String>,
    /// Host links removed (bridges, veths, taps nobody accounted for).
    pub links: Vec<String>,
    /// Endpoints of instances the daemon no longer knows.
    pub endpoints: Vec<String>,
    /// Network namespace files of instances the daemon no longer knows.
    pub namespaces: Vec<String>,
}

/// `POST /v1/networks/{name}/taps`: plug a VM into a network.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(default)]
pub struct TapRequest {
    /// The instance the tap belongs to (a VM's id or name).
    pub instance: String,
    /// Names the VM answers to on the network.
    pub names: Vec<String>,
}

/// A tap on a network for a VM: the VMM opens `tap`, the guest is configured with the rest
/// (e.g. `ip=IP::GATEWAY:NETMASK::eth0:off` on the kernel command line).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct TapAttachment {
    /// The persistent tap's interface name.
    pub tap: String,
    /// The guest's address.
    pub ip: String,
    /// The gateway (and DNS server).
    pub gateway: String,
    /// The subnet's netmask, dotted.
    pub netmask: String,
    /// The guest's MAC address.
    pub mac: String,
    /// The kernel's `ip=` argument.
    pub kernel_ip_arg: String,
}
