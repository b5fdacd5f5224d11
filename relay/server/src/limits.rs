//! Per-client (IP, IPv6 /64 or trusted proxy's client; crate::client) and per-token rate limits (issue 4 "Limits": 429 with Retry-After).
//!
//! Token buckets kept in memory per relay instance; keys are the client IP and a hash of the
//! presented bearer token (never the token itself).

use std::collections::HashMap;
use std::hash::Hash;

use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::client::ClientId;
use crate::error::RelayError;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Debug)]
struct Buckets<K> {
    map: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq> Buckets<K> {
    fn new() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `key`'s bucket or returns the seconds until one is available.
    fn take(&self, key: K, rate: f64, burst: f64, now: Instant) -> Result<(), u64> {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let b = m.entry(key).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let dt = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + dt * rate).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = if rate > 0.0 {
                (1.0 - b.tokens) / rate
            } else {
                60.0
            };
            Err(wait.ceil().max(1.0) as u64)
        }
    }

    fn prune(&self, rate: f64, burst: f64, now: Instant) {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rate < burst
        });
    }
}

/// The relay's rate limiter.
#[derive(Debug)]
pub struct RateLimiter {
    ip: Buckets<ClientId>,
    token: Buckets<[u8; 32]>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self {
            ip: Buckets::new(),
            token: Buckets::new(),
        }
    }
}

impl RateLimiter {
    /// Forgets full buckets (called by the sweeper).
    pub fn prune(&self, state: &crate::config::Config) {
        let now = Instant::now();
        self.ip.prune(state.ip_rate_per_sec, state.ip_burst, now);
        self.token
            .prune(state.token_rate_per_sec, state.token_burst, now);
    }
}

/// Middleware enforcing both limits before any handler runs.
pub async fn enforce(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let now = Instant::now();
    let c = &state.config;
    // Per client (crate::client: IPv4 address, IPv6 /64, or what a trusted proxy reports);
    // in-process requests without an address are not limited.
    if let Some(client) = req.extensions().get::<ClientId>().copied()
        && client != ClientId::Unknown
        && let Err(retry) = state
            .limiter
            .ip
            .take(client, c.ip_rate_per_sec, c.ip_burst, now)
    {
        state.metrics.rate_limited.inc();
        return RelayError::TooMany {
            retry_after: retry,
            message: "too many requests from this address",
        }
        .into_response();
    }
    if let Some(auth) = req.headers().get(header::AUTHORIZATION) {
        let key: [u8; 32] = Sha256::digest(auth.as_bytes()).into();
        if let Err(retry) = state
            .limiter
            .token
            .take(key, c.token_rate_per_sec, c.token_burst, now)
        {
            state.metrics.rate_limited.inc();
            return RelayError::TooMany {
                retry_after: retry,
                message: "too many requests with this token",
            }
            .into_response();
        }
    }
    next.run(req).await
}
