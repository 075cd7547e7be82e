//! The network layer's state in the database: networks, address leases and the link-name
//! serial, as [`NetStore`], corral-net's [`StateStore`].
//!
//! Tables (migration 3): `networks` (name, subnet, gateway, bridge), `net_leases` (one row per
//! instance on a network: its address, MAC, kind, host link, DNS names and published ports as
//! JSON; `UNIQUE (network, ip)` and `UNIQUE (host_link)`) and `net_meta` (`next_serial`, and
//! `json_imported` once an older root's `net.json` was taken in).
//!
//! Every [`StateStore::update`] is one `BEGIN IMMEDIATE` transaction: it takes SQLite's write
//! lock before it reads, so two allocations (two threads, two connections, two processes) are
//! serialised and never see the same free address; the unique index refuses a duplicate even
//! if a caller's logic were wrong. Only the rows that changed are written.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use corral_net::{
    EndpointKind, EndpointRecord, FileStore, NetState, NetworkRecord, PortMapping, StateError,
    StateStore,
};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::StoreError;

/// The meta key of the link-name serial.
const SERIAL_KEY: &str = "next_serial";
/// The meta key set when `net.json` was imported (its value: ms since the epoch).
const IMPORTED_KEY: &str = "json_imported";

/// corral-net's state in the state database, on a connection of its own.
pub struct NetStore {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for NetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What [`NetStore::import_json`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Import {
    /// There was no `net.json`.
    NoFile,
    /// It was imported now: this many networks and leases; the file was renamed to `renamed`.
    Imported {
        /// Networks taken in.
        networks: usize,
        /// Leases taken in.
        leases: usize,
        /// Where the file went (`net.json.imported`).
        renamed: PathBuf,
    },
    /// The database already held it (a crash came between the import and the rename); the
    /// file was renamed to `renamed`.
    AlreadyImported {
        /// Where the file went.
        renamed: PathBuf,
    },
}

impl From<StoreError> for StateError {
    fn from(e: StoreError) -> Self {
        StateError::Backend {
            store: "the state database".into(),
            reason: e.to_string(),
        }
    }
}

fn kind_str(k: EndpointKind) -> &'static str {
    match k {
        EndpointKind::Veth => "veth",
        EndpointKind::Tap => "tap",
    }
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

impl NetStore {
    /// Open (creating and migrating if needed) the database at `path` on a new connection.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(NetStore {
            conn: Mutex::new(crate::open_connection(path)?),
            path: path.to_path_buf(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic in another user cannot leave a transaction open (it rolls back on drop).
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn backend(&self, e: impl std::fmt::Display) -> StateError {
        StateError::Backend {
            store: self.path.display().to_string(),
            reason: e.to_string(),
        }
    }

    fn corrupt(&self, what: String) -> StateError {
        StateError::Corrupt {
            path: self.path.clone(),
            reason: what,
        }
    }

    /// Read the whole state inside `tx`.
    fn read(&self, tx: &Transaction<'_>) -> Result<NetState, StateError> {
        let sql = |e: rusqlite::Error| self.backend(e);
        let mut state = NetState::default();
        let mut stmt = tx
            .prepare("SELECT name, subnet, gateway, bridge FROM networks")
            .map_err(sql)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(sql)?;
        for row in rows {
            let (name, subnet, gateway, bridge) = row.map_err(sql)?;
            let bad = |field: &str, v: &str| self.corrupt(format!("network {name}: {field} {v:?}"));
            let rec = NetworkRecord {
                subnet: subnet.parse().map_err(|_| bad("subnet", &subnet))?,
                gateway: gateway.parse().map_err(|_| bad("gateway", &gateway))?,
                name: name.clone(),
                bridge,
            };
            state.networks.insert(name, rec);
        }
        let mut stmt = tx
            .prepare(
                "SELECT instance, network, ip, mac, kind, host_link, names, ports FROM net_leases",
            )
            .map_err(sql)?;
        let rows = stmt
            .query_map([], |r| {
                let cols: rusqlite::Result<Vec<String>> = (0..8).map(|i| r.get(i)).collect();
                cols
            })
            .map_err(sql)?;
        for row in rows {
            let c = row.map_err(sql)?;
            let bad =
                |field: &str, v: &str| self.corrupt(format!("lease of {}: {field} {v:?}", c[0]));
            let kind = match c[4].as_str() {
                "veth" => EndpointKind::Veth,
                "tap" => EndpointKind::Tap,
                other => return Err(bad("kind", other)),
            };
            let names: Vec<String> =
                serde_json::from_str(&c[6]).map_err(|_| bad("names", &c[6]))?;
            let ports: Vec<PortMapping> =
                serde_json::from_str(&c[7]).map_err(|_| bad("ports", &c[7]))?;
            let rec = EndpointRecord {
                instance: c[0].clone(),
                network: c[1].clone(),
                ip: c[2].parse().map_err(|_| bad("ip", &c[2]))?,
                mac: parse_mac(&c[3]).ok_or_else(|| bad("mac", &c[3]))?,
                kind,
                host_link: c[5].clone(),
                names,
                ports,
            };
            state.endpoints.insert(rec.instance.clone(), rec);
        }
        let serial: Option<i64> = tx
            .query_row(
                "SELECT value FROM net_meta WHERE key = ?1",
                [SERIAL_KEY],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)?;
        state.next_serial = serial.unwrap_or(0).max(0) as u64;
        Ok(state)
    }

    /// Write the rows of `new` that differ from `old` inside `tx`.
    fn write(
        &self,
        tx: &Transaction<'_>,
        old: &NetState,
        new: &NetState,
    ) -> Result<(), StateError> {
        let sql = |e: rusqlite::Error| self.backend(e);
        // Leases first out and last in, so a network is never removed under its leases and a
        // changed lease never clashes with its own old row.
        for (id, ep) in &old.endpoints {
            if new.endpoints.get(id) != Some(ep) {
                tx.execute("DELETE FROM net_leases WHERE instance = ?1", [id])
                    .map_err(sql)?;
            }
        }
        for name in old.networks.keys() {
            if !new.networks.contains_key(name) {
                tx.execute("DELETE FROM networks WHERE name = ?1", [name])
                    .map_err(sql)?;
            }
        }
        for (name, n) in &new.networks {
            if old.networks.get(name) != Some(n) {
                tx.execute(
                    "INSERT INTO networks (name, subnet, gateway, bridge) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(name) DO UPDATE SET
                       subnet = excluded.subnet, gateway = excluded.gateway, bridge = excluded.bridge",
                    params![name, n.subnet.to_string(), n.gateway.to_string(), n.bridge],
                )
                .map_err(sql)?;
            }
        }
        for (id, ep) in &new.endpoints {
            if old.endpoints.get(id) == Some(ep) {
                continue;
            }
            tx.execute(
                "INSERT INTO net_leases (instance, network, ip, mac, kind, host_link, names, ports)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    id,
                    ep.network,
                    ep.ip.to_string(),
                    corral_net::ipam::format_mac(ep.mac),
                    kind_str(ep.kind),
                    ep.host_link,
                    json(&ep.names),
                    json(&ep.ports),
                ],
            )
            .map_err(|e| self.lease_error(ep, e))?;
        }
        if old.next_serial != new.next_serial || !self.has_serial(tx)? {
            tx.execute(
                "INSERT INTO net_meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![SERIAL_KEY, new.next_serial as i64],
            )
            .map_err(sql)?;
        }
        Ok(())
    }

    fn has_serial(&self, conn: &Connection) -> Result<bool, StateError> {
        conn.query_row(
            "SELECT 1 FROM net_meta WHERE key = ?1",
            [SERIAL_KEY],
            |_| Ok(()),
        )
        .optional()
        .map(|o| o.is_some())
        .map_err(|e| self.backend(e))
    }

    /// A failed lease insert, in words (a duplicate address is named as such).
    fn lease_error(&self, ep: &EndpointRecord, e: rusqlite::Error) -> StateError {
        let text = e.to_string();
        if text.contains("net_leases.network, net_leases.ip") {
            self.backend(format!(
                "address {} is already leased on network {} (lease of {} refused)",
                ep.ip, ep.network, ep.instance
            ))
        } else {
            self.backend(format!("lease of {}: {text}", ep.instance))
        }
    }

    fn begin<'c>(&self, conn: &'c mut Connection) -> Result<Transaction<'c>, StateError> {
        conn.transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.backend(e))
    }

    /// Take in `<dir>/net.json` (an older corral's network state) once: its networks, leases
    /// and serial are added to the database in one transaction, then the file is renamed to
    /// `net.json.imported`. Records the database already has are kept; a lease that clashes
    /// with one of them (same address or link) fails the import and leaves both untouched.
    pub fn import_json(&self, dir: &Path) -> Result<Import, StateError> {
        let file = dir.join("net.json");
        if !file.try_exists().map_err(|e| StateError::Io {
            path: file.clone(),
            source: e,
        })? {
            return Ok(Import::NoFile);
        }
        let from_file = FileStore::new(dir).load()?;
        let renamed = dir.join("net.json.imported");
        let mut conn = self.lock();
        let tx = self.begin(&mut conn)?;
        let done: Option<i64> = tx
            .query_row(
                "SELECT value FROM net_meta WHERE key = ?1",
                [IMPORTED_KEY],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.backend(e))?;
        let outcome = if done.is_some() {
            drop(tx);
            Import::AlreadyImported {
                renamed: renamed.clone(),
            }
        } else {
            let old = self.read(&tx)?;
            let mut new = old.clone();
            for (k, v) in &from_file.networks {
                new.networks.entry(k.clone()).or_insert_with(|| v.clone());
            }
            for (k, v) in &from_file.endpoints {
                new.endpoints.entry(k.clone()).or_insert_with(|| v.clone());
            }
            new.next_serial = new.next_serial.max(from_file.next_serial);
            self.write(&tx, &old, &new)?;
            tx.execute(
                "INSERT INTO net_meta (key, value) VALUES (?1, ?2)",
                params![IMPORTED_KEY, crate::now_ms()],
            )
            .map_err(|e| self.backend(e))?;
            tx.commit().map_err(|e| self.backend(e))?;
            Import::Imported {
                networks: from_file.networks.len(),
                leases: from_file.endpoints.len(),
                renamed: renamed.clone(),
            }
        };
        std::fs::rename(&file, &renamed).map_err(|e| StateError::Io {
            path: file.clone(),
            source: e,
        })?;
        Ok(outcome)
    }
}

/// The JSON text of a list column (names, ports).
fn json<T: serde::Serialize>(v: &[T]) -> String {
    serde_json::to_string(v).expect("names and ports serialize")
}

impl StateStore for NetStore {
    fn load(&self) -> Result<NetState, StateError> {
        let mut conn = self.lock();
        // A deferred (read) transaction: one consistent snapshot of the three tables.
        let tx = conn.transaction().map_err(|e| self.backend(e))?;
        self.read(&tx)
    }

    fn update<T, E: From<StateError>>(
        &self,
        f: impl FnOnce(&mut NetState) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut conn = self.lock();
        let tx = self.begin(&mut conn)?;
        let old = self.read(&tx)?;
        let mut new = old.clone();
        // On an error from `f` the transaction is dropped, which rolls it back.
        let out = f(&mut new)?;
        self.write(&tx, &old, &new)?;
        tx.commit().map_err(|e| self.backend(e))?;
        Ok(out)
    }

    fn recorded(&self) -> Result<bool, StateError> {
        self.has_serial(&self.lock())
    }
}

#[cfg(test)]
#[path = "networks_tests.rs"]
mod tests;
