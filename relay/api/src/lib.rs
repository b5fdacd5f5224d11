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
    #[schema(pattern = r"^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$")]
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
    #[schema(minimum = 1, maximum = 65536)]
    pub chunks: u32,
    /// SHA-256 of the concatenated chunks (base64url); the relay refuses a mismatch.
    #[schema(pattern = r"^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$")]
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
    #[schema(pattern = r"^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$")]
    pub token_hash: String,
    /// Grantee's per-relationship Ed25519 key (base64url, 32 bytes).
    #[schema(pattern = r"^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$")]
    pub reader_key: String,
    /// Encoded scope (base64url, see relay-formats.md "Scope").
    #[schema(
        pattern = r"^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-][AQgw]|[A-Za-z0-9_-]{2}[AEIMQUYcgkosw048])?$"
    )]
    pub scope: String,
    /// Unix seconds; the relay answers 410 after it.
    pub expires_at: u64,
    /// Delegation depth the patient allowed (0: no delegation).
    #[schema(maximum = 255)]
    pub depth: u8,
    /// The relay groups the token may read (each base64url, 16 bytes): present, the token
    /// reads only blobs registered in one of them ("scoped", relay-formats.md "Scoped
    /// tokens"); absent, a version-1 registration that reads every blob of the share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 4107)]
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
    #[schema(pattern = r"^[A-Za-z0-9_-]{21}[AQgw]$")]
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

/// Answer to `DELETE /v1/shares/{share_id}/tokens/{token_hash}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct TokensRevoked {
    /// Tokens newly revoked: the named one and its delegated subtree.
    pub revoked: u64,
}

/// Body of `POST /v1/shares/{share_id}/delegations` (signed by the chain itself).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DelegationRegistration {
    /// Token hash of the root registration the chain starts from (base64url, 32 bytes).
    #[schema(pattern = r"^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$")]
    pub root_token_hash: String,
    /// Root-first delegation links (each base64url); the last one names the new token.
    #[schema(min_items = 1, max_items = 4)]
    pub chain: Vec<String>,
    /// Notice sealed to the patient (base64url, opaque to the relay), readable by the owner.
    /// Required and non-empty: a delegation the patient is not told of is refused
    /// (`notice_required`), so every "delegation registered" audit entry has a notice the
    /// patient can compare it with (docs/protocol.md "Forwarding").
    #[schema(
        min_length = 1,
        max_length = 87382,
        pattern = r"^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-][AQgw]|[A-Za-z0-9_-]{2}[AEIMQUYcgkosw048])?$"
    )]
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
    /// Relay signature over the head and the read's `challenge` (base64url, 64 bytes;
    /// docs/relay-formats.md "Relay audit chain", `fresh_sig`). Present only when the read
    /// named a challenge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fresh_signature: Option<String>,
}

/// Answer to `GET /v1/shares/{share_id}/audit?from=N[&challenge=C]`.
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

/// Most notices in one page of `GET /v1/shares/{share_id}/notices`.
pub const NOTICE_PAGE_ITEMS: usize = 500;
/// Most notice body bytes in one page: the page ends before the notice that would pass this
/// (it always holds one notice when any is left), so a reader asks again after the last one.
/// Both ends rely on it: the relay never builds a larger page, the client never reads one.
pub const NOTICE_PAGE_BYTES: usize = 1 << 20;

/// Answer to `GET /v1/shares/{share_id}/notices?after=N`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct NoticeList {
    /// Notices with `seq > after`, ascending; at most [`NOTICE_PAGE_ITEMS`] and
    /// [`NOTICE_PAGE_BYTES`] of bodies (before base64).
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

/// Most messages in one page of `GET /v1/mailboxes/{mailbox_id}/messages`.
pub const MAILBOX_PAGE_ITEMS: usize = 200;
/// Most message body bytes in one page, as [`NOTICE_PAGE_BYTES`] for notices: the page ends
/// before the message that would pass this and always holds one when any is waiting.
pub const MAILBOX_PAGE_BYTES: usize = 1 << 20;

/// Answer to `GET /v1/mailboxes/{mailbox_id}/messages?after=N&wait=S`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct MailboxMessages {
    /// Messages with `seq > after`, ascending; at most [`MAILBOX_PAGE_ITEMS`] and
    /// [`MAILBOX_PAGE_BYTES`] of bodies (before base64).
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

// --- SMART Health Links (issue 15; docs/relay.md "SMART Health Links") ---
//
// The relay serves a share's records to viewers without Carekey as a standard SMART Health
// Link (HL7 SMART Health Cards and Links IG STU1, "SMART Health Links"): the patient's device
// encrypts each file as a JWE under a fresh key the relay never sees, the relay stores the
// ciphertext and a passcode hash, and answers the SHL manifest request at an unguessable URL.

