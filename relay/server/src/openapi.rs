//! OpenAPI document generated from the API types (utoipa) and the route table below, served
//! at `GET /openapi.json`.

use axum::Json;
use carekey_relay_api as api;
use utoipa::OpenApi;
use utoipa::openapi::path::{HttpMethod, OperationBuilder};
use utoipa::openapi::{ResponseBuilder, ResponsesBuilder};

/// Schemas of every request and response body.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Carekey relay",
        description = "Thin, durable, ciphertext-only relay. Auth: owner = Carekey-Counter + Carekey-Signature; reader = Bearer token + Carekey-Receipt; mailbox = Bearer capability."
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
        api::Health
    ))
)]
pub struct ApiDoc;

/// Route table: method, path, auth and summary, success status (kept next to `crate::app`).
pub const ROUTES: &[(&str, &str, &str, &str)] = &[
    ("GET", "/healthz", "none", "200 storage answers / 503"),
    (
        "GET",
        "/metrics",
        "none, or Bearer with --metrics-token",
        "Prometheus text, 401 without the configured token",
    ),
    ("GET", "/openapi.json", "none", "this document"),
    (
        "GET",
        "/.well-known/carekey-relay",
        "none",
        "relay audit key (WellKnown)",
    ),
    (
        "POST",
        "/v1/shares",
        "owner (self-certifying)",
        "create share: CreateShareRequest -> 201 CreateShareResponse",
    ),
    (
        "DELETE",
        "/v1/shares/{share_id}",
        "owner",
        "delete share -> 204 (410 afterwards)",
    ),
    (
        "PUT",
        "/v1/shares/{share_id}/blobs/{blob_id}",
        "owner",
        "store blob (?epoch=E, raw bytes) -> 201/200 BlobStored, 409 different bytes",
    ),
    (
        "GET",
        "/v1/shares/{share_id}/blobs/{blob_id}",
        "reader",
        "fetch blob -> 200 bytes, 404 no blob, 410 token revoked/expired",
    ),
    (
        "POST",
        "/v1/shares/{share_id}/fetch",
        "reader (Bearer; body = batch fetch receipt)",
        "fetch up to 256 blobs under one receipt -> 200 (u32 length || bytes) per id, 404 any blob missing, 413 over the batch limit, 410 token revoked/expired",
    ),
    (
        "POST",
        "/v1/shares/{share_id}/uploads",
        "owner",
        "open chunked upload (?blob=B&epoch=E) -> 201 UploadOpened",
    ),
    (
        "PUT",
        "/v1/shares/{share_id}/uploads/{upload_id}/chunks/{n}",
        "owner",
        "store chunk n -> 204",
    ),
    (
        "POST",
        "/v1/shares/{share_id}/uploads/{upload_id}/commit",
        "owner",
        "UploadCommit -> 201 BlobStored (atomic)",
    ),
    (
        "PUT",
        "/v1/shares/{share_id}/manifest",
        "owner",
        "swap manifest (?version=V&prev=P, raw bytes) -> 200 ManifestSwapped, 409 version_mismatch",
    ),
    (
        "GET",
        "/v1/shares/{share_id}/manifest",
        "reader",
        "fetch manifest -> 200 bytes + Carekey-Manifest-Version",
    ),
    (
        "DELETE",
        "/v1/shares/{share_id}/epochs/{epoch}",
        "owner",
        "delete epoch -> 200 EpochDeleted",
    ),
    (
        "POST",
        "/v1/shares/{share_id}/tokens",
        "owner",
        "RootTokenRegistration -> 201",
    ),
    (
        "POST",
        "/v1/shares/{share_id}/groups",
        "owner",
        "BlobGroupRegistration -> 200 BlobGroupsStored, 404 blob not stored",
    ),
    (
        "DELETE",
        "/v1/shares/{share_id}/tokens/{token_hash}",
        "owner",
        "revoke token + subtree -> 200 {revoked}",
    ),
    (
        "POST",
        "/v1/shares/{share_id}/delegations",
        "delegation chain",
        "DelegationRegistration -> 201, 403 widening",
    ),
    (
        "GET",
        "/v1/shares/{share_id}/audit",
        "owner",
        "?from=N -> 200 AuditLog",
    ),
    (
        "GET",
        "/v1/shares/{share_id}/notices",
        "owner",
        "?after=N -> 200 NoticeList",
    ),
    (
        "PUT",
        "/v1/backups/{backup_id}",
        "owner (first write self-certifying: Carekey-Owner-Key)",
        "store backup (?version=V > stored, raw bytes) -> 201 created / 200 replaced BackupStored, 409 stale_version / counter_replayed, 403 owner_key_mismatch, 413",
    ),
    (
        "GET",
        "/v1/backups/{backup_id}",
        "owner",
        "newest backup -> 200 bytes + Carekey-Backup-Version, 404 unknown slot",
    ),
    (
        "DELETE",
        "/v1/backups/{backup_id}",
        "owner",
        "delete backup bytes -> 204 (slot key, counter and version are kept)",
    ),
    (
        "POST",
        "/v1/pairing",
        "none",
        "MailboxOpen (optional) -> 201 PairingOpened",
    ),
    (
        "PUT",
        "/v1/pairing/{mailbox_id}",
        "none (id from QR)",
        "one reply (raw bytes) -> 201, 409 closed, 410 expired",
    ),
    (
        "GET",
        "/v1/pairing/{mailbox_id}",
        "mailbox read token",
        "?wait=S long-poll -> 200 reply bytes (closes) / 204",
    ),
    (
        "POST",
        "/v1/mailboxes",
        "none",
        "MailboxOpen (optional) -> 201 MailboxOpened",
    ),
    (
        "DELETE",
        "/v1/mailboxes/{mailbox_id}",
        "mailbox read token",
        "close -> 204",
    ),
    (
        "POST",
        "/v1/mailboxes/{mailbox_id}/messages",
        "mailbox write token",
        "append raw bytes -> 201 MessageAppended",
    ),
    (
        "GET",
        "/v1/mailboxes/{mailbox_id}/messages",
        "mailbox read token",
        "?after=N&wait=S long-poll -> 200 MailboxMessages",
    ),
    (
        "DELETE",
        "/v1/mailboxes/{mailbox_id}/messages",
        "mailbox read token",
        "?through=N -> 200 MessagesDeleted",
    ),
];

/// Builds the OpenAPI document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for (method, path, auth, summary) in ROUTES {
        let m = match *method {
            "GET" => HttpMethod::Get,
            "POST" => HttpMethod::Post,
            "PUT" => HttpMethod::Put,
            _ => HttpMethod::Delete,
        };
        let op = OperationBuilder::new()
            .summary(Some(*summary))
            .description(Some(format!("auth: {auth}")))
            .responses(
                ResponsesBuilder::new()
                    .response(
                        "default",
                        ResponseBuilder::new().description("see summary; errors carry ErrorBody"),
                    )
                    .build(),
            )
            .build();
        doc.paths.add_path_operation(*path, vec![m], op);
    }
    doc
}

/// `GET /openapi.json`.
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}
