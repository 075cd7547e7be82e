//! The per-VM control socket: JSON over a Unix stream socket, served by `corral vmm`.
//!
//! # Protocol, version 1
//! One request per connection: the client connects, writes one JSON object on one line, and
//! reads one JSON object on one line; then the server closes the connection.
//!
//! Request: `{"version": 1, "op": "<op>"}` where `<op>` is one of
//! - `status`  → `{"state": "running"|"paused", "vcpus": N, "agent": {…}|null}` (`agent` as below,
//!   null when this VMM does not listen for a guest agent)
//! - `pause`   → parks every vCPU, answers once they are parked: `{"state": "paused"}`
//! - `resume`  → `{"state": "running"}`
//! - `stop`    → ends the VM (the `corral vmm` process exits 0): `{"state": "stopping"}`
//! - `ctrl_alt_del` → presses Ctrl-Alt-Del on the i8042 keyboard (the guest's cue to shut
//!   down; its reboot then ends the VM): `{"state": "running"|"paused"}`
//! - `metrics` → `{"vcpu_time_ns": [..], "exits": {"io_in": n, "io_out": n, "mmio_read": n,
//!   "mmio_write": n, "hlt": n, "interrupted": n, "other": n}, "serial_tx_bytes": n,
//!   "rss_bytes": n, "devices": {"net0": {"rx_frames": n, …}, "vda": {…}}}`
//! - `balloon` with `"target_mib": N` → asks the guest to give back N MiB (0 deflates it
//!   fully): `{"target_mib": N}`
//! - `balloon_stats` → `{"target_pages": n, "actual_pages": n, "inflated_pages": n,
//!   "deflated_pages": n, "stats": {"free_memory": bytes, "total_memory": bytes, …},
//!   "stats_age_s": n|null}` (also asks the guest for fresh statistics)
//! - `agent` → what the guest agent (`corral-agent`, see `crate::agent`) last said:
//!   `{"connected": bool, "connections": n, "agent_version": "…"|null, "heartbeats": n,
//!   "last_heartbeat": null|{"age_ms": n, "unix_ms": n, "seq": n, "uptime_ms": n|null,
//!   "mem_total_kib": n|null, "mem_available_kib": n|null, "mem_used_bytes": n|null,
//!   "load": [l1, l5, l15]|null}}`; an error when this VMM does not listen for an agent
//! - `agent_shutdown` → asks the guest agent to power the guest off (the VM then ends):
//!   `{"requested": true}`, or an error when no agent is connected
//! - `agent_exec` with `"argv": ["prog", "arg", …]` and `"timeout_s": N` (default 60) →
//!   starts the command in the guest through the agent: `{"id": n}`; it does not wait (the
//!   output travels through this VMM's own event loop)
//! - `agent_exec_status` with `"id": n` → `{"done": false}` while it runs, then once:
//!   `{"done": true, "exit_code": n|null, "signal": n|null, "error": "…"|null, "stdout": "…",
//!   "stderr": "…", "truncated": bool}` (output as UTF-8, invalid bytes replaced; at most
//!   1 MiB per stream)
//!
//! Response: `{"version": 1, "ok": true, "result": {...}}` or
//! `{"version": 1, "ok": false, "error": "<message>"}`. A request with another `version` is
//! refused with an error naming the supported one. Unknown fields are ignored.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use event_manager::{EventOps, Events, MutEventSubscriber};
use serde::{Deserialize, Serialize};
use vmm_sys_util::epoll::EventSet;

use crate::machine::MachineHandle;

/// The protocol version this server speaks.
pub const PROTOCOL_VERSION: u32 = 1;

const NO_AGENT: &str = "this VM monitor does not listen for a guest agent (the VM has no vsock)";

/// Errors setting up the socket.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Binding failed.
    #[error("control socket {path}: {source}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another live process serves this path.
    #[error("control socket {path} is in use by another process")]
    InUse {
        /// The socket path.
        path: PathBuf,
    },
}

