//! An app's output as one stream: every replica's log lines tagged with the replica. With
//! `follow` it goes on as replicas come and go, until the client leaves or the app is
//! removed: a replica the reconciler restarts continues where it left off (its log file
//! grows across runs), a new one (a scale-up, a rolling update, a replacement) joins from its
//! first line, and a removed one is read to its end and dropped.
//!
//! Replicas are followed by container id, so a replica removed and created again under the
//! same name is a new one. A rotated log (the shim renames it to `container.log.1`) is
//! noticed by inode and the new file read from its start.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use corral_api::{AppLogLine, LogLine};
use tokio::sync::mpsc;

use super::replicas;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// How often files are read when no container event comes first.
const POLL: Duration = Duration::from_millis(100);

/// One replica being read.
struct Tail {
    replica: String,
    service: String,
    path: PathBuf,
    reader: Option<BufReader<File>>,
}

impl Tail {
    fn open(state: &AppState, r: &replicas::Replica) -> Tail {
        let path = state.config.container_dir(&r.rec.id).join("container.log");
        Tail {
            replica: r.rec.name.clone(),
            service: r.service.clone(),
            reader: File::open(&path).ok().map(BufReader::new),
            path,
        }
    }

    fn line(&self, raw: &str) -> Option<String> {
        let l: LogLine = serde_json::from_str(raw).ok()?;
        let out = AppLogLine {
            replica: self.replica.clone(),
            service: self.service.clone(),
            time: l.time,
            stream: l.stream,
            log: l.log,
        };
        let mut s = serde_json::to_string(&out).ok()?;
        s.push('\n');
        Some(s)
    }

    /// The complete lines written since the last call.
    fn read(&mut self, out: &mut Vec<String>) {
        loop {
            let Some(r) = self.reader.as_mut() else {
                // Not there yet (a container being created): try again next time.
                self.reader = File::open(&self.path).ok().map(BufReader::new);
                if self.reader.is_none() {
                    return;
                }
                continue;
            };
            let mut raw = String::new();
            match r.read_line(&mut raw) {
                Ok(n) if n > 0 && raw.ends_with('\n') => {
                    out.extend(self.line(&raw));
                }
                Ok(n) if n > 0 => {
                    // A partial line: step back and wait for the rest.
                    let _ = r.seek_relative(-(raw.len() as i64));
                    return;
                }
                _ => {
                    if rotated_away(r.get_ref(), &self.path) {
                        self.reader = File::open(&self.path).ok().map(BufReader::new);
                        continue;
                    }
                    return;
                }
            }
        }
    }
}

fn rotated_away(f: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() != b.ino(),
        _ => false,
    }
}

/// The lines of a log's rotated generation (read before the live file).
fn rotated_lines(t: &Tail, out: &mut Vec<String>) {
    let Ok(f) = File::open(crate::shim::log::rotated(&t.path)) else {
        return;
    };
    let mut r = BufReader::new(f);
    let _ = r.seek(SeekFrom::Start(0));
    for raw in r.lines().map_while(Result::ok) {
        out.extend(t.line(&raw));
    }
}

/// What one pass over an app's replicas found.
struct Pass {
    lines: Vec<String>,
    /// The app is gone (removed while being followed).
    ended: bool,
}

/// One pass: pick up new replicas, read every followed one, drop the removed ones.
fn pass(
    state: &AppState,
    app: &str,
    service: Option<&str>,
    tails: &mut BTreeMap<String, Tail>,
) -> ApiResult<Pass> {
    let list = replicas::list(state, app)?;
    let mut lines = Vec::new();
    let mut present = std::collections::HashSet::new();
    for r in list
        .iter()
        .filter(|r| service.is_none_or(|s| r.service == s))
    {
        present.insert(r.rec.id.clone());
        if !tails.contains_key(&r.rec.id) {
            let t = Tail::open(state, r);
            rotated_lines(&t, &mut lines);
            tails.insert(r.rec.id.clone(), t);
        }
    }
    for t in tails.values_mut() {
        t.read(&mut lines);
    }
    // A removed replica was read to its end just now (the open file outlives the removal).
    tails.retain(|id, _| present.contains(id));
    let ended = state.apps.get(app).is_none() && list.is_empty();
    Ok(Pass { lines, ended })
}

