//! One storage trait, two backends (docs/relay.md "Storage").
//!
//! Every operation runs as one database transaction through `<dyn Storage>::transact` (or
//! `<dyn Storage>::read` for read-only work that may run in parallel): the domain
//! modules (share, token, delegation, mailbox, audit) write their logic once against the small
//! [`Tx`] interface, and each backend runs it in a committed transaction on a blocking thread.
//! A handler answers 2xx only after the commit returned, so a 2xx means durable (SQLite WAL
//! with `synchronous=FULL`; PostgreSQL commit). SQL is written once with `$1` placeholders
//! and portable types (`BLOB` becomes `BYTEA` on PostgreSQL).

pub mod migrations;
pub mod postgres;
pub mod sqlite;

use std::any::Any;
use std::sync::Arc;

use crate::error::{RelayError, Result};
use crate::notifier::MailboxNotifier;

/// A value bound to or read from SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// SQL NULL (only ever read, never bound).
    Null,
    /// A 64-bit integer.
    Int(i64),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A UTF-8 string.
    Text(String),
}

impl Value {
    /// The integer, or a storage error.
    pub fn int(&self) -> Result<i64> {
        match self {
            Self::Int(v) => Ok(*v),
            _ => Err(RelayError::Storage("expected integer column".into())),
        }
    }

    /// The bytes, or a storage error.
    pub fn bytes(&self) -> Result<&[u8]> {
        match self {
            Self::Bytes(v) => Ok(v),
            _ => Err(RelayError::Storage("expected bytes column".into())),
        }
    }

    /// Takes the bytes out, or a storage error.
    pub fn into_bytes(self) -> Result<Vec<u8>> {
        match self {
            Self::Bytes(v) => Ok(v),
            _ => Err(RelayError::Storage("expected bytes column".into())),
        }
    }

    /// Fixed-size bytes, or a storage error.
    pub fn array<const N: usize>(&self) -> Result<[u8; N]> {
        self.bytes()?
            .try_into()
            .map_err(|_| RelayError::Storage("unexpected column length".into()))
    }

    /// True for SQL NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Self::Bytes(v.to_vec())
    }
}
impl<const N: usize> From<&[u8; N]> for Value {
    fn from(v: &[u8; N]) -> Self {
        Self::Bytes(v.to_vec())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Self::Bytes(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::Text(v.to_owned())
    }
}

/// A result row.
pub type Row = Vec<Value>;

/// Where one stored byte string (a blob, backup, manifest or SHL file) lives, for reading it piece by piece while a
/// download streams (docs/relay.md "Streaming"). Each key names bytes that never change: a
/// whole-blob row is pinned by its SHA-256 (a blob deleted and stored again under the same id
/// no longer matches), a chunk by its upload's random id. Pieces are read in separate read
/// transactions, so a blob deleted while it streams fails the next piece (the connection is
/// cut) instead of mixing bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// `blobs.data` of a blob stored in one request.
    Blob {
        /// The share.
        share_id: [u8; 16],
        /// The blob.
        blob_id: [u8; 16],
        /// SHA-256 of the bytes.
        sha256: [u8; 32],
    },
    /// `backups.data` of one version of a backup slot.
    Backup {
        /// The slot.
        backup_id: [u8; 16],
        /// The version (a newer write no longer matches).
        version: i64,
    },
    /// `upload_chunks.data`: part `n` of a chunked upload's blob.
    Chunk {
        /// The upload (`blob_parts.parts_id`).
        upload_id: [u8; 16],
        /// Chunk index.
        n: i64,
    },
    /// `shares.manifest` at one manifest version: a swap only ever raises the version, so a
    /// newer manifest no longer matches.
    Manifest {
        /// The share.
        share_id: [u8; 16],
        /// The manifest version the download started with.
        version: i64,
    },
    /// `shl_files.jwe`: file `idx` of a SMART Health Link (its files never change; a deleted
    /// link's rows are gone).
    ShlFile {
        /// The link (`shl_links.link_hash`).
        link_hash: [u8; 32],
        /// File index.
        idx: i64,
    },
}

