//! Storage exhaustion (issue 14 part 2): per-client quotas on live objects and bytes (client =
//! IPv4 address, IPv6 /64, or what a trusted proxy reports), the global storage cap (507, reads
//! go on), backup slot expiry, the enrollment key, and the accounting returning to zero.
//! Every case runs on SQLite and, with `CAREKEY_TEST_PG_URL`, PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use carekey_relay::client::ClientId;
use carekey_relay::quota::{self, usage_of};
use carekey_relay::{Config, sweeper};
use common::*;
use data_encoding::HEXLOWER;
use sha2::{Digest, Sha256};

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::$name(crate::common::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if crate::common::pg_url().is_none() { return; }
                    crate::$name(crate::common::Backend::Postgres).await;
                }
            )*
        }
    };
}

both_backends!(
    client_in_a_loop_hits_its_quota_others_go_on,
    ipv6_prefix_and_trusted_proxy,
    global_cap_507_reads_go_on,
    usage_returns_to_zero,
    backup_slots_expire_unwritten,
    enrollment_key_gates_new_storage,
    migration_counts_existing_data,
);

/// `req` as sent from `ip`.
fn at(ip: &str, mut req: Request<Body>) -> Request<Body> {
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(ip.parse().unwrap(), 40_000)));
    req
}

fn post(path: &str, body: Vec<u8>) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri(path)
        .body(Body::from(body))
        .unwrap()
}

async fn harness(b: &Backend, f: impl FnOnce(&mut Config)) -> Harness {
    let mut c = test_config();
    f(&mut c);
    b.harness_with(c).await.unwrap()
}

fn key_of(h: &Harness, ip: &str) -> quota::ClientKey {
    h.state.client_key(&ClientId::from_ip(ip.parse().unwrap()))
}

/// A share created from `ip` (expiring in a day).
async fn create_share_at(h: &Harness, ip: &str) -> Result<Owner, Resp> {
    create_share_for(h, ip, 86_400).await
}

/// A share created from `ip` expiring in `ttl` seconds.
async fn create_share_for(h: &Harness, ip: &str, ttl: u64) -> Result<Owner, Resp> {
    let k = key();
    let body = serde_json::to_vec(&serde_json::json!({
        "owner_key": b64(k.verifying_key().as_bytes()),
        "expires_at": h.state.clock.now() + ttl,
    }))
    .unwrap();
    let r = h
        .send(at(
            ip,
            Harness::owner_request(&k, "POST", "/v1/shares", body, 1),
        ))
        .await;
    if r.status != StatusCode::CREATED {
        return Err(r);
    }
    let share_hex = r.json()["share_id"].as_str().unwrap().to_owned();
    let share_id = HEXLOWER
        .decode(share_hex.as_bytes())
        .unwrap()
        .try_into()
        .unwrap();
    Ok(Owner {
        key: k,
        share_id,
        share_hex,
        counter: AtomicU64::new(1),
    })
}

/// An owner request of `o` from `ip` with the next counter.
async fn owner_at(h: &Harness, o: &Owner, ip: &str, method: &str, pq: &str, body: Vec<u8>) -> Resp {
    let c = o.counter.fetch_add(1, Ordering::SeqCst) + 1;
    h.send(at(ip, Harness::owner_request(&o.key, method, pq, body, c)))
        .await
}

#[track_caller]
fn assert_code(r: &Resp, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.json()["error"], code, "{}", r.text());
}

/// The doctor's side of a check-up against `o`: token, blobs, manifest, single and batch
/// fetches, everything answered at once.
async fn checkup(h: &Harness, o: &Owner) {
    let (token, reader) = h.register_token(o, &scope(1, &[]), now() + 3600, 0).await;
    let mut ids = Vec::new();
    for i in 0..6u8 {
        let id = rand::<16>();
        let r = h.put_blob(o, &id, 1, &[i; 700]).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        ids.push(id);
    }
    let r = h
        .owner(
            o,
            "PUT",
            &format!("/v1/shares/{}/manifest?version=1&prev=0", o.share_hex),
            b"manifest".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = h.read(o, "manifest", &token, &reader).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = h.read(o, &hex(&ids[0]), &token, &reader).await;
    assert_eq!(r.body, vec![0u8; 700]);
    let r = h.batch(o, &batch_object(&ids), &token, &reader).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.body.len(), 6 * (4 + 700));
}

