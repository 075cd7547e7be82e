//! The wire protocol between `corral-agent` (in the guest) and `corral vmm` (on the host).
//!
//! # Protocol, version 1
//! The agent connects from the guest to the host over vsock: CID 2 (the host), port
//! [`AGENT_PORT`]. With corral's hybrid vsock the host end is the Unix socket
//! `<vsock uds_path>_1024`, served by `corral vmm`. One connection at a time; the agent
//! reconnects when it breaks.
//!
//! The stream carries lines of UTF-8 text, each ending in `\n` and at most [`MAX_LINE`] bytes.
//! A line is a message kind, then space-separated `key=value` fields; values hold no spaces,
//! `=` or control characters. A receiver ignores fields it does not know and lines of a kind it
//! does not know (so a newer peer may add both); a missing field is "not known".
//!
//! Agent → host:
//! - `hello version=1 agent=<agent version> caps=exec`: first line of every connection; `caps`
//!   lists optional requests the agent serves (comma-separated). A host that does not speak
//!   `version` closes the connection.
//! - `heartbeat seq=<n> uptime_ms=<n> mem_total_kib=<n> mem_available_kib=<n> load1=<f>
//!   load5=<f> load15=<f>`: every few seconds (the agent's `--interval`, 2 s by default);
//!   `seq` counts from 1 per connection; the figures are the guest's `/proc/uptime`,
//!   `/proc/meminfo` (MemTotal, MemAvailable) and `/proc/loadavg`.
//! - `ack op=<kind>`: the agent took a request and is acting on it.
//! - `exec_out id=<n> stream=stdout|stderr data=<hex>`: output of command `id`, in chunks of at
//!   most [`EXEC_CHUNK`] bytes (the agent forwards at most [`EXEC_OUTPUT_MAX`] + 1 bytes per
//!   stream: the host keeps [`EXEC_OUTPUT_MAX`], and one more byte tells it the output was cut).
//! - `exec_exit id=<n> code=<n>` | `signal=<n>` | `error=<hex of a message>`: command `id`
//!   ended with an exit status, was killed by a signal (also when its timeout expired), or
//!   could not start.
//!
//! Host → agent:
//! - `shutdown`: power the guest off (the agent acknowledges, syncs the file systems and
//!   powers off).
//! - `exec id=<n> timeout_ms=<n> argv=x<hex>,x<hex>,…`: run a command (no shell; stdin is
//!   empty) and send its output and end; each argument is `x` then its bytes in hex, so the
//!   whole command must fit the line limit. Only to an agent whose hello listed `exec`.

use std::fmt::{self, Write as _};

/// Protocol version spoken by this build.
pub const PROTOCOL_VERSION: u32 = 1;
/// The vsock port the host listens on for the agent.
pub const AGENT_PORT: u32 = 1024;
/// The host's vsock CID.
pub const HOST_CID: u32 = 2;
/// Longest line either side sends or accepts, newline included.
pub const MAX_LINE: usize = 64 * 1024;
/// Most output bytes in one `exec_out` line.
pub const EXEC_CHUNK: usize = 16 * 1024;
/// Most output bytes the agent forwards per stream of one command.
pub const EXEC_OUTPUT_MAX: usize = 1 << 20;
/// The capability an agent lists when it serves `exec`.
pub const CAP_EXEC: &str = "exec";

/// Bytes as lowercase hex (a table lookup per nibble: the agent may encode megabytes on a
/// guest whose CPU is emulated).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 15)]);
    }
    String::from_utf8(out).expect("hex digits are ASCII")
}

/// Bytes from hex; None when it is not hex.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let s = s.as_bytes();
    if s.len() % 2 != 0 {
        return None;
    }
    s.chunks_exact(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

/// Which output stream of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEnd {
    /// It exited with this status.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
    /// It could not start.
    Error(String),
}

/// Errors parsing a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// The line is empty.
    Empty,
    /// The line is longer than [`MAX_LINE`].
    TooLong(usize),
    /// A message kind this build does not know (ignore it: a newer peer sent it).
    UnknownKind(String),
    /// A field is not `key=value`.
    BadField(String),
    /// A field's value is not what its key needs.
    BadValue {
        /// The field's key.
        key: String,
        /// The value that did not parse.
        value: String,
    },
    /// A field the message needs is missing.
    Missing {
        /// The message kind.
        kind: &'static str,
        /// The missing key.
        key: &'static str,
    },
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Empty => write!(f, "empty line"),
            ProtocolError::TooLong(n) => write!(f, "line of {n} bytes (at most {MAX_LINE})"),
            ProtocolError::UnknownKind(k) => write!(f, "unknown message kind {k:?}"),
            ProtocolError::BadField(s) => write!(f, "field {s:?} is not key=value"),
            ProtocolError::BadValue { key, value } => write!(f, "field {key}: bad value {value:?}"),
            ProtocolError::Missing { kind, key } => write!(f, "{kind} without {key}="),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// What the guest reports in a heartbeat; `None` where the guest could not read a figure.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Heartbeat {
    /// Counts from 1 on each connection.
    pub seq: u64,
    /// The guest's uptime in milliseconds.
    pub uptime_ms: Option<u64>,
    /// The guest's MemTotal in KiB.
    pub mem_total_kib: Option<u64>,
    /// The guest's MemAvailable in KiB.
    pub mem_available_kib: Option<u64>,
    /// Load averages over 1, 5 and 15 minutes.
    pub load: Option<[f64; 3]>,
}

