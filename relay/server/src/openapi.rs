//! OpenAPI document generated from the API types (utoipa) and the route table below, served
//! at `GET /openapi.json`.

use axum::Json;
use carekey_relay_api as api;
use serde_json::{Map, Value, json};
use utoipa::OpenApi;

use crate::rejection::BodyKind;

/// Schemas of every request and response body.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Carekey relay",
        description = "Thin, durable, ciphertext-only relay. Auth: owner = Carekey-Counter + Carekey-Signature; reader = Bearer token + Carekey-Receipt; mailbox = Bearer capability. Every error answer is an ErrorBody {error, message} (also 404 for an unknown route and 405, with Allow, for a method a route does not take); 5xx bodies carry no detail."
    ),
    components(schemas(
        api::ErrorBody,
        api::CreateShareRequest,
        api::CreateShareResponse,
        api::BlobStored,
        api::UploadOpened,
        api::UploadCommit,
        api::ManifestSwapped,
        api::BackupStored,
        api::EpochDeleted,
        api::RootTokenRegistration,
        api::DelegationRegistration,
        api::BlobGroupRegistration,
        api::BlobGroup,
        api::BlobGroupsStored,
        api::AuditEntry,
        api::AuditHead,
        api::AuditLog,
        api::Notice,
        api::NoticeList,
        api::WellKnown,
        api::MailboxOpen,
        api::PairingOpened,
        api::MailboxOpened,
        api::MessageAppended,
        api::MailboxMessage,
        api::MailboxMessages,
        api::MessagesDeleted,
        api::Health,
        api::ShlFileUpload,
        api::ShlPasscodeHash,
        api::CreateShlRequest,
        api::CreateShlResponse,
        api::ShlManifestRequest,
        api::ShlManifestFile,
        api::ShlManifest,
        api::ShlPasscodeRejected,
        api::TokensRevoked
    ))
)]
pub struct ApiDoc;

/// One documented operation (kept next to `crate::app_with_routes`; a test checks both list
/// the same routes, methods and body kinds).
#[derive(Debug, Clone, Copy)]
pub struct RouteDoc {
    /// HTTP method.
    pub method: &'static str,
    /// Path template.
    pub path: &'static str,
    /// Who may call it.
    pub auth: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// Query parameters: name, required.
    pub query: &'static [(&'static str, bool)],
    /// Request body kind, and the JSON schema name for [`BodyKind::Json`].
    pub body: (BodyKind, Option<&'static str>),
    /// Success statuses.
    pub success: &'static [u16],
    /// Route-specific error statuses (the common ones are added by [`errors_of`]).
    pub errors: &'static [u16],
    /// What a success answer other than 204 carries.
    pub ok: Ok,
    /// Header every 200 answer carries (a decimal u64), if any.
    pub ok_header: Option<&'static str>,
}

/// The body of a route's success answers (204 answers have none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ok {
    /// No body (also for 201 answers of routes that store without answering anything).
    Empty,
    /// JSON of the named component schema.
    Json(&'static str),
    /// Opaque bytes (`application/octet-stream`).
    Bytes,
    /// Prometheus text exposition (`text/plain`).
    Text,
    /// A compact JWE (`application/jose`, SHL location files).
    Jose,
    /// This document (`application/json`, an OpenAPI 3.1 object).
    Document,
}

const fn route(
    method: &'static str,
    path: &'static str,
    auth: &'static str,
    summary: &'static str,
    success: &'static [u16],
    errors: &'static [u16],
) -> RouteDoc {
    RouteDoc {
        method,
        path,
        auth,
        summary,
        query: &[],
        body: (BodyKind::None, None),
        success,
        errors,
        ok: Ok::Empty,
        ok_header: None,
    }
}

impl RouteDoc {
    const fn query(mut self, q: &'static [(&'static str, bool)]) -> Self {
        self.query = q;
        self
    }
    const fn json(mut self, schema: &'static str) -> Self {
        self.body = (BodyKind::Json, Some(schema));
        self
    }
    const fn raw(mut self) -> Self {
        self.body = (BodyKind::Raw, None);
        self
    }
    const fn ok(mut self, ok: Ok) -> Self {
        self.ok = ok;
        self
    }
    const fn header(mut self, name: &'static str) -> Self {
        self.ok_header = Some(name);
        self
    }
}

