//! HTTP client of the relay API (docs/relay.md, docs/relay-formats.md).
//!
//! Timeouts on every request; idempotent reads are retried with backoff on transport errors
//! and 5xx; owner writes are signed with a fresh counter per attempt, so a retry is never a
//! replay. Status codes map to [`ClientError`] variants the UI understands.

use std::time::Duration;

use carekey_core::capability::{FetchReceipt, sign_owner_write};
use carekey_core::keys::{PublicKey, ReadToken, SigningSecret};
use carekey_relay_api as api;
use data_encoding::{BASE64URL_NOPAD, HEXLOWER};
use rand_core::OsRng;
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::answer;
use crate::error::{ClientError, Result};
use crate::ids::{BlobId, MailboxId, PairingId, ShareId};
use crate::progress::{Cancel, Progress, ProgressSink, Stage};

/// Blobs above this size go through the chunked upload API.
pub const CHUNKED_UPLOAD_THRESHOLD: usize = 1024 * 1024;
/// Part size of chunked uploads.
pub const UPLOAD_PART: usize = 1024 * 1024;
const RETRIES: u32 = 3;
/// How many times one request waits out a 429 before giving up: a share of thousands of
/// records meets the relay's per-IP and per-token rate limits.
const RATE_LIMIT_RETRIES: u32 = 10;
/// Longest `Retry-After` waited out, in seconds. Rate limits answer about a second; a longer
/// one (storage quota: an hour, full mailbox: a minute) goes to the caller at once.
const MAX_RETRY_AFTER: u64 = 5;

/// Runs `attempt` again after each rate-limit 429 whose `Retry-After` is short (at most
/// [`RATE_LIMIT_RETRIES`] times); anything else goes to the caller.
async fn waiting_out_rate_limits<F, Fut>(mut attempt: F) -> Result<reqwest::Response>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<reqwest::Response>>,
{
    let mut limited = 0;
    loop {
        match attempt().await {
            Err(ClientError::RateLimited { retry_after_secs })
                if limited < RATE_LIMIT_RETRIES && retry_after_secs <= MAX_RETRY_AFTER =>
            {
                tokio::time::sleep(Duration::from_secs(retry_after_secs.max(1))).await;
                limited += 1;
            }
            other => return other,
        }
    }
}

/// Unpadded base64url, as the relay API uses for binary fields.
pub fn b64(b: &[u8]) -> String {
    BASE64URL_NOPAD.encode(b)
}

/// Decodes a fixed-size base64url field of a relay answer.
pub fn unb64<const N: usize>(s: &str, what: &'static str) -> Result<[u8; N]> {
    BASE64URL_NOPAD
        .decode(s.as_bytes())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(ClientError::BadResponse { what })
}

/// `Authorization: Bearer <base64url(token)>` for a capability token.
fn bearer(token: &[u8; 32]) -> (&'static str, String) {
    ("authorization", format!("Bearer {}", b64(token)))
}

/// Lowercase hex of a 16-byte id.
pub fn hex_id(id: &[u8; 16]) -> String {
    HEXLOWER.encode(id)
}

/// Parses a 16-byte hex id of a relay answer.
pub fn parse_id(s: &str, what: &'static str) -> Result<[u8; 16]> {
    HEXLOWER
        .decode(s.as_bytes())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(ClientError::BadResponse { what })
}

/// The owner capability of one share: its pseudonymous key and write counter.
#[derive(Debug)]
pub struct OwnerCap {
    key: SigningSecret,
    counter: u64,
}

impl OwnerCap {
    /// A fresh owner key (shares of one patient are unlinkable by key).
    pub fn generate() -> Self {
        Self {
            key: SigningSecret::random(&mut OsRng),
            counter: 0,
        }
    }
    /// The public key registered with the share.
    pub fn public(&self) -> PublicKey {
        self.key.public()
    }
    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }
    /// The key and counter, for saving (crate::persist).
    pub(crate) fn parts(&self) -> (&SigningSecret, u64) {
        (&self.key, self.counter)
    }
    /// Resumes a saved capability; the counter never goes below `floor` (see crate::persist).
    pub(crate) fn resume(key: SigningSecret, counter: u64, floor: u64) -> Self {
        Self {
            key,
            counter: counter.max(floor),
        }
    }
}

/// A delegation notice as the relay stores it for the owner (docs/relay.md "Delegation
/// registration").
#[derive(Debug, Clone)]
pub struct StoredNotice {
    /// Its sequence number in the share's notices.
    pub seq: u64,
    /// The relay's time when it was registered (with its delegation).
    pub time: u64,
    /// The notice, sealed to the patient.
    pub body: Vec<u8>,
}

/// A reader's capability: read token plus the reader key that signs receipts.
#[derive(Debug)]
pub struct ReaderCap<'a> {
    /// Bearer token.
    pub token: &'a ReadToken,
    /// Per-relationship reader key.
    pub reader: &'a SigningSecret,
    /// Share id.
    pub share_id: ShareId,
}

/// Where a relationship mailbox receives messages: what a pairing message's opaque return
/// address holds (`id [16] || write token [32]`); the relay is the one of the pairing. The
/// write token is a bearer capability: zeroized on drop, `<redacted>` in `Debug`
/// (docs/threat-model.md T17).
#[derive(Clone, PartialEq, Eq)]
pub struct MailboxAddress {
    /// Mailbox id.
    pub id: MailboxId,
    /// Write capability.
    pub write_token: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for MailboxAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailboxAddress")
            .field("id", &self.id)
            .field("write_token", &REDACTED)
            .finish()
    }
}

/// What `Debug` prints in place of a capability.
const REDACTED: Redacted = Redacted;