impl Heartbeat {
    /// Memory the guest uses (MemTotal - MemAvailable) in bytes, when both are known.
    pub fn mem_used_bytes(&self) -> Option<u64> {
        Some(
            self.mem_total_kib?
                .saturating_sub(self.mem_available_kib?)
                .saturating_mul(1024),
        )
    }
}

/// One message of either direction.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// The agent introduces itself.
    Hello {
        /// The protocol version it speaks.
        version: u32,
        /// The agent's own version.
        agent: String,
        /// Optional requests it serves (e.g. [`CAP_EXEC`]).
        caps: Vec<String>,
    },
    /// The guest is alive; its figures.
    Heartbeat(Heartbeat),
    /// The agent took the request of this kind.
    Ack {
        /// The request's kind, e.g. "shutdown".
        op: String,
    },
    /// Power the guest off.
    Shutdown,
    /// Run a command.
    Exec {
        /// Chosen by the host; output and end carry it.
        id: u64,
        /// Kill the command after this long.
        timeout_ms: u64,
        /// Program and arguments.
        argv: Vec<String>,
    },
    /// A chunk of a command's output.
    ExecOut {
        /// The command.
        id: u64,
        /// Which stream.
        stream: ExecStream,
        /// The bytes.
        data: Vec<u8>,
    },
    /// A command ended.
    ExecExit {
        /// The command.
        id: u64,
        /// How.
        end: ExecEnd,
    },
}

/// Whether `v` can be sent as a field value.
fn token_ok(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic() && b != b'=')
}

/// A value made safe to send (anything else becomes `_`).
fn token(v: &str) -> String {
    let t: String = v
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '=' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if t.is_empty() {
        "_".into()
    } else {
        t
    }
}

