//! Shares: blobs, chunked uploads, manifests, epochs, owner counters, quotas, expiry and malformed input (docs/relay.md "HTTP API").
//! Each case runs as `sqlite::<case>` and `postgres::<case>` (the latter return early when
//! `CAREKEY_TEST_PG_URL` is unset); split out of the one suite file by resource.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use carekey_relay::sweeper;
use common::*;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

both_backends!(
    blob_roundtrip_and_audit_chain,
    replayed_or_reordered_owner_request_rejected,
    manifest_compare_and_swap,
    chunked_upload_atomic,
    epoch_bulk_delete,
    malformed_inputs_400,
    quota_429,
    share_expiry_410,
);

async fn blob_roundtrip_and_audit_chain(h: Harness) {
    let o = h.create_share().await;
    let (token, reader) = h
        .register_token(&o, &scope(0b111, &[]), now() + 3600, 0)
        .await;
    let blob = rand::<16>();
    let data = rand::<1000>().to_vec();
    let r = h.put_blob(&o, &blob, 1, &data).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["sha256"], b64(&Sha256::digest(&data)));
    // Same bytes again: idempotent; other bytes: conflict.
    assert_eq!(h.put_blob(&o, &blob, 1, &data).await.status, StatusCode::OK);
    assert_eq!(
        h.put_blob(&o, &blob, 1, b"other").await.status,
        StatusCode::CONFLICT
    );
    let r = h.read(&o, &hex(&blob), &token, &reader).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.body, data);

    // Audit: share created, token registered, fetch; verify chain and signed head.
    let wk = h.get("/.well-known/carekey-relay").await.json();
    assert_eq!(wk["version"], 1);
    let relay_key =
        VerifyingKey::from_bytes(&unb64(wk["audit_key"].as_str().unwrap()).try_into().unwrap())
            .unwrap();
    let r = h
        .owner(
            &o,
            "GET",
            &format!("/v1/shares/{}/audit?from=1", o.share_hex),
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let log = r.json();
    let entries = log["entries"].as_array().unwrap();
    let kinds: Vec<u64> = entries
        .iter()
        .map(|e| e["kind"].as_u64().unwrap())
        .collect();
    assert_eq!(kinds, vec![5, 2, 1]);
    let mut prev = vec![0u8; 32];
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["seq"].as_u64().unwrap(), i as u64 + 1);
        assert_eq!(unb64(e["prev_hash"].as_str().unwrap()), prev);
        let hsh = entry_hash(
            &o.share_id,
            e["seq"].as_u64().unwrap(),
            &prev,
            e["time"].as_u64().unwrap(),
            e["kind"].as_u64().unwrap() as u8,
            &unb64(e["body"].as_str().unwrap()),
        );
        assert_eq!(unb64(e["entry_hash"].as_str().unwrap()), hsh);
        prev = hsh;
    }
    // Kind 2 body = token_hash || reader_key || expires_at || depth.
    let b2 = unb64(entries[1]["body"].as_str().unwrap());
    assert_eq!(&b2[..32], &token_hash(&token));
    assert_eq!(&b2[32..64], reader.verifying_key().as_bytes());
    assert_eq!(b2.len(), 73);
    let head = &log["head"];
    assert_eq!(head["seq"], 3);
    assert_eq!(unb64(head["entry_hash"].as_str().unwrap()), prev);
    let mut m = b"carekey/v1/relay-audit-head\0".to_vec();
    m.extend_from_slice(&o.share_id);
    m.extend_from_slice(&3u64.to_be_bytes());
    m.extend_from_slice(&prev);
    let sig = Signature::from_bytes(
        &unb64(head["signature"].as_str().unwrap())
            .try_into()
            .unwrap(),
    );
    relay_key.verify(&m, &sig).unwrap();
    // Reading from a later sequence number returns only the tail.
    let r = h
        .owner(
            &o,
            "GET",
            &format!("/v1/shares/{}/audit?from=3", o.share_hex),
            vec![],
        )
        .await;
    assert_eq!(r.json()["entries"].as_array().unwrap().len(), 1);
    // Without a challenge the head has no fresh signature; with one, the fresh signature
    // covers the head and that challenge (docs/relay-formats.md "Relay audit chain").
    assert!(r.json()["head"].get("fresh_signature").is_none());
    let challenge = rand::<32>();
    let r = h
        .owner(
            &o,
            "GET",
            &format!(
                "/v1/shares/{}/audit?from=3&challenge={}",
                o.share_hex,
                b64(&challenge)
            ),
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let fresh = |challenge: &[u8; 32]| {
        let mut m = b"carekey/v1/relay-fresh-head\0".to_vec();
        m.extend_from_slice(&o.share_id);
        m.extend_from_slice(&3u64.to_be_bytes());
        m.extend_from_slice(&prev);
        m.extend_from_slice(challenge);
        m
    };
    let sig = Signature::from_bytes(
        &unb64(r.json()["head"]["fresh_signature"].as_str().unwrap())
            .try_into()
            .unwrap(),
    );
    relay_key.verify(&fresh(&challenge), &sig).unwrap();
    assert!(
        relay_key.verify(&fresh(&[0; 32]), &sig).is_err(),
        "bound to the challenge"
    );
    assert!(relay_key.verify(&m, &sig).is_err(), "not the plain head");
    // A challenge that is not 32 bytes of base64url: 400, the input not echoed.
    for bad in ["AAAA", "not*base64"] {
        let r = h
            .owner(
                &o,
                "GET",
                &format!("/v1/shares/{}/audit?challenge={bad}", o.share_hex),
                vec![],
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(!r.text().contains(bad), "{bad}");
    }
}

async fn replayed_or_reordered_owner_request_rejected(h: Harness) {
    let o = h.create_share().await;
    let blob = rand::<16>();
    let pq = format!("/v1/shares/{}/blobs/{}?epoch=1", o.share_hex, hex(&blob));
    let req = || Harness::owner_request(&o.key, "PUT", &pq, b"abc".to_vec(), 10);
    assert_eq!(h.send(req()).await.status, StatusCode::CREATED);
    // Exact replay.
    let r = h.send(req()).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["error"], "counter_replayed");
    // Reordered: an older counter signed earlier arrives later.
    let r = h
        .send(Harness::owner_request(
            &o.key,
            "PUT",
            &pq,
            b"abc".to_vec(),
            5,
        ))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    // Body changed under the signature.
    let mut bad = Harness::owner_request(&o.key, "PUT", &pq, b"abc".to_vec(), 11);
    *bad.body_mut() = Body::from("abd");
    assert_eq!(h.send(bad).await.status, StatusCode::UNAUTHORIZED);
    // Signed for another origin.
    let sig = owner_sig(&o.key, "PUT", &pq, "http://evil.test", b"abc", 12);
    let r = h
        .send(
            Request::builder()
                .method("PUT")
                .uri(&pq)
                .header("carekey-counter", "12")
                .header("carekey-signature", sig)
                .body(Body::from("abc"))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Another key.
    let r = h
        .send(Harness::owner_request(
            &key(),
            "PUT",
            &pq,
            b"abc".to_vec(),
            13,
        ))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Missing headers.
    let r = h
        .send(
            Request::builder()
                .method("PUT")
                .uri(&pq)
                .body(Body::from("abc"))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Counter still accepts a higher value.
    let r = h
        .send(Harness::owner_request(
            &o.key,
            "PUT",
            &pq,
            b"abc".to_vec(),
            14,
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

async fn manifest_compare_and_swap(h: Harness) {
    let o = h.create_share().await;
    let (token, reader) = h.register_token(&o, &scope(1, &[]), now() + 3600, 0).await;
    assert_eq!(
        h.read(&o, "manifest", &token, &reader).await.status,
        StatusCode::NOT_FOUND
    );
    let p = |v: u64, prev: u64| {
        format!(
            "/v1/shares/{}/manifest?version={v}&prev={prev}",
            o.share_hex
        )
    };
    let r = h.owner(&o, "PUT", &p(1, 0), b"m1".to_vec()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // A stale writer that still believes version 0 is current loses.
    let r = h.owner(&o, "PUT", &p(2, 0), b"m2".to_vec()).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["error"], "version_mismatch");
    // Versions only go up.
    assert_eq!(
        h.owner(&o, "PUT", &p(1, 1), b"m".to_vec()).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        h.owner(&o, "PUT", &p(5, 1), b"m5".to_vec()).await.status,
        StatusCode::OK
    );
    let r = h.read(&o, "manifest", &token, &reader).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, b"m5");
    assert_eq!(r.headers["carekey-manifest-version"], "5");
}

async fn chunked_upload_atomic(h: Harness) {
    let o = h.create_share().await;
    let (token, reader) = h.register_token(&o, &scope(1, &[]), now() + 3600, 0).await;
    let blob = rand::<16>();
    let r = h
        .owner(
            &o,
            "POST",
            &format!(
                "/v1/shares/{}/uploads?blob={}&epoch=2",
                o.share_hex,
                hex(&blob)
            ),
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let up = r.json()["upload_id"].as_str().unwrap().to_owned();
    let chunks: Vec<Vec<u8>> = (0..3).map(|i| vec![i as u8; 300_000]).collect();
    for (i, c) in chunks.iter().enumerate() {
        let r = h
            .owner(
                &o,
                "PUT",
                &format!("/v1/shares/{}/uploads/{up}/chunks/{i}", o.share_hex),
                c.clone(),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
        // No partial blob is ever visible.
        assert_eq!(
            h.read(&o, &hex(&blob), &token, &reader).await.status,
            StatusCode::NOT_FOUND
        );
    }
    let all: Vec<u8> = chunks.concat();
    let commit = |sha: &[u8], n: u32| {
        serde_json::to_vec(&serde_json::json!({"chunks": n, "sha256": b64(sha)})).unwrap()
    };
    let cp = format!("/v1/shares/{}/uploads/{up}/commit", o.share_hex);
    let r = h.owner(&o, "POST", &cp, commit(&[0u8; 32], 3)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"], "hash_mismatch");
    assert_eq!(
        h.owner(&o, "POST", &cp, commit(&Sha256::digest(&all), 4))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    let r = h
        .owner(&o, "POST", &cp, commit(&Sha256::digest(&all), 3))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = h.read(&o, &hex(&blob), &token, &reader).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, all);
    // The upload is gone after commit: its parts (now the blob's) can no longer be rewritten.
    assert_eq!(
        h.owner(&o, "POST", &cp, commit(&Sha256::digest(&all), 3))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.owner(
            &o,
            "PUT",
            &format!("/v1/shares/{}/uploads/{up}/chunks/0", o.share_hex),
            vec![9u8; 10],
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(h.read(&o, &hex(&blob), &token, &reader).await.body, all);
    // Deleting the epoch removes the parts-backed blob too.
    let r = h
        .owner(
            &o,
            "DELETE",
            &format!("/v1/shares/{}/epochs/2", o.share_hex),
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["deleted_blobs"], 1);
    assert_eq!(
        h.read(&o, &hex(&blob), &token, &reader).await.status,
        StatusCode::NOT_FOUND
    );
}

async fn epoch_bulk_delete(h: Harness) {
    let o = h.create_share().await;
    let (token, reader) = h.register_token(&o, &scope(1, &[]), now() + 3600, 0).await;
    let old: Vec<[u8; 16]> = (0..3).map(|_| rand::<16>()).collect();
    let new = rand::<16>();
    for b in &old {
        assert_eq!(
            h.put_blob(&o, b, 1, b"old").await.status,
            StatusCode::CREATED
        );
    }
    assert_eq!(
        h.put_blob(&o, &new, 2, b"new").await.status,
        StatusCode::CREATED
    );
    let r = h
        .owner(
            &o,
            "DELETE",
            &format!("/v1/shares/{}/epochs/1", o.share_hex),
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["deleted_blobs"], 3);
    for b in &old {
        assert_eq!(
            h.read(&o, &hex(b), &token, &reader).await.status,
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(h.read(&o, &hex(&new), &token, &reader).await.body, b"new");

    // Every epoch below N at once (what a revoke calls): epochs 2 and 3 go, 4 stays, and an
    // epoch already gone (1) is no error and logs nothing more.
    let (e3, e4) = (rand::<16>(), rand::<16>());
    h.put_blob(&o, &e3, 3, b"three").await;
    h.put_blob(&o, &e4, 4, b"four").await;
    let r = h
        .owner(
            &o,
            "DELETE",
            &format!("/v1/shares/{}/epochs?below=4", o.share_hex),
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["deleted_blobs"], 2);
    for b in [&new, &e3] {
        assert_eq!(
            h.read(&o, &hex(b), &token, &reader).await.status,
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(h.read(&o, &hex(&e4), &token, &reader).await.body, b"four");
    let r = h
        .owner(
            &o,
            "DELETE",
            &format!("/v1/shares/{}/epochs", o.share_hex),
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "`below` is required");
    // One "epoch deleted" entry (kind 7, body = epoch u32) per epoch that held anything.
    let r = h
        .owner(
            &o,
            "GET",
            &format!("/v1/shares/{}/audit?from=1", o.share_hex),
            vec![],
        )
        .await;
    let deleted: Vec<Vec<u8>> = r.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == 7)
        .map(|e| unb64(e["body"].as_str().unwrap()))
        .collect();
    assert_eq!(
        deleted,
        [1u32, 2, 3].map(|e| e.to_be_bytes().to_vec()).to_vec()
    );
}

async fn malformed_inputs_400(h: Harness) {
    let o = h.create_share().await;
    let r = h
        .owner(
            &o,
            "POST",
            &format!("/v1/shares/{}/tokens", o.share_hex),
            b"{not json".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("malformed JSON"),
        "{}",
        r.text()
    );
    let body = serde_json::to_vec(&serde_json::json!({"token_hash": "!!", "reader_key": "", "scope": "", "expires_at": 1, "depth": 0})).unwrap();
    let r = h
        .owner(
            &o,
            "POST",
            &format!("/v1/shares/{}/tokens", o.share_hex),
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("base64url"), "{}", r.text());
    let r = h.get("/v1/shares/NOTHEX/blobs/00").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = h
        .send(
            Request::builder()
                .uri(format!(
                    "/v1/shares/{}/blobs/{}",
                    o.share_hex,
                    hex(&rand::<16>())
                ))
                .header("authorization", format!("Bearer {}", b64(&rand::<32>())))
                .header("carekey-receipt", b64(&[1, 2, 3]))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    // Malformed credentials are 401 with a code naming them (docs/relay.md "HTTP API").
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"], "bad_receipt", "{}", r.text());
    let r = h
        .send(
            Request::builder()
                .uri(format!(
                    "/v1/shares/{}/blobs/{}",
                    o.share_hex,
                    hex(&rand::<16>())
                ))
                .header("authorization", "Basic abc")
                .header("carekey-receipt", "x")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"], "bad_token", "{}", r.text());
    let r = h
        .send(
            Request::builder()
                .method("PUT")
                .uri(format!(
                    "/v1/shares/{}/blobs/{}?epoch=1",
                    o.share_hex,
                    hex(&rand::<16>())
                ))
                .header("carekey-counter", "-1")
                .header("carekey-signature", "AAAA")
                .body(Body::from("x"))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"], "bad_counter", "{}", r.text());
    // Missing query parameter.
    let r = h
        .owner(
            &o,
            "PUT",
            &format!("/v1/shares/{}/blobs/{}", o.share_hex, hex(&rand::<16>())),
            b"x".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(h.get("/nope").await.status, StatusCode::NOT_FOUND);
    // Oversized body: 413.
    let big = vec![0u8; (1 << 20) + 1];
    let r = h.put_blob(&o, &rand::<16>(), 1, &big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
}

async fn quota_429(h: Harness) {
    let o = h.create_share().await;
    // Fill the 1 GiB default quota cheaply is not possible here; use a small-quota harness.
    drop(o);
    let mut c = test_config();
    c.share_quota_bytes = 10_000;
    let backend = if h.pg.is_some() {
        Backend::Postgres
    } else {
        Backend::Sqlite
    };
    let h2 = backend.harness_with(c).await.unwrap();
    let o = h2.create_share().await;
    assert_eq!(
        h2.put_blob(&o, &rand::<16>(), 1, &[0u8; 6000]).await.status,
        StatusCode::CREATED
    );
    let r = h2.put_blob(&o, &rand::<16>(), 1, &[0u8; 6000]).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.contains_key("retry-after"));
    // Deleting the epoch frees the quota.
    h2.owner(
        &o,
        "DELETE",
        &format!("/v1/shares/{}/epochs/1", o.share_hex),
        vec![],
    )
    .await;
    assert_eq!(
        h2.put_blob(&o, &rand::<16>(), 1, &[0u8; 6000]).await.status,
        StatusCode::CREATED
    );
}

async fn share_expiry_410(h: Harness) {
    let o = h.create_share().await;
    let (token, reader) = h
        .register_token(&o, &scope(1, &[]), now() + 10 * 86_400, 0)
        .await;
    let blob = rand::<16>();
    h.put_blob(&o, &blob, 1, b"x").await;
    h.state.clock.advance(2 * 86_400);
    assert_eq!(
        h.read(&o, &hex(&blob), &token, &reader).await.status,
        StatusCode::GONE
    );
    let s = sweeper::sweep_once(&h.state).await.unwrap();
    assert_eq!(s.shares, 1);
    assert_eq!(
        h.read(&o, &hex(&blob), &token, &reader).await.status,
        StatusCode::GONE
    );
    assert_eq!(
        h.put_blob(&o, &rand::<16>(), 1, b"y").await.status,
        StatusCode::GONE
    );
}