/// A client opening mailboxes in a loop is stopped at its object quota (429 `client_quota`
/// with a long Retry-After) while, at the same time, another client's whole check-up flow goes
/// through, and a third address can still create and fill a share. Bytes are bounded the same
/// way. Deleting gives the quota back.
async fn client_in_a_loop_hits_its_quota_others_go_on(b: Backend) {
    let h = harness(&b, |c| {
        c.client_max_objects = 30;
        c.client_max_bytes = 20_000;
    })
    .await;
    let hog = "127.0.0.7";
    let flood = async {
        let mut created = Vec::new();
        loop {
            let r = h.send(at(hog, post("/v1/mailboxes", vec![]))).await;
            if r.status == StatusCode::CREATED {
                created.push(r.json());
                assert!(created.len() <= 30, "quota not enforced");
                continue;
            }
            assert_code(&r, StatusCode::TOO_MANY_REQUESTS, "client_quota");
            let ra: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!(ra >= 60, "retry-after {ra}");
            break created;
        }
    };
    let other = async {
        // The in-process harness client (no address) and a second address.
        let o = h.create_share().await;
        checkup(&h, &o).await;
        let o2 = create_share_at(&h, "127.0.0.8").await.unwrap();
        let r = owner_at(
            &h,
            &o2,
            "127.0.0.8",
            "PUT",
            &format!(
                "/v1/shares/{}/blobs/{}?epoch=1",
                o2.share_hex,
                hex(&rand::<16>())
            ),
            vec![1; 5000],
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    };
    let (created, ()) = tokio::join!(flood, other);
    assert_eq!(created.len(), 30);
    assert_eq!(
        usage_of(h.state.storage.as_ref(), key_of(&h, hog))
            .await
            .unwrap(),
        (30, 0)
    );
    // Every kind of new object is refused now, shares too.
    assert_code(
        &create_share_at(&h, hog).await.err().unwrap(),
        StatusCode::TOO_MANY_REQUESTS,
        "client_quota",
    );
    assert_code(
        &h.send(at(hog, post("/v1/pairing", vec![]))).await,
        StatusCode::TOO_MANY_REQUESTS,
        "client_quota",
    );
    // Closing one mailbox frees one object.
    let m = &created[0];
    let close = Request::builder()
        .method("DELETE")
        .uri(format!(
            "/v1/mailboxes/{}",
            m["mailbox_id"].as_str().unwrap()
        ))
        .header(
            "authorization",
            format!("Bearer {}", m["read_token"].as_str().unwrap()),
        )
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(at(hog, close)).await.status, StatusCode::NO_CONTENT);
    assert_eq!(
        h.send(at(hog, post("/v1/mailboxes", vec![]))).await.status,
        StatusCode::CREATED
    );

    // Bytes: a client filling its share is stopped at its byte quota (share quota is larger).
    let filler = "127.0.0.9";
    let o = create_share_at(&h, filler).await.unwrap();
    let mut stored = 0;
    let refused = loop {
        let r = owner_at(
            &h,
            &o,
            filler,
            "PUT",
            &format!(
                "/v1/shares/{}/blobs/{}?epoch=1",
                o.share_hex,
                hex(&rand::<16>())
            ),
            vec![7; 3000],
        )
        .await;
        if r.status != StatusCode::CREATED {
            break r;
        }
        stored += 3000;
        assert!(stored <= 20_000);
    };
    assert_code(&refused, StatusCode::TOO_MANY_REQUESTS, "client_quota");
    assert_eq!(stored, 18_000);
    assert_eq!(
        usage_of(h.state.storage.as_ref(), key_of(&h, filler))
            .await
            .unwrap(),
        (7, 18_000)
    );
    // Uploading from another address does not escape it: the share's creator pays.
    let r = owner_at(
        &h,
        &o,
        "127.0.0.99",
        "PUT",
        &format!(
            "/v1/shares/{}/blobs/{}?epoch=1",
            o.share_hex,
            hex(&rand::<16>())
        ),
        vec![7; 3000],
    )
    .await;
    assert_code(&r, StatusCode::TOO_MANY_REQUESTS, "client_quota");
    // Deleting the epoch gives everything back but the share itself.
    let r = owner_at(
        &h,
        &o,
        filler,
        "DELETE",
        &format!("/v1/shares/{}/epochs/1", o.share_hex),
        vec![],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        usage_of(h.state.storage.as_ref(), key_of(&h, filler))
            .await
            .unwrap(),
        (1, 0)
    );
}

