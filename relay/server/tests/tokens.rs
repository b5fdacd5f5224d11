//! Read tokens and delegation chains: status codes, expiry and the sweeper, delegation links (docs/relay.md "Delegation registration").
//! Each case runs as `sqlite::<case>` and `postgres::<case>` (the latter return early when
//! `CAREKEY_TEST_PG_URL` is unset); split out of the one suite file by resource.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use carekey_relay::sweeper;
use common::*;

both_backends!(
    token_status_codes,
    token_expiry_and_sweeper,
    delegation_chain,
);

async fn token_status_codes(h: Harness) {
    let o = h.create_share().await;
    let (token, reader) = h.register_token(&o, &scope(1, &[]), now() + 3600, 0).await;
    let blob = rand::<16>();
    h.put_blob(&o, &blob, 1, b"x").await;
    // Unknown blob: 404. Unknown token: 401. Unknown share: 404.
    assert_eq!(
        h.read(&o, &hex(&rand::<16>()), &token, &reader)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.read(&o, &hex(&blob), &rand::<32>(), &reader).await.status,
        StatusCode::UNAUTHORIZED
    );
    let other = Owner {
        share_hex: hex(&rand::<16>()),
        ..o
    };
    let o = Owner {
        share_hex: hex(&o.share_id),
        ..other
    };
    let ghost = Owner {
        share_id: rand::<16>(),
        share_hex: String::new(),
        key: key(),
        counter: Default::default(),
    };
    let ghost = Owner {
        share_hex: hex(&ghost.share_id),
        ..ghost
    };
    assert_eq!(
        h.read(&ghost, &hex(&blob), &token, &reader).await.status,
        StatusCode::NOT_FOUND
    );
    // Receipt by another key: 403. Receipt for another object: 403.
    assert_eq!(
        h.read(&o, &hex(&blob), &token, &key()).await.status,
        StatusCode::FORBIDDEN
    );
    let req = Request::builder()
        .uri(format!("/v1/shares/{}/blobs/{}", o.share_hex, hex(&blob)))
        .header("authorization", format!("Bearer {}", b64(&token)))
        .header("carekey-receipt", receipt(&reader, &o.share_id, "manifest"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(req).await.status, StatusCode::FORBIDDEN);
    // Missing receipt: 401 `receipt_required` (a missing credential).
    let req = Request::builder()
        .uri(format!("/v1/shares/{}/blobs/{}", o.share_hex, hex(&blob)))
        .header("authorization", format!("Bearer {}", b64(&token)))
        .body(Body::empty())
        .unwrap();
    let r = h.send(req).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"], "receipt_required", "{}", r.text());
    // Revoke: 410 from then on; revoking an unknown token: 404.
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
    assert_eq!(
        h.read(&o, &hex(&blob), &token, &reader).await.status,
        StatusCode::GONE
    );
    assert_eq!(
        h.read(&o, &hex(&rand::<16>()), &token, &reader)
            .await
            .status,
        StatusCode::GONE
    );
    let r = h
        .owner(
            &o,
            "DELETE",
            &format!("/v1/shares/{}/tokens/{}", o.share_hex, hex(&rand::<32>())),
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

async fn token_expiry_and_sweeper(h: Harness) {
    let o = h.create_share().await;
    let (token, reader) = h.register_token(&o, &scope(1, &[]), now() + 100, 0).await;
    let blob = rand::<16>();
    h.put_blob(&o, &blob, 1, b"x").await;
    assert_eq!(
        h.read(&o, &hex(&blob), &token, &reader).await.status,
        StatusCode::OK
    );
    h.state.clock.advance(200);
    assert_eq!(
        h.read(&o, &hex(&blob), &token, &reader).await.status,
        StatusCode::GONE
    );
    let s = sweeper::sweep_once(&h.state).await.unwrap();
    assert!(s.tokens >= 1);
    assert_eq!(
        h.read(&o, &hex(&blob), &token, &reader).await.status,
        StatusCode::GONE
    );
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
    assert_eq!(kinds.last(), Some(&8));
}

async fn delegation_chain(h: Harness) {
    let o = h.create_share().await;
    let rec = [rand::<16>(), rand::<16>()];
    let root_scope = scope(0b11, &rec);
    let exp = now() + 3600;
    let (ta, ka) = h.register_token(&o, &root_scope, exp, 2).await;
    let blob = rand::<16>();
    h.put_blob(&o, &blob, 1, b"data").await;
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
    let (tb, kb) = (rand::<32>(), key());
    let narrow = scope(0b01, &rec[..1]);
    // Widening scope (category), widening records, widening expiry, depth not reduced,
    // signed by the wrong key: all rejected.
    for (bad, why) in [
        (
            link(
                &ka,
                &o.share_id,
                &kb,
                &token_hash(&tb),
                &scope(0b111, &[]),
                exp,
                1,
            ),
            "category",
        ),
        (
            link(
                &ka,
                &o.share_id,
                &kb,
                &token_hash(&tb),
                &scope(0b01, &[rand::<16>()]),
                exp,
                1,
            ),
            "record",
        ),
        (
            link(&ka, &o.share_id, &kb, &token_hash(&tb), &narrow, exp + 1, 1),
            "expiry",
        ),
        (
            link(&ka, &o.share_id, &kb, &token_hash(&tb), &narrow, exp, 2),
            "depth",
        ),
        (
            link(&key(), &o.share_id, &kb, &token_hash(&tb), &narrow, exp, 1),
            "parent key",
        ),
    ] {
        let r = h.send(post(&ta, vec![bad])).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{why}: {}", r.text());
    }
    // Tampered signature bytes.
    let mut l = unb64(&link(
        &ka,
        &o.share_id,
        &kb,
        &token_hash(&tb),
        &narrow,
        exp,
        1,
    ));
    let n = l.len();
    l[n - 1] ^= 1;
    assert_eq!(
        h.send(post(&ta, vec![b64(&l)])).await.status,
        StatusCode::FORBIDDEN
    );
    // Trailing bytes and unknown version: 400.
    let mut l = unb64(&link(
        &ka,
        &o.share_id,
        &kb,
        &token_hash(&tb),
        &narrow,
        exp,
        1,
    ));
    l.push(0);
    // A link that does not parse is a malformed credential: 401 `bad_link`.
    let r = h.send(post(&ta, vec![b64(&l)])).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"], "bad_link", "{}", r.text());
    let mut l = unb64(&link(
        &ka,
        &o.share_id,
        &kb,
        &token_hash(&tb),
        &narrow,
        exp,
        1,
    ));
    l[0] = 3;
    let r = h.send(post(&ta, vec![b64(&l)])).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"], "bad_link", "{}", r.text());
    // Valid A -> B.
    let ab = link(&ka, &o.share_id, &kb, &token_hash(&tb), &narrow, exp, 1);
    // Without a notice (absent or empty) even a valid chain is refused, and registers
    // nothing: the patient must be told of every delegation (issue 11, item 3).
    for notice in [None, Some(String::new())] {
        let mut reg = serde_json::json!({
            "root_token_hash": b64(&token_hash(&ta)),
            "chain": [ab.clone()],
        });
        if let Some(n) = notice {
            reg["notice"] = serde_json::Value::String(n);
        }
        let r = h
            .send(
                Request::builder()
                    .method("POST")
                    .uri(&dpath)
                    .body(Body::from(serde_json::to_vec(&reg).unwrap()))
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
        assert_eq!(r.json()["error"], "notice_required", "{}", r.text());
        assert_eq!(
            h.read(&o, &hex(&blob), &tb, &kb).await.status,
            StatusCode::UNAUTHORIZED,
            "nothing registered without a notice"
        );
    }
    let r = h.send(post(&ta, vec![ab.clone()])).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(
        h.send(post(&ta, vec![ab.clone()])).await.status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        h.read(&o, &hex(&blob), &tb, &kb).await.status,
        StatusCode::OK
    );
    // B -> C (depth 0), then C cannot delegate further.
    let (tc, kc) = (rand::<32>(), key());
    let bc = link(
        &kb,
        &o.share_id,
        &kc,
        &token_hash(&tc),
        &narrow,
        exp - 10,
        0,
    );
    let r = h.send(post(&ta, vec![ab.clone(), bc.clone()])).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(
        h.read(&o, &hex(&blob), &tc, &kc).await.status,
        StatusCode::OK
    );
    let (td, kd) = (rand::<32>(), key());
    let cd = link(
        &kc,
        &o.share_id,
        &kd,
        &token_hash(&td),
        &narrow,
        exp - 10,
        0,
    );
    assert_eq!(
        h.send(post(&ta, vec![ab.clone(), bc.clone(), cd]))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // The owner sees the notices.
    let r = h
        .owner(
            &o,
            "GET",
            &format!("/v1/shares/{}/notices?after=0", o.share_hex),
            vec![],
        )
        .await;
    assert_eq!(r.json()["notices"].as_array().unwrap().len(), 2);
    // Revoking A revokes B and C at once.
    let r = h
        .owner(
            &o,
            "DELETE",
            &format!(
                "/v1/shares/{}/tokens/{}",
                o.share_hex,
                hex(&token_hash(&ta))
            ),
            vec![],
        )
        .await;
    assert_eq!(r.json()["revoked"], 3);
    for (t, k) in [(&ta, &ka), (&tb, &kb), (&tc, &kc)] {
        assert_eq!(h.read(&o, &hex(&blob), t, k).await.status, StatusCode::GONE);
    }
    // A revoked parent cannot delegate.
    let (te, ke) = (rand::<32>(), key());
    let ae = link(&ka, &o.share_id, &ke, &token_hash(&te), &narrow, exp, 0);
    assert_eq!(h.send(post(&ta, vec![ae])).await.status, StatusCode::GONE);
}
