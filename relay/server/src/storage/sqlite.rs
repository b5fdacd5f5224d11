//! SQLite backend: one write connection in WAL mode with `synchronous=FULL`, used from blocking
//! threads, where every transaction is `BEGIN IMMEDIATE`; plus a small pool of read-only
//! connections (`query_only`) for read transactions, which WAL lets run in parallel with each
//! other and with the writer (docs/relay.md "Storage": the embedded default, one command and
//! no setup).

use std::any::Any;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql};

use super::migrations::{MIGRATIONS, MIGRATIONS_TABLE};
use super::{Cell, Row, SCHEMA, Storage, Tx, TxFn, Value};
use crate::error::{RelayError, Result};
use crate::notifier::MailboxNotifier;

/// File name of the database inside `--data DIR`.
pub const DB_FILE: &str = "relay.sqlite3";
/// Prepared statements kept per connection (rusqlite's default of 16 is fewer than the
/// relay's distinct statements, which made hot statements be re-prepared).
const STATEMENT_CACHE: usize = 128;
/// Read-only connections (read transactions run on these, in parallel).
pub const READERS: usize = 4;

/// The SQLite backend.
#[derive(Debug, Clone)]
pub struct SqliteStorage {
    path: Arc<std::path::PathBuf>,
    conn: Arc<Mutex<Connection>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    reader_permits: Arc<Semaphore>,
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
        // Checkpoints run on their own thread (below), not inside a writer's COMMIT: a large
        // chunk upload no longer waits for the WAL to be copied into the database file.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // When the WAL starts over from its beginning (after a complete checkpoint), SQLite
        // cuts the file back to this size: a burst of writes does not leave a large file.
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
        conn.execute_batch(SCHEMA)?;
        migrate(&conn)?;
        configure(&conn)?;
        let path = dir.join(DB_FILE);
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(open_reader(&path)?);
        }
        let conn = Arc::new(Mutex::new(conn));
        spawn_checkpointer(&path, Arc::downgrade(&conn))?;
        Ok(Self {
            path: Arc::new(path),
            conn,
            readers: Arc::new(Mutex::new(readers)),
            reader_permits: Arc::new(Semaphore::new(READERS)),
        })
    }
}

/// Applies every migration not yet recorded, each in its own `BEGIN IMMEDIATE` transaction
/// together with its `schema_migrations` row.
fn migrate(conn: &Connection) -> Result<()> {
    conn.execute_batch(MIGRATIONS_TABLE)?;
    for m in MIGRATIONS {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let applied: rusqlite::Result<bool> = (|| {
            let done = conn
                .prepare("SELECT 1 FROM schema_migrations WHERE version = ?1")?
                .exists([m.version])?;
            if !done {
                conn.execute_batch(m.sql)?;
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                    rusqlite::params![m.version, m.name, crate::clock::unix_now()],
                )?;
            }
            Ok(done)
        })();
        match applied {
            Ok(_) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(RelayError::Storage(format!(
                    "migration {} failed: {e}",
                    m.version
                )));
            }
        }
    }
    Ok(())
}

/// How often the checkpointer looks at the size of the WAL file (a `stat`).
const WAL_LOOK_EVERY: std::time::Duration = std::time::Duration::from_millis(25);
/// How often it copies the WAL into the database file without waiting for anyone.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);
/// How many looks in a row a large WAL may go without being started over before the
/// checkpointer runs TRUNCATE.
const STARVED_LOOKS: u32 = 1;

/// The WAL header's checkpoint sequence number and first salt (bytes 12..20, big-endian;
/// <https://www.sqlite.org/fileformat2.html#walformat>): SQLite changes them each time it
/// starts the WAL over from its beginning. `None` when the file is missing or too short.
fn wal_generation(wal: &Path) -> Option<[u8; 8]> {
    use std::io::Read as _;
    let mut header = [0u8; 20];
    std::fs::File::open(wal)
        .ok()?
        .read_exact(&mut header)
        .ok()?;
    header[12..20].try_into().ok()
}

/// WAL size past which the checkpointer waits for readers and empties the WAL
/// (`wal_checkpoint(TRUNCATE)`; docs/relay.md "Storage").
pub const WAL_TRUNCATE_BYTES: u64 = 4 << 20;
/// [`WAL_TRUNCATE_BYTES`] as SQLite's `journal_size_limit` takes it.
const WAL_SIZE_LIMIT: i64 = 4 << 20;

