//! Request and response types of the Carekey relay HTTP API.
//!
//! This crate holds no cryptography and no key material: binary fields travel as unpadded
//! base64url strings and ids as 32 lowercase hex characters (`docs/relay-formats.md`). The
//! relay (`carekey-relay`) and the apps both build on these types; `docs/relay.md` lists the
//! routes, their authentication and their status codes.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Header carrying the owner's per-share counter (decimal u64).
pub const HEADER_COUNTER: &str = "carekey-counter";
/// Header carrying the owner's Ed25519 signature (base64url, 64 bytes).
pub const HEADER_SIGNATURE: &str = "carekey-signature";
/// Header carrying a doctor-signed fetch receipt (base64url) on every read with a token.
pub const HEADER_RECEIPT: &str = "carekey-receipt";
/// Response header carrying the manifest version on `GET .../manifest`.
pub const HEADER_MANIFEST_VERSION: &str = "carekey-manifest-version";
/// Header naming the Ed25519 owner key (base64url, 32 bytes) a backup slot is bound to; required
/// on the first write to a slot, optional (but checked) afterwards.
pub const HEADER_OWNER_KEY: &str = "carekey-owner-key";
/// Response header carrying the backup version on `GET /v1/backups/{backup_id}`.
pub const HEADER_BACKUP_VERSION: &str = "carekey-backup-version";
/// Header carrying the operator's enrollment key on the routes that create storage for a new
/// party (`POST /v1/shares`, `/v1/pairing`, `/v1/mailboxes`, `PUT /v1/backups/{id}`), when the
/// relay was started with `--enrollment-key` (a closed deployment).
pub const HEADER_ENROLLMENT_KEY: &str = "carekey-enrollment-key";
/// Receipt `object_id` used when the manifest (not a blob) is fetched.
pub const MANIFEST_OBJECT_ID: &str = "manifest";
/// Receipt `object_id` prefix of a batch fetch (`POST /v1/shares/{share_id}/fetch`): followed
/// by the blob ids, 32 lowercase hex characters each, no separator, in the order answered.
pub const BATCH_OBJECT_PREFIX: &str = "blobs:";
/// Most blob ids one batch fetch may name.
pub const MAX_BATCH_BLOBS: usize = 256;
/// Bytes of an opaque relay group tag (docs/relay-formats.md "Scoped tokens").
pub const GROUP_TAG_LEN: usize = 16;
/// Most groups one token may be registered with (11 categories + 4096 listed records).
pub const MAX_TOKEN_GROUPS: usize = 11 + 4096;
/// Most (group, blob) pairs one `POST /v1/shares/{share_id}/groups` may carry.
pub const MAX_GROUP_ROWS: usize = 16_384;

/// Body of every 4xx/5xx answer. 5xx answers never carry details.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `counter_replayed`.
    pub error: String,
    /// Human-readable explanation (never contains ids, tokens or payloads).
    pub message: String,
}

/// `POST /v1/shares` (owner write, self-certifying).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CreateShareRequest {
    /// The share's pseudonymous Ed25519 owner key (base64url, 32 bytes).
    pub owner_key: String,
    /// Unix seconds after which the relay deletes the share.
    pub expires_at: u64,
}

/// Answer to `POST /v1/shares`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct CreateShareResponse {
    /// Random share id (32 lowercase hex characters).
    pub share_id: String,
}

/// Answer to blob uploads (single PUT or chunked commit).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct BlobStored {
    /// Size of the stored blob in bytes.
    pub size: u64,
    /// SHA-256 of the stored bytes (base64url).
    pub sha256: String,
}

/// Answer to `POST /v1/shares/{share_id}/uploads`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct UploadOpened {
    /// Random upload id (32 lowercase hex characters).
    pub upload_id: String,
}

/// Body of `POST /v1/shares/{share_id}/uploads/{upload_id}/commit`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UploadCommit {
    /// Number of chunks uploaded (indices `0..chunks`).
    pub chunks: u32,
    /// SHA-256 of the concatenated chunks (base64url); the relay refuses a mismatch.
    pub sha256: String,
}

/// Answer to `PUT /v1/backups/{backup_id}?version=V`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct BackupStored {
    /// The backup version now stored.
    pub version: u64,
    /// Size of the stored backup in bytes.
    pub size: u64,
    /// SHA-256 of the stored bytes (base64url).
    pub sha256: String,
}

/// Answer to `PUT /v1/shares/{share_id}/manifest`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ManifestSwapped {
    /// The version now current.
    pub version: u64,
}

/// Answer to `DELETE /v1/shares/{share_id}/epochs/{epoch}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct EpochDeleted {
    /// Number of blobs removed.
    pub deleted_blobs: u64,
}

/// Body of `POST /v1/shares/{share_id}/tokens` (owner write): a root token registration.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RootTokenRegistration {
    /// `SHA-256("carekey/v1/read-token" 0x00 || token)` (base64url, 32 bytes).
    pub token_hash: String,
    /// Grantee's per-relationship Ed25519 key (base64url, 32 bytes).
    pub reader_key: String,
    /// Encoded scope (base64url, see relay-formats.md "Scope").
    pub scope: String,
    /// Unix seconds; the relay answers 410 after it.
    pub expires_at: u64,
    /// Delegation depth the patient allowed (0: no delegation).
    pub depth: u8,
    /// The relay groups the token may read (each base64url, 16 bytes): present, the token
    /// reads only blobs registered in one of them ("scoped", relay-formats.md "Scoped
    /// tokens"); absent, a version-1 registration that reads every blob of the share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
}