/// Every route: method, path, auth, summary, parameters, body, success and error statuses.
pub const ROUTES: &[RouteDoc] = &[
    route("GET", "/healthz", "none", "200 storage answers / 503", &[200], &[503])
    .ok(Ok::Json("Health")),
    route(
        "GET",
        "/metrics",
        "none, or Bearer with --metrics-token",
        "Prometheus text, 401 without the configured token",
        &[200],
        &[401],
    )
    .ok(Ok::Text),
    route("GET", "/openapi.json", "none", "this document", &[200], &[])
    .ok(Ok::Document),
    route(
        "GET",
        "/.well-known/carekey-relay",
        "none",
        "relay audit key (WellKnown)",
        &[200],
        &[],
    )
    .ok(Ok::Json("WellKnown")),
    route(
        "POST",
        "/v1/shares",
        "owner (self-certifying)",
        "create share: CreateShareRequest -> 201 CreateShareResponse",
        &[201],
        &[401],
    )
    .json("CreateShareRequest")
    .ok(Ok::Json("CreateShareResponse")),
    route(
        "DELETE",
        "/v1/shares/{share_id}",
        "owner",
        "delete share -> 204 (410 afterwards)",
        &[204],
        &[401, 404, 409, 410],
    ),
    route(
        "PUT",
        "/v1/shares/{share_id}/blobs/{blob_id}",
        "owner",
        "store blob (?epoch=E, raw bytes) -> 201/200 BlobStored, 409 different bytes, 429 share quota",
        &[201, 200],
        &[401, 404, 409, 410],
    )
    .query(&[("epoch", true)])
    .raw()
    .ok(Ok::Json("BlobStored")),
    route(
        "GET",
        "/v1/shares/{share_id}/blobs/{blob_id}",
        "reader",
        "fetch blob -> 200 bytes, 404 no blob, 409 receipt_replayed, 410 token revoked/expired",
        &[200],
        &[401, 403, 404, 409, 410],
    )
    .ok(Ok::Bytes),
    route(
        "POST",
        "/v1/shares/{share_id}/fetch",
        "reader (Bearer; body = batch fetch receipt)",
        "fetch up to 256 blobs under one receipt -> 200 (u32 length || bytes) per id, 404 any blob missing, 413 over the batch limit, 410 token revoked/expired",
        &[200],
        &[401, 403, 404, 409, 410],
    )
    .raw()
    .ok(Ok::Bytes),
    route(
        "POST",
        "/v1/shares/{share_id}/uploads",
        "owner",
        "open chunked upload (?blob=B&epoch=E) -> 201 UploadOpened",
        &[201],
        &[401, 404, 409, 410],
    )
    .query(&[("blob", true), ("epoch", true)])
    .ok(Ok::Json("UploadOpened")),
    route(
        "PUT",
        "/v1/shares/{share_id}/uploads/{upload_id}/chunks/{n}",
        "owner",
        "store chunk n -> 204, 429 share quota",
        &[204],
        &[401, 404, 409, 410],
    )
    .raw(),
    route(
        "POST",
        "/v1/shares/{share_id}/uploads/{upload_id}/commit",
        "owner",
        "UploadCommit -> 201 BlobStored (atomic)",
        &[201],
        &[401, 404, 409, 410],
    )
    .json("UploadCommit")
    .ok(Ok::Json("BlobStored")),
    route(
        "PUT",
        "/v1/shares/{share_id}/manifest",
        "owner",
        "swap manifest (?version=V&prev=P, raw bytes) -> 200 ManifestSwapped, 409 version_mismatch",
        &[200],
        &[401, 404, 409, 410],
    )
    .query(&[("version", true), ("prev", true)])
    .raw()
    .ok(Ok::Json("ManifestSwapped")),
    route(
        "GET",
        "/v1/shares/{share_id}/manifest",
        "reader",
        "fetch manifest -> 200 bytes + Carekey-Manifest-Version",
        &[200],
        &[401, 403, 404, 409, 410],
    )
    .ok(Ok::Bytes).header(api::HEADER_MANIFEST_VERSION),
    route(
        "DELETE",
        "/v1/shares/{share_id}/epochs/{epoch}",
        "owner",
        "delete epoch -> 200 EpochDeleted",
        &[200],
        &[401, 404, 409, 410],
    )
    .ok(Ok::Json("EpochDeleted")),
    route(
        "DELETE",
        "/v1/shares/{share_id}/epochs",
        "owner",
        "?below=N: delete every epoch below N -> 200 EpochDeleted",
        &[200],
        &[400, 401, 404, 409, 410],
    )
    .query(&[("below", true)])
    .ok(Ok::Json("EpochDeleted")),
    route(
        "POST",
        "/v1/shares/{share_id}/tokens",
        "owner",
        "RootTokenRegistration -> 201",
        &[201],
        &[401, 404, 409, 410],
    )
    .json("RootTokenRegistration"),
    route(
        "POST",
        "/v1/shares/{share_id}/groups",
        "owner",
        "BlobGroupRegistration -> 200 BlobGroupsStored, 404 blob not stored",
        &[200],
        &[401, 404, 409, 410],
    )
    .json("BlobGroupRegistration")
    .ok(Ok::Json("BlobGroupsStored")),
    route(
        "DELETE",
        "/v1/shares/{share_id}/tokens/{token_hash}",
        "owner",
        "revoke token + subtree -> 200 {revoked}",
        &[200],
        &[401, 404, 409, 410],
    )
    .ok(Ok::Json("TokensRevoked")),
    route(
        "POST",
        "/v1/shares/{share_id}/delegations",
        "delegation chain",
        "DelegationRegistration -> 201, 403 widening",
        &[201],
        &[401, 403, 404, 409, 410],
    )
    .json("DelegationRegistration"),
    route(
        "GET",
        "/v1/shares/{share_id}/audit",
        "owner",
        "?from=N&challenge=C -> 200 AuditLog (head.fresh_signature over C)",
        &[200],
        &[400, 401, 404, 409, 410],
    )
    .query(&[("from", false), ("challenge", false)])
    .ok(Ok::Json("AuditLog")),
    route(
        "GET",
        "/v1/shares/{share_id}/notices",
        "owner",
        "?after=N -> 200 NoticeList",
        &[200],
        &[401, 404, 409, 410],
    )
    .query(&[("after", false)])
    .ok(Ok::Json("NoticeList")),
    route(
        "PUT",
        "/v1/backups/{backup_id}",
        "owner (first write self-certifying: Carekey-Owner-Key)",
        "store backup (?version=V > stored, raw bytes; body limit --max-backup-bytes) -> 201 created / 200 replaced BackupStored, 409 stale_version / counter_replayed, 403 owner_key_mismatch",
        &[201, 200],
        &[401, 403, 409],
    )
    .query(&[("version", true)])
    .raw()
    .ok(Ok::Json("BackupStored")),
    route(
        "GET",
        "/v1/backups/{backup_id}",
        "owner",
        "newest backup -> 200 bytes + Carekey-Backup-Version, 404 unknown slot",
        &[200],
        &[401, 404, 409],
    )
    .ok(Ok::Bytes).header(api::HEADER_BACKUP_VERSION),
    route(
        "DELETE",
        "/v1/backups/{backup_id}",
        "owner",
        "delete backup bytes -> 204 (slot key, counter and version are kept)",
        &[204],
        &[401, 404, 409],
    ),
    route(
        "POST",
        "/v1/pairing",
        "none",
        "MailboxOpen (optional) -> 201 PairingOpened",
        &[201],
        &[],
    )
    .json("MailboxOpen")
    .ok(Ok::Json("PairingOpened")),
    route(
        "PUT",
        "/v1/pairing/{mailbox_id}",
        "none (id from QR)",
        "one reply (raw bytes) -> 201, 409 closed, 410 expired",
        &[201],
        &[404, 409, 410],
    )
    .raw(),
    route(
        "GET",
        "/v1/pairing/{mailbox_id}",
        "mailbox read token",
        "?wait=S&close=B long-poll -> 200 reply bytes (closes unless close=false) / 204",
        &[200, 204],
        &[401, 404, 410],
    )
    .query(&[("wait", false), ("close", false)])
    .ok(Ok::Bytes),
    route(
        "DELETE",
        "/v1/pairing/{mailbox_id}",
        "mailbox read token",
        "close -> 204",
        &[204],
        &[401, 404],
    ),
    route(
        "POST",
        "/v1/mailboxes",
        "none",
        "MailboxOpen (optional) -> 201 MailboxOpened",
        &[201],
        &[],
    )
    .json("MailboxOpen")
    .ok(Ok::Json("MailboxOpened")),
    route(
        "DELETE",
        "/v1/mailboxes/{mailbox_id}",
        "mailbox read token",
        "close -> 204",
        &[204],
        &[401, 404, 410],
    ),
    route(
        "POST",
        "/v1/mailboxes/{mailbox_id}/messages",
        "mailbox write token",
        "append raw bytes -> 201 MessageAppended, 429 mailbox full",
        &[201],
        &[401, 404, 410],
    )
    .raw()
    .ok(Ok::Json("MessageAppended")),
    route(
        "GET",
        "/v1/mailboxes/{mailbox_id}/messages",
        "mailbox read token",
        "?after=N&wait=S long-poll -> 200 MailboxMessages",
        &[200],
        &[401, 404, 410],
    )
    .query(&[("after", false), ("wait", false)])
    .ok(Ok::Json("MailboxMessages")),
    route(
        "DELETE",
        "/v1/mailboxes/{mailbox_id}/messages",
        "mailbox read token",
        "?through=N -> 200 MessagesDeleted",
        &[200],
        &[401, 404, 410],
    )
    .query(&[("through", true)])
    .ok(Ok::Json("MessagesDeleted")),
    route(
        "POST",
        "/v1/shares/{share_id}/links",
        "owner",
        "CreateShlRequest (JWE files, Argon2id passcode hash, max attempts, exp) -> 201 CreateShlResponse (link id, manifest URL); logged (kind 10)",
        &[201],
        &[401, 404, 409, 410],
    )
    .json("CreateShlRequest")
    .ok(Ok::Json("CreateShlResponse")),
    route(
        "DELETE",
        "/v1/shares/{share_id}/links/{link_hash}",
        "owner",
        "delete a SMART Health Link -> 204; its manifest answers 404 from now on; logged (kind 11)",
        &[204],
        &[401, 404, 409, 410],
    ),
    route(
        "POST",
        "/shl/{link_id}",
        "none (the 256-bit link id; passcode for a P link); CORS *",
        "SHL manifest request ShlManifestRequest -> 200 ShlManifest; 401 ShlPasscodeRejected {remainingAttempts}; 404 inactive (unknown, expired, deleted, or out of attempts); logged with the recipient (kind 9)",
        &[200],
        &[401, 404],
    )
    .json("ShlManifestRequest")
    .ok(Ok::Json("ShlManifest")),
    route(
        "GET",
        "/shl/files/{ticket}",
        "none (short-lived 256-bit ticket from a manifest answer); CORS *",
        "one location file -> 200 application/jose (the JWE); 404 once the ticket or link is not live",
        &[200],
        &[404],
    )
    .ok(Ok::Jose),
];

