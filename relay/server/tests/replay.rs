//! Fetch receipt replay (issue 14 part 4): the relay refuses a receipt it has already logged
//! (same reader key and nonce) while the receipt is within the allowed clock skew, so no
//! receipt is ever in a share's audit chain twice: single GETs, manifest GETs, batch fetches,
//! concurrent copies of one receipt, and the stale-manifest path that appends directly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use carekey_relay::audit::{self, Kind};
use carekey_relay::sweeper;
use common::*;
use ed25519_dalek::{Signer, SigningKey};

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = crate::common::Backend::Sqlite.harness().await.unwrap();
                    crate::$name(h).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(h) = crate::common::Backend::Postgres.harness().await else { return };
                    crate::$name(h).await;
                }
            )*
        }
    };
}

both_backends!(
    replayed_receipts_are_refused_and_logged_once,
    concurrent_copies_of_one_receipt_log_once,
    nonce_is_per_reader_key,
    refused_fetch_keeps_its_receipt_usable,
    direct_appends_refuse_replays_too,
    records_are_swept_after_the_window,
);

/// relay-formats.md "Fetch receipt" with a chosen nonce and time (base64url).
fn receipt_with(
    reader: &SigningKey,
    share_id: &[u8; 16],
    object_id: &str,
    time: u64,
    nonce: [u8; 16],
) -> String {
    let mut r = vec![1u8];
    r.extend_from_slice(share_id);
    r.extend_from_slice(&(object_id.len() as u16).to_be_bytes());
    r.extend_from_slice(object_id.as_bytes());
    r.extend_from_slice(reader.verifying_key().as_bytes());
    r.extend_from_slice(&time.to_be_bytes());
    r.extend_from_slice(&nonce);
    let mut m = b"carekey/v1/fetch-receipt\0".to_vec();
    m.extend_from_slice(&r);
    r.extend_from_slice(&reader.sign(&m).to_bytes());
    b64(&r)
}

/// A GET of `object` (blob hex or `manifest`) with the given receipt.
fn get_with(o: &Owner, object: &str, token: &[u8; 32], receipt: &str) -> Request<Body> {
    let path = if object == "manifest" {
        format!("/v1/shares/{}/manifest", o.share_hex)
    } else {
        format!("/v1/shares/{}/blobs/{object}", o.share_hex)
    };
    Request::builder()
        .uri(path)
        .header("authorization", format!("Bearer {}", b64(token)))
        .header("carekey-receipt", receipt)
        .body(Body::empty())
        .unwrap()
}

/// Bodies of the share's kind-1 (fetch) audit entries, in chain order.
async fn fetch_entries(h: &Harness, o: &Owner) -> Vec<Vec<u8>> {
    let r = h
        .owner(
            o,
            "GET",
            &format!("/v1/shares/{}/audit", o.share_hex),
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == 1)
        .map(|e| unb64(e["body"].as_str().unwrap()))
        .collect()
}

#[track_caller]
fn assert_replayed(r: &Resp) {
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    assert_eq!(r.json()["error"], "receipt_replayed");
}

