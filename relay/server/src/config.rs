//! Relay limits and settings (flags and environment variables of the binary).

use std::net::IpAddr;
use std::time::Duration;

/// Default of `--send-timeout-secs` (docs/relay.md "Streaming"): a client whose socket
/// takes no bytes for this long is cut.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Runtime configuration of one relay instance.
#[derive(Debug, Clone)]
pub struct Config {
    /// Public origin signed into owner writes, e.g. `http://127.0.0.1:8080` (no trailing slash).
    pub origin: String,
    /// Largest accepted request body in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Largest blob (single PUT or committed chunked upload) in bytes (413 beyond).
    pub max_blob_bytes: u64,
    /// Largest backup (`PUT /v1/backups/{id}`, one request body) in bytes (413 beyond). This
    /// route's body limit, independent of `max_body_bytes`.
    pub max_backup_bytes: u64,
    /// Largest total of blob bytes one batch fetch may answer (413 beyond).
    pub max_batch_bytes: u64,
    /// Largest distance, in seconds, between a fetch receipt's signed time and the relay clock
    /// (400 `receipt_time` beyond).
    pub receipt_max_skew_secs: u64,
    /// Storage quota per share in bytes (429 beyond).
    pub share_quota_bytes: u64,
    /// Longest share lifetime accepted at creation, in seconds.
    pub max_share_ttl_secs: u64,
    /// Whole-request timeout (408 beyond); long-polls are bounded by `max_wait_secs` below it.
    pub request_timeout: Duration,
    /// Time a client has to send its request headers before the connection is cut.
    pub header_timeout: Duration,
    /// Longest pause while a request body arrives (408 `body_timeout` beyond; crate::body).
    pub body_idle_timeout: Duration,
    /// Longest a write to a client may make no progress before the connection is dropped
    /// (a reader that stopped reading; crate::server::SendTimeout).
    pub send_timeout: Duration,
    /// Requests processed at once; more wait in line. Long-polls do not count (they have
    /// their own limits below).
    pub concurrency_limit: usize,
    /// Long-polls parked at once per client (429 `too_many_long_polls` beyond).
    pub long_polls_per_client: usize,
    /// Long-polls parked at once in total (429 beyond). Each holds a connection: keep it below
    /// the process's open-file limit.
    pub long_polls_total: usize,
    /// Steady per-IP request rate (requests per second).
    pub ip_rate_per_sec: f64,
    /// Per-IP burst size.
    pub ip_burst: f64,
    /// Steady per-token request rate (requests per second).
    pub token_rate_per_sec: f64,
    /// Per-token burst size.
    pub token_burst: f64,
    /// Longest pairing mailbox lifetime in seconds (minutes, docs/protocol.md "Pairing").
    pub pairing_ttl_secs: u64,
    /// Longest relationship mailbox lifetime in seconds.
    pub mailbox_ttl_secs: u64,
    /// Most messages waiting in one relationship mailbox (429 beyond).
    pub mailbox_max_messages: u64,
    /// Largest long-poll wait a client may ask for, in seconds.
    pub max_wait_secs: u64,
    /// Deepest delegation chain accepted.
    pub max_delegation_depth: u8,
    /// How long revoked/expired tokens and deleted shares keep answering 410, in seconds.
    pub tombstone_secs: u64,
    /// How long an uncommitted chunked upload lives, in seconds.
    pub upload_ttl_secs: u64,
    /// Interval of the TTL sweeper.
    pub sweep_interval: Duration,
    /// SHA-256 of the bearer token `GET /metrics` requires; `None`: open (a relay behind a
    /// proxy that keeps `/metrics` internal). Metrics are counters only, but traffic volume is
    /// still nobody else's business on a public relay.
    pub metrics_token_hash: Option<[u8; 32]>,
    /// Reverse proxies whose `X-Forwarded-For` names the client (crate::client); empty: the
    /// TCP peer is the client.
    pub trusted_proxies: Vec<IpAddr>,
    /// Most live objects (shares, blobs, pending uploads, mailboxes, messages, pairing
    /// mailboxes, backup slots) one client may have stored (429 `client_quota` beyond).
    pub client_max_objects: u64,
    /// Most bytes one client may have stored (429 `client_quota` beyond).
    pub client_max_bytes: u64,
    /// Most bytes the relay stores in total (507 `storage_full` beyond; reads go on).
    pub storage_cap_bytes: u64,
    /// Backup slots not written for this long have their bytes dropped by the sweeper
    /// (0: never).
    pub backup_ttl_secs: u64,
    /// Hash of the operator's enrollment key (crate::quota::enrollment_hash); when set, new
    /// shares, mailboxes, pairing mailboxes and backups need `Carekey-Enrollment-Key`.
    pub enrollment_key_hash: Option<[u8; 32]>,
}

impl Config {
    /// Defaults suitable for tests and small deployments, with the given origin.
    pub fn new(origin: impl Into<String>) -> Self {
        Self {
            origin: origin.into(),
            max_body_bytes: 8 << 20,
            max_blob_bytes: 64 << 20,
            max_backup_bytes: 64 << 20,
            max_batch_bytes: 8 << 20,
            receipt_max_skew_secs: 600,
            share_quota_bytes: 1 << 30,
            max_share_ttl_secs: 400 * 86_400,
            request_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(15),
            send_timeout: DEFAULT_SEND_TIMEOUT,
            concurrency_limit: 512,
            long_polls_per_client: 64,
            long_polls_total: 1000,
            // A whole check-up (the largest Synthea patient is ~4,200 blobs) fits in one burst;
            // the sustained rates still bound a scraper.
            ip_rate_per_sec: 1000.0,
            ip_burst: 6000.0,
            token_rate_per_sec: 500.0,
            token_burst: 6000.0,
            pairing_ttl_secs: 600,
            mailbox_ttl_secs: 400 * 86_400,
            mailbox_max_messages: 1000,
            max_wait_secs: 30,
            max_delegation_depth: 4,
            tombstone_secs: 30 * 86_400,
            upload_ttl_secs: 86_400,
            sweep_interval: Duration::from_secs(30),
            metrics_token_hash: None,
            trusted_proxies: Vec::new(),
            // The largest Synthea check-up is ~4,200 blobs; a patient sharing with several
            // doctors while an epoch rotates holds a few times that.
            client_max_objects: 50_000,
            client_max_bytes: 4 << 30,
            storage_cap_bytes: 20 << 30,
            backup_ttl_secs: 400 * 86_400,
            enrollment_key_hash: None,
        }
    }
}
