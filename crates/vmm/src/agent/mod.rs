//! The host end of the guest agent (`corral-agent`, protocol: [`corral_agent::protocol`]):
//! `corral vmm` listens where the hybrid vsock delivers the guest's connections to CID 2 port
//! [`AGENT_PORT`] (`<vsock uds_path>_1024`), keeps the agent's hello and its last heartbeat,
//! and passes requests (shutdown, exec) on. The guest is not trusted: lines are bounded, a newer
//! connection replaces the older one, and nothing the guest sends can block the event loop
//! (each connection is read on its own thread; the control socket only reads a snapshot).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use corral_agent::protocol::{
    ExecEnd, ExecStream, Heartbeat, Message, AGENT_PORT, CAP_EXEC, EXEC_OUTPUT_MAX, MAX_LINE,
    PROTOCOL_VERSION,
};

use crate::control::Controlled;

/// Errors setting up the agent's socket.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The socket cannot be bound or its thread not started.
    #[error("guest agent socket {path}: {source}")]
    Listen {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Errors of requests to the agent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AgentRequestError {
    /// No agent is connected.
    #[error("no guest agent is connected")]
    NotConnected,
    /// Writing the request failed.
    #[error("the guest agent's connection failed: {0}")]
    Io(String),
    /// The agent does not run commands.
    #[error("the guest agent does not run commands (it is older than exec)")]
    NoExec,
    /// Nothing to run.
    #[error("exec needs a command")]
    EmptyCommand,
    /// The command does not fit a protocol line.
    #[error("the command is too long for the guest agent ({0} bytes encoded; at most {MAX_LINE})")]
    TooLong(usize),
    /// Too many results not collected yet.
    #[error("{MAX_EXECS} commands are pending already")]
    TooMany,
    /// No such command.
    #[error("no command {0} (unknown, or its result was collected)")]
    NoSuchExec(u64),
}

/// Most commands the host keeps (running or with a result not yet collected).
pub const MAX_EXECS: usize = 16;

/// One command's output and end, gathered from the agent's lines.
#[derive(Debug, Default)]
struct ExecState {
    conn: u64,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    truncated: bool,
    end: Option<ExecEnd>,
}

/// A finished command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecResult {
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
    /// Output beyond the limit was dropped.
    pub truncated: bool,
    /// How it ended.
    pub end: ExecEnd,
}

impl ExecResult {
    /// The result as the control socket's JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let (code, signal, error) = match &self.end {
            ExecEnd::Code(c) => (Some(*c), None, None),
            ExecEnd::Signal(s) => (None, Some(*s), None),
            ExecEnd::Error(e) => (None, None, Some(e.clone())),
        };
        serde_json::json!({
            "done": true,
            "exit_code": code,
            "signal": signal,
            "error": error,
            "stdout": String::from_utf8_lossy(&self.stdout),
            "stderr": String::from_utf8_lossy(&self.stderr),
            "truncated": self.truncated,
        })
    }
}

/// Where the agent's connections arrive for a VM whose vsock socket is `uds_path`.
pub fn socket_path(uds_path: &Path) -> PathBuf {
    PathBuf::from(format!("{}_{AGENT_PORT}", uds_path.display()))
}

#[derive(Default)]
struct Inner {
    /// The current connection: its number and a handle for writing requests.
    conn: Option<(u64, UnixStream)>,
    connections: u64,
    agent_version: Option<String>,
    caps: Vec<String>,
    last: Option<(Instant, SystemTime, Heartbeat)>,
    heartbeats: u64,
    next_exec: u64,
    execs: BTreeMap<u64, ExecState>,
}

/// What the host knows of the agent right now.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentStatus {
    /// An agent is connected now.
    pub connected: bool,
    /// Connections the agent made since the VM started.
    pub connections: u64,
    /// The connected (or last) agent's version.
    pub agent_version: Option<String>,
    /// The last heartbeat and how long ago it arrived.
    pub last: Option<(Duration, SystemTime, Heartbeat)>,
    /// Heartbeats received since the VM started.
    pub heartbeats: u64,
}

impl AgentStatus {
    /// The status as the control socket's JSON (see `crate::control`).
    pub fn to_json(&self) -> serde_json::Value {
        let beat = self.last.as_ref().map(|(age, at, h)| {
            serde_json::json!({
                "age_ms": age.as_millis() as u64,
                "unix_ms": at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
                "seq": h.seq,
                "uptime_ms": h.uptime_ms,
                "mem_total_kib": h.mem_total_kib,
                "mem_available_kib": h.mem_available_kib,
                "mem_used_bytes": h.mem_used_bytes(),
                "load": h.load,
            })
        });
        serde_json::json!({
            "connected": self.connected,
            "connections": self.connections,
            "agent_version": self.agent_version,
            "heartbeats": self.heartbeats,
            "last_heartbeat": beat,
        })
    }
}

/// A handle on the agent's state (cheap to clone).
#[derive(Clone, Default)]
pub struct AgentHandle {
    inner: Arc<Mutex<Inner>>,
}