/// IPv6 addresses of one /64 share a quota, the next /64 has its own; X-Forwarded-For counts
/// only from the configured proxy.
async fn ipv6_prefix_and_trusted_proxy(b: Backend) {
    let h = harness(&b, |c| {
        c.client_max_objects = 2;
        c.trusted_proxies = vec!["127.0.0.50".parse().unwrap()];
    })
    .await;
    let open = |ip: &'static str, xff: Option<&'static str>| {
        let mut req = at(ip, post("/v1/mailboxes", vec![]));
        if let Some(x) = xff {
            req.headers_mut()
                .insert("x-forwarded-for", x.parse().unwrap());
        }
        h.send(req)
    };
    assert_eq!(
        open("2001:db8:0:1::1", None).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        open("2001:db8:0:1:ffff::2", None).await.status,
        StatusCode::CREATED
    );
    assert_code(
        &open("2001:db8:0:1:1234:5678:9abc:def0", None).await,
        StatusCode::TOO_MANY_REQUESTS,
        "client_quota",
    );
    assert_eq!(
        open("2001:db8:0:2::1", None).await.status,
        StatusCode::CREATED
    );
    // Through the proxy: each reported client has its own quota.
    for _ in 0..2 {
        assert_eq!(
            open("127.0.0.50", Some("198.51.100.1")).await.status,
            StatusCode::CREATED
        );
    }
    assert_code(
        &open("127.0.0.50", Some("203.0.113.9, 198.51.100.1")).await,
        StatusCode::TOO_MANY_REQUESTS,
        "client_quota",
    );
    assert_eq!(
        open("127.0.0.50", Some("198.51.100.2")).await.status,
        StatusCode::CREATED
    );
    // The proxy's own quota is untouched by its clients.
    assert_eq!(
        usage_of(h.state.storage.as_ref(), key_of(&h, "127.0.0.50"))
            .await
            .unwrap(),
        (0, 0)
    );
    // Anybody else's X-Forwarded-For is ignored: the peer pays.
    for _ in 0..2 {
        assert_eq!(
            open("127.0.0.60", Some("198.51.100.3")).await.status,
            StatusCode::CREATED
        );
    }
    assert_code(
        &open("127.0.0.60", Some("198.51.100.4")).await,
        StatusCode::TOO_MANY_REQUESTS,
        "client_quota",
    );
    assert_eq!(
        usage_of(h.state.storage.as_ref(), key_of(&h, "198.51.100.3"))
            .await
            .unwrap(),
        (0, 0)
    );
}

