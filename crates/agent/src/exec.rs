//! Commands the host asks the agent to run (`exec`): no shell, empty stdin, output forwarded in
//! chunks as it comes, the whole process group killed when the timeout expires.

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;

use corral_agent::protocol::{ExecEnd, ExecStream, Message, EXEC_CHUNK, EXEC_OUTPUT_MAX};

use crate::session::Writer;

/// Most commands running at once.
pub const MAX_RUNNING: usize = 8;
/// After the command ended, output keeps draining while it flows; a pause this long ends the
/// wait (a background child may hold the pipes open for ever).
const DRAIN_IDLE: Duration = Duration::from_secs(2);

/// Run command `id` on its own thread; its output and end go to `out`.
pub fn spawn(
    id: u64,
    argv: Vec<String>,
    timeout: Duration,
    out: Writer,
    running: Arc<AtomicUsize>,
) {
    if running.fetch_add(1, Ordering::SeqCst) >= MAX_RUNNING {
        running.fetch_sub(1, Ordering::SeqCst);
        let end = ExecEnd::Error(format!("{MAX_RUNNING} commands are running already"));
        let _ = out.send(&Message::ExecExit { id, end });
        return;
    }
    let r = running.clone();
    let o = out.clone();
    let started = std::thread::Builder::new()
        .name(format!("exec-{id}"))
        .spawn(move || {
            run(id, &argv, timeout, &o);
            r.fetch_sub(1, Ordering::SeqCst);
        });
    if let Err(e) = started {
        running.fetch_sub(1, Ordering::SeqCst);
        let end = ExecEnd::Error(format!("cannot start a thread: {e}"));
        let _ = out.send(&Message::ExecExit { id, end });
    }
}

/// Run command `id` to its end (blocking) and report it.
pub fn run(id: u64, argv: &[String], timeout: Duration, out: &Writer) {
    let end = match argv.split_first() {
        None => ExecEnd::Error("empty command".into()),
        Some((prog, args)) => match Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
        {
            Err(e) => ExecEnd::Error(format!("{prog}: {e}")),
            Ok(child) => supervise(id, child, timeout, out),
        },
    };
    let _ = out.send(&Message::ExecExit { id, end });
}

fn supervise(id: u64, mut child: Child, timeout: Duration, out: &Writer) -> ExecEnd {
    let (done_tx, done_rx) = mpsc::channel();
    let forwarded = Arc::new(AtomicU64::new(0));
    let mut pumps = 0;
    let streams: [(Option<Box<dyn Read + Send>>, ExecStream); 2] = [
        (
            child
                .stdout
                .take()
                .map(|r| Box::new(r) as Box<dyn Read + Send>),
            ExecStream::Stdout,
        ),
        (
            child
                .stderr
                .take()
                .map(|r| Box::new(r) as Box<dyn Read + Send>),
            ExecStream::Stderr,
        ),
    ];
    for (reader, stream) in streams {
        let Some(reader) = reader else { continue };
        let (o, tx, fwd) = (out.clone(), done_tx.clone(), forwarded.clone());
        if std::thread::Builder::new()
            .name(format!("exec-{id}-out"))
            .spawn(move || {
                pump(id, reader, stream, &o, &fwd);
                let _ = tx.send(());
            })
            .is_ok()
        {
            pumps += 1;
        }
    }
    let status = wait_within(&mut child, timeout);
    let mut seen = forwarded.load(Ordering::SeqCst);
    let mut idle_since = Instant::now();
    while pumps > 0 {
        if done_rx.recv_timeout(Duration::from_millis(100)).is_ok() {
            pumps -= 1;
            continue;
        }
        let now = forwarded.load(Ordering::SeqCst);
        if now != seen {
            (seen, idle_since) = (now, Instant::now());
        } else if idle_since.elapsed() >= DRAIN_IDLE {
            break;
        }
    }
    match status {
        Ok(st) => match (st.code(), st.signal()) {
            (Some(c), _) => ExecEnd::Code(c),
            (None, Some(s)) => ExecEnd::Signal(s),
            _ => ExecEnd::Error(format!("ended with {st}")),
        },
        Err(e) => ExecEnd::Error(format!("waiting for the command: {e}")),
    }
}

