//! SMART Health Links published through the relay (issue 15; docs/relay.md "SMART Health
//! Links"): owner-signed create and delete, the public SHL manifest request with passcode,
//! attempts, `exp`, embedded and `location` files, the audit entry with the recipient, the
//! abuse limits (body limit, per-address rate limit), CORS, and a canary scan proving the
//! database holds only JWE ciphertext and the passcode hash. Both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use argon2::{Algorithm, Argon2, Params, Version};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use carekey_relay::sweeper;
use carekey_shl::{EncryptOptions, ShlKey, jwe};
use common::*;
use sha2::{Digest, Sha256};

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
    publish_and_open,
    wrong_passcode_counts_down_then_dead,
    expired_and_deleted_links_are_gone,
    create_refuses_bad_input,
);

const PASSCODE: &str = "4711-passcode";
const RECIPIENT: &str = "Dr. Example, Clinic B";

/// Argon2id with the parameters of relay-formats.md "SMART Health Link passcode", written
/// here from the document (not the relay's code).
fn passcode_hash(passcode: &str, salt: &[u8; 16]) -> [u8; 32] {
    let params = Params::new(19 * 1024, 2, 1, Some(32)).unwrap();
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passcode.as_bytes(), salt, &mut out)
        .unwrap();
    out
}

fn encrypt(plain: &[u8], key: &ShlKey) -> String {
    jwe::encrypt(
        plain,
        key,
        &EncryptOptions {
            cty: Some("application/fhir+json"),
            zip: false,
        },
    )
    .unwrap()
}

struct Link {
    id: String,
    url: String,
    hash_hex: String,
}