/// A request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Protocol version.
    pub version: u32,
    /// Operation.
    pub op: Op,
    /// The balloon target for `balloon`, in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_mib: Option<u64>,
}

/// Operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Running or paused.
    Status,
    /// Park the vCPUs.
    Pause,
    /// Unpark them.
    Resume,
    /// End the VM.
    Stop,
    /// Press Ctrl-Alt-Del for the guest.
    CtrlAltDel,
    /// Counters.
    Metrics,
    /// Set the balloon's target (`target_mib`).
    Balloon,
    /// The balloon's state and the guest's memory statistics.
    BalloonStats,
    /// The guest agent's state and last heartbeat.
    Agent,
    /// Ask the guest agent to power the guest off.
    AgentShutdown,
    /// Start a command in the guest through the agent (`argv`, `timeout_s`).
    AgentExec,
    /// A command's result (`id`).
    AgentExecStatus,
}

/// The arguments of the exec operations (read from the same request line).
#[derive(Debug, Default, Deserialize)]
struct ExecArgs {
    #[serde(default)]
    argv: Vec<String>,
    #[serde(default)]
    timeout_s: Option<u64>,
    #[serde(default)]
    id: Option<u64>,
}

/// A response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Protocol version.
    pub version: u32,
    /// Whether the request succeeded.
    pub ok: bool,
    /// The result on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// The error on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    fn ok(result: serde_json::Value) -> Self {
        Response {
            version: PROTOCOL_VERSION,
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    fn err(message: String) -> Self {
        Response {
            version: PROTOCOL_VERSION,
            ok: false,
            result: None,
            error: Some(message),
        }
    }
}

/// Something that can carry out control operations (a running machine; tests use fakes).
pub trait Controlled {
    /// Park the vCPUs.
    fn pause(&self);
    /// Unpark them.
    fn resume(&self);
    /// Whether paused.
    fn is_paused(&self) -> bool;
    /// End the VM.
    fn stop(&self);
    /// Press Ctrl-Alt-Del for the guest.
    fn ctrl_alt_del(&self) -> Result<(), String> {
        Err("this VM has no keyboard controller".into())
    }
    /// Counters as JSON.
    fn metrics(&self) -> serde_json::Value;
    /// Number of vCPUs.
    fn vcpus(&self) -> usize;
    /// Set the balloon target.
    fn balloon_set(&self, _target_mib: u64) -> Result<(), String> {
        Err("this VM has no balloon device".into())
    }
    /// The balloon's state as JSON.
    fn balloon_stats(&self) -> Result<serde_json::Value, String> {
        Err("this VM has no balloon device".into())
    }
    /// The guest agent's state as JSON; None when nobody listens for an agent.
    fn agent(&self) -> Option<serde_json::Value> {
        None
    }
    /// Ask the guest agent to power the guest off.
    fn agent_shutdown(&self) -> Result<(), String> {
        Err(NO_AGENT.into())
    }
    /// Start a command in the guest; its id.
    fn agent_exec(&self, _argv: Vec<String>, _timeout: Duration) -> Result<u64, String> {
        Err(NO_AGENT.into())
    }
    /// A command's state as JSON.
    fn agent_exec_status(&self, _id: u64) -> Result<serde_json::Value, String> {
        Err(NO_AGENT.into())
    }
}

impl Controlled for MachineHandle {
    fn pause(&self) {
        MachineHandle::pause(self)
    }
    fn resume(&self) {
        MachineHandle::resume(self)
    }
    fn is_paused(&self) -> bool {
        MachineHandle::is_paused(self)
    }
    fn stop(&self) {
        MachineHandle::stop(self)
    }
    fn ctrl_alt_del(&self) -> Result<(), String> {
        MachineHandle::ctrl_alt_del(self);
        Ok(())
    }
    fn metrics(&self) -> serde_json::Value {
        serde_json::to_value(MachineHandle::metrics(self)).unwrap_or_default()
    }
    fn vcpus(&self) -> usize {
        MachineHandle::vcpu_count(self)
    }
    fn balloon_set(&self, target_mib: u64) -> Result<(), String> {
        self.balloon_set_target(target_mib)
            .map_err(|e| e.to_string())
    }
    fn balloon_stats(&self) -> Result<serde_json::Value, String> {
        let s = self.balloon_status().map_err(|e| e.to_string())?;
        serde_json::to_value(s).map_err(|e| e.to_string())
    }
}

