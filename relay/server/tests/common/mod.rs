//! Test helpers: an in-process harness over either backend and independent re-implementations
//! of the byte formats of docs/relay-formats.md (signing side), written with ed25519-dalek
//! directly so the tests check the relay against the spec, not against itself.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod process;

use std::io::Write as _;
use std::sync::Arc;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use carekey_relay::storage::Storage;
use carekey_relay::storage::postgres::PgStorage;
use carekey_relay::storage::sqlite::SqliteStorage;
use carekey_relay::{AppState, Config, app};
use data_encoding::{BASE64URL_NOPAD, HEXLOWER};
use ed25519_dalek::{Signer, SigningKey};
use http_body_util::BodyExt;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use tower::ServiceExt;

/// Runs each named `async fn(Harness)` of the test file that includes this module with
/// `#[macro_use]` as `sqlite::<name>` and `postgres::<name>` (the latter return early when
/// `CAREKEY_TEST_PG_URL` is unset): the one suite of issue 4, split by resource.
#[allow(unused_macros)]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = crate::common::Backend::Sqlite.harness().await.expect("sqlite harness");
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

pub const ORIGIN: &str = "http://relay.test";
pub const PG_ENV: &str = "CAREKEY_TEST_PG_URL";

pub fn b64(b: &[u8]) -> String {
    BASE64URL_NOPAD.encode(b)
}
pub fn unb64(s: &str) -> Vec<u8> {
    BASE64URL_NOPAD.decode(s.as_bytes()).unwrap()
}
pub fn hex(b: &[u8]) -> String {
    HEXLOWER.encode(b)
}
pub fn rand<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    OsRng.fill_bytes(&mut b);
    b
}
pub fn key() -> SigningKey {
    SigningKey::generate(&mut OsRng)
}
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn str16(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// relay-formats.md "Owner write signature".
pub fn owner_sig(
    k: &SigningKey,
    method: &str,
    pq: &str,
    origin: &str,
    body: &[u8],
    counter: u64,
) -> String {
    let mut m = b"carekey/v1/owner-write\0".to_vec();
    str16(&mut m, method);
    str16(&mut m, pq);
    str16(&mut m, origin);
    m.extend_from_slice(&Sha256::digest(body));
    m.extend_from_slice(&counter.to_be_bytes());
    b64(&k.sign(&m).to_bytes())
}

/// relay-formats.md "Read token hash".
pub fn token_hash(token: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"carekey/v1/read-token\0");
    h.update(token);
    h.finalize().into()
}

/// relay-formats.md "Scope".
pub fn scope(categories: u32, records: &[[u8; 16]]) -> Vec<u8> {
    let mut r = records.to_vec();
    r.sort();
    let mut s = categories.to_be_bytes().to_vec();
    s.extend_from_slice(&(r.len() as u16).to_be_bytes());
    for id in r {
        s.extend_from_slice(&id);
    }
    s
}

/// relay-formats.md "Fetch receipt".
pub fn receipt(reader: &SigningKey, share_id: &[u8; 16], object_id: &str) -> String {
    receipt_at(reader, share_id, object_id, now())
}

/// A fetch receipt signed with the given time.
pub fn receipt_at(reader: &SigningKey, share_id: &[u8; 16], object_id: &str, time: u64) -> String {
    let mut r = vec![1u8];
    r.extend_from_slice(share_id);
    str16(&mut r, object_id);
    r.extend_from_slice(reader.verifying_key().as_bytes());
    r.extend_from_slice(&time.to_be_bytes());
    r.extend_from_slice(&rand::<16>());
    let mut m = b"carekey/v1/fetch-receipt\0".to_vec();
    m.extend_from_slice(&r);
    r.extend_from_slice(&reader.sign(&m).to_bytes());
    b64(&r)
}

