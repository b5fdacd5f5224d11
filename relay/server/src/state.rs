//! The state every handler and layer shares ([`AppState`]), below the routes: the route
//! modules take it, the layers beneath them (limits, quotas, metrics, client identification)
//! take only the parts they use, so no arrow runs from them back up to it.

use std::sync::Arc;

use ed25519_dalek::SigningKey;

use crate::client;
use crate::clock::Clock;
use crate::config::Config;
use crate::fetchlog::FetchLog;
use crate::limits::{self, RateLimiter};
use crate::metrics::Metrics;
use crate::notifier::MailboxNotifier;
use crate::quota;
use crate::storage::Storage;

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
    /// Permits of requests processed at once (`--concurrency`; long-polls take none).
    pub concurrency: Arc<tokio::sync::Semaphore>,
    /// Parked long-polls (`--long-polls`, `--long-polls-per-client`).
    pub long_polls: Arc<limits::LongPolls>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Clock for TTLs.
    pub clock: Clock,
    /// Pseudonymous storage keys of clients (quotas).
    pub client_keys: quota::ClientKeys,
}

impl AppState {
    /// The storage key of `client` (quotas).
    pub fn client_key(&self, client: &client::ClientId) -> quota::ClientKey {
        self.client_keys.key(client)
    }

    /// The configured storage limits.
    pub fn quota_limits(&self) -> quota::QuotaLimits {
        quota::QuotaLimits::of(&self.config)
    }
}
