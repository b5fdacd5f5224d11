//! Request limits kept in memory per relay instance (docs/relay.md "Limits"):
//!
//! - rate limits per client (IPv4 address, IPv6 /64 or a trusted proxy's client;
//!   crate::client) and per bearer token (a hash of it, never the token): 429 with
//!   Retry-After;
//! - admission ([`admit`]): a request is processed once it holds one of `--concurrency`
//!   permits (others wait in line), except long-polls, which instead need one of
//!   `--long-polls` slots and one of their client's `--long-polls-per-client` (429
//!   `too_many_long_polls` at once when none is free). A parked long-poll therefore never holds
//!   a permit other requests wait for: one client parking hundreds of long-polls neither delays
//!   anyone's GETs nor takes more than its own share of long-poll slots.

use std::collections::HashMap;
use std::hash::Hash;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

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

/// What the limit layers use of the relay's state.
#[derive(Debug, Clone)]
pub struct Admission {
    /// Limits.
    pub config: Arc<crate::config::Config>,
    /// Token buckets.
    pub limiter: Arc<RateLimiter>,
    /// Permits of requests processed at once.
    pub concurrency: Arc<tokio::sync::Semaphore>,
    /// Parked long-polls.
    pub long_polls: Arc<LongPolls>,
    /// Counts refusals.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Middleware enforcing both limits before any handler runs.
pub async fn enforce(State(state): State<Admission>, req: Request, next: Next) -> Response {
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

/// Seconds a client refused a long-poll slot is told to wait.
pub const LONG_POLL_RETRY_SECS: u64 = 5;

/// Routes whose GET long-polls when asked to `wait` (more than 0 seconds).
pub const LONG_POLL_ROUTES: &[&str] = &[
    "/v1/pairing/{mailbox_id}",
    "/v1/mailboxes/{mailbox_id}/messages",
];

/// Whether `req` is a long-poll: a GET of a [`LONG_POLL_ROUTES`] route with `wait=S`, S > 0
/// (a `wait` that does not parse is left to the handler's 400).
pub fn is_long_poll(req: &Request) -> bool {
    long_polls(
        req.method(),
        req.extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str),
        req.uri().query(),
    )
}

/// [`is_long_poll`] of a request's method, route template and query string.
pub fn long_polls(method: &axum::http::Method, route: Option<&str>, query: Option<&str>) -> bool {
    method == axum::http::Method::GET
        && route.is_some_and(|p| LONG_POLL_ROUTES.contains(&p))
        && query.is_some_and(|q| {
            q.split('&')
                .filter_map(|kv| kv.strip_prefix("wait="))
                .any(|v| v.parse::<u64>().is_ok_and(|w| w > 0))
        })
}

#[derive(Debug, Default)]
struct PollCounts {
    total: usize,
    per_client: HashMap<ClientId, usize>,
}

/// Parked long-polls per client and in total.
#[derive(Debug, Default)]
pub struct LongPolls {
    counts: Mutex<PollCounts>,
}

/// Why a long-poll was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollRefused {
    /// The client holds `--long-polls-per-client` already.
    Client,
    /// The relay holds `--long-polls` already.
    Relay,
}

/// A long-poll slot, given back when dropped (the request answered, timed out or the client
/// went away).
#[derive(Debug)]
pub struct PollSlot<'a> {
    polls: &'a LongPolls,
    client: ClientId,
}

impl Drop for PollSlot<'_> {
    fn drop(&mut self) {
        let mut c = self.polls.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_client.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_client.remove(&self.client);
            }
        }
    }
}

impl LongPolls {
    /// Takes a slot for `client`, or says which limit is reached.
    pub fn enter(
        &self,
        client: ClientId,
        per_client: usize,
        total: usize,
    ) -> Result<PollSlot<'_>, PollRefused> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mine = c.per_client.get(&client).copied().unwrap_or(0);
        if mine >= per_client {
            return Err(PollRefused::Client);
        }
        if c.total >= total {
            return Err(PollRefused::Relay);
        }
        c.total += 1;
        c.per_client.insert(client, mine + 1);
        Ok(PollSlot {
            polls: self,
            client,
        })
    }

    /// Long-polls parked now (in total, and of `client`).
    pub fn active(&self, client: &ClientId) -> (usize, usize) {
        let c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        (c.total, c.per_client.get(client).copied().unwrap_or(0))
    }
}

/// Middleware: admission (see the module documentation).
pub async fn admit(State(state): State<Admission>, req: Request, next: Next) -> Response {
    if is_long_poll(&req) {
        let client = req
            .extensions()
            .get::<ClientId>()
            .copied()
            .unwrap_or(ClientId::Unknown);
        let c = &state.config;
        let slot = match state
            .long_polls
            .enter(client, c.long_polls_per_client, c.long_polls_total)
        {
            Ok(slot) => slot,
            Err(why) => {
                state.metrics.rate_limited.inc();
                return RelayError::TooMany {
                    retry_after: LONG_POLL_RETRY_SECS,
                    message: match why {
                        PollRefused::Client => {
                            "too many long-polls from this address at once; retry later"
                        }
                        PollRefused::Relay => {
                            "the relay holds as many long-polls as it allows; retry later"
                        }
                    },
                }
                .into_response();
            }
        };
        let resp = next.run(req).await;
        drop(slot);
        return resp;
    }
    // Waits in line for a permit (bounded by the request timeout outside this layer).
    let Ok(_permit) = state.concurrency.acquire().await else {
        return RelayError::Storage("concurrency semaphore closed".into()).into_response();
    };
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_poll_slots_per_client_and_total() {
        let p = LongPolls::default();
        let (a, b) = (ClientId::V4([1, 1, 1, 1]), ClientId::V4([2, 2, 2, 2]));
        let a1 = p.enter(a, 2, 3).expect("a1");
        let a2 = p.enter(a, 2, 3).expect("a2");
        assert_eq!(p.enter(a, 2, 3).err(), Some(PollRefused::Client));
        let b1 = p.enter(b, 2, 3).expect("b1");
        assert_eq!(p.enter(b, 2, 3).err(), Some(PollRefused::Relay));
        assert_eq!(p.active(&a), (3, 2));
        drop(a1);
        assert_eq!(p.active(&a), (2, 1));
        drop((a2, b1));
        assert_eq!(p.active(&a), (0, 0));
        assert!(p.counts.lock().expect("lock").per_client.is_empty());
    }

    #[test]
    fn which_requests_long_poll() {
        use axum::http::Method;
        let m = Some("/v1/mailboxes/{mailbox_id}/messages");
        let get = Method::GET;
        assert!(long_polls(&get, m, Some("after=1&wait=5")));
        assert!(long_polls(
            &get,
            Some("/v1/pairing/{mailbox_id}"),
            Some("wait=1&close=false")
        ));
        assert!(!long_polls(&get, m, Some("wait=0")));
        assert!(!long_polls(&get, m, None));
        assert!(!long_polls(&get, m, Some("wait=abc")));
        assert!(!long_polls(&get, None, Some("wait=5")));
        assert!(!long_polls(&Method::DELETE, m, Some("wait=5")));
        assert!(!long_polls(
            &get,
            Some("/v1/shares/{share_id}/manifest"),
            Some("wait=5")
        ));
    }
}
