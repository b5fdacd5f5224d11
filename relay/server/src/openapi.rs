//! OpenAPI document generated from the API types (utoipa) and the route table below, served
//! at `GET /openapi.json`.

use axum::Json;
use carekey_relay_api as api;
use utoipa::OpenApi;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::{
    ContentBuilder, KnownFormat, ObjectBuilder, Ref, Required, ResponseBuilder, ResponsesBuilder,
    SchemaFormat, Type,
};

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
        api::ShlPasscodeRejected
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
}

/// Every route: method, path, auth, summary, parameters, body, success and error statuses.
pub const ROUTES: &[RouteDoc] = &[
    route("GET", "/healthz", "none", "200 storage answers / 503", &[200], &[503]),
    route(
        "GET",
        "/metrics",
        "none, or Bearer with --metrics-token",
        "Prometheus text, 401 without the configured token",
        &[200],
        &[401],
    ),
    route("GET", "/openapi.json", "none", "this document", &[200], &[]),
    route(
        "GET",
        "/.well-known/carekey-relay",
        "none",
        "relay audit key (WellKnown)",
        &[200],
        &[],
    ),
    route(
        "POST",
        "/v1/shares",
        "owner (self-certifying)",
        "create share: CreateShareRequest -> 201 CreateShareResponse",
        &[201],
        &[401],
    )
    .json("CreateShareRequest"),
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
    .raw(),
    route(
        "GET",
        "/v1/shares/{share_id}/blobs/{blob_id}",
        "reader",
        "fetch blob -> 200 bytes, 404 no blob, 409 receipt_replayed, 410 token revoked/expired",
        &[200],
        &[401, 403, 404, 409, 410],
    ),
    route(
        "POST",
        "/v1/shares/{share_id}/fetch",
        "reader (Bearer; body = batch fetch receipt)",
        "fetch up to 256 blobs under one receipt -> 200 (u32 length || bytes) per id, 404 any blob missing, 413 over the batch limit, 410 token revoked/expired",
        &[200],
        &[401, 403, 404, 409, 410],
    )
    .raw(),
    route(
        "POST",
        "/v1/shares/{share_id}/uploads",
        "owner",
        "open chunked upload (?blob=B&epoch=E) -> 201 UploadOpened",
        &[201],
        &[401, 404, 409, 410],
    )
    .query(&[("blob", true), ("epoch", true)]),
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
    .json("UploadCommit"),
    route(
        "PUT",
        "/v1/shares/{share_id}/manifest",
        "owner",
        "swap manifest (?version=V&prev=P, raw bytes) -> 200 ManifestSwapped, 409 version_mismatch",
        &[200],
        &[401, 404, 409, 410],
    )
    .query(&[("version", true), ("prev", true)])
    .raw(),
    route(
        "GET",
        "/v1/shares/{share_id}/manifest",
        "reader",
        "fetch manifest -> 200 bytes + Carekey-Manifest-Version",
        &[200],
        &[401, 403, 404, 409, 410],
    ),
    route(
        "DELETE",
        "/v1/shares/{share_id}/epochs/{epoch}",
        "owner",
        "delete epoch -> 200 EpochDeleted",
        &[200],
        &[401, 404, 409, 410],
    ),
    route(
        "DELETE",
        "/v1/shares/{share_id}/epochs",
        "owner",
        "?below=N: delete every epoch below N -> 200 EpochDeleted",
        &[200],
        &[400, 401, 404, 409, 410],
    )
    .query(&[("below", true)]),
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
    .json("BlobGroupRegistration"),
    route(
        "DELETE",
        "/v1/shares/{share_id}/tokens/{token_hash}",
        "owner",
        "revoke token + subtree -> 200 {revoked}",
        &[200],
        &[401, 404, 409, 410],
    ),
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
    .query(&[("from", false), ("challenge", false)]),
    route(
        "GET",
        "/v1/shares/{share_id}/notices",
        "owner",
        "?after=N -> 200 NoticeList",
        &[200],
        &[401, 404, 409, 410],
    )
    .query(&[("after", false)]),
    route(
        "PUT",
        "/v1/backups/{backup_id}",
        "owner (first write self-certifying: Carekey-Owner-Key)",
        "store backup (?version=V > stored, raw bytes; body limit --max-backup-bytes) -> 201 created / 200 replaced BackupStored, 409 stale_version / counter_replayed, 403 owner_key_mismatch",
        &[201, 200],
        &[401, 403, 409],
    )
    .query(&[("version", true)])
    .raw(),
    route(
        "GET",
        "/v1/backups/{backup_id}",
        "owner",
        "newest backup -> 200 bytes + Carekey-Backup-Version, 404 unknown slot",
        &[200],
        &[401, 404, 409],
    ),
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
    .json("MailboxOpen"),
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
    .query(&[("wait", false), ("close", false)]),
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
    .json("MailboxOpen"),
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
    .raw(),
    route(
        "GET",
        "/v1/mailboxes/{mailbox_id}/messages",
        "mailbox read token",
        "?after=N&wait=S long-poll -> 200 MailboxMessages",
        &[200],
        &[401, 404, 410],
    )
    .query(&[("after", false), ("wait", false)]),
    route(
        "DELETE",
        "/v1/mailboxes/{mailbox_id}/messages",
        "mailbox read token",
        "?through=N -> 200 MessagesDeleted",
        &[200],
        &[401, 404, 410],
    )
    .query(&[("through", true)]),
    route(
        "POST",
        "/v1/shares/{share_id}/links",
        "owner",
        "CreateShlRequest (JWE files, Argon2id passcode hash, max attempts, exp) -> 201 CreateShlResponse (link id, manifest URL); logged (kind 10)",
        &[201],
        &[401, 404, 409, 410],
    )
    .json("CreateShlRequest"),
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
    .json("ShlManifestRequest"),
    route(
        "GET",
        "/shl/files/{ticket}",
        "none (short-lived 256-bit ticket from a manifest answer); CORS *",
        "one location file -> 200 application/jose (the JWE); 404 once the ticket or link is not live",
        &[200],
        &[404],
    ),
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

fn error_response_doc(status: u16) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(error_description(status))
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

fn string_schema() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

/// Builds the OpenAPI document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for r in ROUTES {
        let m = match r.method {
            "GET" => HttpMethod::Get,
            "POST" => HttpMethod::Post,
            "PUT" => HttpMethod::Put,
            "DELETE" => HttpMethod::Delete,
            other => panic!("undocumentable method {other}"),
        };
        let mut responses = ResponsesBuilder::new();
        for s in r.success {
            responses =
                responses.response(s.to_string(), ResponseBuilder::new().description("success"));
        }
        for s in errors_of(r) {
            responses = responses.response(s.to_string(), error_response_doc(s));
        }
        let mut op = OperationBuilder::new()
            .summary(Some(r.summary))
            .description(Some(format!("auth: {}", r.auth)))
            .responses(responses.build());
        for seg in r.path.split('/') {
            if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                op = op.parameter(
                    ParameterBuilder::new()
                        .name(name)
                        .parameter_in(ParameterIn::Path)
                        .required(Required::True)
                        .schema(Some(string_schema())),
                );
            }
        }
        for (name, required) in r.query {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(*name)
                    .parameter_in(ParameterIn::Query)
                    .required(if *required {
                        Required::True
                    } else {
                        Required::False
                    })
                    .schema(Some(string_schema())),
            );
        }
        match r.body {
            (BodyKind::None, _) => {}
            (BodyKind::Json, schema) => {
                let content = ContentBuilder::new()
                    .schema(schema.map(Ref::from_schema_name))
                    .build();
                op = op.request_body(Some(
                    RequestBodyBuilder::new()
                        .content("application/json", content)
                        .build(),
                ));
            }
            (BodyKind::Raw, _) => {
                let content = ContentBuilder::new()
                    .schema(Some(
                        string_schema()
                            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary))),
                    ))
                    .build();
                op = op.request_body(Some(
                    RequestBodyBuilder::new()
                        .content("application/octet-stream", content)
                        .required(Some(Required::True))
                        .build(),
                ));
            }
        }
        doc.paths.add_path_operation(r.path, vec![m], op.build());
    }
    doc
}

/// `GET /openapi.json`.
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}