/// Runs `PRAGMA wal_checkpoint(PASSIVE)` on its own connection every [`CHECKPOINT_EVERY`]
/// until the storage is dropped, and also at once when the WAL file is over
/// [`WAL_TRUNCATE_BYTES`]; when a WAL that large was not started over by SQLite for
/// [`STARVED_LOOKS`] looks in a row ([`wal_generation`]), `wal_checkpoint(TRUNCATE)`. Durability does not
/// depend on it (a commit is durable once the WAL is synced); it only bounds the WAL.
///
/// PASSIVE never blocks the writer or readers, but it cannot copy frames that a read
/// transaction may still need, and SQLite starts the WAL over from its beginning only after a
/// checkpoint that finished while no reader held an older snapshot. Readers that never pause
/// (the 4 pool connections under constant GETs) starve it, and the file then grows with every
/// commit: `tests/wal.rs` saw 90 MB for 64 MiB written. TRUNCATE waits (busy handler, up to
/// `busy_timeout`) for the readers of older snapshots to finish (each is one short read
/// transaction; new ones read the newest snapshot), holds new writers back meanwhile, copies
/// everything and empties the file; it runs holding the writer connection's mutex, so writes
/// wait for it (tens of milliseconds for a WAL of a few MiB) instead of starving it.
///
/// TRUNCATE only when PASSIVE is starved: a large upload with no reader in the way makes the
/// WAL pass the size many times over, and a TRUNCATE each time made the writer wait for every
/// copy (the 100 MiB re-key upload of `scripts/checkup-bench.sh` took 1.2 s instead of 0.8 s).
/// After a PASSIVE that copied everything while no reader held an old snapshot, the next writer
/// starts the WAL over, cut to `journal_size_limit`.
fn spawn_checkpointer(path: &Path, alive: std::sync::Weak<Mutex<Connection>>) -> Result<()> {
    let c = Connection::open(path)?;
    c.pragma_update(None, "busy_timeout", 5000)?;
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal = std::path::PathBuf::from(wal);
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            let mut last = std::time::Instant::now();
            let mut starved = 0u32;
            let mut generation = None;
            loop {
                std::thread::sleep(WAL_LOOK_EVERY);
                if alive.strong_count() == 0 {
                    break;
                }
                let large = std::fs::metadata(&wal).is_ok_and(|m| m.len() > WAL_TRUNCATE_BYTES);
                let now_generation = wal_generation(&wal);
                starved = if large && now_generation == generation {
                    starved + 1
                } else {
                    0
                };
                generation = now_generation;
                let big = starved >= STARVED_LOOKS;
                let mode = if big {
                    "TRUNCATE"
                } else if large || last.elapsed() >= CHECKPOINT_EVERY {
                    "PASSIVE"
                } else {
                    continue;
                };
                last = std::time::Instant::now();
                // TRUNCATE needs SQLite's write lock, which the writer, committing back to
                // back, would take again before the busy handler's next try: so it runs
                // while holding the writer connection's mutex (writes wait for it).
                let writer = if big { alive.upgrade() } else { None };
                let _writing = writer
                    .as_ref()
                    .map(|w| w.lock().unwrap_or_else(|p| p.into_inner()));
                let sql = format!("PRAGMA wal_checkpoint({mode})");
                match c.query_row(&sql, [], |r| r.get::<_, i64>(0)) {
                    Ok(0) => {}
                    // Busy: readers or the writer outlasted busy_timeout; the next look retries.
                    Ok(_) => tracing::debug!(mode, "sqlite checkpoint busy"),
                    Err(e) => tracing::warn!(error = %e, mode, "sqlite checkpoint failed"),
                }
                if big {
                    starved = 0;
                    generation = wal_generation(&wal);
                }
            }
        })
        .map_err(|e| RelayError::Storage(format!("spawn checkpointer: {e}")))?;
    Ok(())
}

/// A read-only connection for the reader pool.
fn open_reader(path: &Path) -> Result<Connection> {
    let r = Connection::open(path)?;
    r.pragma_update(None, "busy_timeout", 5000)?;
    r.pragma_update(None, "query_only", true)?;
    configure(&r)?;
    Ok(r)
}

/// Statement settings of the writer and reader connections.
fn configure(c: &Connection) -> Result<()> {
    c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // Query planner stability: without it SQLite (built with STAT4) marks some statements
    // "re-plan when these parameters are rebound", and the blob read of every GET went
    // through the SQL compiler again on each run despite the statement cache (~3 % of GET
    // CPU in `sqlite3Reprepare`). Every relay query is a key lookup whose plan does not
    // depend on the bound values.
    c.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
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
    conn: &'a Connection,
}