/// Body of `POST /v1/shares/{share_id}/groups` (owner write): which stored blobs belong to
/// which relay group (relay-formats.md "Scoped tokens").
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BlobGroupRegistration {
    /// Groups and their blobs; at most [`MAX_GROUP_ROWS`] (group, blob) pairs in all.
    pub groups: Vec<BlobGroup>,
}

/// One group of a [`BlobGroupRegistration`].
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BlobGroup {
    /// The opaque group tag (base64url, 16 bytes).
    pub group: String,
    /// Blob ids (32 lowercase hex characters each) of blobs already stored in the share.
    pub blobs: Vec<String>,
}

/// Answer to `POST /v1/shares/{share_id}/groups`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct BlobGroupsStored {
    /// (group, blob) pairs stored (pairs already stored count too).
    pub rows: u64,
}

/// Body of `POST /v1/shares/{share_id}/delegations` (signed by the chain itself).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DelegationRegistration {
    /// Token hash of the root registration the chain starts from (base64url, 32 bytes).
    pub root_token_hash: String,
    /// Root-first delegation links (each base64url); the last one names the new token.
    pub chain: Vec<String>,
    /// Notice sealed to the patient (base64url, opaque to the relay), readable by the owner.
    /// Required and non-empty: a delegation the patient is not told of is refused
    /// (`notice_required`), so every "delegation registered" audit entry has a notice the
    /// patient can compare it with (docs/protocol.md "Forwarding").
    #[serde(default)]
    pub notice: String,
}

/// One entry of a share's audit hash chain.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct AuditEntry {
    /// Sequence number, starting at 1.
    pub seq: u64,
    /// Previous entry hash (base64url, 32 bytes; zeros for entry 1).
    pub prev_hash: String,
    /// Unix seconds when appended.
    pub time: u64,
    /// Entry kind (relay-formats.md "Relay audit chain").
    pub kind: u8,
    /// Kind-specific body (base64url).
    pub body: String,
    /// This entry's hash (base64url, 32 bytes).
    pub entry_hash: String,
}

/// The relay-signed head of a share's audit chain.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct AuditHead {
    /// Sequence number of the last entry.
    pub seq: u64,
    /// Hash of the last entry (base64url).
    pub entry_hash: String,
    /// Relay signature over the head (base64url, 64 bytes).
    pub signature: String,
}

/// Answer to `GET /v1/shares/{share_id}/audit?from=N`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct AuditLog {
    /// Entries with `seq >= from`, ascending (at most one page).
    pub entries: Vec<AuditEntry>,
    /// The current signed head.
    pub head: AuditHead,
}

/// A notice sealed to the patient (e.g. delegation registration).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Notice {
    /// Sequence number within the share.
    pub seq: u64,
    /// Unix seconds when stored.
    pub time: u64,
    /// Opaque sealed bytes (base64url).
    pub body: String,
}

/// Answer to `GET /v1/shares/{share_id}/notices?after=N`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct NoticeList {
    /// Notices with `seq > after`, ascending.
    pub notices: Vec<Notice>,
}

/// Answer to `GET /.well-known/carekey-relay`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct WellKnown {
    /// Format version (1).
    pub version: u32,
    /// Relay audit-head Ed25519 public key (base64url, 32 bytes).
    pub audit_key: String,
}

/// Body of `POST /v1/pairing` and `POST /v1/mailboxes` (both optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MailboxOpen {
    /// Requested lifetime in seconds (capped by the relay's limit).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// Answer to `POST /v1/pairing`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct PairingOpened {
    /// Random mailbox id (32 lowercase hex) to put in the QR code.
    pub mailbox_id: String,
    /// Bearer token (base64url) that lets the opener read the reply; stays on the phone.
    pub read_token: String,
    /// Unix seconds when the mailbox expires.
    pub expires_at: u64,
}

/// Answer to `POST /v1/mailboxes`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct MailboxOpened {
    /// Random mailbox id (32 lowercase hex).
    pub mailbox_id: String,
    /// Bearer token (base64url) for fetching and deleting messages.
    pub read_token: String,
    /// Bearer token (base64url) for appending messages.
    pub write_token: String,
    /// Unix seconds when the mailbox expires.
    pub expires_at: u64,
}

/// Answer to `POST /v1/mailboxes/{mailbox_id}/messages`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct MessageAppended {
    /// Sequence number of the stored message.
    pub seq: u64,
}

/// One mailbox message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct MailboxMessage {
    /// Sequence number (cursor) of the message.
    pub seq: u64,
    /// Unix seconds when appended.
    pub time: u64,
    /// Opaque sealed bytes (base64url).
    pub body: String,
}

/// Answer to `GET /v1/mailboxes/{mailbox_id}/messages?after=N&wait=S`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct MailboxMessages {
    /// Messages with `seq > after`, ascending.
    pub messages: Vec<MailboxMessage>,
    /// Cursor to pass as `after` next time.
    pub cursor: u64,
}

/// Answer to `DELETE /v1/mailboxes/{mailbox_id}/messages?through=N`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct MessagesDeleted {
    /// Number of messages removed.
    pub deleted: u64,
}

/// Answer to `GET /healthz`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Health {
    /// `ok` when the storage answers.
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_rejected() {
        let r: Result<CreateShareRequest, _> =
            serde_json::from_str(r#"{"owner_key":"x","expires_at":1,"extra":2}"#);
        assert!(r.is_err());
    }
}
