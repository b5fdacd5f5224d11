//! Operations: health and metrics endpoints, rate limits, the request timeout, two in-process instances on one PostgreSQL (docs/relay.md "Running", "Limits").
//! Each case runs as `sqlite::<case>` and `postgres::<case>` (the latter return early when
//! `CAREKEY_TEST_PG_URL` is unset); split out of the one suite file by resource.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use common::*;

both_backends!(operations_endpoints,);

/// `--metrics-token`: /metrics answers 401 without the token or with another one, 200 with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_token_required_when_configured() {
    let mut c = test_config();
    c.metrics_token_hash = Some(carekey_relay::metrics::token_hash("scrape-secret"));
    let h = Backend::Sqlite.harness_with(c).await.unwrap();
    let get = |auth: Option<&'static str>| {
        let mut b = Request::builder().uri("/metrics");
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(Body::empty()).unwrap()
    };
    for bad in [
        None,
        Some("Bearer other"),
        Some("scrape-secret"),
        Some("Bearer "),
    ] {
        let r = h.send(get(bad)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{bad:?}");
        assert!(!r.text().contains("carekey_relay_"), "{bad:?}");
    }
    let r = h.send(get(Some("Bearer scrape-secret"))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("carekey_relay_responses_total"));
}

async fn operations_endpoints(h: Harness) {
    let r = h.get("/healthz").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "ok");
    let r = h.get("/metrics").await;
    assert!(r.text().contains("carekey_relay_responses_total"));
    let r = h.get("/openapi.json").await;
    let doc = r.json();
    assert!(doc["paths"]["/v1/shares/{share_id}/blobs/{blob_id}"]["get"].is_object());
    assert!(doc["components"]["schemas"]["RootTokenRegistration"].is_object());
    assert!(doc["paths"]["/v1/backups/{backup_id}"]["put"].is_object());
    assert!(doc["components"]["schemas"]["BackupStored"].is_object());
    let wk = h.get("/.well-known/carekey-relay").await.json();
    assert_eq!(unb64(wk["audit_key"].as_str().unwrap()).len(), 32);
}

/// Per-IP rate limit: 429 with Retry-After (SQLite only: the limiter is in memory).
#[tokio::test]
async fn rate_limit_429_with_retry_after() {
    let mut c = test_config();
    c.ip_rate_per_sec = 0.5;
    c.ip_burst = 3.0;
    let h = Backend::Sqlite.harness_with(c).await.unwrap();
    let addr: SocketAddr = "127.0.0.9:5555".parse().unwrap();
    let mut statuses = vec![];
    for _ in 0..5 {
        let mut req = Request::builder()
            .uri("/healthz")
            .body(Body::empty())
            .unwrap();
        req.extensions_mut().insert(ConnectInfo(addr));
        let r = h.send(req).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            let ra: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!(ra >= 1);
        }
        statuses.push(r.status);
    }
    assert_eq!(&statuses[..3], &[StatusCode::OK; 3]);
    assert_eq!(statuses[4], StatusCode::TOO_MANY_REQUESTS);
    // Another address is unaffected.
    let mut req = Request::builder()
        .uri("/healthz")
        .body(Body::empty())
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo("127.0.0.10:1".parse::<SocketAddr>().unwrap()));
    assert_eq!(h.send(req).await.status, StatusCode::OK);
}

/// Per-token rate limit.
#[tokio::test]
async fn token_rate_limit_429() {
    let mut c = test_config();
    c.token_rate_per_sec = 0.1;
    c.token_burst = 2.0;
    let h = Backend::Sqlite.harness_with(c).await.unwrap();
    let o = h.create_share().await;
    let (token, reader) = h.register_token(&o, &scope(1, &[]), now() + 3600, 0).await;
    let blob = rand::<16>();
    h.put_blob(&o, &blob, 1, b"x").await;
    assert_eq!(
        h.read(&o, &hex(&blob), &token, &reader).await.status,
        StatusCode::OK
    );
    assert_eq!(
        h.read(&o, &hex(&blob), &token, &reader).await.status,
        StatusCode::OK
    );
    let r = h.read(&o, &hex(&blob), &token, &reader).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.contains_key("retry-after"));
}

