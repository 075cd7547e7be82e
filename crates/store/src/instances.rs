//! The `instances` repository: VMs and containers, one row each.

use std::fmt;
use std::str::FromStr;

use rusqlite::{params, OptionalExtension, Row};

use crate::{State, Store, StoreError};

/// What an instance is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A container supervised by a `corral shim`.
    Container,
    /// A VM supervised by a `corral vmm`.
    Vm,
}

impl Kind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Container => "container",
            Kind::Vm => "vm",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "container" => Ok(Kind::Container),
            "vm" => Ok(Kind::Vm),
            _ => Err(format!("unknown kind {s:?}")),
        }
    }
}

/// One VM or container as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRecord {
    /// Stable id (64 hex digits).
    pub id: String,
    /// VM or container.
    pub kind: Kind,
    /// Unique per kind.
    pub name: String,
    /// Lifecycle state.
    pub state: State,
    /// Kind-specific definition (the container's run request, the VM's config), as JSON.
    pub spec: serde_json::Value,
    /// Creation time (ms since the epoch).
    pub created_at: i64,
    /// Last start (ms since the epoch).
    pub started_at: Option<i64>,
    /// Last exit (ms since the epoch).
    pub finished_at: Option<i64>,
    /// Exit status of the last run (128+N for signal N).
    pub exit_code: Option<i32>,
    /// Pid of the supervisor process (shim or vmm) while one runs.
    pub supervisor_pid: Option<i32>,
    /// The supervisor's start time in clock ticks since boot, to tell a reused pid apart.
    pub supervisor_start: Option<u64>,
    /// Why the instance is in its state, when that is not obvious (e.g. "supervisor died").
    pub reason: Option<String>,
    /// How many times the restart policy restarted it.
    pub restart_count: i64,
}

const COLUMNS: &str = "id, kind, name, state, spec, created_at, started_at, finished_at, \
     exit_code, supervisor_pid, supervisor_start, reason, restart_count";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Result<InstanceRecord, StoreError>> {
    let id: String = row.get(0)?;
    let kind: String = row.get(1)?;
    let state: String = row.get(3)?;
    let spec: String = row.get(4)?;
    let corrupt = |what: String| StoreError::Corrupt {
        id: id.clone(),
        what,
    };
    let kind = match kind.parse() {
        Ok(k) => k,
        Err(e) => return Ok(Err(corrupt(e))),
    };
    let state = match state.parse() {
        Ok(s) => s,
        Err(e) => return Ok(Err(corrupt(e))),
    };
    let spec = match serde_json::from_str(&spec) {
        Ok(s) => s,
        Err(e) => return Ok(Err(corrupt(format!("spec: {e}")))),
    };
    Ok(Ok(InstanceRecord {
        id: id.clone(),
        kind,
        name: row.get(2)?,
        state,
        spec,
        created_at: row.get(5)?,
        started_at: row.get(6)?,
        finished_at: row.get(7)?,
        exit_code: row.get(8)?,
        supervisor_pid: row.get(9)?,
        supervisor_start: row.get::<_, Option<i64>>(10)?.map(|v| v as u64),
        reason: row.get(11)?,
        restart_count: row.get(12)?,
    }))
}

impl Store {
    /// Insert a new instance together with the journal entry of the operation creating it,
    /// in one transaction. Fails with `NameTaken` when the name is in use for that kind.
    pub fn insert_instance(
        &mut self,
        rec: &InstanceRecord,
        op: crate::Op,
        step: &str,
    ) -> Result<i64, StoreError> {
        let tx = self.conn.transaction()?;
        let res = tx.execute(
            &format!("INSERT INTO instances ({COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13)"),
            params![
                rec.id,
                rec.kind.as_str(),
                rec.name,
                rec.state.as_str(),
                rec.spec.to_string(),
                rec.created_at,
                rec.started_at,
                rec.finished_at,
                rec.exit_code,
                rec.supervisor_pid,
                rec.supervisor_start.map(|v| v as i64),
                rec.reason,
                rec.restart_count,
            ],
        );
        match res {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return Err(StoreError::NameTaken {
                    kind: rec.kind,
                    name: rec.name.clone(),
                });
            }
            r => {
                r?;
            }
        }
        tx.execute(
            "INSERT INTO journal (instance_id, op, step, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![rec.id, op.as_str(), step, crate::now_ms()],
        )?;
        let jid = tx.last_insert_rowid();
        tx.commit()?;
        Ok(jid)
    }

    /// One instance by id.
    pub fn get_instance(&self, id: &str) -> Result<InstanceRecord, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM instances WHERE id = ?1"),
                [id],
                from_row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?
    }

    /// Find an instance of `kind` by exact name, exact id or unique id prefix.
    pub fn find_instance(
        &self,
        kind: Option<Kind>,
        key: &str,
    ) -> Result<Option<InstanceRecord>, StoreError> {
        let all = self.list_instances(kind)?;
        if let Some(r) = all.iter().find(|r| r.name == key || r.id == key) {
            return Ok(Some(r.clone()));
        }
        if key.len() >= 4 && key.chars().all(|c| c.is_ascii_hexdigit()) {
            let mut hits = all.into_iter().filter(|r| r.id.starts_with(key));
            if let (Some(first), None) = (hits.next(), hits.next()) {
                return Ok(Some(first));
            }
        }
        Ok(None)
    }

    /// All instances, optionally of one kind, oldest first.
    pub fn list_instances(&self, kind: Option<Kind>) -> Result<Vec<InstanceRecord>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM instances WHERE ?1 IS NULL OR kind = ?1 ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map([kind.map(|k| k.as_str())], from_row)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row??);
        }
        Ok(out)
    }

    /// Change an instance's state through the transition table, with the supervisor and exit
    /// fields given in `update`.
    pub fn update_instance(&mut self, rec: &InstanceRecord) -> Result<(), StoreError> {
        let current = self.get_instance(&rec.id)?;
        if current.state != rec.state && !current.state.valid_transition(rec.state) {
            return Err(StoreError::BadTransition {
                id: rec.id.clone(),
                from: current.state,
                to: rec.state,
            });
        }
        self.conn.execute(
            "UPDATE instances SET state=?2, spec=?3, started_at=?4, finished_at=?5, exit_code=?6, \
             supervisor_pid=?7, supervisor_start=?8, reason=?9, restart_count=?10 WHERE id=?1",
            params![
                rec.id,
                rec.state.as_str(),
                rec.spec.to_string(),
                rec.started_at,
                rec.finished_at,
                rec.exit_code,
                rec.supervisor_pid,
                rec.supervisor_start.map(|v| v as i64),
                rec.reason,
                rec.restart_count,
            ],
        )?;
        Ok(())
    }

    /// Delete an instance; its journal entries go with it (the removal's commit point).
    pub fn delete_instance(&mut self, id: &str) -> Result<(), StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM instances WHERE id = ?1", [id])?;
        if n == 0 {
            return Err(StoreError::NotFound(id.to_string()));
        }
        Ok(())
    }
}
