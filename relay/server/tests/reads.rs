//! Reads and their audit: fetch group commit, re-checks under the lock, receipt time window, batch fetches, audit pages, scoped tokens, manifest reads during swaps, two instances on one PostgreSQL (docs/relay.md "Fetch group commit").
//! Each case runs as `sqlite::<case>` and `postgres::<case>` (the latter return early when
//! `CAREKEY_TEST_PG_URL` is unset); split out of the one suite file by resource.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};

both_backends!(
    concurrent_fetches_all_audited,
    fetch_log_rechecks_under_lock,
    receipt_time_window,
    manifest_reads_during_swaps,
    batch_fetch,
    audit_pages_by_bytes,
    scoped_tokens_read_only_their_groups,
);

/// Many concurrent fetches (two shares, interleaved) are all answered 200 and all appear, with
/// their exact receipts, in each share's audit chain, which stays a valid hash chain under a
/// valid signed head (group commit must not drop, duplicate or misorder entries).
async fn concurrent_fetches_all_audited(h: Harness) {
    const PER_SHARE: usize = 120;
    let shares = [h.create_share().await, h.create_share().await];
    let mut reads = Vec::new();
    for o in &shares {
        let (token, reader) = h.register_token(o, &scope(1, &[]), now() + 3600, 0).await;
        let blob = rand::<16>();
        assert_eq!(
            h.put_blob(o, &blob, 1, b"blob bytes").await.status,
            StatusCode::CREATED
        );
        reads.push((o.share_hex.clone(), o.share_id, token, reader, blob));
    }
    let mut tasks = Vec::new();
    let mut sent: Vec<Vec<String>> = vec![Vec::new(), Vec::new()];
    for i in 0..PER_SHARE * 2 {
        let s = i % 2;
        let (share_hex, share_id, token, reader, blob) = &reads[s];
        let rc = receipt(reader, share_id, &hex(blob));
        sent[s].push(rc.clone());
        let req = Request::builder()
            .uri(format!("/v1/shares/{share_hex}/blobs/{}", hex(blob)))
            .header("authorization", format!("Bearer {}", b64(token)))
            .header("carekey-receipt", rc)
            .body(Body::empty())
            .unwrap();
        let app = h.app.clone();
        tasks.push(tokio::spawn(async move {
            use tower::ServiceExt;
            let r = app.oneshot(req).await.unwrap();
            let st = r.status();
            let body = http_body_util::BodyExt::collect(r.into_body())
                .await
                .unwrap()
                .to_bytes();
            (st, body)
        }));
    }
    for t in tasks {
        let (st, body) = t.await.unwrap();
        assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert_eq!(&body[..], b"blob bytes");
    }
    let wk = h.get("/.well-known/carekey-relay").await.json();
    let relay_key =
        VerifyingKey::from_bytes(&unb64(wk["audit_key"].as_str().unwrap()).try_into().unwrap())
            .unwrap();
    for (s, o) in shares.iter().enumerate() {
        let r = h
            .owner(
                o,
                "GET",
                &format!("/v1/shares/{}/audit?from=1", o.share_hex),
                vec![],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let log = r.json();
        let entries = log["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 2 + PER_SHARE);
        let mut prev = vec![0u8; 32];
        let mut fetched = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let seq = e["seq"].as_u64().unwrap();
            assert_eq!(seq, i as u64 + 1);
            assert_eq!(unb64(e["prev_hash"].as_str().unwrap()), prev);
            let kind = e["kind"].as_u64().unwrap() as u8;
            let body = unb64(e["body"].as_str().unwrap());
            let hsh = entry_hash(
                &o.share_id,
                seq,
                &prev,
                e["time"].as_u64().unwrap(),
                kind,
                &body,
            );
            assert_eq!(unb64(e["entry_hash"].as_str().unwrap()), hsh);
            prev = hsh;
            if kind == 1 {
                fetched.push(b64(&body));
            }
        }
        let mut want = sent[s].clone();
        want.sort();
        fetched.sort();
        assert_eq!(fetched, want, "every fetch logged exactly once");
        let head = &log["head"];
        let seq = head["seq"].as_u64().unwrap();
        assert_eq!(seq, entries.len() as u64);
        let mut m = b"carekey/v1/relay-audit-head\0".to_vec();
        m.extend_from_slice(&o.share_id);
        m.extend_from_slice(&seq.to_be_bytes());
        m.extend_from_slice(&prev);
        let sig = Signature::from_bytes(
            &unb64(head["signature"].as_str().unwrap())
                .try_into()
                .unwrap(),
        );
        relay_key.verify(&m, &sig).unwrap();
    }
}

/// The group-commit batch re-checks under the share lock what may have changed since a
/// fetch's read: a revoked token, a deleted blob, a swapped manifest (nothing is logged).
async fn fetch_log_rechecks_under_lock(h: Harness) {
    use carekey_relay::fetchlog::{FetchEntry, Fetched, Logged, append_batch};
    let o = h.create_share().await;
    let (token, reader) = h.register_token(&o, &scope(1, &[]), now() + 3600, 0).await;
    let (revoked, _) = h.register_token(&o, &scope(1, &[]), now() + 3600, 0).await;
    let r = h
        .owner(
            &o,
            "DELETE",
            &format!(
                "/v1/shares/{}/tokens/{}",
                o.share_hex,
                hex(&token_hash(&revoked))
            ),
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let blob = rand::<16>();
    h.put_blob(&o, &blob, 1, b"x").await;
    let r = h
        .owner(
            &o,
            "PUT",
            &format!("/v1/shares/{}/manifest?version=2&prev=0", o.share_hex),
            b"m".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let entry = |t: &[u8; 32], object| FetchEntry {
        share_id: o.share_id,
        token_hash: token_hash(t),
        object,
        // A fresh receipt each (one receipt is only ever logged once).
        receipt: unb64(&receipt(&reader, &o.share_id, "blob")),
        now: now(),
    };
    let entries = vec![
        entry(&token, Fetched::Blob(blob)),
        entry(&token, Fetched::Blob(rand::<16>())),
        entry(&revoked, Fetched::Blob(blob)),
        entry(&rand::<32>(), Fetched::Blob(blob)),
        entry(&token, Fetched::Manifest(1)),
        entry(&token, Fetched::Manifest(2)),
        FetchEntry {
            share_id: rand::<16>(),
            ..entry(&token, Fetched::Blob(blob))
        },
    ];
    let out = h
        .state
        .storage
        .transact(move |tx| {
            Ok(append_batch(tx, &entries)?
                .into_iter()
                .map(|r| r.map_err(|e| e.status()))
                .collect::<Vec<_>>())
        })
        .await
        .unwrap();
    assert_eq!(
        out,
        vec![
            Ok(Logged::Committed),
            Err(StatusCode::NOT_FOUND),
            Err(StatusCode::GONE),
            Err(StatusCode::UNAUTHORIZED),
            Ok(Logged::Stale),
            Ok(Logged::Committed),
            Err(StatusCode::NOT_FOUND),
        ]
    );
    // Exactly the two committed fetches were appended, after the earlier events.
    let r = h
        .owner(
            &o,
            "GET",
            &format!("/v1/shares/{}/audit", o.share_hex),
            vec![],
        )
        .await;
    let kinds: Vec<u64> = r.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_u64().unwrap())
        .collect();
    assert_eq!(kinds, vec![5, 2, 2, 3, 6, 1, 1]);
}

/// A receipt whose signed time is far from the relay clock: 400 `receipt_time`, nothing logged.
async fn receipt_time_window(h: Harness) {
    let o = h.create_share().await;
    let (token, reader) = h.register_token(&o, &scope(1, &[]), now() + 3600, 0).await;
    let blob = rand::<16>();
    h.put_blob(&o, &blob, 1, b"x").await;
    let skew = h.state.config.receipt_max_skew_secs;
    let get = |time: u64| {
        Request::builder()
            .uri(format!("/v1/shares/{}/blobs/{}", o.share_hex, hex(&blob)))
            .header("authorization", format!("Bearer {}", b64(&token)))
            .header(
                "carekey-receipt",
                receipt_at(&reader, &o.share_id, &hex(&blob), time),
            )
            .body(Body::empty())
            .unwrap()
    };
    for t in [now() - skew - 60, now() + skew + 60, 0] {
        let r = h.send(get(t)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
        assert_eq!(r.json()["error"], "receipt_time");
    }
    // Within the window (either side): served.
    for t in [now() - skew + 60, now() + skew - 60] {
        assert_eq!(h.send(get(t)).await.status, StatusCode::OK);
    }
    let r = h
        .owner(
            &o,
            "GET",
            &format!("/v1/shares/{}/audit", o.share_hex),
            vec![],
        )
        .await;
    let kinds: Vec<u64> = r.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_u64().unwrap())
        .collect();
    assert_eq!(kinds, vec![5, 2, 1, 1]);
}

/// Manifest reads racing manifest swaps (the group commit's stale-manifest path): every read
/// answers 200 with the body of the version it names, and every read is logged exactly once.
async fn manifest_reads_during_swaps(h: Harness) {
    let h = std::sync::Arc::new(h);
    let o = std::sync::Arc::new(h.create_share().await);
    let (token, reader) = h.register_token(&o, &scope(1, &[]), now() + 3600, 0).await;
    let r = h
        .owner(
            &o,
            "PUT",
            &format!("/v1/shares/{}/manifest?version=1&prev=0", o.share_hex),
            b"m1".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..4 {
        let (h, o, done, reader) = (h.clone(), o.clone(), done.clone(), reader.clone());
        readers.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let rc = receipt(&reader, &o.share_id, "manifest");
                let req = Request::builder()
                    .uri(format!("/v1/shares/{}/manifest", o.share_hex))
                    .header("authorization", format!("Bearer {}", b64(&token)))
                    .header("carekey-receipt", rc.clone())
                    .body(Body::empty())
                    .unwrap();
                let r = h.send(req).await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.text());
                let v = r.headers["carekey-manifest-version"].to_str().unwrap();
                assert_eq!(r.body, format!("m{v}").into_bytes());
                sent.push(rc);
            }
            sent
        }));
    }
    for v in 2..=40u64 {
        let r = h
            .owner(
                &o,
                "PUT",
                &format!(
                    "/v1/shares/{}/manifest?version={v}&prev={}",
                    o.share_hex,
                    v - 1
                ),
                format!("m{v}").into_bytes(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent = Vec::new();
    for t in readers {
        sent.extend(t.await.unwrap());
    }
    let mut logged = Vec::new();
    let mut from = 1;
    loop {
        let r = h
            .owner(
                &o,
                "GET",
                &format!("/v1/shares/{}/audit?from={from}", o.share_hex),
                vec![],
            )
            .await;
        let entries = r.json()["entries"].as_array().unwrap().clone();
        if entries.is_empty() {
            break;
        }
        for e in &entries {
            if e["kind"] == 1 {
                logged.push(b64(&unb64(e["body"].as_str().unwrap())));
            }
        }
        from = entries.last().unwrap()["seq"].as_u64().unwrap() + 1;
    }
    sent.sort();
    logged.sort();
    assert!(!sent.is_empty());
    assert_eq!(logged, sent, "every manifest read logged exactly once");
}

/// Splits a batch answer into its frames (u32 length || bytes), rejecting trailing bytes.
fn frames(mut body: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let n = u32::from_be_bytes(body[..4].try_into().unwrap()) as usize;
        out.push(body[4..4 + n].to_vec());
        body = &body[4 + n..];
    }
    out
}

/// Audit entries of kind 1 (fetches), bodies decoded.
async fn fetch_entries(h: &Harness, o: &Owner) -> Vec<Vec<u8>> {
    let r = h
        .owner(
            o,
            "GET",
            &format!("/v1/shares/{}/audit?from=1", o.share_hex),
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

async fn batch_fetch(h: Harness) {
    let o = h.create_share().await;
    let (token, reader) = h
        .register_token(&o, &scope(0b111, &[]), now() + 3600, 0)
        .await;
    let ids: Vec<[u8; 16]> = (0..5).map(|_| rand::<16>()).collect();
    let mut data = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let d = vec![i as u8 + 1; 100 * (i + 1)];
        assert_eq!(h.put_blob(&o, id, 1, &d).await.status, StatusCode::CREATED);
        data.push(d);
    }
    // In the receipt's order, not the upload order.
    let order = [3usize, 0, 4, 1, 2];
    let asked: Vec<[u8; 16]> = order.iter().map(|&i| ids[i]).collect();
    let object = batch_object(&asked);
    let r = h.batch(&o, &object, &token, &reader).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let got = frames(&r.body);
    assert_eq!(got.len(), 5);
    for (k, &i) in order.iter().enumerate() {
        assert_eq!(got[k], data[i]);
    }
    // One audit entry for the five blobs, whose body is the receipt naming them all.
    let fetches = fetch_entries(&h, &o).await;
    assert_eq!(fetches.len(), 1);
    let needle = object.as_bytes();
    assert!(fetches[0].windows(needle.len()).any(|w| w == needle));

    let before = fetches.len();
    let expect = |r: &Resp, status: StatusCode, code: &str| {
        assert_eq!(r.status, status, "{}", r.text());
        assert_eq!(r.json()["error"], code, "{}", r.text());
    };
    // A missing blob fails the whole batch; nothing is logged.
    let r = h
        .batch(&o, &batch_object(&[ids[0], rand::<16>()]), &token, &reader)
        .await;
    expect(&r, StatusCode::NOT_FOUND, "not_found");
    // Same id twice, too many ids, not a batch object, odd length, uppercase hex.
    let r = h
        .batch(&o, &batch_object(&[ids[0], ids[0]]), &token, &reader)
        .await;
    expect(&r, StatusCode::BAD_REQUEST, "bad_batch");
    let many: Vec<[u8; 16]> = (0..257).map(|_| rand::<16>()).collect();
    let r = h.batch(&o, &batch_object(&many), &token, &reader).await;
    expect(&r, StatusCode::BAD_REQUEST, "batch_too_many");
    let r = h.batch(&o, "manifest", &token, &reader).await;
    expect(&r, StatusCode::BAD_REQUEST, "bad_batch");
    let r = h.batch(&o, "blobs:", &token, &reader).await;
    expect(&r, StatusCode::BAD_REQUEST, "bad_batch");
    let r = h.batch(&o, &format!("{object}0"), &token, &reader).await;
    expect(&r, StatusCode::BAD_REQUEST, "bad_batch");
    let upper = format!("blobs:{}", hex(&ids[0]).to_uppercase());
    let r = h.batch(&o, &upper, &token, &reader).await;
    expect(&r, StatusCode::BAD_REQUEST, "bad_id");
    // No receipt, a receipt with trailing bytes, garbage: a missing or malformed credential
    // (docs/relay.md "HTTP API": 401 with a code naming it).
    let r = h.batch_raw(&o, Vec::new(), &token).await;
    expect(&r, StatusCode::UNAUTHORIZED, "receipt_required");
    let mut long = unb64(&receipt(&reader, &o.share_id, &object));
    long.push(0);
    let r = h.batch_raw(&o, long, &token).await;
    expect(&r, StatusCode::UNAUTHORIZED, "bad_receipt");
    let r = h.batch_raw(&o, b"{\"ids\": []}".to_vec(), &token).await;
    expect(&r, StatusCode::UNAUTHORIZED, "bad_receipt");
    // A receipt for another share, or signed by another key: refused.
    let r = h
        .batch_raw(&o, unb64(&receipt(&reader, &rand::<16>(), &object)), &token)
        .await;
    expect(&r, StatusCode::FORBIDDEN, "receipt_object");
    let r = h.batch(&o, &object, &token, &key()).await;
    expect(&r, StatusCode::FORBIDDEN, "receipt_key");
    // Over the batch byte limit (64 KiB in tests): 413, nothing read or logged.
    let big: Vec<[u8; 16]> = (0..3).map(|_| rand::<16>()).collect();
    for id in &big {
        let r = h.put_blob(&o, id, 1, &vec![7u8; 30 << 10]).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    }
    let r = h.batch(&o, &batch_object(&big), &token, &reader).await;
    expect(&r, StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    let r = h.batch(&o, &batch_object(&big[..2]), &token, &reader).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(fetch_entries(&h, &o).await.len(), before + 1);
    // Revoked: 410.
    let th = hex(&token_hash(&token));
    let r = h
        .owner(
            &o,
            "DELETE",
            &format!("/v1/shares/{}/tokens/{th}", o.share_hex),
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = h.batch(&o, &object, &token, &reader).await;
    assert_eq!(r.status, StatusCode::GONE, "{}", r.text());
    assert_eq!(fetch_entries(&h, &o).await.len(), before + 1);
}

/// Batch receipts are up to ~8.4 KB: an audit read answers at most `PAGE_BYTES` of entry
/// bodies (and at least one entry), and reading on from the last entry returns the rest.
async fn audit_pages_by_bytes(h: Harness) {
    use carekey_relay::audit::PAGE_BYTES;
    let o = h.create_share().await;
    let (token, reader) = h
        .register_token(&o, &scope(0b111, &[]), now() + 3600, 0)
        .await;
    let ids: Vec<[u8; 16]> = (0..256).map(|_| rand::<16>()).collect();
    for id in &ids {
        assert_eq!(
            h.put_blob(&o, id, 1, b"x").await.status,
            StatusCode::CREATED
        );
    }
    let object = batch_object(&ids);
    let fetches = PAGE_BYTES / object.len() + 8;
    for _ in 0..fetches {
        let r = h.batch(&o, &object, &token, &reader).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let mut from = 1u64;
    let mut seqs = Vec::new();
    let mut pages = 0;
    loop {
        let r = h
            .owner(
                &o,
                "GET",
                &format!("/v1/shares/{}/audit?from={from}", o.share_hex),
                vec![],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let log = r.json();
        let entries = log["entries"].as_array().unwrap();
        assert!(!entries.is_empty());
        let bytes: usize = entries
            .iter()
            .map(|e| unb64(e["body"].as_str().unwrap()).len())
            .sum();
        assert!(bytes <= PAGE_BYTES, "page of {bytes} body bytes");
        seqs.extend(entries.iter().map(|e| e["seq"].as_u64().unwrap()));
        pages += 1;
        let last = *seqs.last().unwrap();
        if last == log["head"]["seq"].as_u64().unwrap() {
            break;
        }
        from = last + 1;
    }
    assert!(pages >= 2, "more than a page of bodies");
    // Share created + token registered + every fetch, each exactly once, in order.
    let expect: Vec<u64> = (1..=(2 + fetches as u64)).collect();
    assert_eq!(seqs, expect);
}

/// Scoped tokens (relay-formats.md "Scoped tokens"): a token registered with relay groups
/// reads only blobs the owner put in one of them, by single GET and by batch (all or nothing,
/// nothing logged); out of scope answers exactly like a blob that is not stored (404). A
/// delegated token's groups must be signed into a version-2 link and lie within its parent's;
/// tokens registered without groups (before scoped tokens) keep reading the whole share.
async fn scoped_tokens_read_only_their_groups(h: Harness) {
    let o = h.create_share().await;
    let exp = now() + 3600;
    let (obs, doc, rec, other) = (rand::<16>(), rand::<16>(), rand::<16>(), rand::<16>());
    let b: Vec<[u8; 16]> = (0..5).map(|_| rand::<16>()).collect();
    for (i, id) in b.iter().enumerate() {
        let r = h.put_blob(&o, id, 1, &[i as u8; 64]).await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    // b0, b1 observations; b2 a document; b3 one listed record; b4 in no group at all.
    let r = h
        .register_groups(
            &o,
            &[
                (obs, vec![b[0], b[1]]),
                (doc, vec![b[2]]),
                (rec, vec![b[3], b[0]]),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["rows"], 5);
    // A blob that is not stored cannot be put in a group (nothing is stored).
    let r = h
        .register_groups(&o, &[(other, vec![b[4], rand::<16>()])])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());

    let all = scope(0b111_1111_1111, &[]);
    let (ta, ka) = h
        .register_scoped_token(&o, &all, &[obs, doc, rec], exp, 2)
        .await;
    let (tn, kn) = h
        .register_scoped_token(&o, &scope(1 << 6, &[]), &[doc], exp, 0)
        .await;
    let (tl, kl) = h.register_token(&o, &all, exp, 2).await;
    let reads = |t: [u8; 32], k: ed25519_dalek::SigningKey| {
        let h = &h;
        let o = &o;
        let b = b.clone();
        async move {
            let mut v = Vec::new();
            for id in &b {
                v.push(h.read(o, &hex(id), &t, &k).await.status == StatusCode::OK);
            }
            v
        }
    };
    assert_eq!(reads(ta, ka.clone()).await, [true, true, true, true, false]);
    assert_eq!(
        reads(tn, kn.clone()).await,
        [false, false, true, false, false]
    );
    assert_eq!(reads(tl, kl.clone()).await, [true; 5], "unscoped reads all");
    // Out of scope is the same 404 as a blob that does not exist.
    let r = h.read(&o, &hex(&b[0]), &tn, &kn).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["error"], "not_found");
    let r = h.read(&o, &hex(&rand::<16>()), &tn, &kn).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Batches: all in scope, or nothing read and nothing logged.
    let logged = fetch_entries(&h, &o).await.len();
    let r = h.batch(&o, &batch_object(&[b[2]]), &tn, &kn).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(frames(&r.body), vec![vec![2u8; 64]]);
    for ids in [vec![b[2], b[0]], vec![b[1]], vec![b[4], b[2]]] {
        let r = h.batch(&o, &batch_object(&ids), &tn, &kn).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
        assert!(r.body.len() < 200, "no blob bytes in a refusal");
    }
    assert_eq!(fetch_entries(&h, &o).await.len(), logged + 1);
    // Bad group tags in a registration: 400.
    let body = serde_json::to_vec(&serde_json::json!({
        "token_hash": b64(&token_hash(&rand::<32>())),
        "reader_key": b64(key().verifying_key().as_bytes()),
        "scope": b64(&all),
        "expires_at": exp,
        "depth": 0,
        "groups": [b64(&[1u8; 15])],
    }))
    .unwrap();
    let r = h
        .owner(
            &o,
            "POST",
            &format!("/v1/shares/{}/tokens", o.share_hex),
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());

    // Delegation below the scoped token A.
    let dpath = format!("/v1/shares/{}/delegations", o.share_hex);
    let post = |root: &[u8; 32], chain: Vec<String>| {
        let body = serde_json::to_vec(&serde_json::json!({
            "root_token_hash": b64(&token_hash(root)),
            "chain": chain,
            "notice": b64(b"sealed-to-patient"),
        }))
        .unwrap();
        Request::builder()
            .method("POST")
            .uri(&dpath)
            .body(Body::from(body))
            .unwrap()
    };
    let obs_scope = scope(1 << 5, &[]);
    let (tb, kb) = (rand::<32>(), key());
    // A group A does not hold, and a version-1 link (no groups) below a scoped parent.
    for bad in [
        link_scoped(
            &ka,
            &o.share_id,
            &kb,
            &token_hash(&tb),
            &obs_scope,
            &[obs, other],
            exp,
            1,
        ),
        link(&ka, &o.share_id, &kb, &token_hash(&tb), &obs_scope, exp, 1),
    ] {
        let r = h.send(post(&ta, vec![bad])).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
        assert_eq!(r.json()["error"], "delegation_widens_groups");
    }
    let ab = link_scoped(
        &ka,
        &o.share_id,
        &kb,
        &token_hash(&tb),
        &obs_scope,
        &[obs],
        exp,
        1,
    );
    let r = h.send(post(&ta, vec![ab.clone()])).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(
        reads(tb, kb.clone()).await,
        [true, true, false, false, false]
    );
    // Second level: B cannot hand down the document group A gave B no part of.
    let (tc, kc) = (rand::<32>(), key());
    let bc = link_scoped(
        &kb,
        &o.share_id,
        &kc,
        &token_hash(&tc),
        &obs_scope,
        &[doc],
        exp,
        0,
    );
    let r = h.send(post(&ta, vec![ab.clone(), bc])).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    let bc = link_scoped(
        &kb,
        &o.share_id,
        &kc,
        &token_hash(&tc),
        &obs_scope,
        &[obs],
        exp,
        0,
    );
    let r = h.send(post(&ta, vec![ab, bc])).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(
        reads(tc, kc.clone()).await,
        [true, true, false, false, false]
    );
    let r = h.batch(&o, &batch_object(&[b[0], b[2]]), &tc, &kc).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Below the unscoped token L: a version-1 child reads all, a version-2 child its groups.
    let (tf, kf) = (rand::<32>(), key());
    let lf = link(&kl, &o.share_id, &kf, &token_hash(&tf), &all, exp, 0);
    assert_eq!(
        h.send(post(&tl, vec![lf])).await.status,
        StatusCode::CREATED
    );
    assert_eq!(reads(tf, kf).await, [true; 5]);
    let (tg, kg) = (rand::<32>(), key());
    let lg = link_scoped(
        &kl,
        &o.share_id,
        &kg,
        &token_hash(&tg),
        &all,
        &[doc],
        exp,
        0,
    );
    assert_eq!(
        h.send(post(&tl, vec![lg])).await.status,
        StatusCode::CREATED
    );
    assert_eq!(reads(tg, kg).await, [false, false, true, false, false]);

    // A new epoch: blobs of the next epoch join the same (stable) groups; deleting the old
    // epoch deletes its group rows with its blobs.
    let n0 = rand::<16>();
    assert_eq!(
        h.put_blob(&o, &n0, 2, b"next epoch").await.status,
        StatusCode::CREATED
    );
    let r = h.register_groups(&o, &[(obs, vec![n0])]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(h.read(&o, &hex(&n0), &tc, &kc).await.status, StatusCode::OK);
    assert_eq!(
        h.read(&o, &hex(&n0), &tn, &kn).await.status,
        StatusCode::NOT_FOUND
    );
    let r = h
        .owner(
            &o,
            "DELETE",
            &format!("/v1/shares/{}/epochs/1", o.share_hex),
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(reads(ta, ka).await, [false; 5]);
    assert_eq!(h.read(&o, &hex(&n0), &tb, &kb).await.status, StatusCode::OK);
}

/// Two instances on one PostgreSQL, each with its own fetch-log writer, log concurrent fetches
/// of the same shares: the share row lock keeps one valid chain per share with every fetch once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_instances_concurrent_fetches() {
    let Some(a) = Backend::Postgres.harness().await else {
        return;
    };
    let (url, schema) = a.pg.clone().unwrap();
    let storage = std::sync::Arc::new(
        carekey_relay::storage::postgres::PgStorage::open(&url, Some(&schema))
            .await
            .unwrap(),
    );
    let bstate = carekey_relay::AppState::new(storage, test_config())
        .await
        .unwrap();
    let apps = [a.app.clone(), carekey_relay::app(bstate)];
    let shares = [a.create_share().await, a.create_share().await];
    let mut setup = Vec::new();
    for o in &shares {
        let (token, reader) = a.register_token(o, &scope(1, &[]), now() + 3600, 0).await;
        let blob = rand::<16>();
        assert_eq!(
            a.put_blob(o, &blob, 1, b"both").await.status,
            StatusCode::CREATED
        );
        setup.push((token, reader, blob));
    }
    let mut tasks = Vec::new();
    let mut sent: Vec<Vec<String>> = vec![Vec::new(), Vec::new()];
    for i in 0..160usize {
        let s = i % 2;
        let (token, reader, blob) = &setup[s];
        let rc = receipt(reader, &shares[s].share_id, &hex(blob));
        sent[s].push(rc.clone());
        let req = Request::builder()
            .uri(format!(
                "/v1/shares/{}/blobs/{}",
                shares[s].share_hex,
                hex(blob)
            ))
            .header("authorization", format!("Bearer {}", b64(token)))
            .header("carekey-receipt", rc)
            .body(Body::empty())
            .unwrap();
        let app = apps[(i / 2) % 2].clone();
        tasks.push(tokio::spawn(async move {
            use tower::ServiceExt;
            app.oneshot(req).await.unwrap().status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    for (s, o) in shares.iter().enumerate() {
        let r = a
            .owner(
                o,
                "GET",
                &format!("/v1/shares/{}/audit?from=1", o.share_hex),
                vec![],
            )
            .await;
        let log = r.json();
        let mut prev = vec![0u8; 32];
        let mut fetched = Vec::new();
        for (i, e) in log["entries"].as_array().unwrap().iter().enumerate() {
            let seq = e["seq"].as_u64().unwrap();
            assert_eq!(seq, i as u64 + 1);
            assert_eq!(unb64(e["prev_hash"].as_str().unwrap()), prev);
            let kind = e["kind"].as_u64().unwrap() as u8;
            let body = unb64(e["body"].as_str().unwrap());
            prev = entry_hash(
                &o.share_id,
                seq,
                &prev,
                e["time"].as_u64().unwrap(),
                kind,
                &body,
            );
            assert_eq!(unb64(e["entry_hash"].as_str().unwrap()), prev);
            if kind == 1 {
                fetched.push(b64(&body));
            }
        }
        fetched.sort();
        sent[s].sort();
        assert_eq!(fetched, sent[s]);
        assert_eq!(unb64(log["head"]["entry_hash"].as_str().unwrap()), prev);
    }
}
