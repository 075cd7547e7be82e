//! Looking at containers: logs (tail, since, follow), processes (top), and live figures.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use corral_api::{LogLine, TopResponse};
use corral_store::{Kind, State};
use futures_util::stream::Stream;

use super::cgroup;
use crate::error::{ApiError, ApiResult};
use crate::shim::log as clog;
use crate::state::AppState;

/// Parse `--since`: RFC 3339, or a duration back from now (`10m`, `2h`).
pub fn parse_since(s: &str) -> ApiResult<SystemTime> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t);
    }
    let d = humantime::parse_duration(s).map_err(|_| {
        ApiError::invalid(
            "since",
            format!("{s:?}: expected RFC 3339 or a duration like 10m"),
        )
    })?;
    Ok(SystemTime::now() - d)
}

/// The lines of a container's log after `since`, the last `tail` of them.
pub fn log_lines(
    state: &AppState,
    key: &str,
    tail: Option<usize>,
    since: Option<SystemTime>,
) -> ApiResult<(String, Vec<LogLine>)> {
    let rec = state.find(Kind::Container, key)?;
    let path = state.config.container_dir(&rec.id).join("container.log");
    let mut lines = clog::read_all(&path);
    if let Some(since) = since {
        lines.retain(|l| humantime::parse_rfc3339(&l.time).is_ok_and(|t| t >= since));
    }
    if let Some(n) = tail {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    Ok((rec.id, lines))
}

/// Follow a container's log (JSON lines) from byte `start` until its current run ends. The
/// file stays open, so lines survive a `--rm` removal; a rotation is followed by inode.
pub fn follow(state: Arc<AppState>, id: String, start: u64) -> impl Stream<Item = String> {
    let path = state.config.container_dir(&id).join("container.log");
    let rx = state.exit_channel(&id).subscribe();
    let reader = open_at(&path, start);
    futures_util::stream::unfold(
        (state, id, path, reader, rx, false),
        |(state, id, path, mut reader, mut rx, mut finished)| async move {
            loop {
                if let Some(r) = reader.as_mut() {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) > 0 {
                        if line.ends_with('\n') {
                            return Some((line, (state, id, path, reader, rx, finished)));
                        }
                        // A partial line: step back and wait for the rest.
                        let _ = r.seek_relative(-(line.len() as i64));
                    } else if rotated_away(r.get_ref(), &path) {
                        reader = open_at(&path, 0);
                        continue;
                    }
                } else {
                    reader = open_at(&path, 0);
                }
                if finished {
                    return None;
                }
                let ended = match state.store().get_instance(&id) {
                    Ok(r) => {
                        rx.borrow_and_update().is_some()
                            || matches!(r.state, State::Exited | State::Dead)
                    }
                    Err(_) => true,
                };
                if ended {
                    finished = true; // drain what is left, then end
                    continue;
                }
                tokio::select! {
                    _ = rx.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        },
    )
}

fn open_at(path: &std::path::Path, offset: u64) -> Option<BufReader<std::fs::File>> {
    let mut f = std::fs::File::open(path).ok()?;
    f.seek(SeekFrom::Start(offset)).ok()?;
    Some(BufReader::new(f))
}

fn rotated_away(f: &std::fs::File, path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() != b.ino(),
        _ => false,
    }
}

/// The processes in a container's cgroup, `ps`-style.
pub fn top(state: &AppState, key: &str) -> ApiResult<TopResponse> {
    let rec = state.find(Kind::Container, key)?;
    if rec.state != State::Running {
        return Err(ApiError::Conflict(format!(
            "container {} is {}, not running",
            rec.name, rec.state
        )));
    }
    let mut processes = Vec::new();
    for pid in cgroup::pids(&rec.id) {
        let cmd = crate::proc::cmdline(pid).unwrap_or_default();
        let rss = crate::proc::rss_bytes(pid).unwrap_or(0) / 1024;
        let cpu = crate::proc::cpu_ns(pid).unwrap_or(0) / 1_000_000;
        processes.push(vec![
            pid.to_string(),
            format!("{rss}"),
            format!("{cpu}"),
            cmd,
        ]);
    }
    Ok(TopResponse {
        titles: vec!["PID".into(), "RSS_KB".into(), "CPU_MS".into(), "CMD".into()],
        processes,
    })
}