/// An open transaction that is rolled back when dropped unfinished: on an error of the body or
/// of COMMIT, and when a panicking body unwinds, so a connection never stays inside a
/// transaction (what rusqlite's `Transaction` did on drop).
struct Open<'a> {
    conn: &'a Connection,
    finished: bool,
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        if !self.finished && !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// Runs `f` in a transaction on `conn` opened with `begin`: committed if it returns `Ok`,
/// rolled back otherwise.
///
/// BEGIN and COMMIT run as cached prepared statements: rusqlite's `Transaction` sends them
/// through `execute_batch`, which compiles the SQL again each time, twice per GET (its
/// read transaction) and twice per fetch-log batch.
fn run_tx(conn: &Connection, begin: &'static str, f: TxFn) -> Result<Box<dyn Any + Send>> {
    conn.prepare_cached(begin)?.execute([])?;
    let mut open = Open {
        conn,
        finished: false,
    };
    let out = f(&mut SqliteTx { conn });
    match out {
        Ok(v) => {
            conn.prepare_cached("COMMIT")?.execute([])?;
            open.finished = true;
            Ok(v)
        }
        Err(e) => {
            // Some errors (e.g. a full disk) already ended the transaction. A ROLLBACK that
            // fails leaves `open` unfinished, so its drop tries once more.
            if !conn.is_autocommit() {
                conn.prepare_cached("ROLLBACK")?.execute([])?;
            }
            open.finished = true;
            Err(e)
        }
    }
}

/// Rewrites `$n` placeholders to SQLite's `?n`.
fn sqlite_sql(sql: &str) -> String {
    sql.replace('$', "?")
}

impl Tx for SqliteTx<'_> {
    fn exec(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        let mut st = self.conn.prepare_cached(&sqlite_sql(sql))?;
        let n = st.execute(rusqlite::params_from_iter(params.iter()))?;
        Ok(n as u64)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let mut st = self.conn.prepare_cached(&sqlite_sql(sql))?;
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

    fn read_slice(&mut self, cell: &Cell, offset: u64, len: usize, whole: bool) -> Result<Vec<u8>> {
        let (table, column, key, params) = cell.locate();
        // `?N` is SQLite's positional form of the `$N` the cell names.
        let key = key.replace('$', "?");
        let gone = || RelayError::NotFound("no such blob");
        if whole && offset == 0 {
            let mut st = self
                .conn
                .prepare_cached(&format!("SELECT {column} FROM {table} WHERE {key}"))?;
            let data: Option<Vec<u8>> = st
                .query_row(rusqlite::params_from_iter(params.iter()), |r| r.get(0))
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })?;
            let data = data.ok_or_else(gone)?;
            if data.len() != len {
                return Err(RelayError::Storage("stored cell has another length".into()));
            }
            return Ok(data);
        }
        let mut st = self
            .conn
            .prepare_cached(&format!("SELECT rowid FROM {table} WHERE {key}"))?;
        let rowid: Option<i64> = st
            .query_row(rusqlite::params_from_iter(params.iter()), |r| r.get(0))
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?;
        let rowid = rowid.ok_or_else(gone)?;
        // Incremental blob I/O reads only the pages of the range, not the whole value.
        let blob = self.conn.blob_open("main", table, column, rowid, true)?;
        let start = usize::try_from(offset)
            .map_err(|_| RelayError::Storage("offset beyond the address space".into()))?;
        let mut buf = vec![0u8; len];
        blob.read_at_exact(&mut buf, start)?;
        Ok(buf)
    }
}

