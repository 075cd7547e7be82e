//! What the network layer has created and handed out, and where that record is kept.
//!
//! The record is one [`NetState`]: networks (name, subnet, bridge), endpoints (one per instance:
//! its address, the host-side link corral created for it and its published ports) and a serial
//! counter for link names. Everything corral creates on the host is written here *before* it is
//! created, so a crash at any point leaves a record that [`crate::NetManager::reconcile`] can
//! clean up.
//!
//! Storage is behind [`StateStore`]: the daemon keeps it in its SQLite state store (corral-store's
//! `NetStore`, which also imports an older root's `net.json` once); [`FileStore`] keeps it in one
//! JSON file (the `netctl` example, the host tests). File format (version 1), `<dir>/net.json`:
//!
//! ```text
//! {"version": 1, "crc32": <CRC-32 of the compact JSON of "state">, "state": {NetState}}
//! ```
//!
//! Writers hold an exclusive `flock` on `<dir>/net.lock`, write `net.json.tmp`, fsync it and
//! rename it over `net.json`, so readers see either the old or the new state, never half of one.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::ports::PortMapping;

/// Version of the state layout written by this build.
pub const STATE_VERSION: u32 = 1;

/// A network: a bridge with its own subnet; the gateway address sits on the bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    /// The network's name (`default` for corral's own).
    pub name: String,
    /// Its IPv4 subnet.
    pub subnet: Ipv4Net,
    /// The bridge's address, the instances' default gateway and DNS server.
    pub gateway: Ipv4Addr,
    /// The bridge's interface name.
    pub bridge: String,
}

/// How an instance is plugged into a bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointKind {
    /// A veth pair, the other end in a container's network namespace.
    Veth,
    /// A persistent tap device a VMM opens by name.
    Tap,
}

/// One instance's place on a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    /// The instance's id (the key the daemon knows it by).
    pub instance: String,
    /// The network it is on.
    pub network: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its MAC address (`02:…`, locally administered), stable for its lifetime.
    pub mac: [u8; 6],
    /// Veth or tap.
    pub kind: EndpointKind,
    /// The link corral created on the host (veth host end or tap), attached to the bridge.
    pub host_link: String,
    /// Names other instances of the network resolve to `ip`.
    pub names: Vec<String>,
    /// Published ports.
    pub ports: Vec<PortMapping>,
}

/// Everything the network layer has recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetState {
    /// Networks by name.
    pub networks: BTreeMap<String, NetworkRecord>,
    /// Endpoints by instance id.
    pub endpoints: BTreeMap<String, EndpointRecord>,
    /// Next serial for link names; never reused, so a stale name never hits a new link.
    pub next_serial: u64,
}

impl NetState {
    /// Endpoints on `network`.
    pub fn endpoints_on<'a>(
        &'a self,
        network: &'a str,
    ) -> impl Iterator<Item = &'a EndpointRecord> + 'a {
        self.endpoints
            .values()
            .filter(move |e| e.network == network)
    }

    /// Take the next serial.
    pub fn take_serial(&mut self) -> u64 {
        let s = self.next_serial;
        self.next_serial += 1;
        s
    }
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// I/O on a state file.
    #[error("network state {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid JSON of the expected shape.
    #[error("network state {path}: not valid: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Written by a newer corral.
    #[error("network state {path}: version {found} is newer than this corral's {STATE_VERSION}")]
    Version {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
    /// A database-backed store failed (e.g. a constraint refused a duplicate address).
    #[error("network state in {store}: {reason}")]
    Backend {
        /// The store (e.g. the database file).
        store: String,
        /// What failed.
        reason: String,
    },
}

/// Where [`NetState`] is kept. `update` runs `f` atomically: no other update interleaves, and
/// the new state is stored only when `f` returns `Ok`.
pub trait StateStore: Send + Sync {
    /// Read the current state.
    fn load(&self) -> Result<NetState, StateError>;
    /// Change the state under an exclusive lock.
    fn update<T, E: From<StateError>>(
        &self,
        f: impl FnOnce(&mut NetState) -> Result<T, E>,
    ) -> Result<T, E>;
    /// Whether anything was ever stored (a root that never used networking is left alone).
    fn recorded(&self) -> Result<bool, StateError>;
}

/// [`StateStore`] in `<dir>/net.json` (see the module docs for the format).
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    version: u32,
    crc32: u32,
    state: serde_json::Value,
}

