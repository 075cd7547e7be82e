//! corral's state store: the SQLite schema, its migrations and typed repositories.
//!
//! One database file (`state.db` under the root dir) in WAL mode with foreign keys on. Every
//! object the daemon owns is a row of `instances` (unique name per kind); every multi-step
//! operation writes a `journal` row before it acts and removes it when it commits, so a daemon
//! that dies half-way finds the unfinished intent on its next start.

mod apps;
mod instances;
mod journal;
mod networks;
mod schema;
mod state;

use std::path::{Path, PathBuf};

use rusqlite::Connection;

pub use apps::AppRecord;
pub use instances::{InstanceRecord, Kind};
pub use journal::{JournalEntry, Op};
pub use networks::{Import, NetStore};
pub use state::State;

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or configured.
    #[error("cannot open state database {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// A schema migration failed.
    #[error("schema migration to version {version} failed: {source}")]
    Migrate {
        /// The version being migrated to.
        version: u32,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// The database was written by a newer corral.
    #[error("state database schema version {found} is newer than this corral knows ({known})")]
    TooNew {
        /// Version in the file.
        found: u32,
        /// Latest version this build knows.
        known: u32,
    },
    /// Another object of the same kind already has this name.
    #[error("a {kind} named {name:?} already exists")]
    NameTaken {
        /// The object kind.
        kind: Kind,
        /// The contested name.
        name: String,
    },
    /// No object with this id.
    #[error("no instance with id {0}")]
    NotFound(String),
    /// No app with this name.
    #[error("no app named {0:?}")]
    AppNotFound(String),
    /// A lifecycle change the transition table forbids.
    #[error("{id}: cannot go from {from} to {to}")]
    BadTransition {
        /// The object.
        id: String,
        /// Its current state.
        from: State,
        /// The requested state.
        to: State,
    },
    /// A stored value could not be decoded.
    #[error("corrupt row for {id}: {what}")]
    Corrupt {
        /// The object.
        id: String,
        /// What was wrong.
        what: String,
    },
    /// Any other SQLite failure.
    #[error("state database: {0}")]
    Sql(#[from] rusqlite::Error),
}

/// The open state database.
pub struct Store {
    conn: Connection,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Open (creating if needed) the database at `path`, in WAL mode, and migrate it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Store {
            conn: open_connection(path)?,
        })
    }

    /// An in-memory database (tests).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory()?;
        conn.pragma_update(None, "foreign_keys", true)?;
        let mut store = Store { conn };
        schema::migrate(&mut store.conn)?;
        Ok(store)
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }
}

/// A connection to the database at `path` (created if needed) in WAL mode with foreign keys on,
/// migrated to the latest schema. Each [`Store`] and [`NetStore`] has its own.
fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    let mut conn = Connection::open(path).map_err(open_err)?;
    conn.pragma_update(None, "journal_mode", "wal")
        .map_err(open_err)?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(open_err)?;
    conn.pragma_update(None, "synchronous", "normal")
        .map_err(open_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(open_err)?;
    schema::migrate(&mut conn)?;
    Ok(conn)
}

/// Milliseconds since the Unix epoch, the store's time unit.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