/// relay-formats.md "Delegation link", version 2: the child's relay groups (sorted here)
/// signed after the scope.
#[allow(clippy::too_many_arguments)]
pub fn link_scoped(
    parent: &SigningKey,
    share_id: &[u8; 16],
    child: &SigningKey,
    child_token_hash: &[u8; 32],
    scope_bytes: &[u8],
    groups: &[[u8; 16]],
    expires_at: u64,
    depth: u8,
) -> String {
    let mut g = groups.to_vec();
    g.sort();
    g.dedup();
    let mut l = vec![2u8];
    l.extend_from_slice(share_id);
    l.extend_from_slice(parent.verifying_key().as_bytes());
    l.extend_from_slice(child.verifying_key().as_bytes());
    l.extend_from_slice(child_token_hash);
    l.extend_from_slice(scope_bytes);
    l.extend_from_slice(&(g.len() as u16).to_be_bytes());
    for t in &g {
        l.extend_from_slice(t);
    }
    l.extend_from_slice(&expires_at.to_be_bytes());
    l.push(depth);
    let mut m = b"carekey/v1/delegation\0".to_vec();
    m.extend_from_slice(&l);
    l.extend_from_slice(&parent.sign(&m).to_bytes());
    b64(&l)
}

/// relay-formats.md "Delegation link (version 1)".
#[allow(clippy::too_many_arguments)]
pub fn link(
    parent: &SigningKey,
    share_id: &[u8; 16],
    child: &SigningKey,
    child_token_hash: &[u8; 32],
    scope_bytes: &[u8],
    expires_at: u64,
    depth: u8,
) -> String {
    let mut l = vec![1u8];
    l.extend_from_slice(share_id);
    l.extend_from_slice(parent.verifying_key().as_bytes());
    l.extend_from_slice(child.verifying_key().as_bytes());
    l.extend_from_slice(child_token_hash);
    l.extend_from_slice(scope_bytes);
    l.extend_from_slice(&expires_at.to_be_bytes());
    l.push(depth);
    let mut m = b"carekey/v1/delegation\0".to_vec();
    m.extend_from_slice(&l);
    l.extend_from_slice(&parent.sign(&m).to_bytes());
    b64(&l)
}

/// relay-formats.md "Relay audit chain" entry hash.
pub fn entry_hash(
    share_id: &[u8; 16],
    seq: u64,
    prev: &[u8],
    time: u64,
    kind: u8,
    body: &[u8],
) -> Vec<u8> {
    let mut m = b"carekey/v1/relay-audit-entry\0".to_vec();
    m.extend_from_slice(share_id);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(prev);
    m.extend_from_slice(&time.to_be_bytes());
    m.push(kind);
    m.extend_from_slice(&(body.len() as u32).to_be_bytes());
    m.extend_from_slice(body);
    Sha256::digest(&m).to_vec()
}

#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub enum Backend {
    Sqlite,
    Postgres,
}

static PG_SKIP: Once = Once::new();
static SCHEMA_SEQ: AtomicU64 = AtomicU64::new(0);

/// Set (CI does) to make a missing [`PG_ENV`] a failure instead of a skip.
pub const REQUIRE_PG_ENV: &str = "CAREKEY_REQUIRE_PG";

/// Says (uncaptured, once per test binary) that PostgreSQL runs were skipped; fails instead
/// when [`REQUIRE_PG_ENV`] is set.
pub fn pg_url() -> Option<String> {
    match std::env::var(PG_ENV) {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var_os(REQUIRE_PG_ENV).is_none(),
                "{REQUIRE_PG_ENV} is set but {PG_ENV} is not: the PostgreSQL tests cannot run"
            );
            PG_SKIP.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "PostgreSQL tests skipped: {PG_ENV} not set"
                );
            });
            None
        }
    }
}

/// A fresh, isolated PostgreSQL schema name.
pub fn fresh_schema() -> String {
    format!(
        "t{}_{}_{}",
        std::process::id(),
        SCHEMA_SEQ.fetch_add(1, Ordering::Relaxed),
        hex(&rand::<4>())
    )
}

