//! PostgreSQL backend (docs/relay.md "Storage": scale-out with stateless relay instances).
//!
//! Transactions run on a blocking thread that drives tokio-postgres futures through the
//! runtime handle, so the domain logic stays synchronous and identical to SQLite's. Per-share
//! writes and audit appends lock the share row (`SELECT ... FOR UPDATE`), which serializes them
//! across every relay instance on the same database. Mailbox appends `NOTIFY` the other
//! instances so their long-polls wake at once.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::runtime::Handle;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{AsyncMessage, NoTls};

use super::migrations::{MIGRATIONS, MIGRATIONS_TABLE};
use super::{Cell, Row, SCHEMA, Storage, Tx, TxFn, Value};
use crate::encoding;
use crate::error::{RelayError, Result};
use crate::notifier::MailboxNotifier;

/// Channel used for cross-instance mailbox wake-ups.
pub const MAILBOX_CHANNEL: &str = "carekey_mailbox";
/// Connections per relay instance.
const POOL_SIZE: usize = 16;
/// Advisory lock key serializing schema creation across instances starting together.
const SCHEMA_LOCK_KEY: i64 = 0x6361_7265_6b65_7931;
/// Tries at a schema update cancelled by a deadlock or a serialization failure.
const MIGRATE_ATTEMPTS: u64 = 5;

/// The PostgreSQL backend.
#[derive(Debug, Clone)]
pub struct PgStorage {
    pool: Pool,
    /// One connection reserved for the fetch-log writer.
    log_pool: Pool,
    config: tokio_postgres::Config,
}

