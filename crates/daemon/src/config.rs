//! The daemon's configuration: where it keeps things and which programs it drives.

use std::path::PathBuf;

/// How to run the daemon.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Root dir: `state.db`, `containers/`, `vms/`, the API token, `daemon.log`.
    pub root: PathBuf,
    /// Run dir: `corral.sock`, the OCI runtime's state, VM control sockets.
    pub run: PathBuf,
    /// Also listen on this loopback TCP address (bearer token required).
    pub listen: Option<String>,
    /// The OCI runtime binary (runc's command line).
    pub oci_runtime: PathBuf,
    /// Arguments put before runc's own (e.g. `oci` when the runtime is `corral oci`).
    pub oci_runtime_args: Vec<String>,
    /// The corral executable, whose `shim` and `vmm` faces the daemon starts.
    pub corral_exe: PathBuf,
    /// Largest size of a container log file before it is rotated.
    pub log_max_bytes: u64,
    /// A file descriptor to write "ready\n" to once the socket accepts connections.
    pub ready_fd: Option<i32>,
}

impl DaemonConfig {
    /// A configuration with defaults for everything but the two directories and the exe.
    pub fn new(root: PathBuf, run: PathBuf, corral_exe: PathBuf) -> Self {
        DaemonConfig {
            root,
            run,
            listen: None,
            oci_runtime: corral_exe.clone(),
            oci_runtime_args: vec!["oci".into()],
            corral_exe,
            log_max_bytes: 10 << 20,
            ready_fd: None,
        }
    }

    /// The API's Unix socket.
    pub fn socket(&self) -> PathBuf {
        self.run.join("corral.sock")
    }

    /// The OCI runtime's state root.
    pub fn oci_root(&self) -> PathBuf {
        self.run.join("oci")
    }

    /// The folder of one container.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    /// The folder of one VM.
    pub fn vm_dir(&self, name: &str) -> PathBuf {
        self.root.join("vms").join(name)
    }

    /// The control socket of a running VM.
    pub fn vm_socket(&self, name: &str) -> PathBuf {
        self.run.join("vms").join(format!("{name}.sock"))
    }

    /// The bearer token file for TCP clients.
    pub fn token_file(&self) -> PathBuf {
        self.root.join("api-token")
    }
}
