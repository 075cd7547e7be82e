//! A running VM's guest agent as the daemon sees it: asked from its monitor's control socket
//! (op `agent`, see `corral_vmm::control`) and turned into the inventory's HEARTBEAT and
//! memory demand, and `vm inspect`'s `guest_agent`; and commands run through it (`vm exec`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_api::{GuestAgent, VmExecRequest, VmExecResponse};
use corral_store::{Kind, State};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Heartbeats older than this mean the agent is lost (it sends one every 2 s by default).
pub const LOST_AFTER: Duration = Duration::from_secs(10);
/// How long the inventory waits for a monitor's answer.
const QUERY_TIMEOUT: Duration = Duration::from_millis(500);

/// What a VM's monitor knows of its agent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentView {
    /// An agent is connected now.
    pub connected: bool,
    /// Its version.
    pub version: Option<String>,
    /// Age of the last heartbeat; None when none arrived.
    pub age: Option<Duration>,
    /// The guest's uptime at the last heartbeat, ms.
    pub uptime_ms: Option<u64>,
    /// The guest's MemTotal, KiB.
    pub mem_total_kib: Option<u64>,
    /// The guest's MemAvailable, KiB.
    pub mem_available_kib: Option<u64>,
    /// Load averages.
    pub load: Option<Vec<f64>>,
}

/// "7s", "3m", "2h".
fn short(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        _ => format!("{}h", s / 3600),
    }
}

impl AgentView {
    /// Read the monitor's `agent` result.
    pub fn from_json(v: &serde_json::Value) -> Self {
        let beat = &v["last_heartbeat"];
        let num = |k: &str| beat[k].as_u64();
        AgentView {
            connected: v["connected"].as_bool().unwrap_or(false),
            version: v["agent_version"].as_str().map(String::from),
            age: num("age_ms").map(Duration::from_millis),
            uptime_ms: num("uptime_ms"),
            mem_total_kib: num("mem_total_kib"),
            mem_available_kib: num("mem_available_kib"),
            load: beat["load"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_f64()).collect()),
        }
    }

    /// Whether the agent is connected and its last heartbeat is recent.
    pub fn fresh(&self) -> bool {
        self.connected && self.age.is_some_and(|a| a < LOST_AFTER)
    }

    /// The HEARTBEAT column: "3s ago", "lost 40s", "12s ago (paused)"; None ("n/a") when no
    /// heartbeat ever arrived.
    pub fn heartbeat(&self, paused: bool) -> Option<String> {
        let age = self.age?;
        Some(if paused {
            format!("{} ago (paused)", short(age))
        } else if self.fresh() {
            format!("{} ago", short(age))
        } else {
            format!("lost {}", short(age))
        })
    }

    /// Memory the guest uses (MemTotal - MemAvailable) in bytes, while heartbeats arrive (or
    /// the guest is paused: its last figures still hold).
    pub fn mem_used(&self, paused: bool) -> Option<u64> {
        if !(self.fresh() || (paused && self.connected)) {
            return None;
        }
        Some(
            self.mem_total_kib?
                .saturating_sub(self.mem_available_kib?)
                .saturating_mul(1024),
        )
    }

    /// `vm inspect`'s view.
    pub fn to_api(&self, paused: bool) -> GuestAgent {
        GuestAgent {
            connected: self.connected,
            version: self.version.clone(),
            heartbeat: self.heartbeat(paused).unwrap_or_else(|| "n/a".into()),
            guest_uptime_secs: self.uptime_ms.map(|u| u / 1000),
            mem_total: self.mem_total_kib.map(|k| k * 1024),
            mem_available: self.mem_available_kib.map(|k| k * 1024),
            load: self.load.clone(),
            memory_demand_source: if self.mem_used(paused).is_some() {
                "guest agent: MemTotal - MemAvailable".into()
            } else {
                "VM monitor's resident memory (no fresh heartbeat with memory figures)".into()
            },
        }
    }
}

/// Ask the monitor listening on `sock` (blocking, bounded by a short timeout: the inventory
/// must not stall on a busy monitor). None when it does not answer or has no agent listener.
pub fn query(sock: &Path) -> Option<AgentView> {
    let answer =
        corral_vmm::control::call_within(sock, corral_vmm::control::Op::Agent, QUERY_TIMEOUT)
            .ok()?;
    answer
        .ok
        .then_some(answer.result)
        .flatten()
        .map(|v| AgentView::from_json(&v))
}

/// The guest agent of the running VM `name`, for `vm inspect`.
pub async fn inspect(state: &AppState, name: &str, paused: bool) -> Option<GuestAgent> {
    let v = super::control(state, name, "agent").await.ok()?;
    Some(AgentView::from_json(&v).to_api(paused))
}

