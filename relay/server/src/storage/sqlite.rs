//! SQLite backend: one connection in WAL mode with `synchronous=FULL`, used from blocking
//! threads; every transaction is `BEGIN IMMEDIATE` (DESIGN.md "Relay storage": the embedded
//! default, one command and no setup).

use std::any::Any;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql, TransactionBehavior};

use super::{Row, SCHEMA, Storage, Tx, TxFn, Value};
use crate::error::{RelayError, Result};
use crate::mailbox::MailboxNotifier;

/// File name of the database inside `--data DIR`.
pub const DB_FILE: &str = "relay.sqlite3";

/// The SQLite backend.
#[derive(Debug, Clone)]
pub struct SqliteStorage {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStorage {
    /// Opens (creating if needed) `dir/relay.sqlite3` and applies the schema.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| RelayError::Storage(format!("create data dir: {e}")))?;
        let conn = Connection::open(dir.join(DB_FILE))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "busy_timeout", 5000)?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }
}

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Bytes(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
            Value::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
        })
    }
}

struct SqliteTx<'a> {
    tx: &'a rusqlite::Transaction<'a>,
}

/// Rewrites `$n` placeholders to SQLite's `?n`.
fn sqlite_sql(sql: &str) -> String {
    sql.replace('$', "?")
}

impl Tx for SqliteTx<'_> {
    fn exec(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        let mut st = self.tx.prepare_cached(&sqlite_sql(sql))?;
        let n = st.execute(rusqlite::params_from_iter(params.iter()))?;
        Ok(n as u64)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let mut st = self.tx.prepare_cached(&sqlite_sql(sql))?;
        let cols = st.column_count();
        let mut rows = st.query(rusqlite::params_from_iter(params.iter()))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut row = Vec::with_capacity(cols);
            for i in 0..cols {
                row.push(match r.get_ref(i)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::Int(v),
                    ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
                    ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Real(_) => {
                        return Err(RelayError::Storage("unexpected REAL column".into()));
                    }
                });
            }
            out.push(row);
        }
        Ok(out)
    }

    fn lock_clause(&self) -> &'static str {
        ""
    }

    fn notify_mailbox(&mut self, _mailbox_id: &[u8]) -> Result<()> {
        // One process owns the file: the in-process notifier is enough.
        Ok(())
    }
}

#[async_trait::async_trait]
impl Storage for SqliteStorage {
    async fn transact_erased(&self, f: TxFn) -> Result<Box<dyn Any + Send>> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic inside a transaction body unwinds through `Transaction::drop`, which
            // rolls back, so a poisoned connection is still consistent.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            let tx = guard.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = {
                let mut w = SqliteTx { tx: &tx };
                f(&mut w)
            };
            match out {
                Ok(v) => {
                    tx.commit()?;
                    Ok(v)
                }
                Err(e) => {
                    tx.rollback()?;
                    Err(e)
                }
            }
        })
        .await
        .map_err(|e| RelayError::Storage(format!("blocking task failed: {e}")))?
    }

    fn listen_mailboxes(&self, _notifier: Arc<MailboxNotifier>) {}

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}