/// Bytes of a link id: SHL "Establish a SMART Health Link Manifest URL" asks for at least
/// 256 bits of entropy in the manifest URL. In paths: 43 unpadded base64url characters.
pub const SHL_LINK_ID_LEN: usize = 32;
/// Bytes of a `location` ticket (the same entropy as the manifest URL).
pub const SHL_TICKET_LEN: usize = 32;
/// Most files one link holds.
pub const MAX_SHL_FILES: usize = 64;
/// Longest compact JWE of one link file, in bytes of its text. A viewer GETs a `location` file
/// in one response (SHL "SMART Health Link Manifest Request"), and a published file carries
/// its attachments inline (docs/shl.md "Publishing"): a PDF of 2.25 MiB still fits (base64
/// twice: in the FHIR JSON, then the JWE). Larger files are left out by the publishing device.
pub const MAX_SHL_FILE_BYTES: usize = 4 << 20;
/// Longest JWE text of all of a link's files together: one create request holds them all, and
/// this stays under the relay's default request-body limit (`--max-body-bytes`, 8 MiB) with
/// room for the JSON around them.
pub const MAX_SHL_LINK_BYTES: usize = 7 << 20;
/// Most failed passcode attempts a link may allow before it dies.
pub const MAX_SHL_ATTEMPTS: u32 = 100;
/// Longest `recipient` or `passcode` a manifest request may carry (characters: the limit the
/// OpenAPI document can state; at most 1 KiB of UTF-8 each, within the 4 KiB body limit).
pub const MAX_SHL_REQUEST_FIELD: usize = 256;
/// Longest `recipient` kept in the audit log (bytes, cut at a character boundary).
pub const SHL_RECIPIENT_LOGGED_MAX: usize = 100;
/// Argon2id memory (KiB) of the passcode hash: the client computes it, the relay recomputes
/// it for each offered passcode, so both use these fixed parameters (relay-formats.md
/// "SMART Health Link passcode").
pub const SHL_PASSCODE_M_KIB: u32 = 19 * 1024;
/// Argon2id passes of the passcode hash.
pub const SHL_PASSCODE_T: u32 = 2;
/// Argon2id lanes of the passcode hash.
pub const SHL_PASSCODE_P: u32 = 1;
/// Bytes of the passcode salt.
pub const SHL_PASSCODE_SALT_LEN: usize = 16;
/// Bytes of the passcode hash.
pub const SHL_PASSCODE_HASH_LEN: usize = 32;
/// The SHL content types a published link may hold (SHL "SMART Health Link Manifest"
/// `contentType`; `application/smart-api-access` is not published by Carekey).
pub const SHL_CONTENT_TYPES: &[&str] = &["application/fhir+json", "application/smart-health-card"];

/// One encrypted file of a link.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ShlFileUpload {
    /// One of [`SHL_CONTENT_TYPES`].
    pub content_type: String,
    /// The file as a compact JWE (`alg: dir`, `enc: A256GCM`; SHL "Encrypting and
    /// Decrypting Files"). The relay checks its form, never its content.
    pub jwe: String,
}

/// The passcode as the relay stores it: Argon2id (fixed parameters above) of the passcode.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ShlPasscodeHash {
    /// Salt, base64url of [`SHL_PASSCODE_SALT_LEN`] bytes.
    #[schema(pattern = r"^[A-Za-z0-9_-]{21}[AQgw]$")]
    pub salt: String,
    /// Hash, base64url of [`SHL_PASSCODE_HASH_LEN`] bytes.
    #[schema(pattern = r"^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$")]
    pub hash: String,
}

/// `POST /v1/shares/{share_id}/links` (owner write): publish a SMART Health Link.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CreateShlRequest {
    /// The files, in manifest order (1 to [`MAX_SHL_FILES`]).
    #[schema(min_items = 1, max_items = 64)]
    pub files: Vec<ShlFileUpload>,
    /// The passcode hash; `None`: no passcode (the client's default is one).
    pub passcode: Option<ShlPasscodeHash>,
    /// Failed passcode attempts before the link dies (1 to [`MAX_SHL_ATTEMPTS`]).
    #[schema(minimum = 1, maximum = 100)]
    pub max_attempts: u32,
    /// Unix seconds after which the link answers 404 (at most the share's own expiry).
    pub expires_at: u64,
}

/// Answer to `POST /v1/shares/{share_id}/links`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct CreateShlResponse {
    /// The link id: base64url of [`SHL_LINK_ID_LEN`] random bytes. Its SHA-256 (hex) names
    /// the link in `DELETE /v1/shares/{share_id}/links/{link_hash}`.
    pub link_id: String,
    /// The manifest URL to put in the `shlink:/` payload's `url`.
    pub url: String,
}

/// The SHL manifest request body (SHL "SMART Health Link Manifest Request").
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ShlManifestRequest {
    /// Who asks, as the viewer states it (self-asserted; logged, cut to
    /// [`SHL_RECIPIENT_LOGGED_MAX`] bytes): not only white space, at most
    /// [`MAX_SHL_REQUEST_FIELD`] characters.
    #[schema(min_length = 1, max_length = 256, pattern = r"\S")]
    pub recipient: String,
    /// The passcode, for a `P` link (at most [`MAX_SHL_REQUEST_FIELD`] characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub passcode: Option<String>,
    /// Largest file the viewer wants embedded (longer ones come as `location`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded_length_max: Option<u64>,
}

/// One file of the SHL manifest answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ShlManifestFile {
    /// The file's content type.
    pub content_type: String,
    /// The compact JWE itself, or
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded: Option<String>,
    /// a short-lived URL to `GET` it from (SHL: at most one hour, 256-bit entropy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// The SHL manifest answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ShlManifest {
    /// The files.
    pub files: Vec<ShlManifestFile>,
}

/// The 401 answer to a wrong or missing passcode (SHL: the body carries `remainingAttempts`),
/// with the relay's usual `error` and `message`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ShlPasscodeRejected {
    /// `wrong_passcode` or `passcode_required`.
    pub error: String,
    /// Fixed explanation.
    pub message: String,
    /// Failed attempts left before the link dies.
    pub remaining_attempts: u32,
}