/// Longest command timeout accepted (an hour).
const MAX_EXEC_SECS: u64 = 3600;

/// Run a command in the running VM `key` through its guest agent and wait for its end.
pub async fn exec(
    state: &Arc<AppState>,
    key: &str,
    req: VmExecRequest,
) -> ApiResult<VmExecResponse> {
    let rec = state.find(Kind::Vm, key)?;
    if rec.state != State::Running {
        return Err(ApiError::Conflict(format!(
            "VM {} is {}: exec needs a running VM",
            rec.name, rec.state
        )));
    }
    if req.cmd.is_empty() || req.cmd[0].is_empty() {
        return Err(ApiError::invalid("cmd", "a command to run is needed"));
    }
    let secs = req.timeout_secs.unwrap_or(60);
    if secs == 0 || secs > MAX_EXEC_SECS {
        return Err(ApiError::invalid(
            "timeout_secs",
            format!("{secs}: use 1..{MAX_EXEC_SECS} seconds"),
        ));
    }
    let args = serde_json::json!({ "argv": req.cmd, "timeout_s": secs });
    let started = super::control_with(state, &rec.name, "agent_exec", args).await?;
    let id = started["id"]
        .as_u64()
        .ok_or_else(|| ApiError::Internal(format!("VM {}: exec answered {started}", rec.name)))?;
    // The guest kills the command at its timeout; allow for a slow guest beyond that.
    let deadline = Instant::now() + Duration::from_secs(secs + 30);
    loop {
        let args = serde_json::json!({ "id": id });
        let v = super::control_with(state, &rec.name, "agent_exec_status", args).await?;
        if v["done"].as_bool() == Some(true) {
            let int = |k: &str| v[k].as_i64().and_then(|n| i32::try_from(n).ok());
            let text = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            return Ok(VmExecResponse {
                exit_code: int("exit_code"),
                signal: int("signal"),
                error: v["error"].as_str().map(String::from),
                stdout: text("stdout"),
                stderr: text("stderr"),
                truncated: v["truncated"].as_bool().unwrap_or(false),
            });
        }
        if Instant::now() >= deadline {
            return Err(ApiError::Internal(format!(
                "VM {}: the guest agent never reported the command's end",
                rec.name
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(connected: bool, age_ms: Option<u64>) -> AgentView {
        let mut j = serde_json::json!({
            "connected": connected, "connections": 1, "agent_version": "0.1.0", "heartbeats": 3,
            "last_heartbeat": null,
        });
        if let Some(a) = age_ms {
            j["last_heartbeat"] = serde_json::json!({
                "age_ms": a, "unix_ms": 1, "seq": 3, "uptime_ms": 65_000,
                "mem_total_kib": 200_000, "mem_available_kib": 150_000,
                "mem_used_bytes": 51_200_000u64, "load": [0.5, 0.1, 0.0],
            });
        }
        AgentView::from_json(&j)
    }

    #[test]
    fn heartbeat_column_and_memory_demand() {
        let never = view(true, None);
        assert_eq!(never.heartbeat(false), None, "shown as n/a");
        assert_eq!(never.mem_used(false), None);
        assert_eq!(never.to_api(false).heartbeat, "n/a");

        let live = view(true, Some(3_400));
        assert_eq!(live.heartbeat(false).as_deref(), Some("3s ago"));
        assert_eq!(live.mem_used(false), Some(50_000 * 1024));
        let api = live.to_api(false);
        assert_eq!(api.guest_uptime_secs, Some(65));
        assert_eq!(api.mem_total, Some(200_000 * 1024));
        assert_eq!(api.load, Some(vec![0.5, 0.1, 0.0]));
        assert!(api.memory_demand_source.contains("MemAvailable"));

        let lost = view(true, Some(40_000));
        assert_eq!(lost.heartbeat(false).as_deref(), Some("lost 40s"));
        assert_eq!(
            lost.mem_used(false),
            None,
            "stale figures are not the demand"
        );
        assert_eq!(
            lost.mem_used(true),
            Some(50_000 * 1024),
            "a paused guest's last figures hold"
        );
        assert!(lost.to_api(false).memory_demand_source.contains("resident"));
        assert_eq!(
            view(false, Some(200_000)).heartbeat(false).as_deref(),
            Some("lost 3m")
        );
        assert_eq!(
            lost.heartbeat(true).as_deref(),
            Some("40s ago (paused)"),
            "a paused guest is not lost"
        );
    }

    #[test]
    fn a_monitor_that_does_not_answer_is_no_agent() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(query(&dir.path().join("none.sock")), None);
        // A listener that never answers: bounded by the timeout.
        let path = dir.path().join("mute.sock");
        let _l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let t = std::time::Instant::now();
        assert_eq!(query(&path), None);
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