/// Answer one request line.
pub fn handle_line(line: &str, target: &dyn Controlled) -> Response {
    let req: Request = match serde_json::from_str(line) {
        Ok(r) => r,
        Err(e) => return Response::err(format!("bad request: {e}")),
    };
    if req.version != PROTOCOL_VERSION {
        return Response::err(format!(
            "protocol version {} is not supported; this VMM speaks version {PROTOCOL_VERSION}",
            req.version
        ));
    }
    let state = |paused: bool| if paused { "paused" } else { "running" };
    match req.op {
        Op::Status => Response::ok(serde_json::json!({
            "state": state(target.is_paused()),
            "vcpus": target.vcpus(),
            "agent": target.agent(),
        })),
        Op::Pause => {
            target.pause();
            Response::ok(serde_json::json!({"state": "paused"}))
        }
        Op::Resume => {
            target.resume();
            Response::ok(serde_json::json!({"state": "running"}))
        }
        Op::Stop => {
            target.stop();
            Response::ok(serde_json::json!({"state": "stopping"}))
        }
        Op::CtrlAltDel => match target.ctrl_alt_del() {
            Ok(()) => Response::ok(serde_json::json!({"state": state(target.is_paused())})),
            Err(e) => Response::err(e),
        },
        Op::Metrics => Response::ok(target.metrics()),
        Op::Balloon => match req.target_mib {
            None => Response::err("balloon needs \"target_mib\"".into()),
            Some(mib) => match target.balloon_set(mib) {
                Ok(()) => Response::ok(serde_json::json!({"target_mib": mib})),
                Err(e) => Response::err(e),
            },
        },
        Op::BalloonStats => match target.balloon_stats() {
            Ok(v) => Response::ok(v),
            Err(e) => Response::err(e),
        },
        Op::Agent => match target.agent() {
            Some(v) => Response::ok(v),
            None => Response::err(NO_AGENT.into()),
        },
        Op::AgentShutdown => match target.agent_shutdown() {
            Ok(()) => Response::ok(serde_json::json!({"requested": true})),
            Err(e) => Response::err(e),
        },
        Op::AgentExec | Op::AgentExecStatus => {
            let args: ExecArgs = serde_json::from_str(line).unwrap_or_default();
            let r = if req.op == Op::AgentExec {
                let timeout = Duration::from_secs(args.timeout_s.unwrap_or(60));
                target
                    .agent_exec(args.argv, timeout)
                    .map(|id| serde_json::json!({ "id": id }))
            } else {
                match args.id {
                    Some(id) => target.agent_exec_status(id),
                    None => Err("agent_exec_status needs \"id\"".into()),
                }
            };
            match r {
                Ok(v) => Response::ok(v),
                Err(e) => Response::err(e),
            }
        }
    }
}

/// Bind `path`, replacing a stale socket file but never a live one.
pub fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(ControlError::InUse {
                path: path.to_path_buf(),
            });
        }
        let _ = std::fs::remove_file(path);
    }
    let listener = UnixListener::bind(path).map_err(|source| ControlError::Bind {
        path: path.to_path_buf(),
        source,
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| ControlError::Bind {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(listener)
}

/// The event-loop subscriber serving the socket; removes the socket file when dropped.
pub struct ControlServer<C: Controlled + Send> {
    listener: UnixListener,
    path: PathBuf,
    target: C,
}

impl<C: Controlled + Send> ControlServer<C> {
    /// Serve `listener` (bound at `path`) for `target`.
    pub fn new(listener: UnixListener, path: PathBuf, target: C) -> Self {
        ControlServer {
            listener,
            path,
            target,
        }
    }

    fn serve(&self, stream: UnixStream) -> std::io::Result<()> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line)?;
        let resp = handle_line(line.trim(), &self.target);
        let mut text = serde_json::to_string(&resp).map_err(std::io::Error::other)?;
        text.push('\n');
        (&stream).write_all(text.as_bytes())
    }
}