async fn publish(
    h: &Harness,
    o: &Owner,
    files: &[String],
    passcode: Option<&str>,
    attempts: u32,
    exp: u64,
) -> Result<Link, Resp> {
    let salt = rand::<16>();
    let body = serde_json::json!({
        "files": files.iter().map(|j| serde_json::json!({
            "content_type": "application/fhir+json", "jwe": j })).collect::<Vec<_>>(),
        "passcode": passcode.map(|p| serde_json::json!({
            "salt": b64(&salt), "hash": b64(&passcode_hash(p, &salt)) })),
        "max_attempts": attempts,
        "expires_at": exp,
    });
    let r = h
        .owner(
            o,
            "POST",
            &format!("/v1/shares/{}/links", o.share_hex),
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
    if r.status != StatusCode::CREATED {
        return Err(r);
    }
    let j = r.json();
    let id = j["link_id"].as_str().unwrap().to_owned();
    let raw = unb64(&id);
    assert_eq!(raw.len(), 32, "a 256-bit link id");
    let mut hh = Sha256::new();
    hh.update(b"carekey/v1/shl-link-id\0");
    hh.update(&raw);
    Ok(Link {
        url: j["url"].as_str().unwrap().to_owned(),
        hash_hex: hex(&hh.finalize()),
        id,
    })
}

async fn manifest(h: &Harness, link: &Link, body: serde_json::Value) -> Resp {
    let req = Request::builder()
        .method("POST")
        .uri(format!("/shl/{}", link.id))
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap();
    h.send(req).await
}

/// `(kind, body)` of every audit entry of the share.
async fn audit(h: &Harness, o: &Owner) -> Vec<(u64, Vec<u8>)> {
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
        .map(|e| {
            (
                e["kind"].as_u64().unwrap(),
                unb64(e["body"].as_str().unwrap()),
            )
        })
        .collect()
}

async fn count(h: &Harness, sql: &'static str) -> i64 {
    h.state
        .storage
        .read(move |tx| tx.query_opt(sql, &[])?.unwrap()[0].int())
        .await
        .unwrap()
}

async fn publish_and_open(h: Harness) {
    let o = h.create_share().await;
    let key = ShlKey::generate();
    let small = encrypt(br#"{"resourceType":"Bundle","id":"small"}"#, &key);
    let big = encrypt(&vec![b' '; 4000], &key);
    // Larger than what the relay reads while planning a download (two 256 KiB pieces): its
    // `location` answer is streamed from storage (docs/relay.md "Streaming").
    let large = encrypt(&vec![b'x'; 500_000], &key);
    assert!(large.len() > 2 * (256 << 10));
    let link = publish(
        &h,
        &o,
        &[small.clone(), big.clone(), large.clone()],
        Some(PASSCODE),
        5,
        now() + 3600,
    )
    .await
    .unwrap();
    assert_eq!(link.url, format!("{ORIGIN}/shl/{}", link.id));
    let r = manifest(
        &h,
        &link,
        serde_json::json!({"recipient": RECIPIENT, "passcode": PASSCODE, "embeddedLengthMax": 1000}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.headers["access-control-allow-origin"], "*");
    let files = r.json()["files"].as_array().unwrap().clone();
    assert_eq!(files.len(), 3);
    assert_eq!(files[0]["contentType"], "application/fhir+json");
    assert_eq!(files[0]["embedded"].as_str().unwrap(), small);
    assert!(files[0].get("location").is_none());
    let loc = files[1]["location"].as_str().unwrap();
    let path = loc.strip_prefix(ORIGIN).unwrap();
    assert!(path.starts_with("/shl/files/") && unb64(&path[11..]).len() == 32);
    let f = h.get(path).await;
    assert_eq!(f.status, StatusCode::OK);
    assert_eq!(f.headers["content-type"], "application/jose");
    assert_eq!(f.text(), big);
    let loc = files[2]["location"].as_str().unwrap();
    let f = h.get(loc.strip_prefix(ORIGIN).unwrap()).await;
    assert_eq!(f.status, StatusCode::OK);
    assert_eq!(f.headers["content-type"], "application/jose");
    assert_eq!(f.headers["content-length"], large.len().to_string());
    assert!(f.text() == large, "the streamed file differs");
    // The decrypted file is the upload (the relay passed ciphertext through untouched).
    let d = jwe::decrypt(files[0]["embedded"].as_str().unwrap(), &key).unwrap();
    assert_eq!(
        &d.plaintext[..],
        br#"{"resourceType":"Bundle","id":"small"}"#
    );
    // Without embeddedLengthMax both are small enough to embed.
    let r = manifest(
        &h,
        &link,
        serde_json::json!({"recipient": "x", "passcode": PASSCODE}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json()["files"][1]["embedded"].is_string());
    // The location stops working after its lifetime.
    h.state.clock.advance(601);
    assert_eq!(h.get(path).await.status, StatusCode::NOT_FOUND);
    // Audit: published (10, body = link hash), then one served request (9) per request.
    let log = audit(&h, &o).await;
    let kinds: Vec<u64> = log.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, vec![5, 10, 9, 9]);
    assert_eq!(hex(&log[1].1), link.hash_hex);
    let mut want = vec![0u8];
    want.extend_from_slice(RECIPIENT.as_bytes());
    assert_eq!(log[2].1, want);
}

async fn wrong_passcode_counts_down_then_dead(h: Harness) {
    let o = h.create_share().await;
    let key = ShlKey::generate();
    let link = publish(
        &h,
        &o,
        &[encrypt(b"{}", &key)],
        Some(PASSCODE),
        3,
        now() + 3600,
    )
    .await
    .unwrap();
    // No passcode: 401 with the count, not an attempt.
    let r = manifest(&h, &link, serde_json::json!({"recipient": RECIPIENT})).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["remainingAttempts"], 3);
    assert_eq!(r.json()["error"], "passcode_required");
    for left in [2, 1, 0] {
        let r = manifest(
            &h,
            &link,
            serde_json::json!({"recipient": RECIPIENT, "passcode": "guess"}),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
        assert_eq!(r.json()["remainingAttempts"], left);
        assert_eq!(r.json()["error"], "wrong_passcode");
        assert!(!r.text().contains("guess"));
    }
    // Dead: even the right passcode is refused, and the ciphertext is gone.
    let r = manifest(
        &h,
        &link,
        serde_json::json!({"recipient": RECIPIENT, "passcode": PASSCODE}),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    assert_eq!(count(&h, "SELECT COUNT(*) FROM shl_files").await, 0);
    let log = audit(&h, &o).await;
    let failed: Vec<_> = log.iter().filter(|(k, _)| *k == 9).collect();
    assert_eq!(failed.len(), 3, "each wrong passcode is logged");
    assert!(failed.iter().all(|(_, b)| b[0] == 1));
}

async fn expired_and_deleted_links_are_gone(h: Harness) {
    let o = h.create_share().await;
    let key = ShlKey::generate();
    let f = vec![encrypt(&vec![b'x'; 2000], &key)];
    let short = publish(&h, &o, &f, None, 1, now() + 60).await.unwrap();
    let kept = publish(&h, &o, &f, None, 1, now() + 7200).await.unwrap();
    let body = serde_json::json!({"recipient": RECIPIENT, "embeddedLengthMax": 10});
    let r = manifest(&h, &kept, body.clone()).await;
    assert_eq!(r.status, StatusCode::OK);
    let loc = r.json()["files"][0]["location"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = loc.strip_prefix(ORIGIN).unwrap().to_owned();
    assert_eq!(h.get(&path).await.status, StatusCode::OK);
    // exp: 404, before the sweeper ran.
    h.state.clock.advance(61);
    assert_eq!(
        manifest(&h, &short, body.clone()).await.status,
        StatusCode::NOT_FOUND
    );
    let swept = sweeper::sweep_once(&h.state).await.unwrap();
    assert_eq!(swept.links, 1);
    assert_eq!(count(&h, "SELECT COUNT(*) FROM shl_links").await, 1);
    // Deleted by the owner: the manifest and an already issued location answer 404.
    let r = h
        .owner(
            &o,
            "DELETE",
            &format!("/v1/shares/{}/links/{}", o.share_hex, kept.hash_hex),
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert_eq!(
        manifest(&h, &kept, body.clone()).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(h.get(&path).await.status, StatusCode::NOT_FOUND);
    assert_eq!(count(&h, "SELECT COUNT(*) FROM shl_files").await, 0);
    assert_eq!(count(&h, "SELECT COUNT(*) FROM shl_tickets").await, 0);
    // The share's creator is charged for the share only again.
    let used = h
        .state
        .storage
        .read(|tx| tx.query("SELECT objects, bytes FROM client_usage", &[]))
        .await
        .unwrap();
    let objects: i64 = used.iter().map(|r| r[0].int().unwrap()).sum();
    let bytes: i64 = used.iter().map(|r| r[1].int().unwrap()).sum();
    assert_eq!((objects, bytes), (1, 0), "links released their quota");
    // Deleting again: 404; a link of another share cannot be deleted through this one.
    let again = h
        .owner(
            &o,
            "DELETE",
            &format!("/v1/shares/{}/links/{}", o.share_hex, kept.hash_hex),
            vec![],
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let log = audit(&h, &o).await;
    assert!(log.iter().any(|(k, b)| *k == 11 && hex(b) == kept.hash_hex));
}

async fn create_refuses_bad_input(h: Harness) {
    let o = h.create_share().await;
    let key = ShlKey::generate();
    let good = encrypt(b"{}", &key);
    let refuse = |r: Result<Link, Resp>, code: &str| {
        let r = r.err().expect("refused");
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
        assert_eq!(r.json()["error"], code);
    };
    // A plaintext Bundle instead of a JWE.
    refuse(
        publish(
            &h,
            &o,
            &[r#"{"resourceType":"Bundle"}"#.into()],
            None,
            1,
            now() + 60,
        )
        .await,
        "bad_jwe",
    );
    refuse(
        publish(&h, &o, std::slice::from_ref(&good), None, 0, now() + 60).await,
        "bad_attempts",
    );
    refuse(
        publish(&h, &o, std::slice::from_ref(&good), None, 101, now() + 60).await,
        "bad_attempts",
    );
    refuse(publish(&h, &o, &[], None, 1, now() + 60).await, "bad_files");
    refuse(
        publish(&h, &o, std::slice::from_ref(&good), None, 1, now() - 1).await,
        "bad_expiry",
    );
    // The share lives a day: a link cannot outlive it.
    refuse(
        publish(
            &h,
            &o,
            std::slice::from_ref(&good),
            None,
            1,
            now() + 3 * 86_400,
        )
        .await,
        "bad_expiry",
    );
    // Not the owner: 401.
    let valid = serde_json::json!({"files": [{"content_type": "application/fhir+json", "jwe": good}],
        "passcode": null, "max_attempts": 1, "expires_at": now() + 60});
    let r = h
        .send(Harness::owner_request(
            &common::key(),
            "POST",
            &format!("/v1/shares/{}/links", o.share_hex),
            serde_json::to_vec(&valid).unwrap(),
            99,
        ))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        count(&h, "SELECT COUNT(*) FROM shl_links").await,
        0,
        "nothing stored"
    );
    // Unknown and malformed link ids: 404 alike.
    let ghost = Link {
        id: b64(&rand::<32>()),
        url: String::new(),
        hash_hex: String::new(),
    };
    let body = serde_json::json!({"recipient": RECIPIENT});
    assert_eq!(
        manifest(&h, &ghost, body.clone()).await.status,
        StatusCode::NOT_FOUND
    );
    let short = Link {
        id: "abc".into(),
        url: String::new(),
        hash_hex: String::new(),
    };
    assert_eq!(
        manifest(&h, &short, body).await.status,
        StatusCode::NOT_FOUND
    );
}

/// The size caps of a link (docs/relay.md "SMART Health Links"), checked before the form of a
/// file: one file over `MAX_SHL_FILE_BYTES`, and files under it each but over
/// `MAX_SHL_LINK_BYTES` together (a body limit above both, so the caps answer, not the 413).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_refuses_oversized_files() {
    let mut c = test_config();
    c.max_body_bytes = 16 << 20;
    let h = Backend::Sqlite.harness_with(c).await.unwrap();
    let o = h.create_share().await;
    let refuse = |r: Result<Link, Resp>, code: &str| {
        let r = r.err().expect("refused");
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
        assert_eq!(r.json()["error"], code);
    };
    let over = "A".repeat(carekey_relay_api::MAX_SHL_FILE_BYTES + 1);
    refuse(
        publish(&h, &o, &[over], None, 1, now() + 60).await,
        "file_too_large",
    );
    let part = "A".repeat(carekey_relay_api::MAX_SHL_LINK_BYTES / 2 + 1);
    refuse(
        publish(&h, &o, &[part.clone(), part], None, 1, now() + 60).await,
        "link_too_large",
    );
}

/// Abuse limits of the public route: the body limit (4 KiB, 413 on a declared length before
/// reading), a missing or oversized recipient (400), and the per-address rate limit (429).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_abuse_limits() {
    let mut c = test_config();
    c.ip_rate_per_sec = 0.5;
    c.ip_burst = 6.0;
    let h = Backend::Sqlite.harness_with(c).await.unwrap();
    let o = h.create_share().await;
    let key = ShlKey::generate();
    let link = publish(&h, &o, &[encrypt(b"{}", &key)], None, 1, now() + 3600)
        .await
        .unwrap();
    let addr: SocketAddr = "127.0.0.7:4000".parse().unwrap();
    let send = |body: Vec<u8>| {
        let mut req = Request::builder()
            .method("POST")
            .uri(format!("/shl/{}", link.id))
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        req.extensions_mut().insert(ConnectInfo(addr));
        h.send(req)
    };
    let big = serde_json::to_vec(&serde_json::json!({"recipient": "x".repeat(5000)})).unwrap();
    assert_eq!(send(big).await.status, StatusCode::PAYLOAD_TOO_LARGE);
    let long = serde_json::to_vec(&serde_json::json!({"recipient": "x".repeat(300)})).unwrap();
    let r = send(long).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"], "bad_recipient");
    let none = serde_json::to_vec(&serde_json::json!({"passcode": "p"})).unwrap();
    assert_eq!(send(none).await.status, StatusCode::BAD_REQUEST);
    let ok = serde_json::to_vec(&serde_json::json!({"recipient": RECIPIENT})).unwrap();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(send(ok.clone()).await.status);
    }
    assert_eq!(statuses[0], StatusCode::OK);
    assert_eq!(*statuses.last().unwrap(), StatusCode::TOO_MANY_REQUESTS);
    let r = send(ok).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(
        r.headers["access-control-allow-origin"], "*",
        "errors carry CORS too"
    );
}

/// CORS: a preflight of a public SHL route is answered for any origin; the owner routes get
/// no CORS headers.
#[tokio::test]
async fn cors_only_on_public_routes() {
    let h = Backend::Sqlite.harness().await.unwrap();
    let pre = |path: &str| {
        Request::builder()
            .method("OPTIONS")
            .uri(path)
            .header("origin", "https://viewer.example")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .body(Body::empty())
            .unwrap()
    };
    let r = h.send(pre(&format!("/shl/{}", b64(&rand::<32>())))).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.headers["access-control-allow-origin"], "*");
    assert!(
        r.headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    assert!(
        r.headers["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("content-type")
    );
    let r = h.send(pre("/v1/shares")).await;
    assert!(!r.headers.contains_key("access-control-allow-origin"));
}

/// The database holds only JWE ciphertext and the passcode hash: a canary plaintext, the
/// passcode, the key and the link id (raw or base64url) appear in no file of the SQLite
/// directory after a publish and two opens (a wrong passcode and the right one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_scan_ciphertext_and_hash_only() {
    let h = Backend::Sqlite.harness().await.unwrap();
    let o = h.create_share().await;
    let raw_key = rand::<32>();
    let key = ShlKey::from_bytes(raw_key);
    let canary = format!("CANARY-PLAINTEXT-{}", hex(&rand::<8>()));
    let passcode = format!("CANARY-PASSCODE-{}", hex(&rand::<8>()));
    let plain = format!(r#"{{"resourceType":"Bundle","note":"{canary}"}}"#);
    let file = encrypt(plain.as_bytes(), &key);
    let link = publish(
        &h,
        &o,
        std::slice::from_ref(&file),
        Some(&passcode),
        5,
        now() + 3600,
    )
    .await
    .unwrap();
    let wrong = manifest(
        &h,
        &link,
        serde_json::json!({"recipient": "r", "passcode": "nope"}),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let right = manifest(
        &h,
        &link,
        serde_json::json!({"recipient": "r", "passcode": passcode}),
    )
    .await;
    assert_eq!(right.status, StatusCode::OK);
    let mut all = Vec::new();
    for e in std::fs::read_dir(h._dir.as_ref().unwrap().path()).unwrap() {
        all.extend(std::fs::read(e.unwrap().path()).unwrap());
    }
    let contains = |needle: &[u8]| all.windows(needle.len()).any(|w| w == needle);
    assert!(
        contains(file.as_bytes()),
        "the scan sees the stored JWE (sanity)"
    );
    assert!(!contains(canary.as_bytes()), "plaintext stored");
    assert!(!contains(passcode.as_bytes()), "passcode stored");
    assert!(!contains(b"nope"), "a guessed passcode stored");
    assert!(!contains(&raw_key), "key stored");
    assert!(!contains(key.to_base64url().as_bytes()), "key stored");
    assert!(!contains(link.id.as_bytes()), "link id stored");
    assert!(!contains(&unb64(&link.id)), "raw link id stored");
}