impl AgentHandle {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A snapshot of what the host knows.
    pub fn status(&self) -> AgentStatus {
        let g = self.lock();
        AgentStatus {
            connected: g.conn.is_some(),
            connections: g.connections,
            agent_version: g.agent_version.clone(),
            last: g
                .last
                .as_ref()
                .map(|(t, at, h)| (t.elapsed(), *at, h.clone())),
            heartbeats: g.heartbeats,
        }
    }

    /// Ask the guest to power off.
    pub fn shutdown(&self) -> Result<(), AgentRequestError> {
        let g = self.lock();
        let (_, s) = g.conn.as_ref().ok_or(AgentRequestError::NotConnected)?;
        // A stuck guest must not hang the caller (the control socket's thread).
        let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
        (&*s)
            .write_all(Message::Shutdown.encode().as_bytes())
            .map_err(|e| AgentRequestError::Io(e.to_string()))
    }

    /// Start `argv` in the guest (killed there after `timeout`); its id for [`Self::exec_poll`].
    pub fn exec_start(
        &self,
        argv: Vec<String>,
        timeout: Duration,
    ) -> Result<u64, AgentRequestError> {
        if argv.is_empty() {
            return Err(AgentRequestError::EmptyCommand);
        }
        let mut g = self.lock();
        let Some((conn, s)) = g.conn.as_ref() else {
            return Err(AgentRequestError::NotConnected);
        };
        if !g.caps.iter().any(|c| c == CAP_EXEC) {
            return Err(AgentRequestError::NoExec);
        }
        if g.execs.len() >= MAX_EXECS {
            return Err(AgentRequestError::TooMany);
        }
        let id = g.next_exec + 1;
        let line = Message::Exec {
            id,
            timeout_ms: timeout.as_millis().min(u128::from(u64::MAX)) as u64,
            argv,
        }
        .encode();
        if line.len() >= MAX_LINE {
            return Err(AgentRequestError::TooLong(line.len()));
        }
        let conn = *conn;
        let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
        (&*s)
            .write_all(line.as_bytes())
            .map_err(|e| AgentRequestError::Io(e.to_string()))?;
        g.next_exec = id;
        g.execs.insert(
            id,
            ExecState {
                conn,
                ..Default::default()
            },
        );
        Ok(id)
    }

    /// Command `id`'s result once it ended (then forgotten), None while it runs.
    pub fn exec_poll(&self, id: u64) -> Result<Option<ExecResult>, AgentRequestError> {
        let mut g = self.lock();
        let e = g.execs.get(&id).ok_or(AgentRequestError::NoSuchExec(id))?;
        if e.end.is_none() {
            return Ok(None);
        }
        let e = g.execs.remove(&id).expect("present");
        Ok(Some(ExecResult {
            stdout: e.stdout,
            stderr: e.stderr,
            truncated: e.truncated,
            end: e.end.expect("ended"),
        }))
    }

    fn exec_output(&self, conn: u64, id: u64, stream: ExecStream, data: &[u8]) {
        let mut g = self.lock();
        let Some(e) = g
            .execs
            .get_mut(&id)
            .filter(|e| e.conn == conn && e.end.is_none())
        else {
            return;
        };
        let buf = match stream {
            ExecStream::Stdout => &mut e.stdout,
            ExecStream::Stderr => &mut e.stderr,
        };
        let room = EXEC_OUTPUT_MAX.saturating_sub(buf.len());
        if data.len() > room {
            e.truncated = true;
        }
        buf.extend_from_slice(&data[..data.len().min(room)]);
    }

    fn exec_end(&self, conn: u64, id: u64, end: ExecEnd) {
        let mut g = self.lock();
        if let Some(e) = g.execs.get_mut(&id).filter(|e| e.conn == conn) {
            e.end.get_or_insert(end);
        }
    }

    /// Serve one connection until it ends (or a newer one replaces it).
    pub fn serve(&self, stream: UnixStream) {
        let Ok(writer) = stream.try_clone() else {
            return;
        };
        let id = {
            let mut g = self.lock();
            g.connections += 1;
            if let Some((_, old)) = g.conn.take() {
                let _ = old.shutdown(std::net::Shutdown::Both);
            }
            g.conn = Some((g.connections, writer));
            g.connections
        };
        if let Err(e) = self.read_lines(id, stream) {
            tracing::warn!("guest agent connection {id}: {e}");
        }
        let mut g = self.lock();
        if g.conn.as_ref().is_some_and(|(c, _)| *c == id) {
            g.conn = None;
        }
        for e in g.execs.values_mut().filter(|e| e.conn == id) {
            e.end
                .get_or_insert(ExecEnd::Error("the guest agent's connection ended".into()));
        }
        tracing::info!("guest agent connection {id} ended");
    }