/// Waits for `child`, killing its process group once `timeout` has passed: a blocking wait
/// beside a timer thread, not a poll (every wake-up costs an emulated guest real time).
/// The exit is observed without reaping (WNOWAIT) until the timer can no longer fire, so
/// the group's id cannot have been handed to another process when the kill is sent.
fn wait_within(child: &mut Child, timeout: Duration) -> std::io::Result<ExitStatus> {
    let pid = Pid::from_raw(child.id() as i32);
    let (cancel, cancelled) = mpsc::channel::<()>();
    let timer = std::thread::Builder::new()
        .name("exec-timeout".into())
        .spawn(move || {
            if cancelled.recv_timeout(timeout) == Err(RecvTimeoutError::Timeout) {
                let _ = killpg(pid, Signal::SIGKILL);
            }
        });
    let exited = loop {
        match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Err(Errno::EINTR) => continue,
            other => break other,
        }
    };
    drop(cancel);
    if let Ok(timer) = timer {
        let _ = timer.join();
    }
    exited.map_err(std::io::Error::from)?;
    child.wait()
}

/// Forward one output stream in chunks, at most [`EXEC_OUTPUT_MAX`] + 1 bytes (the one more
/// tells the host the output was cut), then drain it.
fn pump(
    id: u64,
    mut reader: Box<dyn Read + Send>,
    stream: ExecStream,
    out: &Writer,
    forwarded: &AtomicU64,
) {
    let mut buf = [0u8; EXEC_CHUNK];
    let mut sent = 0usize;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        forwarded.fetch_add(n as u64, Ordering::SeqCst);
        let take = n.min((EXEC_OUTPUT_MAX + 1).saturating_sub(sent));
        if take > 0 {
            sent += take;
            let msg = Message::ExecOut {
                id,
                stream,
                data: buf[..take].to_vec(),
            };
            if out.send(&msg).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixStream;

    /// Run `argv` and collect what the host would receive.
    fn collect(argv: &[&str], timeout: Duration) -> (Vec<u8>, Vec<u8>, ExecEnd) {
        let (a, host) = UnixStream::pair().unwrap();
        let w = Writer::new(std::os::fd::AsFd::as_fd(&a)).unwrap();
        drop(a);
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let t = std::thread::spawn(move || run(7, &argv, timeout, &w));
        let (mut o, mut e) = (Vec::new(), Vec::new());
        for line in BufReader::new(host).lines() {
            match Message::parse(&line.unwrap()).unwrap() {
                Message::ExecOut {
                    id: 7,
                    stream,
                    data,
                } => match stream {
                    ExecStream::Stdout => o.extend(data),
                    ExecStream::Stderr => e.extend(data),
                },
                Message::ExecExit { id: 7, end } => {
                    t.join().unwrap();
                    return (o, e, end);
                }
                other => panic!("{other:?}"),
            }
        }
        panic!("no exec_exit")
    }

    #[test]
    fn output_streams_and_the_exit_status_arrive() {
        let (o, e, end) = collect(
            &[
                "sh",
                "-c",
                "echo out; echo err >&2; head -c 2000 /dev/zero; exit 3",
            ],
            Duration::from_secs(30),
        );
        assert_eq!(&o[..4], b"out\n");
        assert_eq!(o.len(), 4 + 2000, "chunks reassembled");
        assert_eq!(e, b"err\n");
        assert_eq!(end, ExecEnd::Code(3));
    }

    #[test]
    fn a_missing_program_and_an_empty_command_are_errors() {
        let (_, _, end) = collect(&["/nonexistent/prog"], Duration::from_secs(5));
        assert!(
            matches!(&end, ExecEnd::Error(m) if m.contains("/nonexistent/prog")),
            "{end:?}"
        );
        let (_, _, end) = collect(&[], Duration::from_secs(5));
        assert_eq!(end, ExecEnd::Error("empty command".into()));
    }

    #[test]
    fn output_still_in_the_pipe_when_the_command_ends_is_not_lost() {
        // Far more than a pipe holds, written at once: the command ends long before the
        // output is through.
        let (o, _, end) = collect(
            &["sh", "-c", "head -c 900000 /dev/zero"],
            Duration::from_secs(60),
        );
        assert_eq!(end, ExecEnd::Code(0));
        assert_eq!(o.len(), 900_000);
    }

    #[test]
    fn a_background_child_holding_the_pipes_does_not_hold_the_end() {
        let t = Instant::now();
        let (o, _, end) = collect(
            &["sh", "-c", "echo started; sleep 20 & exit 0"],
            Duration::from_secs(60),
        );
        assert_eq!(end, ExecEnd::Code(0));
        assert_eq!(o, b"started\n");
        assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    }

    #[test]
    fn the_timeout_kills_the_command_and_its_children() {
        let t = Instant::now();
        let (_, _, end) = collect(
            &["sh", "-c", "sleep 30 & sleep 30"],
            Duration::from_millis(300),
        );
        assert_eq!(end, ExecEnd::Signal(9));
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    }
}
