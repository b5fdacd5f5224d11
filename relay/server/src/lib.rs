//! Carekey relay: a thin, durable, ciphertext-only server (issue 4; docs/relay.md "HTTP API" and
//! "Storage"; docs/protocol.md "Manifest and epochs", "Forwarding", "Revocation and expiry",
//! "Audit chains"). Byte formats it verifies are fixed by `docs/relay-formats.md`.
//!
//! [`app`] builds the router (tests drive it in-process); [`server::serve`] runs it on a
//! socket with header timeouts and graceful shutdown.

pub mod audit;
pub mod backup;
pub mod batch;
pub mod clock;
pub mod config;
pub mod delegation;
pub mod encoding;
pub mod error;
pub mod fetchlog;
pub mod limits;
pub mod mailbox;
pub mod metrics;
pub mod openapi;
pub mod server;
pub mod share;
pub mod storage;
pub mod sweeper;
pub mod token;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use carekey_relay_api::Health;
use ed25519_dalek::SigningKey;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

pub use clock::Clock;
pub use config::Config;
pub use error::{RelayError, Result};
use fetchlog::FetchLog;
use limits::RateLimiter;
use mailbox::MailboxNotifier;
use metrics::Metrics;
use storage::Storage;

/// Everything a handler needs.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The storage backend.
    pub storage: Arc<dyn Storage>,
    /// Limits and origin.
    pub config: Arc<Config>,
    /// The relay's audit-head signing key (generated on first start, kept in the database).
    pub audit_key: Arc<SigningKey>,
    /// Group commit of fetch audit entries (one writer task per instance).
    pub fetch_log: FetchLog,
    /// Long-poll wake-ups.
    pub notifier: Arc<MailboxNotifier>,
    /// Rate limiter.
    pub limiter: Arc<RateLimiter>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Clock for TTLs.
    pub clock: Clock,
}

impl AppState {
    /// Loads (or creates) the audit key, starts the fetch-log writer and cross-instance
    /// mailbox notifications. Must run inside a tokio runtime.
    pub async fn new(storage: Arc<dyn Storage>, config: Config) -> Result<Self> {
        let audit_key = audit::load_or_create_key(storage.as_ref()).await?;
        let notifier = Arc::new(MailboxNotifier::default());
        storage.listen_mailboxes(Arc::clone(&notifier));
        Ok(Self {
            fetch_log: FetchLog::spawn(Arc::clone(&storage)),
            storage,
            config: Arc::new(config),
            audit_key: Arc::new(audit_key),
            notifier,
            limiter: Arc::new(RateLimiter::default()),
            metrics: Arc::new(Metrics::default()),
            clock: Clock::default(),
        })
    }
}

/// `GET /healthz`: 200 if the storage answers, 503 otherwise.
async fn healthz(State(state): State<AppState>) -> Response {
    let ok = state
        .storage
        .read(|tx| tx.query("SELECT 1", &[]).map(|_| ()))
        .await
        .is_ok();
    if ok {
        axum::Json(Health {
            status: "ok".into(),
        })
        .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(Health {
                status: "unavailable".into(),
            }),
        )
            .into_response()
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    error::error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error",
    )
}

async fn not_found() -> RelayError {
    RelayError::NotFound("no such route")
}

/// Builds the relay router with all limits applied.
pub fn app(state: AppState) -> Router {
    let c = Arc::clone(&state.config);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::serve))
        .route("/openapi.json", get(openapi::serve))
        .route("/.well-known/carekey-relay", get(audit::well_known))
        .route("/v1/shares", post(share::create))
        .route(
            "/v1/shares/{share_id}",
            axum::routing::delete(share::delete),
        )
        .route(
            "/v1/shares/{share_id}/blobs/{blob_id}",
            put(share::put_blob).get(share::get_blob),
        )
        .route("/v1/shares/{share_id}/fetch", post(batch::fetch))
        .route("/v1/shares/{share_id}/uploads", post(share::open_upload))
        .route(
            "/v1/shares/{share_id}/uploads/{upload_id}/chunks/{n}",
            put(share::put_chunk),
        )
        .route(
            "/v1/shares/{share_id}/uploads/{upload_id}/commit",
            post(share::commit_upload),
        )
        .route(
            "/v1/shares/{share_id}/manifest",
            put(share::put_manifest).get(share::get_manifest),
        )
        .route(
            "/v1/shares/{share_id}/epochs/{epoch}",
            axum::routing::delete(share::delete_epoch),
        )
        .route("/v1/shares/{share_id}/tokens", post(token::register))
        .route("/v1/shares/{share_id}/groups", post(token::register_groups))
        .route(
            "/v1/shares/{share_id}/tokens/{token_hash}",
            axum::routing::delete(token::revoke),
        )
        .route(
            "/v1/shares/{share_id}/delegations",
            post(delegation::register),
        )
        .route("/v1/shares/{share_id}/audit", get(audit::read_log))
        .route(
            "/v1/backups/{backup_id}",
            put(backup::put)
                // Backups have their own body limit (this inner layer overrides the global one).
                .layer(DefaultBodyLimit::max(
                    usize::try_from(c.max_backup_bytes).unwrap_or(usize::MAX),
                ))
                .get(backup::get)
                .delete(backup::delete),
        )
        .route("/v1/shares/{share_id}/notices", get(delegation::notices))
        .route("/v1/pairing", post(mailbox::open_pairing))
        .route(
            "/v1/pairing/{mailbox_id}",
            put(mailbox::reply_pairing)
                .get(mailbox::read_pairing)
                .delete(mailbox::close_pairing),
        )
        .route("/v1/mailboxes", post(mailbox::open_mailbox))
        .route(
            "/v1/mailboxes/{mailbox_id}",
            axum::routing::delete(mailbox::close),
        )
        .route(
            "/v1/mailboxes/{mailbox_id}/messages",
            post(mailbox::append)
                .get(mailbox::fetch)
                .delete(mailbox::delete_read),
        )
        .fallback(not_found)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::observe,
        ))
        .layer(
            ServiceBuilder::new()
                .layer(CatchPanicLayer::custom(panic_response))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    c.request_timeout,
                ))
                .layer(GlobalConcurrencyLimitLayer::new(c.concurrency_limit))
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    limits::enforce,
                ))
                .layer(DefaultBodyLimit::max(c.max_body_bytes)),
        )
        .with_state(state)
}
