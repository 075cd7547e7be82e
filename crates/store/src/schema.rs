//! The schema and its migrations. `PRAGMA user_version` holds the applied version; each
//! migration runs in one transaction, so a crash leaves the previous version intact.

use rusqlite::Connection;

use crate::StoreError;

/// Migrations in order; index + 1 is the version each one produces.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: instances (VMs and containers) and the operation journal.
    "CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('container', 'vm')),
        name TEXT NOT NULL,
        state TEXT NOT NULL,
        spec TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        started_at INTEGER,
        finished_at INTEGER,
        exit_code INTEGER,
        supervisor_pid INTEGER,
        supervisor_start INTEGER,
        reason TEXT,
        restart_count INTEGER NOT NULL DEFAULT 0,
        UNIQUE (kind, name)
    );
    CREATE TABLE journal (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        instance_id TEXT NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
        op TEXT NOT NULL,
        step TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX journal_instance ON journal(instance_id);",
    // 2: apps: each app's desired state (the orchestrator's model, JSON) and, for Kubernetes,
    // the applied objects it is derived from.
    "CREATE TABLE apps (
        name TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        model TEXT NOT NULL,
        manifests TEXT NOT NULL DEFAULT '{}',
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );",
    // 3: the network layer's state (until now `<root>/net/net.json`): networks, one address
    // lease per instance on a network (never two of one address on one network), and the
    // link-name serial.
    "CREATE TABLE networks (
        name TEXT PRIMARY KEY,
        subnet TEXT NOT NULL,
        gateway TEXT NOT NULL,
        bridge TEXT NOT NULL UNIQUE
    );
    CREATE TABLE net_leases (
        instance TEXT PRIMARY KEY,
        network TEXT NOT NULL REFERENCES networks(name),
        ip TEXT NOT NULL,
        mac TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('veth', 'tap')),
        host_link TEXT NOT NULL UNIQUE,
        names TEXT NOT NULL,
        ports TEXT NOT NULL,
        UNIQUE (network, ip)
    );
    CREATE TABLE net_meta (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );",
    // 4: what an app's reconciler must not forget across daemon restarts (restart counts and
    // CrashLoopBackOff deadlines per replica), as JSON.
    "ALTER TABLE apps ADD COLUMN runtime TEXT NOT NULL DEFAULT '{}';",
];

/// Bring the database up to the latest schema.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = MIGRATIONS.len() as u32;
    if current > known {
        return Err(StoreError::TooNew {
            found: current,
            known,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as u32 + 1;
        let wrap = |source| StoreError::Migrate { version, source };
        let tx = conn.transaction().map_err(wrap)?;
        tx.execute_batch(sql).map_err(wrap)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(wrap)?;
        tx.commit().map_err(wrap)?;
        tracing::info!(version, "state database migrated");
    }
    Ok(())
}