impl Cell {
    /// Where the cell lives: table, column, and the `WHERE` clause (`$n` placeholders) with its
    /// parameters, which select exactly one row or none.
    pub fn locate(&self) -> (&'static str, &'static str, &'static str, Vec<Value>) {
        match self {
            Cell::Blob {
                share_id,
                blob_id,
                sha256,
            } => (
                "blobs",
                "data",
                "share_id = $1 AND blob_id = $2 AND sha256 = $3",
                vec![share_id.into(), blob_id.into(), sha256.into()],
            ),
            Cell::Backup { backup_id, version } => (
                "backups",
                "data",
                "backup_id = $1 AND version = $2 AND deleted = 0",
                vec![backup_id.into(), (*version).into()],
            ),
            Cell::Chunk { upload_id, n } => (
                "upload_chunks",
                "data",
                "upload_id = $1 AND n = $2",
                vec![upload_id.into(), (*n).into()],
            ),
            Cell::Manifest { share_id, version } => (
                "shares",
                "manifest",
                "share_id = $1 AND manifest_version = $2 AND manifest IS NOT NULL",
                vec![share_id.into(), (*version).into()],
            ),
            Cell::ShlFile { link_hash, idx } => (
                "shl_files",
                "jwe",
                "link_hash = $1 AND idx = $2",
                vec![link_hash.into(), (*idx).into()],
            ),
        }
    }
}

/// How many items of a page to answer, given their sizes in order: as many as fit in
/// `budget` bytes, and at least one (a single item larger than the budget is still answered,
/// or a reader could never get past it).
pub fn page_len(sizes: impl IntoIterator<Item = u64>, budget: u64) -> usize {
    let (mut bytes, mut keep) = (0u64, 0usize);
    for n in sizes {
        if keep > 0 && bytes.saturating_add(n) > budget {
            break;
        }
        bytes = bytes.saturating_add(n);
        keep += 1;
    }
    keep
}

/// Reads one page of `(seq, time, body)` rows of `table` whose `key_column` is `key` and
/// `seq > after`: at most `items` rows and `budget` bytes of bodies ([`page_len`]). The sizes
/// are read first, then only the bodies that fit, so the relay holds no more than the page.
pub fn read_page(
    tx: &mut dyn Tx,
    table: &'static str,
    key_column: &'static str,
    key: &[u8],
    after: i64,
    items: usize,
    budget: usize,
) -> Result<Vec<Row>> {
    let limit = i64::try_from(items).unwrap_or(i64::MAX);
    let sizes = tx.query(
        &format!(
            "SELECT seq, LENGTH(body) FROM {table} WHERE {key_column} = $1 AND seq > $2 \
             ORDER BY seq LIMIT $3"
        ),
        &[key.into(), after.into(), limit.into()],
    )?;
    let mut lens = Vec::with_capacity(sizes.len());
    for r in &sizes {
        let n = r.get(1).map_or(Ok(0), Value::int)?;
        lens.push(u64::try_from(n).unwrap_or(0));
    }
    let keep = page_len(lens, budget as u64);
    let Some(last) = keep.checked_sub(1).and_then(|i| sizes.get(i)) else {
        return Ok(Vec::new());
    };
    let through = last.first().map_or(Ok(after), Value::int)?;
    tx.query(
        &format!(
            "SELECT seq, time, body FROM {table} WHERE {key_column} = $1 AND seq > $2 \
             AND seq <= $3 ORDER BY seq"
        ),
        &[key.into(), after.into(), through.into()],
    )
}

