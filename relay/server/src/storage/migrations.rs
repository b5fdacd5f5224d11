//! Numbered schema migrations, applied by both backends at startup (docs/relay.md "Storage").
//!
//! [`super::SCHEMA`] is the schema as it was before migrations existed (every statement
//! `IF NOT EXISTS`, so it is a no-op on an existing database): migration 0. Every later change
//! is a [`Migration`] here, applied once, in order, inside one transaction with its row in
//! `schema_migrations` (SQLite: on the writer connection at open; PostgreSQL: under the
//! advisory lock that serializes instances starting together). SQL is written once, portably;
//! PostgreSQL gets `BYTEA` for `BLOB` as with the base schema.

/// One schema change.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its number: strictly increasing, never reused.
    pub version: i64,
    /// What it is for.
    pub name: &'static str,
    /// Statements, separated by `;`.
    pub sql: &'static str,
}

/// The table recording applied migrations.
pub const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (\
    version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)";

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "client quotas and the global storage cap",
        // `client` is the pseudonymous key of the client charged for the row (crate::quota);
        // NULL on rows written before this migration (charged to the global total only).
        // `storage_total` is the global byte count in 16 shards (one hot row would serialize
        // every write on PostgreSQL); shard 0 starts with every byte stored so far.
        sql: r#"
ALTER TABLE shares ADD COLUMN client BLOB;
ALTER TABLE pairings ADD COLUMN client BLOB;
ALTER TABLE mailboxes ADD COLUMN client BLOB;
ALTER TABLE messages ADD COLUMN client BLOB;
ALTER TABLE backups ADD COLUMN client BLOB;
CREATE TABLE client_usage (
  client BLOB PRIMARY KEY, objects BIGINT NOT NULL, bytes BIGINT NOT NULL);
CREATE TABLE storage_total (shard BIGINT PRIMARY KEY, bytes BIGINT NOT NULL);
INSERT INTO storage_total (shard, bytes) VALUES
  (1, 0), (2, 0), (3, 0), (4, 0), (5, 0), (6, 0), (7, 0), (8, 0),
  (9, 0), (10, 0), (11, 0), (12, 0), (13, 0), (14, 0), (15, 0);
INSERT INTO storage_total (shard, bytes) SELECT 0, CAST(
    COALESCE((SELECT SUM(bytes_used) FROM shares), 0)
  + COALESCE((SELECT SUM(LENGTH(manifest)) FROM shares), 0)
  + COALESCE((SELECT SUM(LENGTH(body)) FROM messages), 0)
  + COALESCE((SELECT SUM(LENGTH(reply)) FROM pairings), 0)
  + COALESCE((SELECT SUM(size) FROM backups WHERE deleted = 0), 0) AS BIGINT);
CREATE INDEX backups_refresh ON backups (deleted, updated_at);
"#,
    },
    Migration {
        version: 2,
        name: "fetch receipts logged, by reader key and nonce (replay refusal)",
        // `time` is the receipt's signed time: past `time + --receipt-skew-secs` the receipt
        // fails the time check anyway, so the sweeper drops the row then.
        sql: r#"
CREATE TABLE receipt_nonces (
  reader_key BLOB NOT NULL, nonce BLOB NOT NULL, time BIGINT NOT NULL,
  PRIMARY KEY (reader_key, nonce));
CREATE INDEX receipt_nonces_time ON receipt_nonces (time);
"#,
    },
    Migration {
        version: 3,
        name: "scoped read tokens (groups of tokens and blobs)",
        // docs/relay-formats.md "Scoped tokens": a token row says whether it is scoped
        // (`scoped = 1`: it reads only blobs sharing a group with it) or reads the whole share
        // (`0`, every token registered before); `token_groups` lists a scoped token's groups,
        // `blob_groups` the groups of each stored blob (by epoch, deleted with it).
        sql: r#"
ALTER TABLE tokens ADD COLUMN scoped BIGINT NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS token_groups (
  share_id BLOB NOT NULL, token_hash BLOB NOT NULL, grp BLOB NOT NULL,
  PRIMARY KEY (share_id, token_hash, grp));
CREATE TABLE IF NOT EXISTS blob_groups (
  share_id BLOB NOT NULL, blob_id BLOB NOT NULL, grp BLOB NOT NULL, epoch BIGINT NOT NULL,
  PRIMARY KEY (share_id, blob_id, grp));
CREATE INDEX IF NOT EXISTS blob_groups_epoch ON blob_groups (share_id, epoch);
"#,
    },
    Migration {
        version: 4,
        name: "SMART Health Links (ciphertext files, passcode hash, location tickets)",
        // docs/relay.md "SMART Health Links": a link is named by the SHA-256 of its URL id
        // (crate::health_link::wire::link_hash), never by the id itself; `passcode_salt` and
        // `passcode_hash` are empty for a link without a passcode; `bytes` is what the
        // link's files are charged (crate::quota). `shl_files.jwe` is the compact JWE text;
        // `shl_tickets` are the short-lived `location` URLs, by hash.
        sql: r#"
CREATE TABLE shl_links (
  link_hash BLOB PRIMARY KEY, share_id BLOB NOT NULL,
  passcode_salt BLOB NOT NULL, passcode_hash BLOB NOT NULL,
  attempts_left BIGINT NOT NULL, expires_at BIGINT NOT NULL, created_at BIGINT NOT NULL,
  bytes BIGINT NOT NULL);
CREATE INDEX shl_links_share ON shl_links (share_id);
CREATE INDEX shl_links_expiry ON shl_links (expires_at);
CREATE TABLE shl_files (
  link_hash BLOB NOT NULL, idx BIGINT NOT NULL, content_type TEXT NOT NULL, jwe BLOB NOT NULL,
  PRIMARY KEY (link_hash, idx));
CREATE TABLE shl_tickets (
  ticket_hash BLOB PRIMARY KEY, link_hash BLOB NOT NULL, idx BIGINT NOT NULL,
  expires_at BIGINT NOT NULL);
CREATE INDEX shl_tickets_link ON shl_tickets (link_hash);
CREATE INDEX shl_tickets_expiry ON shl_tickets (expires_at);
"#,
    },
];

/// The newest version (what a freshly created database is at).
pub fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_in_order() {
        let mut prev = 0;
        for m in MIGRATIONS {
            assert!(m.version > prev, "migration {} out of order", m.version);
            prev = m.version;
        }
    }
}
