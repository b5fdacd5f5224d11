//! Backup slots (docs/relay.md "Backup slots").
//! Each case runs as `sqlite::<case>` and `postgres::<case>` (the latter return early when
//! `CAREKEY_TEST_PG_URL` is unset); split out of the one suite file by resource.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use carekey_relay::sweeper;
use common::*;
use sha2::{Digest, Sha256};

both_backends!(backup_slots,);

/// A backup owner request; `with_key` adds `Carekey-Owner-Key` naming `named`.
fn backup_request(
    k: &ed25519_dalek::SigningKey,
    named: Option<&ed25519_dalek::SigningKey>,
    method: &str,
    pq: &str,
    body: Vec<u8>,
    counter: u64,
) -> Request<Body> {
    let mut req = Harness::owner_request(k, method, pq, body, counter);
    if let Some(n) = named {
        req.headers_mut().insert(
            "carekey-owner-key",
            b64(n.verifying_key().as_bytes()).parse().unwrap(),
        );
    }
    req
}

/// Backup slots: creation binds the owner key, versions only go up, every request is a
/// counter-checked owner request, abuse cases are refused, the sweeper leaves backups alone.
async fn backup_slots(h: Harness) {
    let k = key();
    let id = hex(&rand::<16>());
    let put = |v: u64| format!("/v1/backups/{id}?version={v}");
    let path = format!("/v1/backups/{id}");
    // Unknown slot: 404 on GET; first write without the key header: 400.
    let r = h
        .send(backup_request(&k, None, "GET", &path, vec![], 1))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    let r = h
        .send(backup_request(&k, None, "PUT", &put(1), b"b1".to_vec(), 1))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"], "owner_key_required");
    // The first write must be signed by the key it names.
    let r = h
        .send(backup_request(
            &key(),
            Some(&k),
            "PUT",
            &put(1),
            b"b1".to_vec(),
            1,
        ))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let first = || backup_request(&k, Some(&k), "PUT", &put(1), b"backup one".to_vec(), 1);
    let r = h.send(first()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["version"], 1);
    assert_eq!(r.json()["size"], 10);
    assert_eq!(r.json()["sha256"], b64(&Sha256::digest(b"backup one")));
    let r = h
        .send(backup_request(&k, None, "GET", &path, vec![], 2))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.body, b"backup one");
    assert_eq!(r.headers["carekey-backup-version"], "1");
    // Replayed write (same counter): 409 counter_replayed, nothing changes.
    let r = h.send(first()).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["error"], "counter_replayed");
    // Same or lower version: 409 stale_version; version 0: 400.
    let r = h
        .send(backup_request(
            &k,
            None,
            "PUT",
            &put(1),
            b"again".to_vec(),
            3,
        ))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["error"], "stale_version");
    let r = h
        .send(backup_request(
            &k,
            None,
            "PUT",
            &put(0),
            b"zero".to_vec(),
            4,
        ))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // A newer version replaces it; an older one afterwards cannot.
    let r = h
        .send(backup_request(
            &k,
            Some(&k),
            "PUT",
            &put(3),
            b"backup three".to_vec(),
            5,
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["version"], 3);
    let r = h
        .send(backup_request(
            &k,
            None,
            "PUT",
            &put(2),
            b"backup two".to_vec(),
            6,
        ))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["error"], "stale_version");
    // Version travels in the signed query: changing it breaks the signature.
    let mut req = backup_request(&k, None, "PUT", &put(9), b"x".to_vec(), 7);
    *req.uri_mut() = put(10).parse().unwrap();
    assert_eq!(h.send(req).await.status, StatusCode::UNAUTHORIZED);
    // Another key: 403 when it names itself, 401 otherwise; reads too.
    let evil = key();
    let r = h
        .send(backup_request(
            &evil,
            Some(&evil),
            "PUT",
            &put(50),
            b"evil".to_vec(),
            100,
        ))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["error"], "owner_key_mismatch");
    let r = h
        .send(backup_request(
            &evil,
            None,
            "PUT",
            &put(50),
            b"evil".to_vec(),
            101,
        ))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = h
        .send(backup_request(&evil, None, "GET", &path, vec![], 102))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A replayed read is refused too.
    let r = h
        .send(backup_request(&k, None, "GET", &path, vec![], 2))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    // Malformed ids and headers: 400.
    for bad in ["xyz", "00112233445566778899AABBCCDDEEFF", "0011"] {
        let pq = format!("/v1/backups/{bad}?version=5");
        let r = h
            .send(backup_request(&k, Some(&k), "PUT", &pq, b"x".to_vec(), 200))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let mut req = backup_request(&k, None, "PUT", &put(5), b"x".to_vec(), 201);
    req.headers_mut()
        .insert("carekey-owner-key", "not base64!".parse().unwrap());
    assert_eq!(h.send(req).await.status, StatusCode::BAD_REQUEST);
    let r = h
        .send(backup_request(
            &k,
            None,
            "PUT",
            &format!("{path}?version=abc"),
            b"x".to_vec(),
            202,
        ))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Backups may be larger than the general body limit, up to their own limit.
    let max_body = h.state.config.max_body_bytes;
    let max_backup = h.state.config.max_backup_bytes as usize;
    assert!(max_backup > max_body + 1000);
    let big: Vec<u8> = (0..max_body + 1000).map(|i| (i % 251) as u8).collect();
    let r = h
        .send(backup_request(&k, None, "PUT", &put(4), big.clone(), 203))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = h
        .send(backup_request(
            &k,
            None,
            "PUT",
            &put(5),
            vec![0; max_backup + 1],
            204,
        ))
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Backups written within --backup-ttl-secs (400 days) stay (expiry: tests/quota.rs).
    h.state.clock.advance(399 * 86_400);
    sweeper::sweep_once(&h.state).await.unwrap();
    let r = h
        .send(backup_request(&k, None, "GET", &path, vec![], 205))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, big);
    assert_eq!(r.headers["carekey-backup-version"], "4");
    // Delete: 404 afterwards; the old writes still cannot be replayed; a newer one refills.
    let r = h
        .send(backup_request(&k, None, "DELETE", &path, vec![], 206))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let r = h
        .send(backup_request(&k, None, "GET", &path, vec![], 207))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(h.send(first()).await.status, StatusCode::CONFLICT);
    let r = h
        .send(backup_request(
            &k,
            None,
            "PUT",
            &put(6),
            b"six".to_vec(),
            208,
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = h
        .send(backup_request(&k, None, "GET", &path, vec![], 209))
        .await;
    assert_eq!(r.body, b"six");
}