/// One open transaction. Methods run SQL with `$n` placeholders.
pub trait Tx {
    /// Executes a statement and returns the number of affected rows.
    fn exec(&mut self, sql: &str, params: &[Value]) -> Result<u64>;
    /// Runs a query and returns all rows.
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>>;
    /// Suffix that locks selected rows until commit (`FOR UPDATE` on PostgreSQL; empty on
    /// SQLite, where `BEGIN IMMEDIATE` already serializes every write transaction).
    fn lock_clause(&self) -> &'static str;
    /// Tells other relay instances, after commit, that a mailbox changed.
    fn notify_mailbox(&mut self, mailbox_id: &[u8]) -> Result<()>;
    /// Reads `len` bytes at `offset` of `cell` without loading the rest of it (SQLite:
    /// incremental blob I/O; PostgreSQL: `substring` of an uncompressed TOAST value, which
    /// reads only the slices it needs). `whole` says the range is the entire cell (read with a
    /// plain SELECT). 404 if the cell is gone; a storage error if it is shorter.
    fn read_slice(&mut self, cell: &Cell, offset: u64, len: usize, whole: bool) -> Result<Vec<u8>>;

    /// Runs a query expected to return at most one row.
    fn query_opt(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>> {
        let mut rows = self.query(sql, params)?;
        if rows.len() > 1 {
            return Err(RelayError::Storage("more than one row".into()));
        }
        Ok(rows.pop())
    }
}

/// A type-erased transaction body.
pub type TxFn = Box<dyn FnOnce(&mut dyn Tx) -> Result<Box<dyn Any + Send>> + Send>;

/// A relay storage backend.
#[async_trait::async_trait]
pub trait Storage: Send + Sync + std::fmt::Debug + 'static {
    /// Runs `f` in one transaction on a blocking thread: committed if it returns `Ok`,
    /// rolled back otherwise.
    async fn transact_erased(&self, f: TxFn) -> Result<Box<dyn Any + Send>>;
    /// Runs `f` in a read-only transaction (one consistent snapshot; writes fail) on a
    /// blocking thread. Reads run in parallel with each other and with write transactions.
    async fn read_erased(&self, f: TxFn) -> Result<Box<dyn Any + Send>>;
    /// Like `transact_erased`, for the fetch-log writer task (one at a time per instance).
    /// PostgreSQL runs it on a connection of its own, so the writer never queues behind reads
    /// for a pooled connection; SQLite has one write connection anyway.
    async fn transact_log(&self, f: TxFn) -> Result<Box<dyn Any + Send>> {
        self.transact_erased(f).await
    }
    /// Starts forwarding mailbox notifications of other instances to `notifier`.
    fn listen_mailboxes(&self, notifier: Arc<MailboxNotifier>);
    /// Short backend name for logs and metrics.
    fn backend(&self) -> &'static str;
}

impl dyn Storage {
    /// Runs `f` in one committed transaction and returns its value.
    pub async fn transact<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<T> + Send + 'static,
    {
        let out = self
            .transact_erased(Box::new(move |tx| {
                f(tx).map(|v| Box::new(v) as Box<dyn Any + Send>)
            }))
            .await?;
        out.downcast::<T>()
            .map(|b| *b)
            .map_err(|_| RelayError::Storage("transaction result type mismatch".into()))
    }

    /// Runs `f` in one read-only transaction and returns its value.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<T> + Send + 'static,
    {
        let out = self
            .read_erased(Box::new(move |tx| {
                f(tx).map(|v| Box::new(v) as Box<dyn Any + Send>)
            }))
            .await?;
        out.downcast::<T>()
            .map(|b| *b)
            .map_err(|_| RelayError::Storage("transaction result type mismatch".into()))
    }
}

