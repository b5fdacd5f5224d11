//! Batch fetch: many blobs of one share in one request, under ONE doctor-signed receipt and
//! ONE audit entry (relay-formats.md "Batch fetch"; docs/protocol.md "Audit chains").
//!
//! Why: a check-up of a real record (the largest Synthea patient is ~4,200 blobs) paid one
//! receipt signature, one verification and one audit entry per blob; the relay's CPU per GET
//! was the check-up's floor. The receipt of a batch names every blob id it covers, so the
//! patient's log still says exactly which records were opened ("Dr. X fetched 256 records at
//! 10:32"), and the relay can no more invent a fetch than before: the ids are signed.
//!
//! All or nothing: the blobs are answered only if every id is stored in the share (else 404,
//! nothing logged) and their total is within `max_batch_bytes` (else 413 `too_large`,
//! nothing logged). Answer body: for each id in the receipt's order, `u32 length || bytes`,
//! streamed entry by entry from storage ([`crate::download`]).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;

use crate::download::Plan;
use crate::encoding::parse_id;
use crate::error::{RelayError, Result};
use crate::fetchlog::{Fetched, Logged};
use crate::state::AppState;
use crate::token::{ReadRequest, parse_ids};

/// `POST /v1/shares/{share_id}/fetch` (read token; body = the batch's fetch receipt).
///
/// Same checks as a single blob GET (token, receipt key, share, signed time), read in one
/// read-only transaction, answered only after the one audit entry is committed by the group
/// commit ([`crate::fetchlog`]), which re-checks the token and every blob under the share lock.
pub async fn fetch(
    State(state): State<AppState>,
    Path(share_hex): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let share_id = parse_id("share id", &share_hex)?;
    let read = ReadRequest::from_body(&headers, &body, state.config.receipt_max_skew_secs)?;
    let ids = parse_ids(read.object_id())?;
    let now = state.clock.now();
    let limit = state.config.max_batch_bytes;
    let (read, ids, plan) = state
        .storage
        .read(move |tx| {
            let object = read.object_id().to_owned();
            read.authorize(tx, &share_id, &object, now)?;
            // Planned in order; blob bytes are read into memory only up to one piece
            // (crate::download), so a batch over the limit is refused having read little.
            let mut plan = Plan::new();
            let mut total: u64 = 0;
            for id in &ids {
                total = total.saturating_add(plan.push_blob(tx, &share_id, id, true)?);
            }
            if total > limit {
                return Err(RelayError::TooLarge(
                    "the blobs of this batch exceed the relay's batch limit; fetch fewer at once",
                ));
            }
            Ok((read, ids, plan))
        })
        .await?;
    let n = ids.len() as u64;
    match state
        .fetch_log
        .append(read.into_entry(share_id, Fetched::Blobs(ids), now))
        .await?
    {
        Logged::Committed => {}
        Logged::Stale => return Err(RelayError::Storage("batch fetch reported stale".into())),
    }
    state.metrics.fetches.add(n);
    Ok(plan.respond(std::sync::Arc::clone(&state.storage)))
}