pub struct Harness {
    pub state: AppState,
    pub app: Router,
    pub _dir: Option<tempfile::TempDir>,
    pub pg: Option<(String, String)>,
}

pub fn test_config() -> Config {
    let mut c = Config::new(ORIGIN);
    c.max_body_bytes = 1 << 20;
    c.max_blob_bytes = 4 << 20;
    c.max_backup_bytes = 3 << 20;
    c.max_batch_bytes = 64 << 10;
    c
}

/// relay-formats.md "Batch fetch": `blobs:` then the hex ids.
pub fn batch_object(ids: &[[u8; 16]]) -> String {
    let mut s = "blobs:".to_owned();
    for id in ids {
        s.push_str(&hex(id));
    }
    s
}

impl Backend {
    pub async fn harness_with(&self, config: Config) -> Option<Harness> {
        match self {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let storage: Arc<dyn Storage> = Arc::new(SqliteStorage::open(dir.path()).unwrap());
                let state = AppState::new(storage, config).await.unwrap();
                Some(Harness {
                    app: app(state.clone()),
                    state,
                    _dir: Some(dir),
                    pg: None,
                })
            }
            Backend::Postgres => {
                let url = pg_url()?;
                let schema = fresh_schema();
                let storage: Arc<dyn Storage> =
                    Arc::new(PgStorage::open(&url, Some(&schema)).await.unwrap());
                let state = AppState::new(storage, config).await.unwrap();
                Some(Harness {
                    app: app(state.clone()),
                    state,
                    _dir: None,
                    pg: Some((url, schema)),
                })
            }
        }
    }

    pub async fn harness(&self) -> Option<Harness> {
        self.harness_with(test_config()).await
    }
}

/// A share owned by `key` with a counter the helper keeps.
pub struct Owner {
    pub key: SigningKey,
    pub share_id: [u8; 16],
    pub share_hex: String,
    pub counter: AtomicU64,
}

