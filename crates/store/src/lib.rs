//! corral's state store: the SQLite schema, its migrations and typed repositories.