/// Two relay instances on one PostgreSQL: write via A, read and revoke via B, enforced by A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_instances_in_process() {
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
    let b = Harness {
        app: carekey_relay::app(bstate.clone()),
        state: bstate,
        _dir: None,
        pg: None,
    };
    // Same audit key on both instances.
    assert_eq!(
        a.get("/.well-known/carekey-relay").await.body,
        b.get("/.well-known/carekey-relay").await.body
    );
    let o = a.create_share().await;
    let (token, reader) = a.register_token(&o, &scope(1, &[]), now() + 3600, 0).await;
    let blob = rand::<16>();
    assert_eq!(
        a.put_blob(&o, &blob, 1, b"via A").await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        b.read(&o, &hex(&blob), &token, &reader).await.body,
        b"via A"
    );
    // The owner's counter is shared too: a replay through B of a write made through A fails.
    let r = b
        .owner(
            &o,
            "DELETE",
            &format!(
                "/v1/shares/{}/tokens/{}",
                o.share_hex,
                hex(&token_hash(&token))
            ),
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        a.read(&o, &hex(&blob), &token, &reader).await.status,
        StatusCode::GONE
    );
    // A mailbox long-poll on B is woken by an append through A (LISTEN/NOTIFY).
    let j = a
        .send(
            Request::builder()
                .method("POST")
                .uri("/v1/mailboxes")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .json();
    let id = j["mailbox_id"].as_str().unwrap().to_owned();
    let req = Request::builder()
        .uri(format!("/v1/mailboxes/{id}/messages?after=0&wait=20"))
        .header(
            "authorization",
            format!("Bearer {}", j["read_token"].as_str().unwrap()),
        )
        .body(Body::empty())
        .unwrap();
    let bapp = b.app.clone();
    let started = std::time::Instant::now();
    let waiter = tokio::spawn(async move {
        use tower::ServiceExt;
        let r = bapp.oneshot(req).await.unwrap();
        http_body_util::BodyExt::collect(r.into_body())
            .await
            .unwrap()
            .to_bytes()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = a
        .send(
            Request::builder()
                .method("POST")
                .uri(format!("/v1/mailboxes/{id}/messages"))
                .header(
                    "authorization",
                    format!("Bearer {}", j["write_token"].as_str().unwrap()),
                )
                .body(Body::from("cross"))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let body: serde_json::Value = serde_json::from_slice(&waiter.await.unwrap()).unwrap();
    assert_eq!(body["cursor"], 1);
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// A request running longer than the request timeout answers 408 (here a long-poll).
#[tokio::test]
async fn request_timeout_408() {
    let mut c = test_config();
    c.request_timeout = Duration::from_millis(500);
    let h = Backend::Sqlite.harness_with(c).await.unwrap();
    let j = h
        .send(
            Request::builder()
                .method("POST")
                .uri("/v1/mailboxes")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .json();
    let req = Request::builder()
        .uri(format!(
            "/v1/mailboxes/{}/messages?wait=5",
            j["mailbox_id"].as_str().unwrap()
        ))
        .header(
            "authorization",
            format!("Bearer {}", j["read_token"].as_str().unwrap()),
        )
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(req).await.status, StatusCode::REQUEST_TIMEOUT);
}

/// An instance starting on an up-to-date database takes no table lock: a running instance's
/// sweeper holds `ROW EXCLUSIVE` on the tables it deletes from, and the `SHARE` lock a
/// `CREATE INDEX IF NOT EXISTS` takes even on an existing index would wait for it (and, taken
/// table after table while the sweeper does the same, deadlock: PostgreSQL then kills one after
/// `deadlock_timeout`, so the starting relay exited with "db error").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_open_waits_on_no_table_lock() {
    let Some(a) = Backend::Postgres.harness().await else {
        return;
    };
    let (url, schema) = a.pg.clone().unwrap();
    let mut config: tokio_postgres::Config = url.parse().unwrap();
    config.options(format!("-c search_path={schema}"));
    let (mut client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    let driver = tokio::spawn(conn);
    let tx = client.transaction().await.unwrap();
    for table in [
        "shares",
        "tokens",
        "pairings",
        "mailboxes",
        "blobs",
        "uploads",
    ] {
        tx.batch_execute(&format!("LOCK TABLE {table} IN ROW EXCLUSIVE MODE"))
            .await
            .unwrap();
    }
    let opened = tokio::time::timeout(
        Duration::from_secs(10),
        carekey_relay::storage::postgres::PgStorage::open(&url, Some(&schema)),
    )
    .await;
    tx.rollback().await.unwrap();
    drop(client);
    let _ = driver.await;
    let storage: std::sync::Arc<dyn carekey_relay::storage::Storage> = std::sync::Arc::new(
        opened
            .expect("open waited on a table lock")
            .expect("open failed"),
    );
    // A server error names its SQLSTATE (tokio-postgres's `Display` says only "db error").
    let err = storage
        .read(|tx| tx.query("SELECT no_such_column FROM shares", &[]))
        .await
        .expect_err("the column does not exist");
    assert!(err.to_string().contains("SQLSTATE 42703"), "{err}");
}