    fn read_lines(&self, conn: u64, stream: UnixStream) -> Result<(), String> {
        let mut r = BufReader::new(stream);
        let mut line = String::new();
        let mut greeted = false;
        loop {
            line.clear();
            let n = (&mut r)
                .take(MAX_LINE as u64)
                .read_line(&mut line)
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Ok(());
            }
            if !line.ends_with('\n') {
                return Err(format!("a line longer than {MAX_LINE} bytes"));
            }
            let msg = match Message::parse(&line) {
                Ok(m) => m,
                Err(e) if greeted => {
                    tracing::debug!("guest agent: ignoring a line: {e}");
                    continue;
                }
                Err(e) => return Err(format!("no hello: {e}")),
            };
            match msg {
                Message::Hello {
                    version,
                    agent,
                    caps,
                } => {
                    if version != PROTOCOL_VERSION {
                        return Err(format!(
                            "agent {agent} speaks protocol version {version}; this VMM speaks \
                             version {PROTOCOL_VERSION}"
                        ));
                    }
                    tracing::info!("guest agent {agent} connected");
                    greeted = true;
                    let mut g = self.lock();
                    g.agent_version = Some(agent);
                    g.caps = caps;
                }
                _ if !greeted => return Err("the first line was not a hello".into()),
                Message::Heartbeat(h) => {
                    let mut g = self.lock();
                    g.heartbeats += 1;
                    g.last = Some((Instant::now(), SystemTime::now(), h));
                }
                Message::Ack { op } => tracing::info!("guest agent took the {op} request"),
                Message::ExecOut { id, stream, data } => self.exec_output(conn, id, stream, &data),
                Message::ExecExit { id, end } => self.exec_end(conn, id, end),
                Message::Shutdown | Message::Exec { .. } => {
                    tracing::debug!("guest agent: ignoring a request to the host")
                }
            }
        }
    }
}

/// The listening socket; removes its file when dropped.
pub struct AgentListener {
    path: PathBuf,
    handle: AgentHandle,
}

impl AgentListener {
    /// Listen at `path` (replacing a stale socket file) and serve connections on threads.
    pub fn start(path: &Path) -> Result<Self, AgentError> {
        let err = |source| AgentError::Listen {
            path: path.into(),
            source,
        };
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "in use by another process",
                )));
            }
            let _ = std::fs::remove_file(path);
        }
        let listener = UnixListener::bind(path).map_err(err)?;
        let handle = AgentHandle::default();
        let h = handle.clone();
        std::thread::Builder::new()
            .name("agent-accept".into())
            .spawn(move || accept_loop(listener, h))
            .map_err(|e| {
                let _ = std::fs::remove_file(path);
                err(e)
            })?;
        Ok(AgentListener {
            path: path.into(),
            handle,
        })
    }

    /// The handle for status and requests.
    pub fn handle(&self) -> AgentHandle {
        self.handle.clone()
    }
}

fn accept_loop(listener: UnixListener, handle: AgentHandle) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let h = handle.clone();
        if let Err(e) = std::thread::Builder::new()
            .name("agent-conn".into())
            .spawn(move || h.serve(stream))
        {
            tracing::warn!("guest agent connection not served: {e}");
        }
    }
}

impl Drop for AgentListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A control target (the machine) with a guest agent: answers the control socket's agent
/// operations and adds the agent's state to `metrics`.
pub struct WithAgent<C> {
    /// The machine.
    pub vm: C,
    /// Its agent.
    pub agent: AgentHandle,
}

impl<C: Controlled> Controlled for WithAgent<C> {
    fn pause(&self) {
        self.vm.pause()
    }
    fn resume(&self) {
        self.vm.resume()
    }
    fn is_paused(&self) -> bool {
        self.vm.is_paused()
    }
    fn stop(&self) {
        self.vm.stop()
    }
    fn ctrl_alt_del(&self) -> Result<(), String> {
        self.vm.ctrl_alt_del()
    }
    fn metrics(&self) -> serde_json::Value {
        let mut m = self.vm.metrics();
        if let Some(o) = m.as_object_mut() {
            o.insert("agent".into(), self.agent.status().to_json());
        }
        m
    }
    fn vcpus(&self) -> usize {
        self.vm.vcpus()
    }
    fn balloon_set(&self, target_mib: u64) -> Result<(), String> {
        self.vm.balloon_set(target_mib)
    }
    fn balloon_stats(&self) -> Result<serde_json::Value, String> {
        self.vm.balloon_stats()
    }
    fn agent(&self) -> Option<serde_json::Value> {
        Some(self.agent.status().to_json())
    }
    fn agent_shutdown(&self) -> Result<(), String> {
        self.agent.shutdown().map_err(|e| e.to_string())
    }
    fn agent_exec(&self, argv: Vec<String>, timeout: Duration) -> Result<u64, String> {
        self.agent
            .exec_start(argv, timeout)
            .map_err(|e| e.to_string())
    }
    fn agent_exec_status(&self, id: u64) -> Result<serde_json::Value, String> {
        match self.agent.exec_poll(id).map_err(|e| e.to_string())? {
            None => Ok(serde_json::json!({"done": false})),
            Some(r) => Ok(r.to_json()),
        }
    }
}

#[cfg(test)]
mod tests;
