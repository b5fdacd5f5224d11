//! Prometheus metrics (`GET /metrics`) and request logging that never contains ids, tokens or
//! payloads: only the route template, method, status and latency.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The relay's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Responses by status class (index 1..=5 for 1xx..5xx).
    pub responses: [Counter; 6],
    /// Requests being processed.
    pub in_flight: AtomicU64,
    /// Shares created.
    pub shares_created: Counter,
    /// Blobs stored.
    pub blobs_stored: Counter,
    /// Blob and manifest fetches served.
    pub fetches: Counter,
    /// Requests refused by the rate limiter.
    pub rate_limited: Counter,
    /// Sweeper runs.
    pub sweeps: Counter,
}

impl Metrics {
    /// Renders the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# TYPE carekey_relay_responses_total counter");
        for (i, c) in self.responses.iter().enumerate().skip(1) {
            let _ = writeln!(
                s,
                "carekey_relay_responses_total{{class=\"{i}xx\"}} {}",
                c.get()
            );
        }
        let _ = writeln!(s, "# TYPE carekey_relay_in_flight gauge");
        let _ = writeln!(
            s,
            "carekey_relay_in_flight {}",
            self.in_flight.load(Ordering::Relaxed)
        );
        for (name, c) in [
            ("carekey_relay_shares_created_total", &self.shares_created),
            ("carekey_relay_blobs_stored_total", &self.blobs_stored),
            ("carekey_relay_fetches_total", &self.fetches),
            ("carekey_relay_rate_limited_total", &self.rate_limited),
            ("carekey_relay_sweeps_total", &self.sweeps),
        ] {
            let _ = writeln!(s, "# TYPE {name} counter");
            let _ = writeln!(s, "{name} {}", c.get());
        }
        s
    }
}

/// Domain label of the `/metrics` bearer token hash.
pub const METRICS_TOKEN_LABEL: &[u8] = b"carekey/v1/metrics-token";

/// `SHA-256("carekey/v1/metrics-token" 0x00 || token)`: what the relay keeps of the token.
pub fn token_hash(token: &str) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(METRICS_TOKEN_LABEL);
    h.update([0u8]);
    h.update(token.as_bytes());
    h.finalize().into()
}

/// `GET /metrics`: with a configured token, only for `Authorization: Bearer <token>` (401
/// otherwise, compared in constant time on the hashes).
pub fn serve(
    metrics: &Metrics,
    token: Option<&[u8; 32]>,
    headers: &axum::http::HeaderMap,
) -> Response {
    if let Some(want) = token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| token_hash(t.trim()));
        let ok = presented.is_some_and(|p| crate::credential::ct_eq(&p, want));
        if !ok {
            return crate::error::RelayError::Unauthorized("metrics need the metrics bearer token")
                .into_response();
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(),
    )
        .into_response()
}

/// Middleware counting responses and logging route templates (never concrete paths).
pub async fn observe(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    metrics.in_flight.fetch_add(1, Ordering::Relaxed);
    let resp = next.run(req).await;
    metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
    let status = resp.status().as_u16();
    let class = usize::from(status / 100).min(5);
    metrics.responses[class].inc();
    tracing::info!(
        method = %method,
        route = %route,
        status,
        ms = start.elapsed().as_millis() as u64,
        "request"
    );
    resp
}