/// Stream an app's output into `tx` (JSON lines of [`AppLogLine`]); with `follow`, until the
/// receiver is dropped or the app is gone.
pub async fn stream(
    state: Arc<AppState>,
    app: String,
    service: Option<String>,
    follow: bool,
    tx: mpsc::Sender<String>,
) {
    let mut events = state.events.subscribe();
    let mut tails = BTreeMap::new();
    loop {
        let (s, a, svc) = (state.clone(), app.clone(), service.clone());
        let done = tokio::task::spawn_blocking(move || {
            let p = pass(&s, &a, svc.as_deref(), &mut tails);
            (p, tails)
        })
        .await;
        let (p, back) = match done {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(app = %app, error = %e, "following app logs panicked");
                return;
            }
        };
        tails = back;
        let p = match p {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(app = %app, error = %e, "following app logs");
                return;
            }
        };
        for l in p.lines {
            if tx.send(l).await.is_err() {
                return;
            }
        }
        if !follow || p.ended {
            return;
        }
        tokio::select! {
            _ = tx.closed() => return,
            _ = events.recv() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Check that `app` exists and has `service` (when one is named).
pub fn check(state: &AppState, app: &str, service: Option<&str>) -> ApiResult<()> {
    let h = state.apps.get(app).ok_or_else(|| super::not_found(app))?;
    let Some(s) = service else {
        return Ok(());
    };
    let known = h
        .runtime()
        .app
        .as_ref()
        .is_some_and(|a| a.services.contains_key(s));
    if !known {
        return Err(ApiError::NotFound(format!("app {app} has no service {s}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn raw(text: &str) -> String {
        let l = LogLine {
            time: "2026-01-01T00:00:00.000000000Z".into(),
            stream: "stdout".into(),
            log: format!("{text}\n"),
        };
        format!("{}\n", serde_json::to_string(&l).unwrap())
    }

    fn texts(out: &[String]) -> Vec<String> {
        out.iter()
            .map(|l| {
                let l: AppLogLine = serde_json::from_str(l).unwrap();
                assert_eq!(
                    (l.replica.as_str(), l.service.as_str()),
                    ("app-web-1", "web")
                );
                l.log.trim_end().to_string()
            })
            .collect()
    }

    #[test]
    fn a_tail_waits_for_whole_lines_and_follows_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let mut t = Tail {
            replica: "app-web-1".into(),
            service: "web".into(),
            path: path.clone(),
            reader: None,
        };
        let mut out = Vec::new();
        // No file yet (a container being created): nothing, and no error.
        t.read(&mut out);
        assert!(out.is_empty());
        let mut f = std::fs::File::create(&path).unwrap();
        let first = raw("one");
        f.write_all(first.as_bytes()).unwrap();
        let second = raw("two");
        let (head, rest) = second.split_at(10);
        f.write_all(head.as_bytes()).unwrap();
        t.read(&mut out);
        assert_eq!(texts(&out), ["one"], "the partial line waits");
        f.write_all(rest.as_bytes()).unwrap();
        t.read(&mut out);
        assert_eq!(texts(&out), ["one", "two"]);
        // The shim rotates: the old file becomes .1, a new one starts.
        std::fs::rename(&path, crate::shim::log::rotated(&path)).unwrap();
        std::fs::write(&path, raw("three")).unwrap();
        t.read(&mut out);
        assert_eq!(texts(&out), ["one", "two", "three"]);
        // A new reader of the same replica gets the rotated generation first.
        let mut again = Vec::new();
        rotated_lines(&t, &mut again);
        assert_eq!(texts(&again), ["one", "two"]);
    }
}
