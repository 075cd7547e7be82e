//! The container log: JSON lines `{"time","stream","log"}` (Docker's json-file shape), rotated
//! by size into `container.log.1`.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use corral_api::LogLine;

use super::fanout::Fanout;

/// Writes and rotates one container's log file.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    max: u64,
    /// The last bytes of stderr, to explain a failed start.
    pub stderr_tail: Vec<u8>,
}

impl LogWriter {
    /// Open (append) the log at `path`, rotating past `max` bytes.
    pub fn open(path: &Path, max: u64) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
            size,
            max: max.max(4096),
            stderr_tail: Vec::new(),
        })
    }

    /// Append one chunk of output as a JSON line.
    pub fn write(&mut self, stream: &str, text: &[u8]) -> std::io::Result<()> {
        if stream == "stderr" {
            self.stderr_tail.extend_from_slice(text);
            let excess = self.stderr_tail.len().saturating_sub(2048);
            self.stderr_tail.drain(..excess);
        }
        let line = LogLine {
            time: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
            stream: stream.into(),
            log: String::from_utf8_lossy(text).into_owned(),
        };
        let mut json = serde_json::to_vec(&line).map_err(std::io::Error::other)?;
        json.push(b'\n');
        if self.size > 0 && self.size + json.len() as u64 > self.max {
            std::fs::rename(&self.path, rotated(&self.path))?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.size = 0;
        }
        self.file.write_all(&json)?;
        self.size += json.len() as u64;
        Ok(())
    }
}

/// The previous generation of a log file.
pub fn rotated(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".1");
    PathBuf::from(p)
}

/// Cuts output into log lines: whole lines as they complete, a line longer than 16 KiB split.
#[derive(Debug)]
pub struct Lines {
    stream: &'static str,
    pending: Vec<u8>,
}

impl Lines {
    /// Lines of `stream` (`stdout` or `stderr`).
    pub fn new(stream: &'static str) -> Self {
        Lines {
            stream,
            pending: Vec::new(),
        }
    }

    /// Add output; write every line it completes.
    pub fn push(&mut self, bytes: &[u8], log: &Mutex<LogWriter>) {
        self.pending.extend_from_slice(bytes);
        while let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            let _ = log.lock().expect("log poisoned").write(self.stream, &line);
        }
        if self.pending.len() > 16 * 1024 {
            self.flush(log);
        }
    }

    /// Write what is left of an unfinished line.
    pub fn flush(&mut self, log: &Mutex<LogWriter>) {
        if !self.pending.is_empty() {
            let _ = log
                .lock()
                .expect("log poisoned")
                .write(self.stream, &self.pending);
            self.pending.clear();
        }
    }
}

/// Copy a pipe into the log line by line until EOF; with `tee`, also every chunk as it comes
/// to the attached clients, framed as stream number `.1`.
pub fn pump(
    mut from: File,
    stream: &'static str,
    log: Arc<Mutex<LogWriter>>,
    tee: Option<(Arc<Fanout>, u8)>,
) {
    let mut buf = [0u8; 8192];
    let mut lines = Lines::new(stream);
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        lines.push(&buf[..n], &log);
        if let Some((clients, number)) = &tee {
            clients.push(&corral_api::tty::frame(*number, &buf[..n]));
        }
    }
    lines.flush(&log);
}

/// Read every line of a container's log (rotated generation first).
pub fn read_all(path: &Path) -> Vec<LogLine> {
    let mut out = Vec::new();
    for p in [rotated(path), path.to_path_buf()] {
        if let Ok(f) = File::open(&p) {
            for line in BufReader::new(f).lines().map_while(Result::ok) {
                if let Ok(l) = serde_json::from_str(&line) {
                    out.push(l);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json_and_rotate_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let mut w = LogWriter::open(&path, 4096).unwrap();
        for i in 0..100 {
            w.write("stdout", format!("line {i}\n").as_bytes()).unwrap();
        }
        w.write("stderr", b"oops\n").unwrap();
        assert!(rotated(&path).exists(), "rotated past 4 KiB");
        assert!(std::fs::metadata(&path).unwrap().len() <= 4096);
        let lines = read_all(&path);
        let last = lines.last().unwrap();
        assert_eq!(last.stream, "stderr");
        assert_eq!(last.log, "oops\n");
        assert!(humantime::parse_rfc3339(&last.time).is_ok());
        assert_eq!(w.stderr_tail, b"oops\n");
        // Lines kept are contiguous and end with the newest.
        let nums: Vec<usize> = lines
            .iter()
            .filter_map(|l| l.log.trim().strip_prefix("line ")?.parse().ok())
            .collect();
        assert_eq!(*nums.last().unwrap(), 99);
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1));
    }
}