impl PgStorage {
    /// Connects to `url`, optionally inside `schema` (created if missing; used by tests to
    /// isolate runs), and applies the schema.
    pub async fn open(url: &str, schema: Option<&str>) -> Result<Self> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| RelayError::Storage(format!("bad database url: {e}")))?;
        if let Some(s) = schema {
            if !s
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(RelayError::Storage("bad schema name".into()));
            }
            let (client, conn) = config.connect(NoTls).await?;
            let task = tokio::spawn(conn);
            client
                .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {s}"))
                .await?;
            drop(client);
            let _ = task.await;
            config.options(format!("-c search_path={s}"));
        }
        let mgr = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| RelayError::Storage(format!("pool: {e}")))?;
        let log_mgr = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let log_pool = Pool::builder(log_mgr)
            .max_size(1)
            .build()
            .map_err(|e| RelayError::Storage(format!("pool: {e}")))?;
        let mut client = pool
            .get()
            .await
            .map_err(|e| RelayError::Storage(format!("pool: {e}")))?;
        if !schema_is_current(&client).await? {
            let mut attempt = 1;
            loop {
                match migrate(&mut client).await {
                    Ok(()) => break,
                    // Another instance's statements can still meet the migration's DDL locks
                    // (a rolling upgrade: the old instances keep sweeping); PostgreSQL then
                    // cancels one side, and the whole migration transaction is run again.
                    Err(e) if attempt < MIGRATE_ATTEMPTS && is_transient(&e.source) => {
                        tracing::warn!(attempt, error = %RelayError::from(e.source), "schema update retried");
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(Self {
            pool,
            log_pool,
            config,
        })
    }
}

/// Whether the base schema and every migration this build knows are in place. Read without
/// any table lock: the `IF NOT EXISTS` DDL of the base schema is a no-op on an existing table,
/// but `CREATE INDEX IF NOT EXISTS` still takes a `SHARE` lock on its table first, which waits
/// for (and, table after table, can deadlock with) the writes of instances already running.
async fn schema_is_current(client: &tokio_postgres::Client) -> Result<bool> {
    let table = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await?;
    if !table.get::<_, bool>(0) {
        return Ok(false);
    }
    // The base schema is created in the transaction that creates `schema_migrations`.
    let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
    let row = client
        .query_one(
            "SELECT COUNT(*) FROM schema_migrations WHERE version = ANY($1)",
            &[&versions],
        )
        .await?;
    Ok(usize::try_from(row.get::<_, i64>(0)).ok() == Some(MIGRATIONS.len()))
}

/// A failed schema update: the migration it was applying, if any, and why.
struct MigrateError {
    version: Option<i64>,
    source: tokio_postgres::Error,
}

impl From<tokio_postgres::Error> for MigrateError {
    fn from(source: tokio_postgres::Error) -> Self {
        Self {
            version: None,
            source,
        }
    }
}

impl From<MigrateError> for RelayError {
    fn from(e: MigrateError) -> Self {
        match (e.version, RelayError::from(e.source)) {
            (Some(v), RelayError::Storage(m)) => {
                RelayError::Storage(format!("migration {v} failed: {m}"))
            }
            (_, other) => other,
        }
    }
}

/// Creates the base schema and applies the migrations not yet recorded, in one transaction
/// under the advisory lock (docs/relay.md "Storage"), so instances starting together apply
/// each exactly once.
async fn migrate(client: &mut deadpool_postgres::Client) -> std::result::Result<(), MigrateError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK_KEY])
        .await?;
    tx.batch_execute(&SCHEMA.replace("BLOB", "BYTEA")).await?;
    tx.batch_execute(MIGRATIONS_TABLE).await?;
    for m in MIGRATIONS {
        let done = tx
            .query_opt(
                "SELECT 1 FROM schema_migrations WHERE version = $1",
                &[&m.version],
            )
            .await?
            .is_some();
        if !done {
            tx.batch_execute(&m.sql.replace("BLOB", "BYTEA"))
                .await
                .map_err(|source| MigrateError {
                    version: Some(m.version),
                    source,
                })?;
            let now = crate::clock::unix_now();
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                &[&m.version, &m.name, &now],
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// A deadlock or serialization failure: PostgreSQL cancelled the transaction, not the work.
fn is_transient(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    )
}

fn pg_params(params: &[Value]) -> Result<Vec<Box<dyn ToSql + Sync + Send>>> {
    params
        .iter()
        .map(|v| -> Result<Box<dyn ToSql + Sync + Send>> {
            Ok(match v {
                Value::Int(i) => Box::new(*i),
                Value::Bytes(b) => Box::new(b.clone()),
                Value::Text(t) => Box::new(t.clone()),
                Value::Null => return Err(RelayError::Storage("NULL parameter".into())),
            })
        })
        .collect()
}

fn pg_row(r: &tokio_postgres::Row) -> Result<Row> {
    let mut row = Vec::with_capacity(r.len());
    for (i, c) in r.columns().iter().enumerate() {
        let t = c.type_();
        let v = if *t == Type::INT8 {
            r.try_get::<_, Option<i64>>(i)?
                .map_or(Value::Null, Value::Int)
        } else if *t == Type::INT4 {
            r.try_get::<_, Option<i32>>(i)?
                .map_or(Value::Null, |v| Value::Int(i64::from(v)))
        } else if *t == Type::BYTEA {
            r.try_get::<_, Option<Vec<u8>>>(i)?
                .map_or(Value::Null, Value::Bytes)
        } else if *t == Type::TEXT || *t == Type::VARCHAR {
            r.try_get::<_, Option<String>>(i)?
                .map_or(Value::Null, Value::Text)
        } else {
            return Err(RelayError::Storage("unexpected column type".into()));
        };
        row.push(v);
    }
    Ok(row)
}

struct PgTx<'a> {
    tx: deadpool_postgres::Transaction<'a>,
    handle: Handle,
    read_only: bool,
}

