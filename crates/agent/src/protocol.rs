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
//! - `hello version=1 agent=<agent version>`: first line of every connection. A host that does
//!   not speak `version` closes the connection.
//! - `heartbeat seq=<n> uptime_ms=<n> mem_total_kib=<n> mem_available_kib=<n> load1=<f>
//!   load5=<f> load15=<f>`: every few seconds (the agent's `--interval`, 2 s by default);
//!   `seq` counts from 1 per connection; the figures are the guest's `/proc/uptime`,
//!   `/proc/meminfo` (MemTotal, MemAvailable) and `/proc/loadavg`.
//! - `ack op=<kind>`: the agent took a request and is acting on it.
//!
//! Host → agent:
//! - `shutdown`: power the guest off (the agent acknowledges, syncs the file systems and
//!   powers off). `exec` is not part of version 1.

use std::fmt::{self, Write as _};

/// Protocol version spoken by this build.
pub const PROTOCOL_VERSION: u32 = 1;
/// The vsock port the host listens on for the agent.
pub const AGENT_PORT: u32 = 1024;
/// The host's vsock CID.
pub const HOST_CID: u32 = 2;
/// Longest line either side sends or accepts, newline included.
pub const MAX_LINE: usize = 1024;

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
            Message::Hello { version, agent } => {
                let _ = write!(s, "hello version={version} agent={}", token(agent));
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
            other => Err(ProtocolError::UnknownKind(token(other))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat() -> Heartbeat {
        Heartbeat {
            seq: 7,
            uptime_ms: Some(12_340),
            mem_total_kib: Some(240_000),
            mem_available_kib: Some(200_000),
            load: Some([0.5, 0.25, 0.0]),
        }
    }

    #[test]
    fn every_message_round_trips() {
        for m in [
            Message::Hello {
                version: 1,
                agent: "0.1.0".into(),
            },
            Message::Heartbeat(beat()),
            Message::Heartbeat(Heartbeat {
                seq: 1,
                ..Default::default()
            }),
            Message::Ack {
                op: "shutdown".into(),
            },
            Message::Shutdown,
        ] {
            let line = m.encode();
            assert!(
                line.ends_with('\n') && line.matches('\n').count() == 1,
                "{line:?}"
            );
            assert_eq!(Message::parse(&line), Ok(m), "{line:?}");
        }
    }

    #[test]
    fn the_documented_heartbeat_line_parses() {
        let m = Message::parse(
            "heartbeat seq=7 uptime_ms=12340 mem_total_kib=240000 mem_available_kib=200000 \
             load1=0.50 load5=0.25 load15=0.00\n",
        )
        .unwrap();
        assert_eq!(m, Message::Heartbeat(beat()));
        let Message::Heartbeat(h) = m else {
            unreachable!()
        };
        assert_eq!(h.mem_used_bytes(), Some(40_000 * 1024));
    }

    #[test]
    fn unknown_fields_are_ignored_and_missing_ones_unknown() {
        let m = Message::parse("heartbeat seq=3 future=42 load1=1.0\n").unwrap();
        assert_eq!(
            m,
            Message::Heartbeat(Heartbeat {
                seq: 3,
                ..Default::default()
            })
        );
        let Message::Heartbeat(h) = m else {
            unreachable!()
        };
        assert_eq!(h.mem_used_bytes(), None);
    }

    #[test]
    fn bad_lines_are_errors_naming_the_problem() {
        assert_eq!(Message::parse(""), Err(ProtocolError::Empty));
        assert_eq!(Message::parse("  \n"), Err(ProtocolError::Empty));
        assert_eq!(
            Message::parse("exec cmd=ls"),
            Err(ProtocolError::UnknownKind("exec".into()))
        );
        assert_eq!(
            Message::parse("heartbeat uptime_ms=1"),
            Err(ProtocolError::Missing {
                kind: "heartbeat",
                key: "seq"
            })
        );
        assert_eq!(
            Message::parse("heartbeat seq=x"),
            Err(ProtocolError::BadValue {
                key: "seq".into(),
                value: "x".into()
            })
        );
        assert_eq!(
            Message::parse("heartbeat seq=1 load1=NaN load5=1 load15=1")
                .unwrap_err()
                .to_string(),
            "field load1: bad value \"NaN\""
        );
        assert_eq!(
            Message::parse("hello version"),
            Err(ProtocolError::BadField("version".into()))
        );
        assert_eq!(
            Message::parse("hello version=99999999999"),
            Err(ProtocolError::BadValue {
                key: "version".into(),
                value: "99999999999".into()
            })
        );
        let long = format!("heartbeat seq=1 {}", "x".repeat(MAX_LINE));
        assert_eq!(
            Message::parse(&long),
            Err(ProtocolError::TooLong(long.len()))
        );
    }

    #[test]
    fn values_with_spaces_or_equals_are_made_safe() {
        let line = Message::Hello {
            version: 1,
            agent: "1.0 beta=2".into(),
        }
        .encode();
        assert_eq!(line, "hello version=1 agent=1.0_beta_2\n");
        assert!(Message::parse(&line).is_ok());
    }
}
