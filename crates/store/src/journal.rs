//! The operation journal: the intent of every multi-step operation, written before acting and
//! removed on commit, so recovery on the next start knows what was half-done.

use std::fmt;
use std::str::FromStr;

use rusqlite::params;

use crate::{Store, StoreError};

/// A multi-step operation on one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Folder, bundle, root filesystem, row.
    Create,
    /// Supervisor spawn and workload start.
    Start,
    /// Signal, wait, escalate.
    Stop,
    /// Stop, tear down, delete folder and row.
    Remove,
}

impl Op {
    /// The name stored in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Start => "start",
            Op::Stop => "stop",
            Op::Remove => "remove",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Op {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "create" => Ok(Op::Create),
            "start" => Ok(Op::Start),
            "stop" => Ok(Op::Stop),
            "remove" => Ok(Op::Remove),
            _ => Err(format!("unknown op {s:?}")),
        }
    }
}

/// One unfinished operation.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalEntry {
    /// Row id.
    pub id: i64,
    /// The instance operated on.
    pub instance_id: String,
    /// The operation.
    pub op: Op,
    /// The last step reached (free-form, for diagnosis).
    pub step: String,
    /// When it began (ms since the epoch).
    pub created_at: i64,
}

impl Store {
    /// Record the intent to run `op` on an existing instance.
    pub fn journal_begin(
        &mut self,
        instance_id: &str,
        op: Op,
        step: &str,
    ) -> Result<i64, StoreError> {
        self.conn.execute(
            "INSERT INTO journal (instance_id, op, step, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![instance_id, op.as_str(), step, crate::now_ms()],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Record progress of an operation.
    pub fn journal_step(&mut self, id: i64, step: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE journal SET step = ?2 WHERE id = ?1",
            params![id, step],
        )?;
        Ok(())
    }

    /// The operation committed: forget its intent.
    pub fn journal_commit(&mut self, id: i64) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM journal WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Every unfinished operation, oldest first.
    pub fn journal_pending(&self) -> Result<Vec<JournalEntry>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, instance_id, op, step, created_at FROM journal ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, instance_id, op, step, created_at) = row?;
            let op = op.parse().map_err(|what| StoreError::Corrupt {
                id: instance_id.clone(),
                what,
            })?;
            out.push(JournalEntry {
                id,
                instance_id,
                op,
                step,
                created_at,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::{InstanceRecord, Kind, Op, State, Store, StoreError};

    fn rec(id: &str, name: &str) -> InstanceRecord {
        InstanceRecord {
            id: id.into(),
            kind: Kind::Container,
            name: name.into(),
            state: State::Creating,
            spec: serde_json::json!({"image": "busybox"}),
            created_at: crate::now_ms(),
            started_at: None,
            finished_at: None,
            exit_code: None,
            supervisor_pid: None,
            supervisor_start: None,
            reason: None,
            restart_count: 0,
        }
    }

    #[test]
    fn names_are_unique_per_kind_only() {
        let mut s = Store::open_in_memory().unwrap();
        s.insert_instance(&rec("a1", "web"), Op::Create, "begin")
            .unwrap();
        let err = s
            .insert_instance(&rec("a2", "web"), Op::Create, "begin")
            .unwrap_err();
        assert!(matches!(err, StoreError::NameTaken { .. }), "{err}");
        let mut vm = rec("a3", "web");
        vm.kind = Kind::Vm;
        s.insert_instance(&vm, Op::Create, "begin").unwrap();
        assert_eq!(s.list_instances(Some(Kind::Container)).unwrap().len(), 1);
        assert_eq!(s.list_instances(None).unwrap().len(), 2);
    }

    #[test]
    fn journal_survives_until_commit_and_cascades_on_delete() {
        let mut s = Store::open_in_memory().unwrap();
        let j = s
            .insert_instance(&rec("b1", "x"), Op::Create, "begin")
            .unwrap();
        s.journal_step(j, "rootfs").unwrap();
        let pending = s.journal_pending().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].step, "rootfs");
        s.journal_commit(j).unwrap();
        assert!(s.journal_pending().unwrap().is_empty());
        s.journal_begin("b1", Op::Remove, "begin").unwrap();
        s.delete_instance("b1").unwrap();
        assert!(s.journal_pending().unwrap().is_empty());
        assert!(
            s.journal_begin("nope", Op::Stop, "x").is_err(),
            "foreign key"
        );
    }

    #[test]
    fn illegal_transition_is_refused() {
        let mut s = Store::open_in_memory().unwrap();
        s.insert_instance(&rec("c1", "y"), Op::Create, "begin")
            .unwrap();
        let mut r = s.get_instance("c1").unwrap();
        r.state = State::Paused;
        assert!(matches!(
            s.update_instance(&r).unwrap_err(),
            StoreError::BadTransition { .. }
        ));
        r.state = State::Created;
        s.update_instance(&r).unwrap();
        assert_eq!(s.get_instance("c1").unwrap().state, State::Created);
    }

    #[test]
    fn file_database_is_wal_and_migrated_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let s = Store::open(&path).unwrap();
        assert_eq!(
            s.schema_version().unwrap(),
            crate::schema::MIGRATIONS.len() as u32
        );
        drop(s);
        let s = Store::open(&path).unwrap();
        let mode: String = s
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn find_by_name_id_or_prefix() {
        let mut s = Store::open_in_memory().unwrap();
        s.insert_instance(&rec("abcdef01", "n1"), Op::Create, "b")
            .unwrap();
        s.insert_instance(&rec("abcdef02", "n2"), Op::Create, "b")
            .unwrap();
        assert_eq!(s.find_instance(None, "n2").unwrap().unwrap().id, "abcdef02");
        assert_eq!(
            s.find_instance(None, "abcdef01").unwrap().unwrap().name,
            "n1"
        );
        assert!(
            s.find_instance(None, "abcd").unwrap().is_none(),
            "ambiguous"
        );
        assert!(s.find_instance(None, "zzz").unwrap().is_none());
    }
}
