//! Numbered schema migrations (docs/relay.md "Storage").
//!
//! [`super::SCHEMA`] creates the tables of a fresh database with `IF NOT EXISTS` and is never
//! changed in place; every later change is a numbered migration here, applied once, in order,
//! each in its own transaction that also records its number in `relay_meta`
//! ([`SCHEMA_VERSION_NAME`]). Both backends run the same SQL (`BLOB` becomes `BYTEA` on
//! PostgreSQL); PostgreSQL runs them under the schema advisory lock, so instances starting
//! together apply each migration once.

use crate::error::{RelayError, Result};

/// `relay_meta` row holding the number of the last migration applied (u32, big-endian).
pub const SCHEMA_VERSION_NAME: &str = "schema_version";

/// Migration 1 (scoped read tokens, docs/relay-formats.md "Scoped tokens"): a token row says
/// whether it is scoped (`scoped = 1`: it reads only blobs sharing a group with it) or reads
/// the whole share (`0`, every token registered before); `token_groups` lists a scoped token's
/// groups, `blob_groups` the groups of each stored blob (by epoch, deleted with it).
pub const MIGRATION_1_SCOPED_TOKENS: &str = r#"
ALTER TABLE tokens ADD COLUMN scoped BIGINT NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS token_groups (
  share_id BLOB NOT NULL, token_hash BLOB NOT NULL, grp BLOB NOT NULL,
  PRIMARY KEY (share_id, token_hash, grp));
CREATE TABLE IF NOT EXISTS blob_groups (
  share_id BLOB NOT NULL, blob_id BLOB NOT NULL, grp BLOB NOT NULL, epoch BIGINT NOT NULL,
  PRIMARY KEY (share_id, blob_id, grp));
CREATE INDEX IF NOT EXISTS blob_groups_epoch ON blob_groups (share_id, epoch);
"#;

/// Every migration, by number (strictly increasing from 1).
pub const MIGRATIONS: &[(u32, &str)] = &[(1, MIGRATION_1_SCOPED_TOKENS)];

/// The number stored in `relay_meta` (`None` row: 0, a database older than migrations).
pub fn decode_version(value: Option<&[u8]>) -> Result<u32> {
    match value {
        None => Ok(0),
        Some(b) => b
            .try_into()
            .map(u32::from_be_bytes)
            .map_err(|_| RelayError::Storage("bad schema version".into())),
    }
}

/// The migrations a database at `current` still needs, in order.
pub fn pending(current: u32) -> impl Iterator<Item = &'static (u32, &'static str)> {
    MIGRATIONS.iter().filter(move |(n, _)| *n > current)
}

/// The newest migration number this build knows.
pub fn latest() -> u32 {
    MIGRATIONS.last().map_or(0, |(n, _)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_from_one_without_gaps() {
        for (i, (n, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*n as usize, i + 1);
        }
        assert_eq!(pending(0).count(), MIGRATIONS.len());
        assert_eq!(pending(latest()).count(), 0);
        assert_eq!(decode_version(None).expect("none"), 0);
        assert_eq!(decode_version(Some(&[0, 0, 0, 1])).expect("one"), 1);
        assert!(decode_version(Some(&[1])).is_err());
    }
}