impl Message {
    /// The message as one line, newline included.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        match self {
            Message::Hello {
                version,
                agent,
                caps,
            } => {
                let _ = write!(s, "hello version={version} agent={}", token(agent));
                if !caps.is_empty() {
                    let caps: Vec<String> = caps.iter().map(|c| token(c)).collect();
                    let _ = write!(s, " caps={}", caps.join(","));
                }
            }
            Message::Heartbeat(h) => {
                let _ = write!(s, "heartbeat seq={}", h.seq);
                let fields = [
                    ("uptime_ms", h.uptime_ms),
                    ("mem_total_kib", h.mem_total_kib),
                    ("mem_available_kib", h.mem_available_kib),
                ];
                for (k, v) in fields {
                    if let Some(v) = v {
                        let _ = write!(s, " {k}={v}");
                    }
                }
                if let Some([a, b, c]) = h.load {
                    let _ = write!(s, " load1={a:.2} load5={b:.2} load15={c:.2}");
                }
            }
            Message::Ack { op } => {
                let _ = write!(s, "ack op={}", token(op));
            }
            Message::Shutdown => s.push_str("shutdown"),
            Message::Exec {
                id,
                timeout_ms,
                argv,
            } => {
                let args: Vec<String> = argv
                    .iter()
                    .map(|a| format!("x{}", hex(a.as_bytes())))
                    .collect();
                let _ = write!(
                    s,
                    "exec id={id} timeout_ms={timeout_ms} argv={}",
                    args.join(",")
                );
            }
            Message::ExecOut { id, stream, data } => {
                let stream = match stream {
                    ExecStream::Stdout => "stdout",
                    ExecStream::Stderr => "stderr",
                };
                let _ = write!(s, "exec_out id={id} stream={stream} data={}", hex(data));
            }
            Message::ExecExit { id, end } => {
                let _ = match end {
                    ExecEnd::Code(c) => write!(s, "exec_exit id={id} code={c}"),
                    ExecEnd::Signal(n) => write!(s, "exec_exit id={id} signal={n}"),
                    ExecEnd::Error(e) => write!(s, "exec_exit id={id} error={}", hex(e.as_bytes())),
                };
            }
        }
        s.truncate(MAX_LINE - 1);
        s.push('\n');
        s
    }

    /// Parse one line (with or without its newline).
    pub fn parse(line: &str) -> Result<Message, ProtocolError> {
        if line.len() > MAX_LINE {
            return Err(ProtocolError::TooLong(line.len()));
        }
        let mut words = line.split_ascii_whitespace();
        let kind = words.next().ok_or(ProtocolError::Empty)?;
        let mut fields = Vec::new();
        for w in words {
            let (k, v) = w
                .split_once('=')
                .filter(|(k, v)| !k.is_empty() && token_ok(v))
                .ok_or_else(|| ProtocolError::BadField(w.to_owned()))?;
            fields.push((k, v));
        }
        let get = |key: &str| fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        let num = |key: &str| -> Result<Option<u64>, ProtocolError> {
            get(key)
                .map(|v| {
                    v.parse().map_err(|_| ProtocolError::BadValue {
                        key: key.to_owned(),
                        value: v.to_owned(),
                    })
                })
                .transpose()
        };
        let bad = |key: &str| ProtocolError::BadValue {
            key: key.to_owned(),
            value: get(key).unwrap_or_default().to_owned(),
        };
        fn need<T>(
            v: Option<T>,
            kind: &'static str,
            key: &'static str,
        ) -> Result<T, ProtocolError> {
            v.ok_or(ProtocolError::Missing { kind, key })
        }
        let float = |key: &str| -> Result<Option<f64>, ProtocolError> {
            get(key)
                .map(|v| {
                    v.parse::<f64>()
                        .ok()
                        .filter(|f| f.is_finite())
                        .ok_or_else(|| ProtocolError::BadValue {
                            key: key.to_owned(),
                            value: v.to_owned(),
                        })
                })
                .transpose()
        };
        match kind {
            "hello" => {
                let version = num("version")?.ok_or(ProtocolError::Missing {
                    kind: "hello",
                    key: "version",
                })?;
                Ok(Message::Hello {
                    version: u32::try_from(version).map_err(|_| ProtocolError::BadValue {
                        key: "version".into(),
                        value: version.to_string(),
                    })?,
                    agent: get("agent").unwrap_or("unknown").to_owned(),
                    caps: get("caps")
                        .map(|c| c.split(',').map(String::from).collect())
                        .unwrap_or_default(),
                })
            }
            "heartbeat" => {
                let seq = num("seq")?.ok_or(ProtocolError::Missing {
                    kind: "heartbeat",
                    key: "seq",
                })?;
                let load = match (float("load1")?, float("load5")?, float("load15")?) {
                    (Some(a), Some(b), Some(c)) => Some([a, b, c]),
                    _ => None,
                };
                Ok(Message::Heartbeat(Heartbeat {
                    seq,
                    uptime_ms: num("uptime_ms")?,
                    mem_total_kib: num("mem_total_kib")?,
                    mem_available_kib: num("mem_available_kib")?,
                    load,
                }))
            }
            "ack" => Ok(Message::Ack {
                op: get("op")
                    .ok_or(ProtocolError::Missing {
                        kind: "ack",
                        key: "op",
                    })?
                    .to_owned(),
            }),
            "shutdown" => Ok(Message::Shutdown),
            "exec" => {
                let id = need(num("id")?, "exec", "id")?;
                let argv = need(get("argv"), "exec", "argv")?
                    .split(',')
                    .map(|a| {
                        a.strip_prefix('x')
                            .and_then(unhex)
                            .and_then(|b| String::from_utf8(b).ok())
                    })
                    .collect::<Option<Vec<String>>>()
                    .ok_or_else(|| bad("argv"))?;
                Ok(Message::Exec {
                    id,
                    timeout_ms: need(num("timeout_ms")?, "exec", "timeout_ms")?,
                    argv,
                })
            }
            "exec_out" => Ok(Message::ExecOut {
                id: need(num("id")?, "exec_out", "id")?,
                stream: match need(get("stream"), "exec_out", "stream")? {
                    "stdout" => ExecStream::Stdout,
                    "stderr" => ExecStream::Stderr,
                    _ => return Err(bad("stream")),
                },
                data: unhex(need(get("data"), "exec_out", "data")?).ok_or_else(|| bad("data"))?,
            }),
            "exec_exit" => {
                let id = need(num("id")?, "exec_exit", "id")?;
                let int = |k: &str| {
                    num(k)?
                        .map(|v| i32::try_from(v).map_err(|_| bad(k)))
                        .transpose()
                };
                let end = if let Some(c) = int("code")? {
                    ExecEnd::Code(c)
                } else if let Some(n) = int("signal")? {
                    ExecEnd::Signal(n)
                } else {
                    let e = need(get("error"), "exec_exit", "code")?;
                    ExecEnd::Error(
                        String::from_utf8_lossy(&unhex(e).ok_or_else(|| bad("error"))?)
                            .into_owned(),
                    )
                };
                Ok(Message::ExecExit { id, end })
            }
            other => Err(ProtocolError::UnknownKind(token(other))),
        }
    }
}

#[cfg(test)]
mod tests;