#[async_trait::async_trait]
impl Storage for SqliteStorage {
    async fn transact_erased(&self, f: TxFn) -> Result<Box<dyn Any + Send>> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic inside a transaction body unwinds through `Open::drop`, which rolls
            // back, so a poisoned connection is still consistent.
            let guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            run_tx(&guard, "BEGIN IMMEDIATE", f)
        })
        .await
        .map_err(|e| RelayError::Storage(format!("blocking task failed: {e}")))?
    }

    async fn read_erased(&self, f: TxFn) -> Result<Box<dyn Any + Send>> {
        // The permit guarantees a free connection in the pool while it is held.
        let permit = Arc::clone(&self.reader_permits)
            .acquire_owned()
            .await
            .map_err(|_| RelayError::Storage("reader pool closed".into()))?;
        let readers = Arc::clone(&self.readers);
        let path = Arc::clone(&self.path);
        tokio::task::spawn_blocking(move || {
            let taken = readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
            // None only if a panicking body took a connection down with it: open a new one.
            let conn = match taken {
                Some(c) => c,
                None => open_reader(&path)?,
            };
            // A deferred transaction: one consistent WAL snapshot for the whole body.
            let out = run_tx(&conn, "BEGIN DEFERRED", f);
            readers.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
            drop(permit);
            out
        })
        .await
        .map_err(|e| RelayError::Storage(format!("blocking task failed: {e}")))?
    }

    fn listen_mailboxes(&self, _notifier: Arc<MailboxNotifier>) {}

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::StatementStatus;

    /// The blob read of every GET must stay prepared: stepping it again with new bindings
    /// must not re-run the SQL compiler.
    #[test]
    fn hot_statements_are_not_reprepared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SqliteStorage::open(dir.path()).expect("open");
        let conn = open_reader(&s.path).expect("reader");
        // The blob lookup of the download plan's push_blob (download.rs).
        let sql = sqlite_sql(
            "SELECT b.size, b.sha256, p.parts_id, \
             CASE WHEN p.parts_id IS NULL AND b.size <= $3 THEN b.data END \
             FROM blobs b LEFT JOIN blob_parts p \
             ON p.share_id = b.share_id AND p.blob_id = b.blob_id \
             WHERE b.share_id = $1 AND b.blob_id = $2",
        );
        for i in 0..5u8 {
            let mut st = conn.prepare_cached(&sql).expect("prepare");
            let _ = st
                .query_row(
                    rusqlite::params![vec![i; 16], vec![i; 16], i64::from(i) << 10],
                    |_| Ok(()),
                )
                .ok();
        }
        let st = conn.prepare_cached(&sql).expect("prepare");
        assert_eq!(st.get_status(StatementStatus::RePrepare), 0);
    }

    /// A database made before migrations (no `schema_version`, tokens without `scoped`)
    /// opens, gets the scoped-token migration (3) exactly once, and its tokens read as share-wide.
    #[test]
    fn old_databases_are_migrated_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let c = Connection::open(dir.path().join(DB_FILE)).expect("open");
            c.execute_batch(SCHEMA).expect("old schema");
            c.execute(
                "INSERT INTO tokens (share_id, token_hash, reader_key, scope, expires_at, depth, \
                 parent_hash, status) VALUES (?1, ?2, ?3, ?4, 1, 0, ?5, 0)",
                rusqlite::params![
                    vec![1u8; 16],
                    vec![2u8; 32],
                    vec![3u8; 32],
                    vec![0u8; 6],
                    Vec::<u8>::new()
                ],
            )
            .expect("old token");
        }
        for _ in 0..2 {
            let s = SqliteStorage::open(dir.path()).expect("opens and migrates");
            let conn = s.conn.lock().expect("writer");
            let scoped: i64 = conn
                .query_row("SELECT scoped FROM tokens", [], |r| r.get(0))
                .expect("column added");
            assert_eq!(
                scoped, 0,
                "a token of an old database reads the whole share"
            );
            let v: i64 = conn
                .query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
                    r.get(0)
                })
                .expect("version recorded");
            assert_eq!(v, super::super::migrations::latest());
            let n: i64 = conn
                .query_row("SELECT COUNT(*) FROM token_groups", [], |r| r.get(0))
                .expect("table created");
            assert_eq!(n, 0);
        }
    }

    /// Errors and panics inside a body leave the connection outside any transaction, with
    /// nothing of the body written; a committed body is visible.
    #[test]
    fn bodies_commit_or_roll_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SqliteStorage::open(dir.path()).expect("open");
        let conn = s.conn.lock().expect("writer");
        let put = |tx: &mut dyn Tx, name: &str| {
            tx.exec(
                "INSERT INTO relay_meta (name, value) VALUES ($1, $2)",
                &[name.into(), Value::Bytes(vec![1])],
            )
        };
        let failed = run_tx(
            &conn,
            "BEGIN IMMEDIATE",
            Box::new(move |tx| {
                put(tx, "a")?;
                Err(RelayError::NotFound("nope"))
            }),
        );
        assert!(failed.is_err());
        assert!(conn.is_autocommit());
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_tx(
                &conn,
                "BEGIN IMMEDIATE",
                Box::new(move |tx| {
                    put(tx, "b")?;
                    panic!("body panics");
                }),
            )
        }));
        assert!(panicked.is_err());
        assert!(conn.is_autocommit());
        run_tx(
            &conn,
            "BEGIN IMMEDIATE",
            Box::new(move |tx| {
                put(tx, "c")?;
                Ok(Box::new(()) as Box<dyn Any + Send>)
            }),
        )
        .expect("commit");
        let names: Vec<String> = conn
            .prepare("SELECT name FROM relay_meta WHERE name IN ('a', 'b', 'c')")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert_eq!(names, vec!["c".to_owned()]);
    }
}