impl Harness {
    pub async fn send(&self, req: Request<Body>) -> Resp {
        let r = self.app.clone().oneshot(req).await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.into_body().collect().await.unwrap().to_bytes().to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    pub fn owner_request(
        k: &SigningKey,
        method: &str,
        pq: &str,
        body: Vec<u8>,
        counter: u64,
    ) -> Request<Body> {
        Request::builder()
            .method(method)
            .uri(pq)
            .header("carekey-counter", counter.to_string())
            .header(
                "carekey-signature",
                owner_sig(k, method, pq, ORIGIN, &body, counter),
            )
            .body(Body::from(body))
            .unwrap()
    }

    pub async fn create_share(&self) -> Owner {
        let k = key();
        let body = serde_json::to_vec(&serde_json::json!({
            "owner_key": b64(k.verifying_key().as_bytes()),
            "expires_at": now() + 86_400,
        }))
        .unwrap();
        let r = self
            .send(Self::owner_request(&k, "POST", "/v1/shares", body, 1))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let share_hex = r.json()["share_id"].as_str().unwrap().to_owned();
        let share_id: [u8; 16] = HEXLOWER
            .decode(share_hex.as_bytes())
            .unwrap()
            .try_into()
            .unwrap();
        Owner {
            key: k,
            share_id,
            share_hex,
            counter: AtomicU64::new(1),
        }
    }

    /// Sends an owner request with the next counter.
    pub async fn owner(&self, o: &Owner, method: &str, pq: &str, body: Vec<u8>) -> Resp {
        let c = o.counter.fetch_add(1, Ordering::SeqCst) + 1;
        self.send(Self::owner_request(&o.key, method, pq, body, c))
            .await
    }

    pub async fn put_blob(&self, o: &Owner, blob: &[u8; 16], epoch: u32, data: &[u8]) -> Resp {
        let pq = format!(
            "/v1/shares/{}/blobs/{}?epoch={epoch}",
            o.share_hex,
            hex(blob)
        );
        self.owner(o, "PUT", &pq, data.to_vec()).await
    }

    /// Registers a root token; returns (token, reader key).
    pub async fn register_token(
        &self,
        o: &Owner,
        scope_bytes: &[u8],
        expires_at: u64,
        depth: u8,
    ) -> ([u8; 32], SigningKey) {
        let token = rand::<32>();
        let reader = key();
        let body = serde_json::to_vec(&serde_json::json!({
            "token_hash": b64(&token_hash(&token)),
            "reader_key": b64(reader.verifying_key().as_bytes()),
            "scope": b64(scope_bytes),
            "expires_at": expires_at,
            "depth": depth,
        }))
        .unwrap();
        let r = self
            .owner(
                o,
                "POST",
                &format!("/v1/shares/{}/tokens", o.share_hex),
                body,
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        (token, reader)
    }

    /// Registers a scoped root token (relay groups); returns (token, reader key).
    pub async fn register_scoped_token(
        &self,
        o: &Owner,
        scope_bytes: &[u8],
        groups: &[[u8; 16]],
        expires_at: u64,
        depth: u8,
    ) -> ([u8; 32], SigningKey) {
        let token = rand::<32>();
        let reader = key();
        let body = serde_json::to_vec(&serde_json::json!({
            "token_hash": b64(&token_hash(&token)),
            "reader_key": b64(reader.verifying_key().as_bytes()),
            "scope": b64(scope_bytes),
            "expires_at": expires_at,
            "depth": depth,
            "groups": groups.iter().map(|g| b64(g)).collect::<Vec<_>>(),
        }))
        .unwrap();
        let r = self
            .owner(
                o,
                "POST",
                &format!("/v1/shares/{}/tokens", o.share_hex),
                body,
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        (token, reader)
    }

    /// Puts stored blobs into relay groups (`POST /v1/shares/{id}/groups`).
    pub async fn register_groups(&self, o: &Owner, groups: &[([u8; 16], Vec<[u8; 16]>)]) -> Resp {
        let body = serde_json::to_vec(&serde_json::json!({
            "groups": groups
                .iter()
                .map(|(g, blobs)| serde_json::json!({
                    "group": b64(g),
                    "blobs": blobs.iter().map(|b| hex(b)).collect::<Vec<_>>(),
                }))
                .collect::<Vec<_>>(),
        }))
        .unwrap();
        self.owner(
            o,
            "POST",
            &format!("/v1/shares/{}/groups", o.share_hex),
            body,
        )
        .await
    }

    pub async fn read(
        &self,
        o: &Owner,
        object: &str,
        token: &[u8; 32],
        reader: &SigningKey,
    ) -> Resp {
        let path = if object == "manifest" {
            format!("/v1/shares/{}/manifest", o.share_hex)
        } else {
            format!("/v1/shares/{}/blobs/{object}", o.share_hex)
        };
        let req = Request::builder()
            .method("GET")
            .uri(path)
            .header("authorization", format!("Bearer {}", b64(token)))
            .header("carekey-receipt", receipt(reader, &o.share_id, object))
            .body(Body::empty())
            .unwrap();
        self.send(req).await
    }

    /// A batch fetch whose receipt names `object` (normally [`batch_object`]).
    pub async fn batch(
        &self,
        o: &Owner,
        object: &str,
        token: &[u8; 32],
        reader: &SigningKey,
    ) -> Resp {
        let receipt = unb64(&receipt(reader, &o.share_id, object));
        self.batch_raw(o, receipt, token).await
    }

    /// A batch fetch with the given body.
    pub async fn batch_raw(&self, o: &Owner, body: Vec<u8>, token: &[u8; 32]) -> Resp {
        let req = Request::builder()
            .method("POST")
            .uri(format!("/v1/shares/{}/fetch", o.share_hex))
            .header("authorization", format!("Bearer {}", b64(token)))
            .body(Body::from(body))
            .unwrap();
        self.send(req).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Request::builder().uri(path).body(Body::empty()).unwrap())
            .await
    }
}