/// At the global cap writes answer 507 `storage_full` (a clear JSON error, not "internal"),
/// reads and deletes go on, and space freed is usable again.
async fn global_cap_507_reads_go_on(b: Backend) {
    let h = harness(&b, |c| c.storage_cap_bytes = 20_000).await;
    let o = h.create_share().await;
    let (token, reader) = h.register_token(&o, &scope(1, &[]), now() + 3600, 0).await;
    let a = rand::<16>();
    assert_eq!(
        h.put_blob(&o, &a, 1, &[1; 8000]).await.status,
        StatusCode::CREATED
    );
    let o2 = create_share_at(&h, "127.0.0.20").await.unwrap();
    let r = owner_at(
        &h,
        &o2,
        "127.0.0.20",
        "PUT",
        &format!(
            "/v1/shares/{}/blobs/{}?epoch=2",
            o2.share_hex,
            hex(&rand::<16>())
        ),
        vec![2; 8000],
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = h.put_blob(&o, &rand::<16>(), 2, &[3; 8000]).await;
    assert_code(&r, StatusCode::INSUFFICIENT_STORAGE, "storage_full");
    assert!(r.json()["message"].as_str().unwrap().contains("full"));
    // Other writes that add bytes are refused alike; ones that add none still work.
    let m = h.send(post("/v1/mailboxes", vec![])).await.json();
    let append = |body: Vec<u8>| {
        Request::builder()
            .method("POST")
            .uri(format!(
                "/v1/mailboxes/{}/messages",
                m["mailbox_id"].as_str().unwrap()
            ))
            .header(
                "authorization",
                format!("Bearer {}", m["write_token"].as_str().unwrap()),
            )
            .body(Body::from(body))
            .unwrap()
    };
    assert_code(
        &h.send(append(vec![0; 5000])).await,
        StatusCode::INSUFFICIENT_STORAGE,
        "storage_full",
    );
    // Reads go on: single and batch fetches, audit reads.
    let r = h.read(&o, &hex(&a), &token, &reader).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = h.batch(&o, &batch_object(&[a]), &token, &reader).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = h
        .owner(
            &o,
            "GET",
            &format!("/v1/shares/{}/audit", o.share_hex),
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // Deleting frees the space.
    let r = h
        .owner(
            &o,
            "DELETE",
            &format!("/v1/shares/{}/epochs/1", o.share_hex),
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        h.put_blob(&o, &rand::<16>(), 2, &[3; 8000]).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        h.send(append(vec![0; 3000])).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        quota::total_bytes(h.state.storage.as_ref()).await.unwrap(),
        8000 + 8000 + 3000
    );
}

/// Every way of storing and of deleting — handlers and sweeper — keeps the counters exact: at
/// the end every client is back at zero and so is the global total.
async fn usage_returns_to_zero(b: Backend) {
    let h = harness(&b, |_| {}).await;
    let st = h.state.storage.clone();
    let total = || quota::total_bytes(st.as_ref());
    let (p, d) = ("127.0.1.1", "127.0.1.2");
    let (pk, dk) = (key_of(&h, p), key_of(&h, d));
    let usage = |k| usage_of(st.as_ref(), k);

    // Share: blob, manifest, chunked upload (committed + pending), epoch delete, share delete.
    let o = create_share_at(&h, p).await.unwrap();
    let s = |rest: &str| format!("/v1/shares/{}{rest}", o.share_hex);
    let r = owner_at(
        &h,
        &o,
        p,
        "PUT",
        &s(&format!("/blobs/{}?epoch=1", hex(&rand::<16>()))),
        vec![1; 1000],
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(usage(pk).await.unwrap(), (2, 1000));
    let r = owner_at(
        &h,
        &o,
        p,
        "PUT",
        &s("/manifest?version=1&prev=0"),
        vec![0; 300],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = owner_at(
        &h,
        &o,
        p,
        "PUT",
        &s("/manifest?version=2&prev=1"),
        vec![0; 100],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(usage(pk).await.unwrap(), (2, 1100));
    let up = |blob: [u8; 16], epoch: u32| format!("/uploads?blob={}&epoch={epoch}", hex(&blob));
    let r = owner_at(&h, &o, p, "POST", &s(&up(rand::<16>(), 1)), vec![]).await;
    let u1 = r.json()["upload_id"].as_str().unwrap().to_owned();
    let chunk = |u: &str, n: u32| format!("/uploads/{u}/chunks/{n}");
    owner_at(&h, &o, p, "PUT", &s(&chunk(&u1, 0)), vec![5; 400]).await;
    owner_at(&h, &o, p, "PUT", &s(&chunk(&u1, 0)), vec![5; 200]).await; // replaced
    owner_at(&h, &o, p, "PUT", &s(&chunk(&u1, 1)), vec![6; 300]).await;
    assert_eq!(usage(pk).await.unwrap(), (3, 1600));
    let mut hsh = Sha256::new();
    hsh.update([5u8; 200]);
    hsh.update([6u8; 300]);
    let commit =
        serde_json::to_vec(&serde_json::json!({"chunks": 2, "sha256": b64(&hsh.finalize())}))
            .unwrap();
    let r = owner_at(
        &h,
        &o,
        p,
        "POST",
        &s(&format!("/uploads/{u1}/commit")),
        commit,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(usage(pk).await.unwrap(), (3, 1600));
    let r = owner_at(&h, &o, p, "POST", &s(&up(rand::<16>(), 2)), vec![]).await;
    let u2 = r.json()["upload_id"].as_str().unwrap().to_owned();
    owner_at(&h, &o, p, "PUT", &s(&chunk(&u2, 0)), vec![9; 50]).await;
    assert_eq!(usage(pk).await.unwrap(), (4, 1650));
    let r = owner_at(&h, &o, p, "DELETE", &s("/epochs/1"), vec![]).await;
    assert_eq!(r.json()["deleted_blobs"], 2);
    assert_eq!(usage(pk).await.unwrap(), (2, 150));
    let r = owner_at(&h, &o, p, "DELETE", &s(""), vec![]).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(usage(pk).await.unwrap(), (0, 0));

    // Mailbox: the opener pays for the box, senders for their messages.
    let m = h.send(at(p, post("/v1/mailboxes", vec![]))).await.json();
    let mid = m["mailbox_id"].as_str().unwrap().to_owned();
    let bearer = |t: &str| format!("Bearer {}", m[t].as_str().unwrap());
    for len in [100usize, 200, 300] {
        let req = Request::builder()
            .method("POST")
            .uri(format!("/v1/mailboxes/{mid}/messages"))
            .header("authorization", bearer("write_token"))
            .body(Body::from(vec![1u8; len]))
            .unwrap();
        assert_eq!(h.send(at(d, req)).await.status, StatusCode::CREATED);
    }
    assert_eq!(usage(pk).await.unwrap(), (1, 0));
    assert_eq!(usage(dk).await.unwrap(), (3, 600));
    let req = Request::builder()
        .method("DELETE")
        .uri(format!("/v1/mailboxes/{mid}/messages?through=2"))
        .header("authorization", bearer("read_token"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(req).await.json()["deleted"], 2);
    assert_eq!(usage(dk).await.unwrap(), (1, 300));
    let req = Request::builder()
        .method("DELETE")
        .uri(format!("/v1/mailboxes/{mid}"))
        .header("authorization", bearer("read_token"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(req).await.status, StatusCode::NO_CONTENT);
    assert_eq!(usage(pk).await.unwrap(), (0, 0));
    assert_eq!(usage(dk).await.unwrap(), (0, 0));

    // Pairing: reply, hand out without closing, second reply, close by reading.
    let pr = h.send(at(p, post("/v1/pairing", vec![]))).await.json();
    let pid = pr["mailbox_id"].as_str().unwrap().to_owned();
    let reply = |body: Vec<u8>| {
        Request::builder()
            .method("PUT")
            .uri(format!("/v1/pairing/{pid}"))
            .body(Body::from(body))
            .unwrap()
    };
    let take = |close: bool| {
        Request::builder()
            .uri(format!("/v1/pairing/{pid}?close={close}"))
            .header(
                "authorization",
                format!("Bearer {}", pr["read_token"].as_str().unwrap()),
            )
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        h.send(at(d, reply(vec![1; 400]))).await.status,
        StatusCode::CREATED
    );
    assert_eq!(usage(pk).await.unwrap(), (1, 400));
    assert_eq!(h.send(take(false)).await.status, StatusCode::OK);
    assert_eq!(usage(pk).await.unwrap(), (1, 0));
    assert_eq!(
        h.send(at(d, reply(vec![1; 40]))).await.status,
        StatusCode::CREATED
    );
    assert_eq!(h.send(take(true)).await.status, StatusCode::OK);
    assert_eq!(usage(pk).await.unwrap(), (0, 0));
    // Closed without reading, with a reply waiting.
    let pr2 = h.send(at(p, post("/v1/pairing", vec![]))).await.json();
    let req = Request::builder()
        .method("PUT")
        .uri(format!(
            "/v1/pairing/{}",
            pr2["mailbox_id"].as_str().unwrap()
        ))
        .body(Body::from(vec![3u8; 70]))
        .unwrap();
    assert_eq!(h.send(req).await.status, StatusCode::CREATED);
    let req = Request::builder()
        .method("DELETE")
        .uri(format!(
            "/v1/pairing/{}",
            pr2["mailbox_id"].as_str().unwrap()
        ))
        .header(
            "authorization",
            format!("Bearer {}", pr2["read_token"].as_str().unwrap()),
        )
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(req).await.status, StatusCode::NO_CONTENT);
    assert_eq!(usage(pk).await.unwrap(), (0, 0));

    // Backup: create, replace (smaller), delete, refill, delete.
    let bk = key();
    let bid = hex(&rand::<16>());
    let mut counter = 0u64;
    let mut backup = |method: &str, version: Option<u64>, body: Vec<u8>| {
        counter += 1;
        let pq = match version {
            Some(v) => format!("/v1/backups/{bid}?version={v}"),
            None => format!("/v1/backups/{bid}"),
        };
        let mut req = Harness::owner_request(&bk, method, &pq, body, counter);
        req.headers_mut().insert(
            "carekey-owner-key",
            b64(bk.verifying_key().as_bytes()).parse().unwrap(),
        );
        at(p, req)
    };
    assert_eq!(
        h.send(backup("PUT", Some(1), vec![1; 900])).await.status,
        StatusCode::CREATED
    );
    assert_eq!(usage(pk).await.unwrap(), (1, 900));
    assert_eq!(
        h.send(backup("PUT", Some(2), vec![1; 500])).await.status,
        StatusCode::OK
    );
    assert_eq!(usage(pk).await.unwrap(), (1, 500));
    assert_eq!(
        h.send(backup("DELETE", None, vec![])).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(usage(pk).await.unwrap(), (0, 0));
    assert_eq!(
        h.send(backup("PUT", Some(3), vec![1; 20])).await.status,
        StatusCode::OK
    );
    assert_eq!(usage(pk).await.unwrap(), (1, 20));
    assert_eq!(
        h.send(backup("DELETE", None, vec![])).await.status,
        StatusCode::NO_CONTENT
    );

    // Sweeper: expired share (with a pending upload), expired mailbox with messages, expired
    // pairing with a reply, stale upload of a live share.
    let o = create_share_at(&h, p).await.unwrap();
    let s = |rest: &str| format!("/v1/shares/{}{rest}", o.share_hex);
    owner_at(
        &h,
        &o,
        p,
        "PUT",
        &s(&format!("/blobs/{}?epoch=1", hex(&rand::<16>()))),
        vec![1; 10],
    )
    .await;
    let r = owner_at(&h, &o, p, "POST", &s(&up(rand::<16>(), 1)), vec![]).await;
    let u = r.json()["upload_id"].as_str().unwrap().to_owned();
    owner_at(&h, &o, p, "PUT", &s(&chunk(&u, 0)), vec![1; 20]).await;
    let long = create_share_for(&h, d, 30 * 86_400).await.unwrap();
    let r = owner_at(
        &h,
        &long,
        d,
        "POST",
        &format!("/v1/shares/{}{}", long.share_hex, up(rand::<16>(), 1)),
        vec![],
    )
    .await;
    let lu = r.json()["upload_id"].as_str().unwrap().to_owned();
    owner_at(
        &h,
        &long,
        d,
        "PUT",
        &format!("/v1/shares/{}{}", long.share_hex, chunk(&lu, 0)),
        vec![2; 33],
    )
    .await;
    let m = h
        .send(at(
            p,
            post("/v1/mailboxes", br#"{"ttl_seconds": 60}"#.to_vec()),
        ))
        .await
        .json();
    let req = Request::builder()
        .method("POST")
        .uri(format!(
            "/v1/mailboxes/{}/messages",
            m["mailbox_id"].as_str().unwrap()
        ))
        .header(
            "authorization",
            format!("Bearer {}", m["write_token"].as_str().unwrap()),
        )
        .body(Body::from(vec![4u8; 44]))
        .unwrap();
    assert_eq!(h.send(at(d, req)).await.status, StatusCode::CREATED);
    let pr = h.send(at(p, post("/v1/pairing", vec![]))).await.json();
    let req = Request::builder()
        .method("PUT")
        .uri(format!(
            "/v1/pairing/{}",
            pr["mailbox_id"].as_str().unwrap()
        ))
        .body(Body::from(vec![3u8; 55]))
        .unwrap();
    assert_eq!(h.send(req).await.status, StatusCode::CREATED);
    assert_eq!(usage(pk).await.unwrap(), (5, 85));
    assert_eq!(usage(dk).await.unwrap(), (3, 77));
    // Two days on: the 1-day share with its upload, the mailbox and the pairing are swept;
    // so is the long share's upload (uncommitted for over a day); the long share stays.
    h.state.clock.advance(2 * 86_400);
    let swept = sweeper::sweep_once(&h.state).await.unwrap();
    assert_eq!((swept.shares, swept.uploads, swept.mailboxes), (1, 1, 2));
    assert_eq!(usage(pk).await.unwrap(), (0, 0));
    assert_eq!(usage(dk).await.unwrap(), (1, 0));
    assert_eq!(total().await.unwrap(), 0);
    let r = owner_at(
        &h,
        &long,
        d,
        "DELETE",
        &format!("/v1/shares/{}", long.share_hex),
        vec![],
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(usage(dk).await.unwrap(), (0, 0));
}

/// A backup slot not written for --backup-ttl-secs loses its bytes to the sweeper (and its
/// quota is released); the slot's key and counter stay, so an old write is not replayable,
/// and a newer write fills it again. Much later the emptied slot row goes entirely.
async fn backup_slots_expire_unwritten(b: Backend) {
    let h = harness(&b, |c| c.backup_ttl_secs = 10 * 86_400).await;
    let bk = key();
    let bid = hex(&rand::<16>());
    let req = |method: &str, version: Option<u64>, body: Vec<u8>, counter: u64| {
        let pq = match version {
            Some(v) => format!("/v1/backups/{bid}?version={v}"),
            None => format!("/v1/backups/{bid}"),
        };
        let mut r = Harness::owner_request(&bk, method, &pq, body, counter);
        r.headers_mut().insert(
            "carekey-owner-key",
            b64(bk.verifying_key().as_bytes()).parse().unwrap(),
        );
        r
    };
    assert_eq!(
        h.send(req("PUT", Some(1), vec![1; 100], 1)).await.status,
        StatusCode::CREATED
    );
    h.state.clock.advance(9 * 86_400);
    assert_eq!(sweeper::sweep_once(&h.state).await.unwrap().backups, 0);
    assert_eq!(
        h.send(req("PUT", Some(2), vec![2; 100], 2)).await.status,
        StatusCode::OK
    );
    // A write resets the clock: 9 more days are fine, 11 are not.
    h.state.clock.advance(9 * 86_400);
    assert_eq!(sweeper::sweep_once(&h.state).await.unwrap().backups, 0);
    assert_eq!(
        h.send(req("GET", None, vec![], 3)).await.status,
        StatusCode::OK
    );
    h.state.clock.advance(2 * 86_400);
    assert_eq!(sweeper::sweep_once(&h.state).await.unwrap().backups, 1);
    assert_eq!(
        h.send(req("GET", None, vec![], 4)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        quota::total_bytes(h.state.storage.as_ref()).await.unwrap(),
        0
    );
    // The old write is still a replay; a newer one refills the slot.
    assert_eq!(
        h.send(req("PUT", Some(2), vec![2; 100], 2)).await.status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        h.send(req("PUT", Some(3), vec![3; 10], 5)).await.status,
        StatusCode::OK
    );
    assert_eq!(h.send(req("GET", None, vec![], 6)).await.body, vec![3; 10]);
    // Emptied and unwritten for TTL + tombstone time: the row goes.
    h.state.clock.advance(11 * 86_400);
    sweeper::sweep_once(&h.state).await.unwrap();
    h.state.clock.advance(31 * 86_400);
    sweeper::sweep_once(&h.state).await.unwrap();
    let left = h
        .state
        .storage
        .read(|tx| tx.query("SELECT backup_id FROM backups", &[]))
        .await
        .unwrap();
    assert!(left.is_empty());
}

/// With an enrollment key, new shares, mailboxes, pairings and backups need it (403
/// `enrollment_required` otherwise); everything else is unaffected.
async fn enrollment_key_gates_new_storage(b: Backend) {
    let h = harness(&b, |c| {
        c.enrollment_key_hash = Some(quota::enrollment_hash("operator s3cret"));
    })
    .await;
    let with = |mut req: Request<Body>, k: Option<&str>| {
        if let Some(k) = k {
            req.headers_mut()
                .insert("carekey-enrollment-key", k.parse().unwrap());
        }
        req
    };
    for path in ["/v1/mailboxes", "/v1/pairing"] {
        for k in [None, Some("wrong"), Some("operator s3cret ")] {
            let r = h.send(with(post(path, vec![]), k)).await;
            if k == Some("operator s3cret ") {
                // Surrounding whitespace is trimmed like any header value.
                assert_eq!(r.status, StatusCode::CREATED, "{path}");
            } else {
                assert_code(&r, StatusCode::FORBIDDEN, "enrollment_required");
            }
        }
    }
    let k = key();
    let body = serde_json::to_vec(&serde_json::json!({
        "owner_key": b64(k.verifying_key().as_bytes()),
        "expires_at": now() + 3600,
    }))
    .unwrap();
    let create = || Harness::owner_request(&k, "POST", "/v1/shares", body.clone(), 1);
    assert_code(
        &h.send(create()).await,
        StatusCode::FORBIDDEN,
        "enrollment_required",
    );
    let r = h.send(with(create(), Some("operator s3cret"))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let share_hex = r.json()["share_id"].as_str().unwrap().to_owned();
    // Writing into an existing share and reading need no key.
    let pq = format!(
        "/v1/shares/{share_hex}/blobs/{}?epoch=1",
        hex(&rand::<16>())
    );
    let r = h
        .send(Harness::owner_request(&k, "PUT", &pq, b"x".to_vec(), 2))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(h.get("/healthz").await.status, StatusCode::OK);
    let bk = key();
    let mut req = Harness::owner_request(
        &bk,
        "PUT",
        &format!("/v1/backups/{}?version=1", hex(&rand::<16>())),
        b"b".to_vec(),
        1,
    );
    req.headers_mut().insert(
        "carekey-owner-key",
        b64(bk.verifying_key().as_bytes()).parse().unwrap(),
    );
    assert_code(
        &h.send(req).await,
        StatusCode::FORBIDDEN,
        "enrollment_required",
    );
}

/// A database written before migrations existed: opening it applies every migration, and 1 counts
/// what it already holds toward the global total (charged to no client); opening again
/// changes nothing.
async fn migration_counts_existing_data(b: Backend) {
    // Bytes: share bytes_used 100 + manifest 10, a message of 5, a backup of 7.
    let (sid, k32) = (vec![1u8; 16], vec![2u8; 32]);
    let (manifest, body, data) = (vec![3u8; 10], vec![4u8; 5], vec![5u8; 7]);
    let inserts: [(&str, Vec<&Vec<u8>>); 3] = [
        (
            "INSERT INTO shares (share_id, owner_key, counter, expires_at, bytes_used, manifest, \
             manifest_version, audit_seq, audit_head, notice_seq, created_at) \
             VALUES ($1, $2, 1, 9999999999, 100, $3, 1, 0, $2, 0, 1)",
            vec![&sid, &k32, &manifest],
        ),
        (
            "INSERT INTO messages (mailbox_id, seq, time, body) VALUES ($1, 1, 1, $2)",
            vec![&sid, &body],
        ),
        (
            "INSERT INTO backups (backup_id, owner_key, counter, version, size, sha256, data, \
             deleted, created_at, updated_at) VALUES ($1, $2, 1, 1, 7, $2, $3, 0, 1, 1)",
            vec![&sid, &k32, &data],
        ),
    ];
    let versions = |s: std::sync::Arc<dyn carekey_relay::storage::Storage>| async move {
        s.read(|tx| tx.query("SELECT version FROM schema_migrations", &[]))
            .await
            .unwrap()
            .len()
    };
    match b {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            {
                let c = rusqlite::Connection::open(
                    dir.path().join(carekey_relay::storage::sqlite::DB_FILE),
                )
                .unwrap();
                c.execute_batch(carekey_relay::storage::SCHEMA).unwrap();
                for (sql, params) in &inserts {
                    c.execute(
                        &sql.replace('$', "?"),
                        rusqlite::params_from_iter(params.iter()),
                    )
                    .unwrap();
                }
            }
            let open = || -> std::sync::Arc<dyn carekey_relay::storage::Storage> {
                std::sync::Arc::new(
                    carekey_relay::storage::sqlite::SqliteStorage::open(dir.path()).unwrap(),
                )
            };
            for _ in 0..2 {
                let s = open();
                assert_eq!(quota::total_bytes(s.as_ref()).await.unwrap(), 122);
                assert_eq!(
                    versions(s).await,
                    carekey_relay::storage::migrations::MIGRATIONS.len()
                );
            }
        }
        Backend::Postgres => {
            let url = pg_url().unwrap();
            let schema = fresh_schema();
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            let task = tokio::spawn(conn);
            client
                .batch_execute(&format!(
                    "CREATE SCHEMA {schema}; SET search_path = {schema}; {}",
                    carekey_relay::storage::SCHEMA.replace("BLOB", "BYTEA")
                ))
                .await
                .unwrap();
            for (sql, params) in &inserts {
                let p: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
                    .iter()
                    .map(|v| *v as &(dyn tokio_postgres::types::ToSql + Sync))
                    .collect();
                client.execute(*sql, &p).await.unwrap();
            }
            drop(client);
            let _ = task.await;
            for _ in 0..2 {
                let s: std::sync::Arc<dyn carekey_relay::storage::Storage> = std::sync::Arc::new(
                    carekey_relay::storage::postgres::PgStorage::open(&url, Some(&schema))
                        .await
                        .unwrap(),
                );
                assert_eq!(quota::total_bytes(s.as_ref()).await.unwrap(), 122);
                assert_eq!(
                    versions(s).await,
                    carekey_relay::storage::migrations::MIGRATIONS.len()
                );
            }
        }
    }
}
