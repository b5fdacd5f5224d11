//! Carekey relay: a thin, durable, ciphertext-only server (issue 4; docs/relay.md "HTTP API" and
//! "Storage"; docs/protocol.md "Manifest and epochs", "Forwarding", "Revocation and expiry",
//! "Audit chains"). Byte formats it verifies are fixed by `docs/relay-formats.md`.
//!
//! [`app`] builds the router (tests drive it in-process); [`server::serve`] runs it on a
//! socket with header timeouts and graceful shutdown.

pub mod audit;
pub mod audit_log;
pub mod backup;
pub mod batch;
pub mod body;
pub mod client;
pub mod clock;
pub mod config;
pub mod credential;
pub mod delegation;
pub mod download;
pub mod encoding;
pub mod error;
pub mod fetchlog;
pub mod health_link;
pub mod limits;
pub mod mailbox;
pub mod metrics;
pub mod notifier;
pub mod openapi;
pub mod owner;
pub mod quota;
pub mod rejection;
pub mod replay;
pub mod scope;
pub mod server;
pub mod share;
pub mod state;
pub mod storage;
pub mod sweeper;
pub mod token;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use carekey_relay_api::Health;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

pub use clock::Clock;
pub use config::Config;
pub use error::{RelayError, Result};
use fetchlog::FetchLog;
use limits::RateLimiter;
use metrics::Metrics;
use notifier::MailboxNotifier;
pub use rejection::BodyKind;
pub use state::AppState;
use storage::Storage;

impl AppState {
    /// Loads (or creates) the audit key, starts the fetch-log writer and cross-instance
    /// mailbox notifications. Must run inside a tokio runtime.
    pub async fn new(storage: Arc<dyn Storage>, config: Config) -> Result<Self> {
        let audit_key = audit::load_or_create_key(storage.as_ref()).await?;
        let client_keys = quota::ClientKeys::load_or_create(storage.as_ref()).await?;
        let permits = config.concurrency_limit.max(1);
        let notifier = Arc::new(MailboxNotifier::default());
        storage.listen_mailboxes(Arc::clone(&notifier));
        Ok(Self {
            fetch_log: FetchLog::spawn(Arc::clone(&storage)),
            storage,
            config: Arc::new(config),
            audit_key: Arc::new(audit_key),
            notifier,
            limiter: Arc::new(RateLimiter::default()),
            concurrency: Arc::new(tokio::sync::Semaphore::new(permits)),
            long_polls: Arc::new(limits::LongPolls::default()),
            metrics: Arc::new(Metrics::default()),
            clock: Clock::default(),
            client_keys,
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
        error::error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "storage unavailable",
        )
    }
}

/// `GET /metrics` ([`metrics::serve`]).
async fn metrics_route(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    metrics::serve(
        &state.metrics,
        state.config.metrics_token_hash.as_ref(),
        &headers,
    )
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

/// One route of the relay: what [`app_with_routes`] registered (the OpenAPI test compares
/// this list with `/openapi.json`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteInfo {
    /// HTTP method.
    pub method: Method,
    /// Path template as routed, e.g. `/v1/shares/{share_id}`.
    pub path: &'static str,
    /// What the route takes as its body (checked: 415 otherwise).
    pub body: BodyKind,
}

/// Registers routes one method at a time and records each, so the recorded list is exactly
/// what the router serves.
struct Routes {
    router: Router<AppState>,
    list: Vec<RouteInfo>,
    config: Arc<Config>,
}

impl Routes {
    fn new(config: Arc<Config>) -> Self {
        Self {
            router: Router::new(),
            list: Vec::new(),
            config,
        }
    }