impl<C: Controlled + Send> Drop for ControlServer<C> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl<C: Controlled + Send> MutEventSubscriber for ControlServer<C> {
    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        while let Ok((stream, _)) = self.listener.accept() {
            if let Err(e) = self.serve(stream) {
                tracing::debug!("control connection: {e}");
            }
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new_raw(self.listener.as_raw_fd(), EventSet::IN)) {
            tracing::error!("control socket not served: {e:?}");
        }
    }
}

/// A client call: send `op`, return the response (for the daemon and tests).
pub fn call(path: &Path, op: Op) -> std::io::Result<Response> {
    call_request(
        path,
        &Request {
            version: PROTOCOL_VERSION,
            op,
            target_mib: None,
        },
    )
}

/// [`call`], giving up on an answer (and a stuck write) after `timeout` instead of 10 s.
pub fn call_within(path: &Path, op: Op, timeout: Duration) -> std::io::Result<Response> {
    let req = Request {
        version: PROTOCOL_VERSION,
        op,
        target_mib: None,
    };
    exchange(path, &req, timeout)
}

/// A client call with a full request (operations that take arguments).
pub fn call_request(path: &Path, req: &Request) -> std::io::Result<Response> {
    exchange(path, req, Duration::from_secs(10))
}

fn exchange(path: &Path, req: &Request, timeout: Duration) -> std::io::Result<Response> {
    let stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut text = serde_json::to_string(req).map_err(std::io::Error::other)?;
    text.push('\n');
    (&stream).write_all(text.as_bytes())?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    serde_json::from_str(&line).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[derive(Default, Clone)]
    struct Fake {
        paused: Arc<AtomicBool>,
        stopped: Arc<AtomicBool>,
    }

    impl Controlled for Fake {
        fn pause(&self) {
            self.paused.store(true, Ordering::SeqCst)
        }
        fn resume(&self) {
            self.paused.store(false, Ordering::SeqCst)
        }
        fn is_paused(&self) -> bool {
            self.paused.load(Ordering::SeqCst)
        }
        fn stop(&self) {
            self.stopped.store(true, Ordering::SeqCst)
        }
        fn metrics(&self) -> serde_json::Value {
            serde_json::json!({"rss_bytes": 1})
        }
        fn vcpus(&self) -> usize {
            2
        }
    }

    #[test]
    fn ops_change_state_and_answer() {
        let f = Fake::default();
        let r = handle_line(r#"{"version":1,"op":"pause"}"#, &f);
        assert!(r.ok);
        assert!(f.is_paused());
        let r = handle_line(r#"{"version":1,"op":"status"}"#, &f);
        assert_eq!(r.result.unwrap()["state"], "paused");
        handle_line(r#"{"version":1,"op":"resume"}"#, &f);
        assert!(!f.is_paused());
        let r = handle_line(r#"{"version":1,"op":"metrics"}"#, &f);
        assert_eq!(r.result.unwrap()["rss_bytes"], 1);
        handle_line(r#"{"version":1,"op":"stop"}"#, &f);
        assert!(f.stopped.load(Ordering::SeqCst));
        let r = handle_line(r#"{"version":1,"op":"balloon","target_mib":8}"#, &f);
        assert_eq!(r.error.as_deref(), Some("this VM has no balloon device"));
        let r = handle_line(r#"{"version":1,"op":"balloon"}"#, &f);
        assert!(r.error.unwrap().contains("target_mib"));
        assert!(!handle_line(r#"{"version":1,"op":"balloon_stats"}"#, &f).ok);
    }

    #[test]
    fn agent_ops_answer_with_or_without_an_agent() {
        let f = Fake::default();
        let r = handle_line(r#"{"version":1,"op":"status"}"#, &f);
        assert!(r.result.unwrap()["agent"].is_null());
        let r = handle_line(r#"{"version":1,"op":"agent"}"#, &f);
        assert!(r
            .error
            .unwrap()
            .contains("does not listen for a guest agent"));
        assert!(!handle_line(r#"{"version":1,"op":"agent_shutdown"}"#, &f).ok);

        let w = crate::agent::WithAgent {
            vm: f.clone(),
            agent: crate::agent::AgentHandle::default(),
        };
        let r = handle_line(r#"{"version":1,"op":"status"}"#, &w);
        assert_eq!(r.result.unwrap()["agent"]["connected"], false);
        let r = handle_line(r#"{"version":1,"op":"agent"}"#, &w);
        assert_eq!(r.result.unwrap()["heartbeats"], 0);
        let r = handle_line(r#"{"version":1,"op":"metrics"}"#, &w);
        let m = r.result.unwrap();
        assert_eq!(m["rss_bytes"], 1);
        assert_eq!(m["agent"]["connected"], false);
        let r = handle_line(r#"{"version":1,"op":"agent_shutdown"}"#, &w);
        assert_eq!(r.error.as_deref(), Some("no guest agent is connected"));
        let r = handle_line(
            r#"{"version":1,"op":"agent_exec","argv":["ls"],"timeout_s":5}"#,
            &w,
        );
        assert_eq!(r.error.as_deref(), Some("no guest agent is connected"));
        let r = handle_line(r#"{"version":1,"op":"agent_exec","argv":[]}"#, &w);
        assert_eq!(r.error.as_deref(), Some("exec needs a command"));
        let r = handle_line(r#"{"version":1,"op":"agent_exec_status"}"#, &w);
        assert!(r.error.unwrap().contains("needs \"id\""));
        let r = handle_line(r#"{"version":1,"op":"agent_exec_status","id":4}"#, &w);
        assert!(r.error.unwrap().contains("no command 4"));
        assert!(!handle_line(r#"{"version":1,"op":"agent_exec","argv":["x"]}"#, &f).ok);
        handle_line(r#"{"version":1,"op":"pause"}"#, &w);
        assert!(f.is_paused(), "the wrapper passes machine operations on");
    }

    #[test]
    fn bad_requests_are_errors_not_panics() {
        let f = Fake::default();
        let r = handle_line(r#"{"version":2,"op":"pause"}"#, &f);
        assert!(!r.ok);
        assert!(r.error.unwrap().contains("version 1"));
        assert!(!f.is_paused());
        assert!(!handle_line("nonsense", &f).ok);
        assert!(!handle_line(r#"{"version":1,"op":"explode"}"#, &f).ok);
    }

    #[test]
    fn socket_round_trip_and_cleanup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vmm-ctl.sock");
        let listener = bind(&path).unwrap();
        let f = Fake::default();
        let server = ControlServer::new(listener, path.clone(), f.clone());
        let p2 = path.clone();
        let client = std::thread::spawn(move || call(&p2, Op::Pause).unwrap());
        // Serve until the client's connection has been answered.
        let stream = loop {
            if let Ok((s, _)) = server.listener.accept() {
                break s;
            }
            std::thread::yield_now();
        };
        server.serve(stream).unwrap();
        let resp = client.join().unwrap();
        assert!(resp.ok, "{resp:?}");
        assert!(f.is_paused());
        assert!(matches!(bind(&path), Err(ControlError::InUse { .. })));
        drop(server);
        assert!(!path.exists(), "socket file removed on drop");
    }
}