/// Error statuses every route can answer: malformed path/query/headers, request timeout,
/// rate limits, internal error.
pub const COMMON_ERRORS: &[u16] = &[400, 408, 429, 500];

/// Every error status `r` can answer, ascending: its own, the common ones, and for routes with
/// a body 413 (over the body limit) and 415 (wrong media type).
pub fn errors_of(r: &RouteDoc) -> Vec<u16> {
    let mut v: Vec<u16> = r.errors.iter().chain(COMMON_ERRORS).copied().collect();
    if r.body.0 != BodyKind::None {
        v.extend([413, 415]);
    }
    let named = |list: &[(&str, &str)]| list.iter().any(|(m, p)| *m == r.method && *p == r.path);
    if named(crate::quota::ENROLLMENT_ROUTES) {
        v.push(403);
    }
    if named(crate::quota::STORING_ROUTES) {
        v.push(507);
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// What an error status means, for the document.
pub fn error_description(status: u16) -> &'static str {
    match status {
        400 => {
            "malformed request: path (bad_path), query (bad_query), headers or body (bad_json, bad_base64, ...)"
        }
        401 => "missing or invalid credential (owner signature, bearer token, receipt signature)",
        403 => {
            "credential valid but not allowed (receipt of another key/object, widening delegation, owner_key_mismatch)"
        }
        404 => "no such share, blob, upload, token, mailbox or backup",
        408 => {
            "request took longer than --request-timeout-secs (timeout), or its body stopped arriving for --body-idle-timeout-secs (body_timeout)"
        }
        409 => {
            "conflict: counter_replayed, blob_exists, version_mismatch, stale_version, mailbox_closed, token_exists"
        }
        410 => "share, token or mailbox revoked, deleted or expired",
        413 => {
            "body over the route's body limit, blob over --max-blob-bytes, batch over --max-batch-bytes"
        }
        415 => "body of a media type the route does not take (unsupported_media_type)",
        429 => {
            "rate limit, share quota, client_quota (this client's objects or bytes) or mailbox full (Retry-After says when to retry)"
        }
        500 => "internal error (no detail)",
        503 => "storage unavailable",
        507 => "storage_full: the relay's global storage cap is reached (reads and deletes go on)",
        _ => "error",
    }
}

/// Path and query values as the relay parses them (docs/relay.md "HTTP API": ids are 32
/// lowercase hex characters, token and link hashes 64, binary values unpadded base64url,
/// numbers decimal). The patterns are exact: a value matching one gets past parsing, so a
/// client (or a fuzzer) can tell a malformed request (400) from one the relay refused for
/// what it named (401/404/409/410).
pub mod pattern {
    /// A 16-byte id: share, blob, upload, mailbox, backup.
    pub const ID: &str = "^[0-9a-f]{32}$";
    /// A 32-byte hash in hex: token hash, link hash.
    pub const HASH: &str = "^[0-9a-f]{64}$";
    /// 32 bytes as canonical unpadded base64url: 43 characters, the last one carrying two zero
    /// bits (the relay's decoder refuses non-zero trailing bits).
    pub const B64_32: &str = "^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$";
    /// 16 bytes as canonical unpadded base64url (22 characters, four zero trailing bits).
    pub const B64_16: &str = "^[A-Za-z0-9_-]{21}[AQgw]$";
    /// 64 bytes as canonical unpadded base64url (86 characters, four zero trailing bits).
    pub const B64_64: &str = "^[A-Za-z0-9_-]{85}[AQgw]$";
    /// Any byte string as canonical unpadded base64url.
    pub const B64: &str =
        "^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-][AQgw]|[A-Za-z0-9_-]{2}[AEIMQUYcgkosw048])?$";
}

fn str_schema(pattern: &str) -> Value {
    json!({"type": "string", "pattern": pattern})
}

/// Integers the relay keeps in a database column: 0 to `i64::MAX` (`int64`; larger values are
/// refused as out of range).
fn u63_schema(minimum: u64) -> Value {
    json!({"type": "integer", "format": "int64", "minimum": minimum, "maximum": i64::MAX})
}

/// A `u32` path or query value.
fn u32_schema() -> Value {
    json!({"type": "integer", "format": "int64", "minimum": 0, "maximum": u32::MAX})
}

/// The schema of the path or query parameter `name` of the route `path`.
pub fn param_schema(path: &str, name: &str) -> Value {
    match name {
        "share_id" | "blob_id" | "upload_id" | "mailbox_id" | "backup_id" | "blob" => {
            str_schema(pattern::ID)
        }
        "token_hash" | "link_hash" => str_schema(pattern::HASH),
        "link_id" | "ticket" | "challenge" => str_schema(pattern::B64_32),
        "epoch" | "below" => u32_schema(),
        // A chunk index is below crate::share::MAX_CHUNKS.
        "n" => json!({"type": "integer", "format": "int64", "minimum": 0,
                      "maximum": crate::share::MAX_CHUNKS - 1}),
        // A backup version starts at 1 (docs/relay.md "Backup slots").
        "version" if path.starts_with("/v1/backups/") => u63_schema(1),
        "version" | "prev" | "from" | "after" | "through" => u63_schema(0),
        // Waits are capped at the relay's longest wait (30 s); any u64 is taken.
        "wait" => json!({"type": "integer", "format": "int64", "minimum": 0}),
        "close" => json!({"type": "boolean"}),
        other => panic!("parameter {other} of {path} has no schema"),
    }
}

/// The security schemes (docs/relay.md "HTTP API", authentication kinds).
fn security_schemes() -> Value {
    json!({
        "ownerCounter": {
            "type": "apiKey", "in": "header", "name": "Carekey-Counter",
            "description": "owner write: decimal u64 counter, strictly greater than the last one the share (or backup slot) accepted"
        },
        "ownerSignature": {
            "type": "apiKey", "in": "header", "name": "Carekey-Signature",
            "description": "owner write: base64url Ed25519 signature (64 bytes) over relay-formats.md \"Owner write signature\""
        },
        "bearer": {
            "type": "http", "scheme": "bearer",
            "description": "read token of a share (base64url, 32 bytes), or a mailbox read/write token, or the --metrics-token"
        },
        "receipt": {
            "type": "apiKey", "in": "header", "name": "Carekey-Receipt",
            "description": "reader: base64url fetch receipt signed by the token's reader key (relay-formats.md \"Fetch receipt\")"
        }
    })
}

/// The security requirement of `r`, from its auth kind.
fn security_of(r: &RouteDoc) -> Option<Value> {
    let owner = json!([{"ownerCounter": [], "ownerSignature": []}]);
    let a = r.auth;
    if a.starts_with("owner") {
        Some(owner)
    } else if a.starts_with("reader (Bearer") || a.starts_with("mailbox") {
        Some(json!([{"bearer": []}]))
    } else if a.starts_with("reader") {
        Some(json!([{"bearer": [], "receipt": []}]))
    } else if a.starts_with("none, or Bearer") {
        // Open unless the relay runs with --metrics-token.
        Some(json!([{}, {"bearer": []}]))
    } else {
        None
    }
}

/// Header parameters a route reads besides its credentials.
fn header_params(r: &RouteDoc) -> Vec<Value> {
    let mut v = Vec::new();
    let named = |list: &[(&str, &str)]| list.iter().any(|(m, p)| *m == r.method && *p == r.path);
    if named(crate::quota::ENROLLMENT_ROUTES) {
        v.push(json!({
            "name": "Carekey-Enrollment-Key", "in": "header", "required": false,
            "description": "the operator's enrollment key, when the relay runs with --enrollment-key (403 enrollment_required without it)",
            "schema": {"type": "string"}
        }));
    }
    if r.method == "PUT" && r.path == "/v1/backups/{backup_id}" {
        v.push(json!({
            "name": "Carekey-Owner-Key", "in": "header", "required": false,
            "description": "the slot's Ed25519 owner key (base64url, 32 bytes): required on the first write, checked when sent later",
            "schema": str_schema(pattern::B64_32)
        }));
    }
    v
}

fn error_response_doc(status: u16) -> Value {
    let mut resp = json!({
        "description": error_description(status),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    });
    if status == 429 {
        resp["headers"] = json!({"Retry-After": {
            "description": "seconds to wait before retrying",
            "required": true,
            "schema": {"type": "integer", "minimum": 1}
        }});
    }
    resp
}

fn success_doc(r: &RouteDoc, status: u16) -> Value {
    let mut resp = json!({"description": "success"});
    if status == 204 {
        return resp;
    }
    let content = match r.ok {
        Ok::Empty => None,
        Ok::Json(name) => Some((
            "application/json",
            json!({"$ref": format!("#/components/schemas/{name}")}),
        )),
        Ok::Document => Some(("application/json", json!({"type": "object"}))),
        Ok::Bytes => Some((
            "application/octet-stream",
            json!({"type": "string", "format": "binary"}),
        )),
        Ok::Text => Some(("text/plain", json!({"type": "string"}))),
        Ok::Jose => Some(("application/jose", json!({"type": "string"}))),
    };
    if let Some((media, schema)) = content {
        resp["content"] = json!({ media: {"schema": schema} });
    }
    if let Some(h) = r.ok_header {
        resp["headers"] = json!({ h: {
            "description": "the version answered (decimal)",
            "required": true,
            "schema": {"type": "integer", "minimum": 0}
        }});
    }
    resp
}

/// Builds the OpenAPI document: the component schemas come from the API types (utoipa), the
/// operations from [`ROUTES`] (a test checks they list exactly what the router serves).
pub fn document() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|_| json!({}));
    doc["components"]["securitySchemes"] = security_schemes();
    let mut paths = Map::new();
    for r in ROUTES {
        let mut responses = Map::new();
        for s in r.success {
            responses.insert(s.to_string(), success_doc(r, *s));
        }
        for s in errors_of(r) {
            let mut e = error_response_doc(s);
            if s == 401 && r.path == "/shl/{link_id}" {
                // A passcode refusal carries remainingAttempts (SHL manifest request).
                e["content"]["application/json"]["schema"]["$ref"] =
                    json!("#/components/schemas/ShlPasscodeRejected");
            }
            responses.insert(s.to_string(), e);
        }
        let mut params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| {
                json!({"name": name, "in": "path", "required": true,
                       "schema": param_schema(r.path, name)})
            })
            .collect();
        params.extend(r.query.iter().map(|(name, required)| {
            json!({"name": name, "in": "query", "required": required,
                   "schema": param_schema(r.path, name)})
        }));
        params.extend(header_params(r));
        let mut op = json!({
            "summary": r.summary,
            "description": format!("auth: {}", r.auth),
            "parameters": params,
            "responses": responses,
        });
        if let Some(sec) = security_of(r) {
            op["security"] = sec;
        }
        match r.body {
            (BodyKind::None, _) => {}
            (BodyKind::Json, schema) => {
                let schema = schema
                    .map(|n| json!({"$ref": format!("#/components/schemas/{n}")}))
                    .unwrap_or_else(|| json!({}));
                // The mailbox and pairing bodies are optional: an empty body opens with the
                // default lifetime.
                let required = schema_required(r);
                op["requestBody"] = json!({
                    "required": required,
                    "content": {"application/json": {"schema": schema}}
                });
            }
            (BodyKind::Raw, _) => {
                let mut schema = json!({"type": "string", "format": "binary"});
                if NONEMPTY_BODIES.contains(&(r.method, r.path)) {
                    schema["minLength"] = json!(1);
                }
                op["requestBody"] = json!({
                    "required": true,
                    "content": {"application/octet-stream": {"schema": schema}}
                });
            }
        }
        let item = paths
            .entry(r.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        item[r.method.to_ascii_lowercase()] = op;
    }
    doc["paths"] = Value::Object(paths);
    doc
}

/// Raw-body routes that refuse an empty body (400 `empty_body`): a pairing reply and a
/// mailbox message are never empty (docs/relay.md "HTTP API").
const NONEMPTY_BODIES: &[(&str, &str)] = &[
    ("PUT", "/v1/pairing/{mailbox_id}"),
    ("POST", "/v1/mailboxes/{mailbox_id}/messages"),
];

/// Whether the JSON body of `r` is required (only the two mailbox-opening bodies are not).
fn schema_required(r: &RouteDoc) -> bool {
    r.body.1 != Some("MailboxOpen")
}

/// `GET /openapi.json`.
pub async fn serve() -> Json<Value> {
    Json(document())
}
