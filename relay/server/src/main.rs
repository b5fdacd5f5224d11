//! `carekey-relay` binary: SQLite by default (`--data DIR`), PostgreSQL with `--database-url`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use carekey_relay::storage::Storage;
use carekey_relay::storage::postgres::PgStorage;
use carekey_relay::storage::sqlite::SqliteStorage;
use carekey_relay::{AppState, Config, app, server, sweeper};
use clap::Parser;

/// Command-line flags (each also readable from the environment).
#[derive(Debug, Parser)]
#[command(
    name = "carekey-relay",
    version,
    about = "Carekey ciphertext-only relay"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "CAREKEY_RELAY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Data directory for the SQLite database (the default backend).
    #[arg(long, env = "CAREKEY_RELAY_DATA", default_value = "carekey-relay-data")]
    data: PathBuf,
    /// PostgreSQL URL (postgres://...); when set, SQLite is not used.
    #[arg(long, env = "CAREKEY_RELAY_DATABASE_URL")]
    database_url: Option<String>,
    /// Public origin clients sign into owner writes (default: http://<listen>).
    #[arg(long, env = "CAREKEY_RELAY_ORIGIN")]
    origin: Option<String>,
    /// Largest request body in bytes.
    #[arg(long, env = "CAREKEY_RELAY_MAX_BODY_BYTES", default_value_t = 8 << 20)]
    max_body_bytes: usize,
    /// Largest blob in bytes (chunked uploads).
    #[arg(long, env = "CAREKEY_RELAY_MAX_BLOB_BYTES", default_value_t = 64 << 20)]
    max_blob_bytes: u64,
    /// Largest backup in bytes (body limit of `PUT /v1/backups/{id}`, independent of
    /// --max-body-bytes).
    #[arg(long, env = "CAREKEY_RELAY_MAX_BACKUP_BYTES", default_value_t = 64 << 20)]
    max_backup_bytes: u64,
    /// Largest total of blob bytes one batch fetch answers.
    #[arg(long, env = "CAREKEY_RELAY_MAX_BATCH_BYTES", default_value_t = 8 << 20)]
    max_batch_bytes: u64,
    /// Largest distance in seconds between a fetch receipt's time and the relay clock.
    #[arg(long, env = "CAREKEY_RELAY_RECEIPT_SKEW_SECS", default_value_t = 600)]
    receipt_skew_secs: u64,
    /// Storage quota per share in bytes.
    #[arg(long, env = "CAREKEY_RELAY_SHARE_QUOTA_BYTES", default_value_t = 1 << 30)]
    share_quota_bytes: u64,
    /// Whole-request timeout in seconds.
    #[arg(long, env = "CAREKEY_RELAY_REQUEST_TIMEOUT_SECS", default_value_t = 60)]
    request_timeout_secs: u64,
    /// Header read timeout in seconds.
    #[arg(long, env = "CAREKEY_RELAY_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    header_timeout_secs: u64,
    /// Longest pause, in seconds, while a request body arrives (a stalled upload is cut: 408).
    #[arg(
        long,
        env = "CAREKEY_RELAY_BODY_IDLE_TIMEOUT_SECS",
        default_value_t = 15
    )]
    body_idle_timeout_secs: u64,
    /// Longest time, in seconds, a write to a client may make no progress (a reader that
    /// stopped reading is disconnected).
    #[arg(long, env = "CAREKEY_RELAY_SEND_TIMEOUT_SECS", default_value_t = 30)]
    send_timeout_secs: u64,
    /// Requests processed at once.
    #[arg(long, env = "CAREKEY_RELAY_CONCURRENCY", default_value_t = 512)]
    concurrency: usize,
    /// Long-polls parked at once per client (they hold no --concurrency permit).
    #[arg(
        long,
        env = "CAREKEY_RELAY_LONG_POLLS_PER_CLIENT",
        default_value_t = 64
    )]
    long_polls_per_client: usize,
    /// Long-polls parked at once in total (each holds a connection: stay below the open-file
    /// limit).
    #[arg(long, env = "CAREKEY_RELAY_LONG_POLLS", default_value_t = 1000)]
    long_polls: usize,
    /// Per-IP requests per second.
    #[arg(long, env = "CAREKEY_RELAY_IP_RATE", default_value_t = 1000.0)]
    ip_rate: f64,
    /// Per-IP burst.
    #[arg(long, env = "CAREKEY_RELAY_IP_BURST", default_value_t = 6000.0)]
    ip_burst: f64,
    /// Per-token requests per second.
    #[arg(long, env = "CAREKEY_RELAY_TOKEN_RATE", default_value_t = 500.0)]
    token_rate: f64,
    /// Per-token burst.
    #[arg(long, env = "CAREKEY_RELAY_TOKEN_BURST", default_value_t = 6000.0)]
    token_burst: f64,
    /// Bearer token `GET /metrics` requires (Prometheus `authorization` / `bearer_token`);
    /// unset: /metrics is open (keep it internal at the proxy).
    #[arg(long, env = "CAREKEY_RELAY_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// TLS certificate chain (PEM); with `--tls-key`, serve HTTPS directly.
    #[arg(long, env = "CAREKEY_RELAY_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "CAREKEY_RELAY_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Sweeper interval in seconds.
    #[arg(long, env = "CAREKEY_RELAY_SWEEP_SECS", default_value_t = 30)]
    sweep_secs: u64,
    /// Reverse proxies (IP addresses, comma-separated) whose X-Forwarded-For names the client;
    /// only requests whose TCP peer is one of them are read that way.
    #[arg(long, env = "CAREKEY_RELAY_TRUSTED_PROXY", default_value = "")]
    trusted_proxy: String,
    /// Most live objects (shares, blobs, uploads, mailboxes, messages, pairings, backups) one
    /// client (IPv4 address, IPv6 /64) may store.
    #[arg(
        long,
        env = "CAREKEY_RELAY_CLIENT_MAX_OBJECTS",
        default_value_t = 50_000
    )]
    client_max_objects: u64,
    /// Most bytes one client may store.
    #[arg(long, env = "CAREKEY_RELAY_CLIENT_MAX_BYTES", default_value_t = 4 << 30)]
    client_max_bytes: u64,
    /// Most bytes the relay stores in total (507 beyond; reads go on).
    #[arg(long, env = "CAREKEY_RELAY_STORAGE_CAP_BYTES", default_value_t = 20 << 30)]
    storage_cap_bytes: u64,
    /// Seconds after its last write a backup slot's bytes expire (0: never).
    #[arg(long, env = "CAREKEY_RELAY_BACKUP_TTL_SECS", default_value_t = 400 * 86_400)]
    backup_ttl_secs: u64,
    /// Operator enrollment key for a closed deployment: new shares, mailboxes, pairing
    /// mailboxes and backups need it in Carekey-Enrollment-Key (only its hash is kept).
    #[arg(long, env = "CAREKEY_RELAY_ENROLLMENT_KEY", hide_env_values = true)]
    enrollment_key: Option<String>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start runtime");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "relay stopped");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = Config::new(
        args.origin
            .clone()
            .unwrap_or_else(|| format!("http://{}", args.listen)),
    );
    config.max_body_bytes = args.max_body_bytes;
    config.max_blob_bytes = args.max_blob_bytes;
    config.max_backup_bytes = args.max_backup_bytes;
    config.max_batch_bytes = args.max_batch_bytes;
    config.receipt_max_skew_secs = args.receipt_skew_secs;
    config.share_quota_bytes = args.share_quota_bytes;
    config.request_timeout = Duration::from_secs(args.request_timeout_secs);
    config.header_timeout = Duration::from_secs(args.header_timeout_secs);
    config.body_idle_timeout = Duration::from_secs(args.body_idle_timeout_secs.max(1));
    config.send_timeout = Duration::from_secs(args.send_timeout_secs.max(1));
    config.concurrency_limit = args.concurrency.max(1);
    config.long_polls_per_client = args.long_polls_per_client;
    config.long_polls_total = args.long_polls;
    config.ip_rate_per_sec = args.ip_rate;
    config.ip_burst = args.ip_burst;
    config.token_rate_per_sec = args.token_rate;
    config.token_burst = args.token_burst;
    config.sweep_interval = Duration::from_secs(args.sweep_secs.max(1));
    config.metrics_token_hash = args
        .metrics_token
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(carekey_relay::metrics::token_hash);
    config.trusted_proxies = carekey_relay::client::parse_trusted(&args.trusted_proxy)?;
    config.client_max_objects = args.client_max_objects;
    config.client_max_bytes = args.client_max_bytes;
    config.storage_cap_bytes = args.storage_cap_bytes;
    config.backup_ttl_secs = args.backup_ttl_secs;
    config.enrollment_key_hash = args
        .enrollment_key
        .as_deref()
        .filter(|k| !k.is_empty())
        .map(carekey_relay::quota::enrollment_hash);
    let storage: Arc<dyn Storage> = match &args.database_url {
        Some(url) => Arc::new(PgStorage::open(url, None).await?),
        None => Arc::new(SqliteStorage::open(&args.data)?),
    };
    let timeouts = server::Timeouts {
        header: config.header_timeout,
        send: config.send_timeout,
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some(server::tls_acceptor(c, k)?),
        _ => None,
    };
    let state = AppState::new(Arc::clone(&storage), config).await?;
    let sweeper = sweeper::spawn(state.clone());
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    tracing::info!(
        addr = %listener.local_addr()?,
        backend = storage.backend(),
        tls = args.tls_cert.is_some(),
        "carekey-relay listening"
    );
    server::serve_with(listener, app(state), timeouts, tls, shutdown_signal()).await;
    sweeper.abort();
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