async fn setup(h: &Harness) -> (Owner, [u8; 32], SigningKey, [u8; 16]) {
    let o = h.create_share().await;
    let (token, reader) = h.register_token(&o, &scope(1, &[]), now() + 3600, 0).await;
    let blob = rand::<16>();
    assert_eq!(
        h.put_blob(&o, &blob, 1, b"record").await.status,
        StatusCode::CREATED
    );
    let r = h
        .owner(
            &o,
            "PUT",
            &format!("/v1/shares/{}/manifest?version=1&prev=0", o.share_hex),
            b"manifest".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    (o, token, reader, blob)
}

async fn replayed_receipts_are_refused_and_logged_once(h: Harness) {
    let (o, token, reader, blob) = setup(&h).await;
    // Blob GET.
    let rb = receipt(&reader, &o.share_id, &hex(&blob));
    assert_eq!(
        h.send(get_with(&o, &hex(&blob), &token, &rb)).await.body,
        b"record"
    );
    assert_replayed(&h.send(get_with(&o, &hex(&blob), &token, &rb)).await);
    // Manifest GET.
    let rm = receipt(&reader, &o.share_id, "manifest");
    assert_eq!(
        h.send(get_with(&o, "manifest", &token, &rm)).await.status,
        StatusCode::OK
    );
    assert_replayed(&h.send(get_with(&o, "manifest", &token, &rm)).await);
    // Batch fetch.
    let batch = unb64(&receipt(&reader, &o.share_id, &batch_object(&[blob])));
    assert_eq!(
        h.batch_raw(&o, batch.clone(), &token).await.status,
        StatusCode::OK
    );
    assert_replayed(&h.batch_raw(&o, batch.clone(), &token).await);
    // Fresh receipts go on working.
    assert_eq!(
        h.read(&o, &hex(&blob), &token, &reader).await.status,
        StatusCode::OK
    );
    let logged = fetch_entries(&h, &o).await;
    assert_eq!(logged.len(), 4);
    assert_eq!(logged[..3], [unb64(&rb), unb64(&rm), batch]);
}

async fn concurrent_copies_of_one_receipt_log_once(h: Harness) {
    let (o, token, reader, blob) = setup(&h).await;
    let h = Arc::new(h);
    let o = Arc::new(o);
    let rb = receipt(&reader, &o.share_id, &hex(&blob));
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let (h, o, rb) = (Arc::clone(&h), Arc::clone(&o), rb.clone());
        tasks.push(tokio::spawn(async move {
            h.send(get_with(&o, &hex(&blob), &token, &rb)).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let r = t.await.unwrap();
        if r.status == StatusCode::OK {
            ok += 1;
        } else {
            assert_replayed(&r);
        }
    }
    assert_eq!(ok, 1, "exactly one copy served");
    assert_eq!(fetch_entries(&h, &o).await, vec![unb64(&rb)]);
}

async fn nonce_is_per_reader_key(h: Harness) {
    let (o, token, reader, blob) = setup(&h).await;
    let (token2, reader2) = h.register_token(&o, &scope(1, &[]), now() + 3600, 0).await;
    let nonce = rand::<16>();
    let t = now();
    // One reader, one nonce: another object or another time is still the same receipt id.
    let a = receipt_with(&reader, &o.share_id, &hex(&blob), t, nonce);
    assert_eq!(
        h.send(get_with(&o, &hex(&blob), &token, &a)).await.status,
        StatusCode::OK
    );
    let b = receipt_with(&reader, &o.share_id, "manifest", t + 1, nonce);
    assert_replayed(&h.send(get_with(&o, "manifest", &token, &b)).await);
    // Another reader may use the same nonce.
    let c = receipt_with(&reader2, &o.share_id, &hex(&blob), t, nonce);
    assert_eq!(
        h.send(get_with(&o, &hex(&blob), &token2, &c)).await.status,
        StatusCode::OK
    );
    assert_eq!(fetch_entries(&h, &o).await, vec![unb64(&a), unb64(&c)]);
}

async fn refused_fetch_keeps_its_receipt_usable(h: Harness) {
    let (o, token, reader, _) = setup(&h).await;
    // A receipt for a blob not uploaded yet: 404, nothing logged, the receipt not used up.
    let later = rand::<16>();
    let r = receipt(&reader, &o.share_id, &hex(&later));
    assert_eq!(
        h.send(get_with(&o, &hex(&later), &token, &r)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.put_blob(&o, &later, 1, b"late").await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        h.send(get_with(&o, &hex(&later), &token, &r)).await.body,
        b"late"
    );
    assert_replayed(&h.send(get_with(&o, &hex(&later), &token, &r)).await);
    assert_eq!(fetch_entries(&h, &o).await, vec![unb64(&r)]);
}

/// The stale-manifest path appends its fetch with `audit::append` in a write transaction of
/// its own (not through the group commit): it refuses a logged receipt as well.
async fn direct_appends_refuse_replays_too(h: Harness) {
    let (o, token, reader, _) = setup(&h).await;
    let rm = receipt(&reader, &o.share_id, "manifest");
    assert_eq!(
        h.send(get_with(&o, "manifest", &token, &rm)).await.status,
        StatusCode::OK
    );
    let (sid, body) = (o.share_id, unb64(&rm));
    let err = h
        .state
        .storage
        .transact(move |tx| audit::append(tx, &sid, now(), Kind::Fetch, &body))
        .await
        .unwrap_err();
    assert_eq!(err.status(), StatusCode::CONFLICT);
    assert_eq!(fetch_entries(&h, &o).await.len(), 1);
    // A fresh receipt appends fine that way.
    let body = unb64(&receipt(&reader, &o.share_id, "manifest"));
    h.state
        .storage
        .transact(move |tx| audit::append(tx, &sid, now(), Kind::Fetch, &body))
        .await
        .unwrap();
    assert_eq!(fetch_entries(&h, &o).await.len(), 2);
}

/// Once a receipt is outside the skew window it fails the time check (400), so its record is
/// swept; records of receipts still inside the window stay.
async fn records_are_swept_after_the_window(h: Harness) {
    let (o, token, reader, blob) = setup(&h).await;
    let skew = h.state.config.receipt_max_skew_secs;
    let old = receipt(&reader, &o.share_id, &hex(&blob));
    assert_eq!(
        h.send(get_with(&o, &hex(&blob), &token, &old)).await.status,
        StatusCode::OK
    );
    h.state.clock.advance(i64::try_from(skew).unwrap() / 2);
    let young = receipt_with(
        &reader,
        &o.share_id,
        &hex(&blob),
        h.state.clock.now(),
        rand::<16>(),
    );
    assert_eq!(
        h.send(get_with(&o, &hex(&blob), &token, &young))
            .await
            .status,
        StatusCode::OK
    );
    let count = || {
        h.state.storage.read(|tx| {
            tx.query("SELECT nonce FROM receipt_nonces", &[])
                .map(|r| r.len())
        })
    };
    assert_eq!(count().await.unwrap(), 2);
    h.state.clock.advance(i64::try_from(skew).unwrap() / 2 + 1);
    sweeper::sweep_once(&h.state).await.unwrap();
    assert_eq!(count().await.unwrap(), 1);
    // The swept receipt is refused by the time check, not accepted again.
    let r = h.send(get_with(&o, &hex(&blob), &token, &old)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"], "receipt_time");
    assert_replayed(&h.send(get_with(&o, &hex(&blob), &token, &young)).await);
}
