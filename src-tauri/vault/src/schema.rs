//! Numbered SQL migrations and the schema version check (`PRAGMA user_version`).

use rusqlite::Connection;

use crate::error::{Result, VaultError};

/// Migrations in order; migration `i` (1-based) brings the schema to version `i`.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_app_state.sql"),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

fn version(conn: &Connection) -> Result<u32> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

/// Applies every migration above the file's version, each in its own transaction.
pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    let v = version(conn)?;
    if v > SCHEMA_VERSION {
        return Err(VaultError::NewerSchema {
            found: v,
            supported: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(v as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as u32)?;
        tx.commit()?;
    }
    Ok(())
}

/// On open: a file with no schema is not a vault; a newer one is refused; older ones migrate.
pub(crate) fn check_and_migrate(conn: &mut Connection) -> Result<()> {
    let v = version(conn)?;
    if v == 0 {
        return Err(VaultError::BadHeader("not a Carekey vault (no schema)"));
    }
    migrate(conn)
}