struct Redacted;

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl MailboxAddress {
    /// Encoded form.
    pub fn to_bytes(&self) -> Vec<u8> {
        [&self.id.0[..], &self.write_token[..]].concat()
    }
    /// Decodes what a peer sent.
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        if b.len() != 48 {
            return Err(ClientError::Tampered(carekey_core::Error::Malformed {
                what: "mailbox address",
                reason: "wrong length",
            }));
        }
        let mut id = [0u8; 16];
        let mut write_token = Zeroizing::new([0u8; 32]);
        id.copy_from_slice(&b[..16]);
        write_token.copy_from_slice(&b[16..]);
        Ok(Self {
            id: MailboxId(id),
            write_token,
        })
    }
}

/// A mailbox this device owns: address plus read capability (zeroized on drop, `<redacted>`
/// in `Debug`, as the write token).
#[derive(Clone)]
pub struct OwnMailbox {
    /// Where peers write.
    pub address: MailboxAddress,
    /// Read capability.
    pub read_token: Zeroizing<[u8; 32]>,
    /// Highest message sequence already processed.
    pub cursor: u64,
}

impl std::fmt::Debug for OwnMailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnMailbox")
            .field("address", &self.address)
            .field("read_token", &REDACTED)
            .field("cursor", &self.cursor)
            .finish()
    }
}

/// A pairing mailbox just opened ([`Relay::open_pairing`]).
pub struct PairingMailbox {
    /// Its id (the QR carries it; not secret).
    pub id: PairingId,
    /// Read capability (secret: whoever holds it reads the doctor's reply; zeroized on drop).
    pub token: Zeroizing<[u8; 32]>,
    /// Until when the relay keeps it, Unix seconds.
    pub expires_at: u64,
}

impl std::fmt::Debug for PairingMailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairingMailbox")
            .field("id", &self.id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The relay client.
#[derive(Debug, Clone)]
pub struct Relay {
    http: reqwest::Client,
    base: String,
    enrollment: Option<EnrollmentKey>,
}

/// The operator's enrollment key of a closed relay (docs/relay.md "Enrollment"), sent as
/// [`api::HEADER_ENROLLMENT_KEY`]. A credential: `Debug` prints `<redacted>` and the bytes
/// are zeroized when the last clone goes.
#[derive(Clone)]
struct EnrollmentKey(std::sync::Arc<zeroize::Zeroizing<String>>);

impl std::fmt::Debug for EnrollmentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnrollmentKey(<redacted>)")
    }
}

/// Longest enrollment key accepted (the relay hashes whatever it gets; a header this long is
/// far under any server's header limit).
pub const ENROLLMENT_KEY_MAX_CHARS: usize = 256;

/// What [`Relay::probe`] found at a relay URL.
#[derive(Debug)]
pub enum RelayProbe {
    /// A Carekey relay answered with its well-known document.
    Relay,
    /// Something answered, but not as a Carekey relay; the error is how it answered.
    NotARelay(ClientError),
    /// Nothing usable answered (network, TLS, timeout, a relay's own failure).
    Unreachable(ClientError),
}