impl FileStore {
    /// A store in `dir` (created when first written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileStore { dir: dir.into() }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("net.json")
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
        move |source| StateError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn lock(&self) -> Result<File, StateError> {
        fs::create_dir_all(&self.dir).map_err(Self::io(&self.dir))?;
        let path = self.dir.join("net.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Self::io(&path))?;
        // SAFETY: flock on a descriptor we own; the lock is released when `file` is closed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(StateError::Io {
                path,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(file)
    }

    fn read(&self) -> Result<NetState, StateError> {
        let path = self.path();
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(NetState::default()),
            Err(e) => return Err(Self::io(&path)(e)),
        };
        let corrupt = |reason: String| StateError::Corrupt {
            path: path.clone(),
            reason,
        };
        let env: Envelope = serde_json::from_slice(&text).map_err(|e| corrupt(e.to_string()))?;
        if env.version > STATE_VERSION {
            return Err(StateError::Version {
                path,
                found: env.version,
            });
        }
        let compact = serde_json::to_vec(&env.state).map_err(|e| corrupt(e.to_string()))?;
        if crc32fast::hash(&compact) != env.crc32 {
            return Err(corrupt("checksum mismatch".into()));
        }
        serde_json::from_value(env.state).map_err(|e| corrupt(e.to_string()))
    }

    fn write(&self, state: &NetState) -> Result<(), StateError> {
        let path = self.path();
        let value = serde_json::to_value(state).map_err(|e| StateError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let compact = serde_json::to_vec(&value).expect("a JSON value serializes");
        let env = Envelope {
            version: STATE_VERSION,
            crc32: crc32fast::hash(&compact),
            state: value,
        };
        let tmp = self.dir.join("net.json.tmp");
        let mut f = File::create(&tmp).map_err(Self::io(&tmp))?;
        let body = serde_json::to_vec_pretty(&env).expect("a JSON value serializes");
        f.write_all(&body).map_err(Self::io(&tmp))?;
        f.sync_all().map_err(Self::io(&tmp))?;
        fs::rename(&tmp, &path).map_err(Self::io(&path))
    }
}

impl StateStore for FileStore {
    fn load(&self) -> Result<NetState, StateError> {
        let _lock = self.lock()?;
        self.read()
    }

    fn update<T, E: From<StateError>>(
        &self,
        f: impl FnOnce(&mut NetState) -> Result<T, E>,
    ) -> Result<T, E> {
        let _lock = self.lock()?;
        let mut state = self.read()?;
        let out = f(&mut state)?;
        self.write(&state)?;
        Ok(out)
    }

    fn recorded(&self) -> Result<bool, StateError> {
        let path = self.path();
        path.try_exists().map_err(Self::io(&path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NetState {
        let mut s = NetState::default();
        s.networks.insert(
            "default".into(),
            NetworkRecord {
                name: "default".into(),
                subnet: "10.213.0.0/24".parse().unwrap(),
                gateway: "10.213.0.1".parse().unwrap(),
                bridge: "corral0".into(),
            },
        );
        s.next_serial = 7;
        s
    }

    #[test]
    fn round_trips_and_survives_a_new_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        assert_eq!(store.load().unwrap(), NetState::default());
        assert!(!store.recorded().unwrap());
        store
            .update(|s| {
                *s = sample();
                Ok::<_, StateError>(())
            })
            .unwrap();
        assert_eq!(FileStore::new(dir.path()).load().unwrap(), sample());
        assert!(store.recorded().unwrap());
        assert!(!dir.path().join("net.json.tmp").exists());
    }

    #[test]
    fn a_failed_update_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        let r: Result<(), StateError> = store.update(|s| {
            *s = sample();
            Err(StateError::Corrupt {
                path: "x".into(),
                reason: "test".into(),
            })
        });
        assert!(r.is_err());
        assert_eq!(store.load().unwrap(), NetState::default());
    }

    #[test]
    fn detects_tampering_and_newer_versions() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        store
            .update(|s| {
                *s = sample();
                Ok::<_, StateError>(())
            })
            .unwrap();
        let path = dir.path().join("net.json");
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, text.replace("corral0", "corral9")).unwrap();
        assert!(matches!(store.load(), Err(StateError::Corrupt { .. })));
        fs::write(&path, r#"{"version":99,"crc32":0,"state":{}}"#).unwrap();
        assert!(matches!(
            store.load(),
            Err(StateError::Version { found: 99, .. })
        ));
    }
}