    /// Routes `method path` to `handler`, taking bodies of `body` kind. A route with a body
    /// gets its own body limit ([`body::route_limit`], instead of `--max-body-bytes`) and the
    /// [`body::guard`] (media type, declared length, idle timeout).
    fn add<H, T>(mut self, method: Method, path: &'static str, body: BodyKind, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone())
            .unwrap_or_else(|_| panic!("route method {method} has no filter"));
        let mut mr = on(filter, handler);
        if body != BodyKind::None {
            let limit = body::route_limit(&self.config, &method, path, body);
            let idle = self.config.body_idle_timeout;
            let m = method.clone();
            mr = mr
                .layer::<_, std::convert::Infallible>(axum::middleware::from_fn(
                    move |req, next| body::guard(m.clone(), body, limit, idle, req, next),
                ))
                // This inner layer overrides the global body limit.
                .layer::<_, std::convert::Infallible>(DefaultBodyLimit::max(limit));
        }
        self.router = self.router.route(path, mr);
        self.list.push(RouteInfo { method, path, body });
        self
    }
}

/// Builds the relay router with all limits applied.
pub fn app(state: AppState) -> Router {
    app_with_routes(state).0
}

/// [`app`], plus the list of every route it serves.
pub fn app_with_routes(state: AppState) -> (Router, Vec<RouteInfo>) {
    use BodyKind::{Json, None as Empty, Raw};
    let c = Arc::clone(&state.config);
    let (get, post, put, delete) = (Method::GET, Method::POST, Method::PUT, Method::DELETE);
    let r = Routes::new(Arc::clone(&c))
        .add(get.clone(), "/healthz", Empty, healthz)
        .add(get.clone(), "/metrics", Empty, metrics_route)
        .add(get.clone(), "/openapi.json", Empty, openapi::serve)
        .add(
            get.clone(),
            "/.well-known/carekey-relay",
            Empty,
            audit_log::well_known,
        )
        .add(post.clone(), "/v1/shares", Json, share::create)
        .add(
            delete.clone(),
            "/v1/shares/{share_id}",
            Empty,
            share::delete,
        )
        .add(
            put.clone(),
            "/v1/shares/{share_id}/blobs/{blob_id}",
            Raw,
            share::put_blob,
        )
        .add(
            get.clone(),
            "/v1/shares/{share_id}/blobs/{blob_id}",
            Empty,
            share::get_blob,
        )
        .add(
            post.clone(),
            "/v1/shares/{share_id}/fetch",
            Raw,
            batch::fetch,
        )
        .add(
            post.clone(),
            "/v1/shares/{share_id}/uploads",
            Empty,
            share::open_upload,
        )
        .add(
            put.clone(),
            "/v1/shares/{share_id}/uploads/{upload_id}/chunks/{n}",
            Raw,
            share::put_chunk,
        )
        .add(
            post.clone(),
            "/v1/shares/{share_id}/uploads/{upload_id}/commit",
            Json,
            share::commit_upload,
        )
        .add(
            put.clone(),
            "/v1/shares/{share_id}/manifest",
            Raw,
            share::put_manifest,
        )
        .add(
            get.clone(),
            "/v1/shares/{share_id}/manifest",
            Empty,
            share::get_manifest,
        )
        .add(
            delete.clone(),
            "/v1/shares/{share_id}/epochs/{epoch}",
            Empty,
            share::delete_epoch,
        )
        .add(
            delete.clone(),
            "/v1/shares/{share_id}/epochs",
            Empty,
            share::delete_epochs_below,
        )
        .add(
            post.clone(),
            "/v1/shares/{share_id}/tokens",
            Json,
            token::register,
        )
        .add(
            post.clone(),
            "/v1/shares/{share_id}/groups",
            Json,
            token::register_groups,
        )
        .add(
            delete.clone(),
            "/v1/shares/{share_id}/tokens/{token_hash}",
            Empty,
            token::revoke,
        )
        .add(
            post.clone(),
            "/v1/shares/{share_id}/delegations",
            Json,
            delegation::register,
        )
        .add(
            get.clone(),
            "/v1/shares/{share_id}/audit",
            Empty,
            audit_log::read_log,
        )
        .add(
            get.clone(),
            "/v1/shares/{share_id}/notices",
            Empty,
            delegation::notices,
        )
        .add(put.clone(), "/v1/backups/{backup_id}", Raw, backup::put)
        .add(get.clone(), "/v1/backups/{backup_id}", Empty, backup::get)
        .add(
            delete.clone(),
            "/v1/backups/{backup_id}",
            Empty,
            backup::delete,
        )
        .add(post.clone(), "/v1/pairing", Json, mailbox::open_pairing)
        .add(
            put.clone(),
            "/v1/pairing/{mailbox_id}",
            Raw,
            mailbox::reply_pairing,
        )
        .add(
            get.clone(),
            "/v1/pairing/{mailbox_id}",
            Empty,
            mailbox::read_pairing,
        )
        .add(
            delete.clone(),
            "/v1/pairing/{mailbox_id}",
            Empty,
            mailbox::close_pairing,
        )
        .add(post.clone(), "/v1/mailboxes", Json, mailbox::open_mailbox)
        .add(
            delete.clone(),
            "/v1/mailboxes/{mailbox_id}",
            Empty,
            mailbox::close,
        )
        .add(
            post.clone(),
            "/v1/mailboxes/{mailbox_id}/messages",
            Raw,
            mailbox::append,
        )
        .add(
            get.clone(),
            "/v1/mailboxes/{mailbox_id}/messages",
            Empty,
            mailbox::fetch,
        )
        .add(
            delete.clone(),
            "/v1/mailboxes/{mailbox_id}/messages",
            Empty,
            mailbox::delete_read,
        )
        .add(
            post.clone(),
            "/v1/shares/{share_id}/links",
            Json,
            health_link::create,
        )
        .add(
            delete,
            "/v1/shares/{share_id}/links/{link_hash}",
            Empty,
            health_link::delete,
        )
        .add(post, "/shl/{link_id}", Json, health_link::manifest)
        .add(get, "/shl/files/{ticket}", Empty, health_link::file);
    let admission = limits::Admission {
        config: Arc::clone(&c),
        limiter: Arc::clone(&state.limiter),
        concurrency: Arc::clone(&state.concurrency),
        long_polls: Arc::clone(&state.long_polls),
        metrics: Arc::clone(&state.metrics),
    };
    let router = r
        .router
        .fallback(not_found)
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.metrics),
            metrics::observe,
        ))
        .layer(
            ServiceBuilder::new()
                // Outermost: whatever answers an error below, the client gets the relay's JSON.
                .layer(axum::middleware::from_fn(rejection::json_errors))
                .layer(CatchPanicLayer::custom(panic_response))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    c.request_timeout,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    Arc::clone(&c),
                    client::identify_layer,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    admission.clone(),
                    limits::enforce,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    admission,
                    limits::admit,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    Arc::clone(&c),
                    quota::enrollment,
                ))
                .layer(DefaultBodyLimit::max(c.max_body_bytes)),
        )
        // Outside everything: CORS preflights of the public SHL routes are answered before
        // routing (they are not routes), and their answers, errors included, carry CORS.
        .layer(axum::middleware::from_fn(health_link::cors))
        .with_state(state);
    (router, r.list)
}