/// The schema, written once; each backend adapts the type names.
pub const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS relay_meta (
  name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS shares (
  share_id BLOB PRIMARY KEY, owner_key BLOB NOT NULL, counter BIGINT NOT NULL,
  expires_at BIGINT NOT NULL, bytes_used BIGINT NOT NULL, manifest BLOB,
  manifest_version BIGINT NOT NULL, audit_seq BIGINT NOT NULL, audit_head BLOB NOT NULL,
  notice_seq BIGINT NOT NULL, created_at BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS shares_expiry ON shares (expires_at);
CREATE TABLE IF NOT EXISTS share_tombstones (
  share_id BLOB PRIMARY KEY, until_at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS blobs (
  share_id BLOB NOT NULL, blob_id BLOB NOT NULL, epoch BIGINT NOT NULL, size BIGINT NOT NULL,
  sha256 BLOB NOT NULL, data BLOB NOT NULL, PRIMARY KEY (share_id, blob_id));
CREATE INDEX IF NOT EXISTS blobs_epoch ON blobs (share_id, epoch);
CREATE TABLE IF NOT EXISTS uploads (
  upload_id BLOB PRIMARY KEY, share_id BLOB NOT NULL, blob_id BLOB NOT NULL,
  epoch BIGINT NOT NULL, bytes BIGINT NOT NULL, created_at BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS uploads_share ON uploads (share_id);
CREATE TABLE IF NOT EXISTS upload_chunks (
  upload_id BLOB NOT NULL, n BIGINT NOT NULL, data BLOB NOT NULL, PRIMARY KEY (upload_id, n));
CREATE TABLE IF NOT EXISTS blob_parts (
  share_id BLOB NOT NULL, blob_id BLOB NOT NULL, epoch BIGINT NOT NULL, parts_id BLOB NOT NULL,
  PRIMARY KEY (share_id, blob_id));
CREATE INDEX IF NOT EXISTS blob_parts_epoch ON blob_parts (share_id, epoch);
CREATE TABLE IF NOT EXISTS tokens (
  share_id BLOB NOT NULL, token_hash BLOB NOT NULL, reader_key BLOB NOT NULL,
  scope BLOB NOT NULL, expires_at BIGINT NOT NULL, depth BIGINT NOT NULL,
  parent_hash BLOB NOT NULL, status BIGINT NOT NULL, PRIMARY KEY (share_id, token_hash));
CREATE INDEX IF NOT EXISTS tokens_parent ON tokens (share_id, parent_hash);
CREATE INDEX IF NOT EXISTS tokens_expiry ON tokens (status, expires_at);
CREATE TABLE IF NOT EXISTS audit (
  share_id BLOB NOT NULL, seq BIGINT NOT NULL, prev_hash BLOB NOT NULL, time BIGINT NOT NULL,
  kind BIGINT NOT NULL, body BLOB NOT NULL, entry_hash BLOB NOT NULL,
  PRIMARY KEY (share_id, seq));
CREATE TABLE IF NOT EXISTS notices (
  share_id BLOB NOT NULL, seq BIGINT NOT NULL, time BIGINT NOT NULL, body BLOB NOT NULL,
  PRIMARY KEY (share_id, seq));
CREATE TABLE IF NOT EXISTS pairings (
  mailbox_id BLOB PRIMARY KEY, read_hash BLOB NOT NULL, expires_at BIGINT NOT NULL,
  reply BLOB);
CREATE INDEX IF NOT EXISTS pairings_expiry ON pairings (expires_at);
CREATE TABLE IF NOT EXISTS mailboxes (
  mailbox_id BLOB PRIMARY KEY, read_hash BLOB NOT NULL, write_hash BLOB NOT NULL,
  expires_at BIGINT NOT NULL, next_seq BIGINT NOT NULL, count BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS mailboxes_expiry ON mailboxes (expires_at);
CREATE TABLE IF NOT EXISTS backups (
  backup_id BLOB PRIMARY KEY, owner_key BLOB NOT NULL, counter BIGINT NOT NULL,
  version BIGINT NOT NULL, size BIGINT NOT NULL, sha256 BLOB NOT NULL, data BLOB NOT NULL,
  deleted BIGINT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
  mailbox_id BLOB NOT NULL, seq BIGINT NOT NULL, time BIGINT NOT NULL, body BLOB NOT NULL,
  PRIMARY KEY (mailbox_id, seq));
"#;
