//! The `apps` repository: one row per app with its desired state (the orchestrator's model as
//! JSON, which carries its own format version) and, for Kubernetes apps, the applied objects
//! (`Kind/name` → YAML document) it was derived from, so a later apply merges with them.

use rusqlite::{params, OptionalExtension, Row};

use crate::{Store, StoreError};

/// One app as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AppRecord {
    /// The project (Compose) or namespace (Kubernetes) name.
    pub name: String,
    /// `compose` or `kubernetes`.
    pub source: String,
    /// The desired state (the orchestrator's `App`), as JSON.
    pub model: serde_json::Value,
    /// Applied Kubernetes objects by `Kind/name` (empty for Compose), as JSON.
    pub manifests: serde_json::Value,
    /// First `up`/`apply` (ms since the epoch).
    pub created_at: i64,
    /// Last change (ms since the epoch).
    pub updated_at: i64,
}

const COLUMNS: &str = "name, source, model, manifests, created_at, updated_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Result<AppRecord, StoreError>> {
    let name: String = row.get(0)?;
    let model: String = row.get(2)?;
    let manifests: String = row.get(3)?;
    let decode = |what: &str, text: &str| {
        serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
            id: name.clone(),
            what: format!("{what}: {e}"),
        })
    };
    let (model, manifests) = match (decode("model", &model), decode("manifests", &manifests)) {
        (Ok(m), Ok(x)) => (m, x),
        (Err(e), _) | (_, Err(e)) => return Ok(Err(e)),
    };
    Ok(Ok(AppRecord {
        name: name.clone(),
        source: row.get(1)?,
        model,
        manifests,
        created_at: row.get(4)?,
        updated_at: row.get(5)?,
    }))
}

impl Store {
    /// Insert or replace an app's desired state (keeps its creation time).
    pub fn put_app(&mut self, rec: &AppRecord) -> Result<(), StoreError> {
        self.conn.execute(
            &format!(
                "INSERT INTO apps ({COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6) \
                 ON CONFLICT(name) DO UPDATE SET source=?2, model=?3, manifests=?4, updated_at=?6"
            ),
            params![
                rec.name,
                rec.source,
                rec.model.to_string(),
                rec.manifests.to_string(),
                rec.created_at,
                rec.updated_at,
            ],
        )?;
        Ok(())
    }

    /// One app by name, if stored.
    pub fn get_app(&self, name: &str) -> Result<Option<AppRecord>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM apps WHERE name = ?1"),
                [name],
                from_row,
            )
            .optional()?
            .transpose()
    }

    /// Every app, by name.
    pub fn list_apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {COLUMNS} FROM apps ORDER BY name"))?;
        let rows = stmt.query_map([], from_row)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row??);
        }
        Ok(out)
    }

    /// Record an app's runtime memory (the reconciler's restart bookkeeping), beside its
    /// desired state; `put_app` leaves it as it is.
    pub fn set_app_runtime(
        &mut self,
        name: &str,
        runtime: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let n = self.conn.execute(
            "UPDATE apps SET runtime = ?2 WHERE name = ?1",
            params![name, runtime.to_string()],
        )?;
        if n == 0 {
            return Err(StoreError::AppNotFound(name.to_string()));
        }
        Ok(())
    }

    /// An app's runtime memory (`{}` until set), if the app is stored.
    pub fn app_runtime(&self, name: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let text: Option<String> = self
            .conn
            .query_row("SELECT runtime FROM apps WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| StoreError::Corrupt {
                id: name.to_string(),
                what: format!("runtime: {e}"),
            })
        })
        .transpose()
    }

    /// Forget an app's desired state.
    pub fn delete_app(&mut self, name: &str) -> Result<(), StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM apps WHERE name = ?1", [name])?;
        if n == 0 {
            return Err(StoreError::AppNotFound(name.to_string()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, replicas: u32) -> AppRecord {
        AppRecord {
            name: name.into(),
            source: "compose".into(),
            model: serde_json::json!({ "services": { "web": { "replicas": replicas } } }),
            manifests: serde_json::json!({}),
            created_at: 1,
            updated_at: 1,
        }
    }

    #[test]
    fn apps_are_stored_updated_listed_and_deleted() {
        let mut s = Store::open_in_memory().unwrap();
        assert_eq!(
            s.schema_version().unwrap(),
            crate::schema::MIGRATIONS.len() as u32
        );
        s.put_app(&rec("b", 1)).unwrap();
        s.put_app(&rec("a", 1)).unwrap();
        let mut changed = rec("a", 3);
        changed.created_at = 99;
        changed.updated_at = 5;
        s.put_app(&changed).unwrap();
        let a = s.get_app("a").unwrap().unwrap();
        assert_eq!(a.model["services"]["web"]["replicas"], 3);
        assert_eq!(
            (a.created_at, a.updated_at),
            (1, 5),
            "creation time is kept"
        );
        let names: Vec<_> = s.list_apps().unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["a", "b"]);
        s.delete_app("a").unwrap();
        assert!(s.get_app("a").unwrap().is_none());
        assert!(matches!(
            s.delete_app("a"),
            Err(StoreError::AppNotFound(n)) if n == "a"
        ));
    }

    #[test]
    fn runtime_memory_is_kept_apart_from_the_desired_state() {
        let mut s = Store::open_in_memory().unwrap();
        assert!(s.app_runtime("a").unwrap().is_none());
        assert!(matches!(
            s.set_app_runtime("a", &serde_json::json!({})),
            Err(StoreError::AppNotFound(_))
        ));
        s.put_app(&rec("a", 1)).unwrap();
        assert_eq!(s.app_runtime("a").unwrap(), Some(serde_json::json!({})));
        let mem = serde_json::json!({ "a-web-1": { "count": 4 } });
        s.set_app_runtime("a", &mem).unwrap();
        // Changing the desired state (scale, apply) keeps what the reconciler remembers.
        s.put_app(&rec("a", 3)).unwrap();
        assert_eq!(s.app_runtime("a").unwrap(), Some(mem));
        s.delete_app("a").unwrap();
        assert!(s.app_runtime("a").unwrap().is_none());
    }

    #[test]
    fn a_version_1_database_gains_the_apps_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(crate::schema::MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
        }
        let mut s = Store::open(&path).unwrap();
        assert_eq!(
            s.schema_version().unwrap(),
            crate::schema::MIGRATIONS.len() as u32
        );
        s.put_app(&rec("x", 2)).unwrap();
        assert!(s.get_app("x").unwrap().is_some());
    }
}