impl Relay {
    /// A client for the relay at `base_url`: `https://host[:port][/path]`, or `http://` only
    /// for a loopback host (127.0.0.0/8, `::1`, `localhost`: a relay on the same machine, as
    /// in development and tests). Anything else — another scheme, plain HTTP to a remote host
    /// (the relay's answers would travel unauthenticated), userinfo (`user@`), an empty host,
    /// a query or fragment — is [`ClientError::InvalidInput`] (docs/protocol.md "Pairing":
    /// the QR names the relay, so this also screens what a scanned QR points at).
    pub fn new(base_url: &str) -> Result<Self> {
        let base = base_url.trim_end_matches('/').to_owned();
        check_relay_url(&base)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|_| ClientError::InvalidInput("HTTP client could not be built"))?;
        Ok(Self {
            http,
            base,
            enrollment: None,
        })
    }

    /// The same client, sending the operator's enrollment key of a closed relay with every
    /// request (docs/relay.md "Enrollment": only the routes that create storage — shares,
    /// mailboxes, pairings, backups — check it; sending it always keeps the client free of
    /// the relay's route list). 1 to [`ENROLLMENT_KEY_MAX_CHARS`] visible ASCII characters,
    /// else [`ClientError::InvalidInput`] (the message never repeats the key).
    pub fn with_enrollment_key(mut self, key: &str) -> Result<Self> {
        let ok = !key.is_empty()
            && key.len() <= ENROLLMENT_KEY_MAX_CHARS
            && key.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(ClientError::InvalidInput(
                "enrollment key: 1 to 256 visible ASCII characters, no spaces",
            ));
        }
        self.enrollment = Some(EnrollmentKey(std::sync::Arc::new(zeroize::Zeroizing::new(
            key.to_owned(),
        ))));
        Ok(self)
    }

    /// Whether this client sends an enrollment key.
    pub fn has_enrollment_key(&self) -> bool {
        self.enrollment.is_some()
    }

    /// The base URL (also the origin owner writes are signed for).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request; a rate-limit 429 with a short Retry-After is waited out and the same
    /// request sent again (the relay answers 429 before acting on a request, or rolls it back
    /// for a quota, so a resend is never a duplicate). Owner writes use
    /// [`Relay::owner_with`] instead: a resend needs a fresh counter.
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: Vec<(&'static str, String)>,
        body: Option<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response> {
        waiting_out_rate_limits(|| {
            self.send_once(method.clone(), path, headers.clone(), body.clone(), timeout)
        })
        .await
    }

    async fn send_once(
        &self,
        method: Method,
        path: &str,
        headers: Vec<(&'static str, String)>,
        body: Option<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response> {
        let mut rb = self.http.request(method, format!("{}{}", self.base, path));
        for (k, v) in headers {
            rb = rb.header(k, v);
        }
        if let Some(k) = &self.enrollment {
            rb = rb.header(api::HEADER_ENROLLMENT_KEY, k.0.as_str());
        }
        if let Some(t) = timeout {
            rb = rb.timeout(t);
        }
        if let Some(b) = body {
            rb = rb.body(b);
        }
        let resp = rb.send().await.map_err(|e| {
            if e.is_timeout() {
                ClientError::Timeout
            } else {
                ClientError::RelayUnreachable
            }
        })?;
        check_status(resp).await
    }

    /// A read with retries (transport errors and 5xx; backoff 200, 400, 800 ms).
    async fn get_retrying(
        &self,
        path: &str,
        headers: impl Fn() -> Vec<(&'static str, String)>,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response> {
        self.read_retrying(Method::GET, path, || (headers(), None), timeout)
            .await
    }

    /// A read (changes nothing but the audit log, so safe to repeat) with retries; `request`
    /// makes each attempt's headers and body (a fresh receipt per attempt).
    async fn read_retrying(
        &self,
        method: Method,
        path: &str,
        request: impl Fn() -> (Vec<(&'static str, String)>, Option<Vec<u8>>),
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response> {
        let mut attempt = 0;
        loop {
            let (headers, body) = request();
            // `send` waits out short rate limits itself.
            match self
                .send(method.clone(), path, headers, body, timeout)
                .await
            {
                Err(
                    ClientError::RelayUnreachable
                    | ClientError::Timeout
                    | ClientError::RelayFailure { .. },
                ) if attempt < RETRIES => {
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// An owner write: signed over method, path, origin, body hash and a fresh counter.
    async fn owner(
        &self,
        cap: &mut OwnerCap,
        method: Method,
        path: &str,
        body: Vec<u8>,
        json: bool,
    ) -> Result<reqwest::Response> {
        let extra = if json {
            vec![("content-type", "application/json".into())]
        } else {
            Vec::new()
        };
        self.owner_with(cap, method, path, body, extra).await
    }

    async fn owner_with(
        &self,
        cap: &mut OwnerCap,
        method: Method,
        path: &str,
        body: Vec<u8>,
        extra: Vec<(&'static str, String)>,
    ) -> Result<reqwest::Response> {
        // A rate-limit 429 is answered before the write is processed (a quota 429 rolls it
        // back): retrying with a fresh counter and signature is not a replay.
        waiting_out_rate_limits(|| {
            let counter = cap.next();
            let sig = sign_owner_write(&cap.key, method.as_str(), path, &self.base, &body, counter);
            let mut headers = vec![
                (api::HEADER_COUNTER, counter.to_string()),
                (api::HEADER_SIGNATURE, b64(&sig)),
            ];
            headers.extend(extra.iter().cloned());
            self.send_once(method.clone(), path, headers, Some(body.clone()), None)
        })
        .await
    }

    /// Stores backup `version` in the backup slot `id` (bound to `cap`'s key at the first
    /// write; the relay refuses a version not above the stored one with 409).
    pub async fn put_backup(
        &self,
        cap: &mut OwnerCap,
        id: &[u8; 16],
        version: u64,
        blob: Vec<u8>,
    ) -> Result<()> {
        let path = format!("/v1/backups/{}?version={version}", hex_id(id));
        let key = vec![(api::HEADER_OWNER_KEY, b64(cap.public().as_bytes()))];
        self.owner_with(cap, Method::PUT, &path, blob, key).await?;
        Ok(())
    }

    /// The newest backup in slot `id` and its version; `None` if the slot is empty.
    pub async fn get_backup(
        &self,
        cap: &mut OwnerCap,
        id: &[u8; 16],
    ) -> Result<Option<(u64, Vec<u8>)>> {
        let path = format!("/v1/backups/{}", hex_id(id));
        let r = match self
            .owner_with(cap, Method::GET, &path, Vec::new(), Vec::new())
            .await
        {
            Ok(r) => r,
            Err(ClientError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let version = r
            .headers()
            .get(api::HEADER_BACKUP_VERSION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or(ClientError::BadResponse {
                what: "backup version",
            })?;
        let data = answer::read_capped(r, answer::BACKUP_MAX, "backup").await?;
        Ok(Some((version, data)))
    }

    /// A small JSON answer (capped at [`answer::SMALL_JSON_MAX`]).
    async fn json<T: serde::de::DeserializeOwned>(
        resp: reqwest::Response,
        what: &'static str,
    ) -> Result<T> {
        answer::json_capped(resp, answer::SMALL_JSON_MAX, what).await
    }

    /// Whether a Carekey relay answers at this URL: the one reachability check of both apps'
    /// Settings screens and the CLI. Asks for the well-known document, and tells a URL that
    /// answers HTTP without a relay behind it ([`RelayProbe::NotARelay`]: a missing or
    /// malformed document, a refusal) from one that does not answer at all.
    pub async fn probe(&self) -> RelayProbe {
        match self.well_known().await {
            Ok(_) => RelayProbe::Relay,
            Err(
                e @ (ClientError::NotFound
                | ClientError::BadResponse { .. }
                | ClientError::Refused { .. }
                | ClientError::Tampered(_)),
            ) => RelayProbe::NotARelay(e),
            Err(e) => RelayProbe::Unreachable(e),
        }
    }

    /// The relay's audit-head key.
    pub async fn well_known(&self) -> Result<PublicKey> {
        let r = self
            .get_retrying("/.well-known/carekey-relay", Vec::new, None)
            .await?;
        let wk: api::WellKnown = Self::json(r, "well-known").await?;
        PublicKey::from_bytes(unb64(&wk.audit_key, "relay audit key")?).map_err(Into::into)
    }

    /// Creates a share owned by `cap`; returns its id.
    pub async fn create_share(&self, cap: &mut OwnerCap, expires_at: u64) -> Result<ShareId> {
        let body = serde_json::to_vec(&api::CreateShareRequest {
            owner_key: b64(cap.public().as_bytes()),
            expires_at,
        })
        .map_err(|_| ClientError::InvalidInput("share request"))?;
        let r = self
            .owner(cap, Method::POST, "/v1/shares", body, true)
            .await?;
        let c: api::CreateShareResponse = Self::json(r, "create share").await?;
        parse_id(&c.share_id, "share id").map(ShareId)
    }

    /// Uploads one blob of `epoch` (chunked above [`CHUNKED_UPLOAD_THRESHOLD`]), reporting
    /// bytes through `progress` on top of `done`.
    #[allow(clippy::too_many_arguments)]
    pub async fn put_blob(
        &self,
        cap: &mut OwnerCap,
        share: &ShareId,
        blob: &BlobId,
        epoch: u32,
        data: &[u8],
        progress: &dyn ProgressSink,
        cancel: &Cancel,
        (done, total): (u64, u64),
    ) -> Result<()> {
        let (s, b) = (share.to_string(), blob.to_string());
        if data.len() <= CHUNKED_UPLOAD_THRESHOLD {
            let path = format!("/v1/shares/{s}/blobs/{b}?epoch={epoch}");
            self.owner(cap, Method::PUT, &path, data.to_vec(), false)
                .await?;
            progress.report(Progress {
                stage: Stage::Uploading,
                done: done + data.len() as u64,
                total,
            });
            return Ok(());
        }
        let path = format!("/v1/shares/{s}/uploads?blob={b}&epoch={epoch}");
        let r = self
            .owner(cap, Method::POST, &path, Vec::new(), false)
            .await?;
        let up: api::UploadOpened = Self::json(r, "upload").await?;
        let mut sent = 0u64;
        let mut n = 0u32;
        for part in data.chunks(UPLOAD_PART) {
            cancel.check()?;
            let path = format!("/v1/shares/{s}/uploads/{}/chunks/{n}", up.upload_id);
            self.owner(cap, Method::PUT, &path, part.to_vec(), false)
                .await?;
            sent += part.len() as u64;
            n += 1;
            progress.report(Progress {
                stage: Stage::Uploading,
                done: done + sent,
                total,
            });
        }
        let commit = serde_json::to_vec(&api::UploadCommit {
            chunks: n,
            sha256: b64(&Sha256::digest(data)),
        })
        .map_err(|_| ClientError::InvalidInput("upload commit"))?;
        let path = format!("/v1/shares/{s}/uploads/{}/commit", up.upload_id);
        self.owner(cap, Method::POST, &path, commit, true).await?;
        Ok(())
    }

    /// Compare-and-swap of the sealed manifest from version `prev` to `version`.
    pub async fn put_manifest(
        &self,
        cap: &mut OwnerCap,
        share: &ShareId,
        version: u64,
        prev: u64,
        sealed: Vec<u8>,
    ) -> Result<()> {
        let path = format!(
            "/v1/shares/{}/manifest?version={version}&prev={prev}",
            share
        );
        self.owner(cap, Method::PUT, &path, sealed, false).await?;
        Ok(())
    }

    /// Registers a grantee's root read token.
    pub async fn register_token(
        &self,
        cap: &mut OwnerCap,
        share: &ShareId,
        reg: &api::RootTokenRegistration,
    ) -> Result<()> {
        let body =
            serde_json::to_vec(reg).map_err(|_| ClientError::InvalidInput("registration"))?;
        let path = format!("/v1/shares/{}/tokens", share);
        self.owner(cap, Method::POST, &path, body, true).await?;
        Ok(())
    }

    /// Puts stored blobs into relay groups (relay-formats.md "Scoped tokens"): a scoped token
    /// fetches a blob only if they share a group.
    pub async fn register_groups(
        &self,
        cap: &mut OwnerCap,
        share: &ShareId,
        reg: &api::BlobGroupRegistration,
    ) -> Result<()> {
        let body =
            serde_json::to_vec(reg).map_err(|_| ClientError::InvalidInput("registration"))?;
        let path = format!("/v1/shares/{}/groups", share);
        self.owner(cap, Method::POST, &path, body, true).await?;
        Ok(())
    }

    /// Publishes a SMART Health Link of `share` (docs/relay.md "SMART Health Links"): the
    /// JWE files and the passcode hash; answers the link id and its manifest URL.
    pub async fn create_link(
        &self,
        cap: &mut OwnerCap,
        share: &ShareId,
        req: &api::CreateShlRequest,
    ) -> Result<api::CreateShlResponse> {
        let body = serde_json::to_vec(req).map_err(|_| ClientError::InvalidInput("link"))?;
        let path = format!("/v1/shares/{}/links", share);
        let r = self.owner(cap, Method::POST, &path, body, true).await?;
        Self::json(r, "link created").await
    }

    /// Deletes the SMART Health Link whose id hashes to `link_hash` (64 hex characters).
    pub async fn delete_link(
        &self,
        cap: &mut OwnerCap,
        share: &ShareId,
        link_hash: &str,
    ) -> Result<()> {
        let path = format!("/v1/shares/{}/links/{link_hash}", share);
        self.owner(cap, Method::DELETE, &path, Vec::new(), false)
            .await?;
        Ok(())
    }

    /// Revokes a token and its delegated subtree at once.
    pub async fn revoke_token(
        &self,
        cap: &mut OwnerCap,
        share: &ShareId,
        token_hash: &[u8; 32],
    ) -> Result<()> {
        let path = format!(
            "/v1/shares/{}/tokens/{}",
            share,
            HEXLOWER.encode(token_hash)
        );
        self.owner(cap, Method::DELETE, &path, Vec::new(), false)
            .await?;
        Ok(())
    }

    /// Registers a delegated read token: the chain is the authority (each link signed by its
    /// parent, checked by the relay), the notice is sealed to the patient (required by the
    /// relay, docs/relay.md "Delegation registration"). No owner key.
    pub async fn register_delegation(
        &self,
        share: &ShareId,
        root_token_hash: &[u8; 32],
        chain: &[carekey_core::grant::DelegationLink],
        notice: &[u8],
    ) -> Result<()> {
        let reg = api::DelegationRegistration {
            root_token_hash: b64(root_token_hash),
            chain: chain
                .iter()
                .map(|l| b64(&carekey_core::wire::Wire::to_bytes(l)))
                .collect(),
            notice: b64(notice),
        };
        let body =
            serde_json::to_vec(&reg).map_err(|_| ClientError::InvalidInput("registration"))?;
        let path = format!("/v1/shares/{}/delegations", share);
        self.send(
            Method::POST,
            &path,
            vec![("content-type", "application/json".into())],
            Some(body),
            None,
        )
        .await?;
        Ok(())
    }

    /// Delegation notices stored for the owner after sequence `after` (one page).
    pub async fn notices(
        &self,
        cap: &mut OwnerCap,
        share: &ShareId,
        after: u64,
    ) -> Result<Vec<StoredNotice>> {
        let path = format!("/v1/shares/{}/notices?after={after}", share);
        let r = self
            .owner(cap, Method::GET, &path, Vec::new(), false)
            .await?;
        let list: api::NoticeList =
            answer::json_capped(r, answer::NOTICE_PAGE_MAX, "notices").await?;
        list.notices
            .into_iter()
            .map(|n| {
                let body = data_encoding::BASE64URL_NOPAD
                    .decode(n.body.as_bytes())
                    .map_err(|_| ClientError::BadResponse { what: "notice" })?;
                Ok(StoredNotice {
                    seq: n.seq,
                    time: n.time,
                    body,
                })
            })
            .collect()
    }

    /// Deletes every blob of every epoch below `below` (docs/relay.md "Routes"): a revoke
    /// clears all older epochs, also those an interrupted revoke left behind.
    pub async fn delete_epochs_below(
        &self,
        cap: &mut OwnerCap,
        share: &ShareId,
        below: u32,
    ) -> Result<()> {
        let path = format!("/v1/shares/{}/epochs?below={below}", share);
        self.owner(cap, Method::DELETE, &path, Vec::new(), false)
            .await?;
        Ok(())
    }

    /// The share's audit log from sequence `from` (owner read, signed like a write).
    pub async fn audit_log(
        &self,
        cap: &mut OwnerCap,
        share: &ShareId,
        from: u64,
        challenge: &[u8; 32],
    ) -> Result<api::AuditLog> {
        // The challenge is in the signed URI: the answer's `fresh_signature` must cover it
        // (docs/relay-formats.md "Relay audit chain").
        let path = format!(
            "/v1/shares/{}/audit?from={from}&challenge={}",
            share,
            b64(challenge)
        );
        let r = self
            .owner(cap, Method::GET, &path, Vec::new(), false)
            .await?;
        answer::json_capped(r, answer::AUDIT_PAGE_MAX, "audit log").await
    }

    fn reader_headers(
        cap: &ReaderCap<'_>,
        object_id: &str,
        now: u64,
    ) -> Vec<(&'static str, String)> {
        let receipt = FetchReceipt::sign(cap.reader, cap.share_id.0, object_id, now, &mut OsRng);
        vec![
            bearer(cap.token.expose_secret()),
            (
                api::HEADER_RECEIPT,
                b64(&carekey_core::wire::Wire::to_bytes(&receipt)),
            ),
        ]
    }

    /// The sealed manifest and its version (each attempt carries a fresh signed receipt).
    pub async fn get_manifest(&self, cap: &ReaderCap<'_>, now: u64) -> Result<(u64, Vec<u8>)> {
        let path = format!("/v1/shares/{}/manifest", cap.share_id);
        let r = self
            .get_retrying(
                &path,
                || Self::reader_headers(cap, api::MANIFEST_OBJECT_ID, now),
                None,
            )
            .await?;
        let version = r
            .headers()
            .get(api::HEADER_MANIFEST_VERSION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or(ClientError::BadResponse {
                what: "manifest version",
            })?;
        let sealed = answer::read_capped(r, answer::MANIFEST_MAX, "manifest").await?;
        Ok((version, sealed))
    }

    /// One blob of at most [`answer::BLOB_MAX`] bytes; [`Relay::get_blob_sized`] when the
    /// manifest states its size.
    pub async fn get_blob(&self, cap: &ReaderCap<'_>, blob: &BlobId, now: u64) -> Result<Vec<u8>> {
        self.blob_capped(cap, blob, answer::BLOB_MAX, now).await
    }

    /// A blob GET read up to `max` bytes ([`ClientError::TooLarge`] beyond).
    async fn blob_capped(
        &self,
        cap: &ReaderCap<'_>,
        blob: &BlobId,
        max: u64,
        now: u64,
    ) -> Result<Vec<u8>> {
        let b = blob.to_string();
        let path = format!("/v1/shares/{}/blobs/{b}", cap.share_id);
        let r = self
            .get_retrying(&path, || Self::reader_headers(cap, &b, now), None)
            .await?;
        answer::read_capped(r, max, "blob").await
    }

    /// One blob whose size the signed manifest states: the relay's answer is read up to
    /// `size` bytes and no further (more cannot be the signed blob:
    /// [`ClientError::Tampered`] with `HashMismatch`, before the excess is read), so a
    /// hostile relay cannot make the app hold more than the record.
    pub async fn get_blob_sized(
        &self,
        cap: &ReaderCap<'_>,
        blob: &BlobId,
        size: u64,
        now: u64,
    ) -> Result<Vec<u8>> {
        self.blob_capped(cap, blob, size, now)
            .await
            .map_err(not_the_signed_blob)
    }

    /// Fetches up to [`api::MAX_BATCH_BLOBS`] blobs in one request under ONE receipt naming
    /// them all (relay-formats.md "Batch fetch": one audit entry for the batch). Answers in the
    /// order of `blobs`; all or nothing (a missing blob is [`ClientError::NotFound`]).
    pub async fn get_blobs(
        &self,
        cap: &ReaderCap<'_>,
        blobs: &[BlobId],
        now: u64,
    ) -> Result<Vec<Vec<u8>>> {
        let sizes = vec![answer::BLOB_MAX; blobs.len()];
        self.get_blobs_sized(cap, blobs, &sizes, now).await
    }

    /// [`Relay::get_blobs`] of blobs whose sizes the signed manifest states (`sizes`, in the
    /// order of `blobs`): the answer is read up to their frames' total and every frame must
    /// be within its blob's size (else [`ClientError::Tampered`] with `HashMismatch`).
    pub async fn get_blobs_sized(
        &self,
        cap: &ReaderCap<'_>,
        blobs: &[BlobId],
        sizes: &[u64],
        now: u64,
    ) -> Result<Vec<Vec<u8>>> {
        if sizes.len() != blobs.len() {
            return Err(ClientError::InvalidInput("one size per blob"));
        }
        if blobs.is_empty() {
            return Ok(Vec::new());
        }
        if blobs.len() > api::MAX_BATCH_BLOBS {
            return Err(ClientError::InvalidInput("too many blobs for one batch"));
        }
        let mut object = String::with_capacity(api::BATCH_OBJECT_PREFIX.len() + 32 * blobs.len());
        object.push_str(api::BATCH_OBJECT_PREFIX);
        for b in blobs {
            object.push_str(&b.to_string());
        }
        let path = format!("/v1/shares/{}/fetch", cap.share_id);
        let r = self
            .read_retrying(
                Method::POST,
                &path,
                || {
                    let receipt =
                        FetchReceipt::sign(cap.reader, cap.share_id.0, &object, now, &mut OsRng);
                    (
                        vec![bearer(cap.token.expose_secret())],
                        Some(carekey_core::wire::Wire::to_bytes(&receipt)),
                    )
                },
                None,
            )
            .await?;
        let max = sizes
            .iter()
            .fold(0u64, |t, s| t.saturating_add(4).saturating_add(*s));
        let body = answer::read_capped(r, max, "batch")
            .await
            .map_err(not_the_signed_blob)?;
        let frames = split_frames(&body, blobs.len())?;
        if frames.iter().zip(sizes).any(|(f, s)| f.len() as u64 > *s) {
            return Err(not_the_signed_blob(ClientError::TooLarge { what: "batch" }));
        }
        Ok(frames)
    }

    /// Opens a single-use pairing mailbox (docs/protocol.md "Pairing": the QR names it).
    pub async fn open_pairing(&self) -> Result<PairingMailbox> {
        let r = self
            .send(Method::POST, "/v1/pairing", Vec::new(), None, None)
            .await?;
        let p: api::PairingOpened = Self::json(r, "pairing").await?;
        Ok(PairingMailbox {
            id: PairingId(parse_id(&p.mailbox_id, "pairing id")?),
            token: Zeroizing::new(unb64(&p.read_token, "pairing token")?),
            expires_at: p.expires_at,
        })
    }

    /// Puts the doctor's reply into a pairing mailbox. The QR is single-use (docs/relay.md
    /// `PUT /v1/pairing`): 409 (it has its reply) and 404 (closed and gone) are
    /// [`ClientError::AlreadyUsed`], 410 is an expired QR.
    pub async fn reply_pairing(&self, id: &PairingId, reply: Vec<u8>) -> Result<()> {
        let path = format!("/v1/pairing/{id}");
        match self
            .send(Method::PUT, &path, Vec::new(), Some(reply), None)
            .await
        {
            Ok(_) => Ok(()),
            Err(ClientError::Conflict { .. } | ClientError::NotFound) => {
                Err(ClientError::AlreadyUsed)
            }
            Err(ClientError::AccessEnded) => Err(ClientError::Expired {
                what: crate::error::QR_WHAT,
            }),
            Err(e) => Err(e),
        }
    }

    /// Long-polls a pairing mailbox for up to `wait` seconds. The mailbox stays open
    /// (`close=false`): an invalid reply must not lock the real doctor out; the patient closes
    /// it with [`Relay::close_pairing`] once a reply verified.
    pub async fn read_pairing(
        &self,
        id: &PairingId,
        token: &[u8; 32],
        wait: u64,
    ) -> Result<Option<Vec<u8>>> {
        let path = format!("/v1/pairing/{id}?wait={wait}&close=false");
        let r = self
            .send(
                Method::GET,
                &path,
                vec![bearer(token)],
                None,
                Some(Duration::from_secs(wait + 30)),
            )
            .await?;
        if r.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        Ok(Some(
            answer::read_capped(r, answer::MESSAGE_MAX, "pairing reply").await?,
        ))
    }

    /// Closes a pairing mailbox (no further reply is accepted).
    pub async fn close_pairing(&self, id: &PairingId, token: &[u8; 32]) -> Result<()> {
        let path = format!("/v1/pairing/{id}");
        self.send(Method::DELETE, &path, vec![bearer(token)], None, None)
            .await?;
        Ok(())
    }

    /// Opens a relationship mailbox.
    pub async fn open_mailbox(&self) -> Result<OwnMailbox> {
        let r = self
            .send(Method::POST, "/v1/mailboxes", Vec::new(), None, None)
            .await?;
        let m: api::MailboxOpened = Self::json(r, "mailbox").await?;
        Ok(OwnMailbox {
            address: MailboxAddress {
                id: MailboxId(parse_id(&m.mailbox_id, "mailbox id")?),
                write_token: Zeroizing::new(unb64(&m.write_token, "mailbox write token")?),
            },
            read_token: Zeroizing::new(unb64(&m.read_token, "mailbox read token")?),
            cursor: 0,
        })
    }

    /// Appends a sealed message to a peer's mailbox.
    pub async fn append(&self, to: &MailboxAddress, sealed: Vec<u8>) -> Result<()> {
        let path = format!("/v1/mailboxes/{}/messages", to.id);
        self.send(
            Method::POST,
            &path,
            vec![bearer(&to.write_token)],
            Some(sealed),
            None,
        )
        .await?;
        Ok(())
    }

    /// Messages after the mailbox's cursor, waiting up to `wait` seconds for the first.
    pub async fn fetch(&self, mb: &OwnMailbox, wait: u64) -> Result<Vec<(u64, Vec<u8>)>> {
        let path = format!(
            "/v1/mailboxes/{}/messages?after={}&wait={wait}",
            mb.address.id, mb.cursor
        );
        let r = self
            .get_retrying(
                &path,
                || vec![bearer(&mb.read_token)],
                Some(Duration::from_secs(wait + 30)),
            )
            .await?;
        let m: api::MailboxMessages =
            answer::json_capped(r, answer::MAILBOX_PAGE_MAX, "mailbox messages").await?;
        m.messages
            .into_iter()
            .map(|msg| {
                BASE64URL_NOPAD
                    .decode(msg.body.as_bytes())
                    .map(|b| (msg.seq, b))
                    .map_err(|_| ClientError::BadResponse {
                        what: "mailbox message",
                    })
            })
            .collect()
    }

    /// Deletes processed messages up to `through`.
    pub async fn delete_through(&self, mb: &OwnMailbox, through: u64) -> Result<()> {
        let path = format!("/v1/mailboxes/{}/messages?through={through}", mb.address.id);
        self.send(
            Method::DELETE,
            &path,
            vec![bearer(&mb.read_token)],
            None,
            None,
        )
        .await?;
        Ok(())
    }
}

/// The rules of [`Relay::new`].
fn check_relay_url(base: &str) -> Result<()> {
    let (https, rest) = if let Some(r) = base.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = base.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(ClientError::InvalidInput(
            "relay URL must start with https:// (http:// only for this machine)",
        ));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(ClientError::InvalidInput("relay URL has no host"));
    }
    if authority.contains('@') {
        return Err(ClientError::InvalidInput(
            "relay URL must not carry a user name or password",
        ));
    }
    if rest.contains(['?', '#']) || !rest.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ClientError::InvalidInput(
            "relay URL must be plain ASCII without query or fragment",
        ));
    }
    let url = reqwest::Url::parse(base)
        .map_err(|_| ClientError::InvalidInput("relay URL does not parse"))?;
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or(ClientError::InvalidInput("relay URL has no host"))?;
    if !https && !is_loopback(host) {
        return Err(ClientError::InvalidInput(
            "relay URL must use https:// (http:// only for this machine)",
        ));
    }
    Ok(())
}

/// 127.0.0.0/8, `::1` or `localhost` (any case, with or without the final dot), as the URL
/// parser normalised the host (`[::1]` keeps its brackets; `127.1` became `127.0.0.1`).
fn is_loopback(host: &str) -> bool {
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6
            .parse::<std::net::Ipv6Addr>()
            .is_ok_and(|a| a.is_loopback());
    }
    if let Ok(v4) = host.parse::<std::net::Ipv4Addr>() {
        return v4.is_loopback();
    }
    host.trim_end_matches('.').eq_ignore_ascii_case("localhost")
}

/// Waits on one mailbox without borrowing the service that owns it: a clone of the relay
/// client plus the mailbox's address, read capability and cursor at the time it was made
/// ([`crate::patient::Patient::inbox_waiter`]). An app holding its service behind a lock takes
/// the lock only to make the waiter and, later, to open what it returned; the long-poll itself
/// holds nothing (docs/architecture.md "Long waits"). Dropping the future cancels the wait.
#[derive(Clone)]
pub struct MailboxWaiter {
    relay: Relay,
    mailbox: OwnMailbox,
}

impl std::fmt::Debug for MailboxWaiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The read token is a capability: never printed.
        f.debug_struct("MailboxWaiter")
            .field("relay", &self.relay.base())
            .finish_non_exhaustive()
    }
}

impl MailboxWaiter {
    pub(crate) fn new(relay: Relay, mailbox: OwnMailbox) -> Self {
        Self { relay, mailbox }
    }

    /// The sealed messages after the cursor, waiting up to `wait_secs` (at most 25 s per
    /// request, re-asked until the wait is over) for the first; empty when none came. Raw: the
    /// owner opens, verifies and acknowledges them.
    pub async fn wait(&self, wait_secs: u64) -> Result<Vec<(u64, Vec<u8>)>> {
        let deadline = std::time::Instant::now() + Duration::from_secs(wait_secs);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let msgs = self
                .relay
                .fetch(&self.mailbox, left.as_secs().min(LONG_POLL_SECS))
                .await?;
            if !msgs.is_empty() || left.as_secs() <= LONG_POLL_SECS {
                return Ok(msgs);
            }
        }
    }
}

/// A blob answer longer than the size the patient-signed manifest states cannot be the
/// signed blob: the relay swapped or forged it (docs/threat-model.md T2, T24), the same
/// verdict as a hash mismatch, found before the excess is read.
fn not_the_signed_blob(e: ClientError) -> ClientError {
    match e {
        ClientError::TooLarge { .. } => ClientError::Tampered(carekey_core::Error::HashMismatch),
        e => e,
    }
}

/// Longest single long-poll request (the relay caps `wait` at 30 s).
pub(crate) const LONG_POLL_SECS: u64 = 25;

/// Maps an HTTP status to a client error (bodies of 4xx carry a stable code; 5xx nothing).
/// The relay's code for a create refused without the right enrollment key (docs/relay.md
/// "Enrollment").
const ENROLLMENT_REQUIRED: &str = "enrollment_required";

async fn check_status(resp: reqwest::Response) -> Result<reqwest::Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    if status.is_server_error() {
        return Err(ClientError::RelayFailure {
            status: status.as_u16(),
        });
    }
    // An error body is small: a longer one is not read (the code is then "unknown").
    let code = answer::json_capped::<api::ErrorBody>(resp, answer::ERROR_BODY_MAX, "error")
        .await
        .map(|b| b.error)
        .unwrap_or_else(|_| "unknown".into());
    Err(match status {
        StatusCode::FORBIDDEN if code == ENROLLMENT_REQUIRED => ClientError::EnrollmentRequired,
        StatusCode::GONE => ClientError::AccessEnded,
        StatusCode::NOT_FOUND => ClientError::NotFound,
        StatusCode::CONFLICT => ClientError::Conflict { code },
        StatusCode::TOO_MANY_REQUESTS => ClientError::RateLimited {
            retry_after_secs: retry_after,
        },
        s => ClientError::Refused {
            status: s.as_u16(),
            code,
        },
    })
}

/// Splits a batch answer into exactly `n` frames of `u32 length || bytes`; anything else
/// (fewer, more, a length past the end, trailing bytes) is a bad answer.
pub fn split_frames(body: &[u8], n: usize) -> Result<Vec<Vec<u8>>> {
    let bad = || ClientError::BadResponse { what: "batch" };
    let mut out = Vec::with_capacity(n.min(api::MAX_BATCH_BLOBS));
    let mut rest = body;
    while !rest.is_empty() {
        if out.len() == n {
            return Err(bad());
        }
        let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
        let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| bad())?;
        if tail.len() < len {
            return Err(bad());
        }
        let (frame, tail) = tail.split_at(len);
        out.push(frame.to_vec());
        rest = tail;
    }
    if out.len() != n {
        return Err(bad());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{Relay, split_frames};
    use crate::ClientError;

    #[test]
    fn relay_urls_https_or_loopback_http_only() {
        for ok in [
            "https://relay.example.org",
            "https://relay.example.org:8443/",
            "https://relay.example.org/carekey",
            "http://127.0.0.1:8080",
            "http://127.3.4.5",
            "http://localhost:9000/",
            "http://LOCALHOST",
            "http://[::1]:8080",
        ] {
            assert!(Relay::new(ok).is_ok(), "{ok} is accepted");
        }
        for bad in [
            // Another scheme, or none.
            "ftp://relay.example.org",
            "relay.example.org",
            "",
            "HTTPS://relay.example.org",
            // Plain HTTP to anything but this machine.
            "http://example.org",
            "http://10.0.0.1:8080",
            "http://[::2]",
            "http://localhost.example.org",
            "http://127.0.0.1.example.org",
            // Userinfo.
            "https://user@relay.example.org",
            "https://user:pw@relay.example.org",
            "http://evil.example@127.0.0.1",
            // Empty host.
            "https://",
            "http://",
            "https:///path",
            "http://:8080",
            // Query, fragment, spaces.
            "https://relay.example.org/?x=1",
            "https://relay.example.org/#frag",
            "https://relay example.org",
        ] {
            assert!(
                matches!(Relay::new(bad), Err(ClientError::InvalidInput(_))),
                "{bad:?} is refused"
            );
        }
    }

    fn frame(b: &[u8]) -> Vec<u8> {
        let mut v = (b.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(b);
        v
    }

    #[test]
    fn batch_frames_strict() {
        let mut body = frame(b"abc");
        body.extend(frame(b""));
        body.extend(frame(b"z"));
        let got = split_frames(&body, 3).expect("three frames");
        assert_eq!(got, vec![b"abc".to_vec(), Vec::new(), b"z".to_vec()]);
        // Fewer or more frames than asked, a length past the end, a cut length prefix.
        assert!(split_frames(&body, 2).is_err());
        assert!(split_frames(&body, 4).is_err());
        assert!(split_frames(&body[..body.len() - 1], 3).is_err());
        let mut cut = body.clone();
        cut.extend_from_slice(&[0, 0]);
        assert!(split_frames(&cut, 3).is_err());
        assert!(split_frames(&[], 1).is_err());
        assert_eq!(split_frames(&[], 0).expect("empty").len(), 0);
    }
}