impl Tx for PgTx<'_> {
    fn exec(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        let p = pg_params(params)?;
        let refs: Vec<&(dyn ToSql + Sync)> = p.iter().map(|b| b.as_ref() as _).collect();
        self.handle.block_on(async {
            let st = self.tx.prepare_cached(sql).await?;
            Ok(self.tx.execute(&st, &refs).await?)
        })
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let p = pg_params(params)?;
        let refs: Vec<&(dyn ToSql + Sync)> = p.iter().map(|b| b.as_ref() as _).collect();
        let rows = self.handle.block_on(async {
            let st = self.tx.prepare_cached(sql).await?;
            self.tx.query(&st, &refs).await
        })?;
        rows.iter().map(pg_row).collect()
    }

    fn lock_clause(&self) -> &'static str {
        // Row locks are not allowed (nor needed) in a read-only transaction.
        if self.read_only { "" } else { " FOR UPDATE" }
    }

    fn notify_mailbox(&mut self, mailbox_id: &[u8]) -> Result<()> {
        let payload = encoding::hex(mailbox_id);
        self.handle.block_on(async {
            self.tx
                .execute("SELECT pg_notify($1, $2)", &[&MAILBOX_CHANNEL, &payload])
                .await
        })?;
        Ok(())
    }

    fn read_slice(&mut self, cell: &Cell, offset: u64, len: usize, whole: bool) -> Result<Vec<u8>> {
        let (table, column, key, mut params) = cell.locate();
        let sql = if whole && offset == 0 {
            format!("SELECT {column} FROM {table} WHERE {key}")
        } else {
            // Ciphertext does not compress, so TOAST stores it uncompressed and `substring`
            // fetches only the slices covering the range (1-based offsets).
            let (from, count) = (params.len() + 1, params.len() + 2);
            params.push(crate::encoding::to_db("offset", offset.saturating_add(1))?.into());
            params.push(crate::encoding::to_db("length", len as u64)?.into());
            format!(
                "SELECT substring({column} FROM CAST(${from}::BIGINT AS INTEGER) \
                 FOR CAST(${count}::BIGINT AS INTEGER)) FROM {table} WHERE {key}"
            )
        };
        let row = self
            .query_opt(&sql, &params)?
            .ok_or(RelayError::NotFound("no such blob"))?;
        let data = row
            .into_iter()
            .next()
            .ok_or_else(|| RelayError::Storage("short row".into()))?
            .into_bytes()?;
        if data.len() != len {
            return Err(RelayError::Storage(
                "stored cell is shorter than its range".into(),
            ));
        }
        Ok(data)
    }
}

#[async_trait::async_trait]
impl Storage for PgStorage {
    async fn transact_erased(&self, f: TxFn) -> Result<Box<dyn Any + Send>> {
        run(self.pool.clone(), false, f).await
    }

    async fn read_erased(&self, f: TxFn) -> Result<Box<dyn Any + Send>> {
        run(self.pool.clone(), true, f).await
    }

    async fn transact_log(&self, f: TxFn) -> Result<Box<dyn Any + Send>> {
        run(self.log_pool.clone(), false, f).await
    }

    fn listen_mailboxes(&self, notifier: Arc<MailboxNotifier>) {
        let config = self.config.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = listen_once(&config, &notifier).await {
                    tracing::warn!(error = %e, "mailbox listener lost its connection");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
}

/// Runs `f` in a transaction on a pooled connection on a blocking thread: committed if it
/// returns `Ok`, rolled back otherwise.
async fn run(pool: Pool, read_only: bool, f: TxFn) -> Result<Box<dyn Any + Send>> {
    let handle = Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut client = handle
            .block_on(pool.get())
            .map_err(|e| RelayError::Storage(format!("pool: {e}")))?;
        // A read sees one snapshot across its statements, as a SQLite read transaction does:
        // under PostgreSQL's default READ COMMITTED each statement would see the commits made
        // since the previous one (a manifest's version, then its bytes after a swap).
        // Read-only transactions never fail to serialize at REPEATABLE READ.
        let mut builder = client.build_transaction().read_only(read_only);
        if read_only {
            builder = builder.isolation_level(tokio_postgres::IsolationLevel::RepeatableRead);
        }
        let tx = handle.block_on(builder.start())?;
        let mut w = PgTx {
            tx,
            handle: handle.clone(),
            read_only,
        };
        match f(&mut w) {
            Ok(v) => {
                handle.block_on(w.tx.commit())?;
                Ok(v)
            }
            Err(e) => {
                // Rollback errors are irrelevant: the connection drops the transaction.
                let _ = handle.block_on(w.tx.rollback());
                Err(e)
            }
        }
    })
    .await
    .map_err(|e| RelayError::Storage(format!("blocking task failed: {e}")))?
}

async fn listen_once(config: &tokio_postgres::Config, notifier: &MailboxNotifier) -> Result<()> {
    let (client, mut conn) = config.connect(NoTls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let driver = tokio::spawn(async move {
        while let Some(msg) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            match msg {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {MAILBOX_CHANNEL}"))
        .await?;
    while let Some(payload) = rx.recv().await {
        if let Ok(id) = encoding::parse_id("mailbox id", &payload) {
            notifier.notify(&id);
        }
    }
    drop(client);
    let _ = driver.await;
    Err(RelayError::Storage("listener connection closed".into()))
}
