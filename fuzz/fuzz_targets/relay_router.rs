//! The relay's router driven in-process with structured requests (issue 4), reaching past
//! authentication (issue 14): nothing may panic and no request may end in a 500 (the router's
//! panic-catching layer turns a panic into a 500, so a 500 here is a bug).
//!
//! Requests are built from the router's own route list (`app_with_routes`), so a new route is
//! fuzzed without touching this file. The harness holds a few Ed25519 keys, read tokens and the
//! ids of objects that exist, and signs what the input asks it to sign, with the real formats
//! of docs/relay-formats.md: owner writes (fresh, replayed or chosen counters), fetch receipts
//! for the object the request reads (or another one, or a stale one), batch receipts, delegation
//! links. Ids and tokens the relay hands out in its answers (shares, uploads, mailboxes, links,
//! SHL file tickets) join the pools, so later requests of the same run use them. That state is
//! shared across inputs, as the relay's own state is across requests: a crash is reproduced by
//! its input together with the run's earlier ones, which libFuzzer's crash file alone may not
//! carry; the assertion message names the request.
//!
//! `CAREKEY_FUZZ_STATS=1` prints, every 5,000 requests, how many answers of each status class
//! every route gave: the figures of how far past authentication a run gets.
//! `CAREKEY_FUZZ_ERRORS=1` prints each refused request's status, route and error code.
#![no_main]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use arbitrary::Arbitrary;
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use carekey_core::capability::FetchReceipt;
use carekey_core::keys::SigningSecret;
use carekey_core::wire::Wire as _;
use carekey_relay::config::Config;
use carekey_relay::credential::token_hash;
use carekey_relay::delegation::DELEGATION_LABEL;
use carekey_relay::health_link::wire::link_hash;
use carekey_relay::owner::owner_message;
use carekey_relay::storage::sqlite::SqliteStorage;
use carekey_relay::{AppState, BodyKind, app_with_routes};
use data_encoding::{BASE64URL_NOPAD, HEXLOWER};
use ed25519_dalek::{Signer, SigningKey};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use rand_core::OsRng;
use tower::ServiceExt;

const ORIGIN: &str = "http://127.0.0.1:8080";
/// How many ids of one kind a pool keeps (the newest).
const POOL_MAX: usize = 16;
/// The harness's key pool: owners, readers, backup slots, delegation parents and children.
const KEYS: usize = 4;
/// The harness's read tokens (registered by the input, or at start-up for the first two).
const TOKENS: usize = 4;

/// What the harness knows exists.
#[derive(Default)]
struct Pools {
    /// Which key owns a share or backup slot (by id), as far as the harness knows.
    owners: BTreeMap<String, usize>,
    shares: Vec<String>,
    blobs: Vec<String>,
    uploads: Vec<String>,
    backups: Vec<String>,
    mailboxes: Vec<String>,
    /// Mailbox and pairing bearer tokens the relay handed out (base64url).
    bearers: Vec<String>,
    /// Read tokens registered by [`Harness::seed_share`]: (share, token, its reader key),
    /// newest last.
    readers: Vec<(String, [u8; 32], usize)>,
    links: Vec<String>,
    link_hashes: Vec<String>,
    tickets: Vec<String>,
}

fn keep(pool: &mut Vec<String>, v: String) {
    if !pool.contains(&v) {
        if pool.len() == POOL_MAX {
            pool.remove(0);
        }
        pool.push(v);
    }
}

struct Harness {
    rt: tokio::runtime::Runtime,
    router: Router,
    routes: Vec<(Method, &'static str, BodyKind)>,
    keys: Vec<SigningKey>,
    tokens: Vec<[u8; 32]>,
    counter: AtomicU64,
    pools: Mutex<Pools>,
    stats: Mutex<BTreeMap<(String, &'static str), [u64; 5]>>,
    requests: AtomicU64,
    _dir: tempfile::TempDir,
}

fn b64(b: &[u8]) -> String {
    BASE64URL_NOPAD.encode(b)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

static H: LazyLock<Harness> = LazyLock::new(|| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = Arc::new(SqliteStorage::open(dir.path()).expect("sqlite opens"));
    let mut config = Config::new(ORIGIN);
    // No rate limiting in the fuzzer: it would only answer 429.
    config.ip_rate_per_sec = 1e9;
    config.ip_burst = 1e9;
    config.token_rate_per_sec = 1e9;
    config.token_burst = 1e9;
    let state = rt.block_on(AppState::new(storage, config)).expect("state");
    let (router, list) = app_with_routes(state);
    let h = Harness {
        rt,
        router,
        routes: list
            .into_iter()
            .map(|r| (r.method, r.path, r.body))
            .collect(),
        keys: (0..KEYS)
            .map(|i| SigningKey::from_bytes(&[0x11 * (i as u8 + 1); 32]))
            .collect(),
        tokens: (0..TOKENS).map(|i| [0x40 + i as u8; 32]).collect(),
        counter: AtomicU64::new(1),
        pools: Mutex::new(Pools::default()),
        stats: Mutex::new(BTreeMap::new()),
        requests: AtomicU64::new(0),
        _dir: dir,
    };
    h.seed();
    h
});

impl Harness {
    /// Start-up objects, so even the first inputs have something to read and write: shares
    /// owned by keys 0 and 1 ([`Self::seed_share`]), a backup slot of key 1, a mailbox and a
    /// pairing box.
    fn seed(&self) {
        assert!(self.seed_share(0) && self.seed_share(1), "seed shares");
        // The harness's signing still matches the relay's formats: a read succeeds.
        let (share, (token, reader), blob) = {
            let p = self.pools.lock().expect("pools");
            let (_, token, reader) = &p.readers[3];
            (p.shares[1].clone(), (*token, *reader), p.blobs[0].clone())
        };
        let share_id: [u8; 16] = HEXLOWER
            .decode(share.as_bytes())
            .ok()
            .and_then(|b| b.try_into().ok())
            .expect("a share id is 16 bytes of hex");
        let read = Request::builder()
            .uri(format!("/v1/shares/{share}/blobs/{blob}"))
            .header("authorization", format!("Bearer {}", b64(&token)))
            .header(
                "carekey-receipt",
                b64(&self.receipt(&share_id, &blob, reader, 0)),
            )
            .body(Body::empty())
            .expect("read request");
        let (status, _) = self.send(read);
        assert_eq!(status, StatusCode::OK, "the harness's own read");
        let backup = HEXLOWER.encode(&[0xb0; 16]);
        let pq = format!("/v1/backups/{backup}?version=1");
        let owner_key = b64(self.keys[1].verifying_key().as_bytes());
        let (status, _) =
            self.send(self.signed(1, Method::PUT, &pq, vec![7; 100], Some(&owner_key)));
        assert!(status.is_success(), "seed backup: {status}");
        let mut p = self.pools.lock().expect("pools");
        p.owners.insert(backup.clone(), 1);
        keep(&mut p.backups, backup);
        drop(p);
        for path in ["/v1/mailboxes", "/v1/pairing"] {
            let req = Request::builder()
                .method(Method::POST)
                .uri(path)
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .expect("seed mailbox request");
            let (status, _) = self.send(req);
            assert!(status.is_success(), "seed {path}: {status}");
        }
    }

    /// A share owned by key `owner` with two blobs and read tokens 0 and 1 (readers 2 and 3).
    /// Also called when an input deletes a share, so there is always one to work on; false
    /// when the relay refused (later in a run, a quota may).
    fn seed_share(&self, owner: usize) -> bool {
        let share = self.post_json(
            owner,
            "/v1/shares",
            serde_json::json!({
                "owner_key": b64(self.keys[owner].verifying_key().as_bytes()),
                "expires_at": now() + 86_400 * 30,
            }),
        );
        let Some(share) = share.and_then(|s| s["share_id"].as_str().map(str::to_owned)) else {
            return false;
        };
        for n in 1u8..=2 {
            let blob = HEXLOWER.encode(&[n; 16]);
            // The same blob ids in every share: the pool stays small.
            let pq = format!("/v1/shares/{share}/blobs/{blob}?epoch=1");
            let (status, _) = self.send(self.signed(owner, Method::PUT, &pq, vec![n; 64], None));
            if !status.is_success() {
                return false;
            }
            keep(&mut self.pools.lock().expect("pools").blobs, blob);
        }
        for t in 0..2 {
            // Unique, not secret: this is the fuzzer's own relay.
            let mut token = [0x5e; 32];
            token[..8].copy_from_slice(&self.next_counter().to_be_bytes());
            let registered = self.post_json(
                owner,
                &format!("/v1/shares/{share}/tokens"),
                serde_json::json!({
                    "token_hash": b64(&token_hash(&token)),
                    "reader_key": b64(self.keys[t + 2].verifying_key().as_bytes()),
                    "scope": b64(&[0xff, 0xff, 0xff, 0xff, 0, 0]),
                    "expires_at": now() + 86_400 * 30,
                    "depth": 2,
                }),
            );
            if registered.is_none() {
                return false;
            }
            let mut p = self.pools.lock().expect("pools");
            if p.readers.len() == POOL_MAX {
                p.readers.remove(0);
            }
            p.readers.push((share.clone(), token, t + 2));
        }
        let mut p = self.pools.lock().expect("pools");
        p.owners.insert(share.clone(), owner);
        keep(&mut p.shares, share);
        true
    }

    fn post_json(
        &self,
        key: usize,
        pq: &str,
        body: serde_json::Value,
    ) -> Option<serde_json::Value> {
        let body = serde_json::to_vec(&body).expect("seed body");
        let mut req = self.signed(key, Method::POST, pq, body, None);
        req.headers_mut()
            .insert("content-type", "application/json".parse().expect("header"));
        let (status, json) = self.send(req);
        status.is_success().then(|| json.unwrap_or_default())
    }

    fn next_counter(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn signed(
        &self,
        key: usize,
        method: Method,
        pq: &str,
        body: Vec<u8>,
        owner_key: Option<&str>,
    ) -> Request<Body> {
        let counter = self.next_counter();
        let msg = owner_message(method.as_str(), pq, ORIGIN, &body, counter).expect("short path");
        let mut b = Request::builder()
            .method(method)
            .uri(pq)
            .header("carekey-counter", counter.to_string())
            .header(
                "carekey-signature",
                b64(&self.keys[key].sign(&msg).to_bytes()),
            );
        if let Some(k) = owner_key {
            b = b.header("carekey-owner-key", k);
        }
        b.body(Body::from(body)).expect("seed request")
    }

    /// Sends one request; learns the ids in a successful JSON answer (a share created is
    /// owned by `signer`).
    fn send(&self, req: Request<Body>) -> (StatusCode, Option<serde_json::Value>) {
        self.send_signed(req, None)
    }

    fn send_signed(
        &self,
        req: Request<Body>,
        signer: Option<usize>,
    ) -> (StatusCode, Option<serde_json::Value>) {
        self.rt.block_on(async {
            let resp = self
                .router
                .clone()
                .oneshot(req)
                .await
                .expect("the router is infallible");
            let status = resp.status();
            if !status.is_success() {
                if std::env::var_os("CAREKEY_FUZZ_ERRORS").is_some() {
                    if let Ok(b) = resp.into_body().collect().await {
                        let j: serde_json::Value =
                            serde_json::from_slice(&b.to_bytes()).unwrap_or_default();
                        eprintln!("ERR {status} {}", j["error"]);
                    }
                }
                return (status, None);
            }
            let json = match resp.into_body().collect().await {
                Ok(b) => serde_json::from_slice::<serde_json::Value>(&b.to_bytes()).ok(),
                Err(_) => None,
            };
            if let Some(j) = &json {
                self.learn(j, signer);
            }
            (status, json)
        })
    }

    fn learn(&self, j: &serde_json::Value, signer: Option<usize>) {
        let mut p = self.pools.lock().expect("pools");
        let s = |k: &str| j.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        if let Some(v) = s("share_id") {
            if let Some(k) = signer {
                p.owners.insert(v.clone(), k);
            }
            keep(&mut p.shares, v);
        }
        if let Some(v) = s("upload_id") {
            keep(&mut p.uploads, v);
        }
        if let Some(v) = s("mailbox_id") {
            keep(&mut p.mailboxes, v);
        }
        for k in ["read_token", "write_token"] {
            if let Some(v) = s(k) {
                keep(&mut p.bearers, v);
            }
        }
        if let Some(v) = s("link_id") {
            keep(&mut p.links, v.clone());
            if let Some(id) = BASE64URL_NOPAD
                .decode(v.as_bytes())
                .ok()
                .and_then(|b| b.try_into().ok())
            {
                keep(&mut p.link_hashes, HEXLOWER.encode(&link_hash(&id)));
            }
        }
        if let Some(files) = j.get("files").and_then(|f| f.as_array()) {
            for f in files {
                if let Some(t) = f
                    .get("location")
                    .and_then(|l| l.as_str())
                    .and_then(|l| l.rsplit('/').next())
                {
                    keep(&mut p.tickets, t.to_owned());
                }
            }
        }
    }

    fn record(&self, method: &Method, route: &'static str, status: StatusCode) {
        if std::env::var_os("CAREKEY_FUZZ_STATS").is_none() {
            return;
        }
        let class = match status.as_u16() {
            200..=299 => 0,
            401 | 403 => 1,
            400..=499 => 2,
            500..=599 => 4,
            _ => 3,
        };
        let mut s = self.stats.lock().expect("stats");
        s.entry((method.to_string(), route)).or_default()[class] += 1;
        if self.requests.fetch_add(1, Ordering::Relaxed) % 5_000 == 4_999 {
            eprintln!("relay_router stats (2xx, 401/403, other 4xx, other, 5xx):");
            for ((m, r), c) in s.iter() {
                eprintln!("  {m:6} {r:50} {c:?}");
            }
        }
    }
}

/// One path parameter or query value: mostly a known object (`pick` below 224), so most
/// inputs name something that exists.
#[derive(Debug, Arbitrary)]
struct Param {
    pick: u8,
    other: Value,
}

impl Param {
    fn value(&self) -> Value {
        if self.pick < 224 {
            Value::Known(self.pick)
        } else {
            self.other.clone()
        }
    }
}

#[derive(Debug, Clone, Arbitrary)]
enum Value {
    /// The n-th known object of the kind the parameter names.
    Known(u8),
    Hex(u128),
    Num(u64),
    Text(String),
}

#[derive(Debug, Clone, Arbitrary)]
enum KeyChoice {
    /// The key that owns the share or backup slot the path names (key 0 if unknown).
    Owner,
    Key(u8),
}

#[derive(Debug, Clone, Arbitrary)]
enum Counter {
    Fresh,
    Replayed,
    Chosen(u64),
}

#[derive(Debug, Clone, Arbitrary)]
enum ReceiptFor {
    /// The object this request reads (a blob id, `manifest`, or the batch's blob list).
    ThisRequest,
    /// A batch of known blobs (for `POST …/fetch`) by pool index.
    Batch(Vec<u8>),
    Object(String),
}

#[derive(Debug, Clone, Arbitrary)]
enum Auth {
    /// What a well-behaved client sends on this route (see [`Harness::auto_auth`]).
    Auto,
    None,
    /// An owner write signed by key `key` over the request as sent.
    Owner {
        key: KeyChoice,
        counter: Counter,
        /// Also send `Carekey-Owner-Key` (a backup slot's first write).
        owner_key_header: bool,
    },
    /// A read token (the harness's, or a mailbox token the relay issued) and, optionally, a
    /// fetch receipt signed by key `reader`, `skew` seconds off the harness's clock.
    Bearer {
        token: u8,
        /// `None`: the reader the harness registered with its token.
        reader: Option<u8>,
        receipt: Option<ReceiptFor>,
        /// Seconds off the harness's clock (`None`: on time).
        skew: Option<i16>,
    },
    Raw {
        counter: Option<String>,
        signature: Option<String>,
        bearer: Option<String>,
        receipt: Option<String>,
    },
}

/// A delegation link (docs/relay-formats.md "Delegation link") signed by key `parent`.
#[derive(Debug, Arbitrary)]
struct Link {
    v2: bool,
    parent: u8,
    child: u8,
    child_token: u8,
    scope: Vec<u8>,
    groups: Vec<[u8; 16]>,
    expires_in: i32,
    depth: u8,
}

/// A JSON field value.
#[derive(Debug, Arbitrary)]
enum Field {
    B64(Vec<u8>),
    /// The public half of key n.
    Key(u8),
    /// The public half of the key that signs this request (a new share's `owner_key`).
    Signer,
    /// The read-token hash of token n.
    TokenHash(u8),
    Hex(Vec<u8>),
    KnownBlob(u8),
    Num(u64),
    FromNow(i32),
    Neg(i64),
    Bool(bool),
    Str(String),
    List(Vec<Field>),
    Chain(Vec<Link>),
    Groups(Vec<([u8; 16], Vec<u8>)>),
    Null,
}

/// Field names of the relay's request bodies (relay/api), so inputs hit them without a
/// dictionary.
const NAMES: &[&str] = &[
    "owner_key",
    "expires_at",
    "token_hash",
    "reader_key",
    "scope",
    "depth",
    "groups",
    "group",
    "blobs",
    "chunks",
    "root_token_hash",
    "chain",
    "notice",
    "ttl_seconds",
    "files",
    "content_type",
    "jwe",
    "passcode",
    "salt",
    "hash",
    "max_attempts",
    "recipient",
    "embedded_length_max",
];

const QUERY_NAMES: &[&str] = &[
    "epoch",
    "blob",
    "version",
    "prev",
    "below",
    "from",
    "after",
    "through",
    "challenge",
    "close",
];

#[derive(Debug, Arbitrary)]
enum BodyIn {
    Raw(Vec<u8>),
    Object(Vec<(u8, Field)>),
}

/// The n-th route of the router with these path parameters; a raw path when `route` is 255
/// (rarely, so most inputs reach a handler).
#[derive(Debug, Arbitrary)]
struct Target {
    route: u8,
    params: Vec<Param>,
    raw: String,
}

#[derive(Debug, Arbitrary)]
enum ContentType {
    /// What the route takes (JSON for JSON routes, none otherwise).
    Route,
    Json,
    Octet,
    Other(String),
}

#[derive(Debug, Arbitrary)]
struct Req {
    target: Target,
    query: Vec<(u8, Param)>,
    auth: Auth,
    content_type: ContentType,
    body: BodyIn,
}

/// What a JSON body's fields are built for.
struct Ctx {
    share: [u8; 16],
    signer: usize,
}

impl Harness {
    fn key(&self, n: u8) -> &SigningKey {
        &self.keys[usize::from(n) % KEYS]
    }

    fn pick(pool: &[String], n: u8) -> Option<String> {
        (!pool.is_empty()).then(|| pool[usize::from(n) % pool.len()].clone())
    }

    /// A value for the path parameter or query key `name`.
    fn value(&self, name: &str, v: &Value) -> String {
        match v {
            Value::Known(n) => {
                let p = self.pools.lock().expect("pools");
                let pool = match name {
                    "share_id" => &p.shares,
                    "blob_id" | "blob" => &p.blobs,
                    "upload_id" => &p.uploads,
                    "backup_id" => &p.backups,
                    "mailbox_id" => &p.mailboxes,
                    "link_id" => &p.links,
                    "link_hash" => &p.link_hashes,
                    "ticket" => &p.tickets,
                    "token_hash" => {
                        let t = match p.readers.len() {
                            0 => self.tokens[usize::from(*n) % TOKENS],
                            len => p.readers[usize::from(*n) % len].1,
                        };
                        return HEXLOWER.encode(&token_hash(&t));
                    }
                    _ => return n.to_string(),
                };
                Self::pick(pool, *n).unwrap_or_else(|| n.to_string())
            }
            Value::Hex(x) => format!("{x:032x}"),
            Value::Num(x) => x.to_string(),
            Value::Text(s) => s
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || "-_.~".contains(*c))
                .collect(),
        }
    }

    fn field(&self, ctx: &Ctx, f: &Field, depth: u8) -> serde_json::Value {
        use serde_json::Value as J;
        let share = &ctx.share;
        match f {
            Field::Signer => J::String(b64(self.keys[ctx.signer].verifying_key().as_bytes())),
            Field::B64(b) => J::String(b64(b)),
            Field::Key(n) => J::String(b64(self.key(*n).verifying_key().as_bytes())),
            Field::TokenHash(n) => {
                J::String(b64(&token_hash(&self.tokens[usize::from(*n) % TOKENS])))
            }
            Field::Hex(b) => J::String(HEXLOWER.encode(b)),
            Field::KnownBlob(n) => J::String(
                Self::pick(&self.pools.lock().expect("pools").blobs, *n).unwrap_or_default(),
            ),
            Field::Num(x) => J::from(*x),
            Field::FromNow(d) => J::from(now().saturating_add_signed(i64::from(*d))),
            Field::Neg(x) => J::from(*x),
            Field::Bool(b) => J::Bool(*b),
            Field::Str(s) => J::String(s.clone()),
            Field::List(items) if depth < 3 => J::Array(
                items
                    .iter()
                    .take(8)
                    .map(|i| self.field(ctx, i, depth + 1))
                    .collect(),
            ),
            Field::List(_) | Field::Null => J::Null,
            Field::Chain(links) => J::Array(
                links
                    .iter()
                    .take(4)
                    .map(|l| J::String(b64(&self.link(share, l))))
                    .collect(),
            ),
            Field::Groups(groups) => {
                let blobs = self.pools.lock().expect("pools").blobs.clone();
                J::Array(
                    groups
                        .iter()
                        .take(4)
                        .map(|(g, members)| {
                            serde_json::json!({
                                "group": b64(g),
                                "blobs": members
                                    .iter()
                                    .take(8)
                                    .filter_map(|m| Self::pick(&blobs, *m))
                                    .collect::<Vec<_>>(),
                            })
                        })
                        .collect(),
                )
            }
        }
    }

    fn link(&self, share: &[u8; 16], l: &Link) -> Vec<u8> {
        let parent = self.key(l.parent);
        let child = self.key(l.child);
        let mut out = vec![if l.v2 { 2 } else { 1 }];
        out.extend_from_slice(share);
        out.extend_from_slice(parent.verifying_key().as_bytes());
        out.extend_from_slice(child.verifying_key().as_bytes());
        out.extend_from_slice(&token_hash(
            &self.tokens[usize::from(l.child_token) % TOKENS],
        ));
        out.extend_from_slice(&l.scope);
        if l.v2 {
            let groups = &l.groups[..l.groups.len().min(8)];
            out.extend_from_slice(&(groups.len() as u16).to_be_bytes());
            for g in groups {
                out.extend_from_slice(g);
            }
        }
        out.extend_from_slice(
            &now()
                .saturating_add_signed(i64::from(l.expires_in))
                .to_be_bytes(),
        );
        out.push(l.depth);
        let mut m = DELEGATION_LABEL.to_vec();
        m.push(0);
        m.extend_from_slice(&out);
        out.extend_from_slice(&parent.sign(&m).to_bytes());
        out
    }

    /// A fetch receipt by key `reader`, `skew` seconds off the harness's clock (the client's own
    /// code, carekey-core's [`FetchReceipt`]).
    fn receipt(&self, share: &[u8; 16], object: &str, reader: usize, skew: i16) -> Vec<u8> {
        let reader = SigningSecret::from_seed(&self.keys[reader].to_bytes());
        let time = now().saturating_add_signed(i64::from(skew));
        FetchReceipt::sign(&reader, *share, object, time, &mut OsRng).to_bytes()
    }

    /// The credentials a real client sends on `template`: a read token of the path's share with
    /// its reader's receipt for the object read, a mailbox token, or an owner write signed by
    /// the path's owner with a fresh counter.
    fn auto_auth(method: &Method, template: &str) -> Auth {
        let read = (*method == Method::GET
            && (template.ends_with("/blobs/{blob_id}") || template.ends_with("/manifest")))
            || template.ends_with("/fetch");
        if read {
            Auth::Bearer {
                token: 0,
                reader: None,
                receipt: Some(ReceiptFor::ThisRequest),
                skew: None,
            }
        } else if template.starts_with("/v1/mailboxes/") || template.starts_with("/v1/pairing/") {
            Auth::Bearer {
                token: 1,
                reader: None,
                receipt: None,
                skew: None,
            }
        } else {
            Auth::Owner {
                key: KeyChoice::Owner,
                counter: Counter::Fresh,
                owner_key_header: template.starts_with("/v1/backups/"),
            }
        }
    }

    fn run(&self, r: &Req) {
        // The route and its path.
        let t = &r.target;
        let (method, template, kind, path, params) = match t.route {
            255 => {
                let p: String = t.raw.chars().filter(|c| c.is_ascii_graphic()).collect();
                (
                    Method::GET,
                    "(raw)",
                    BodyKind::None,
                    format!("/{p}"),
                    BTreeMap::new(),
                )
            }
            n => {
                let (m, t, kind) = &self.routes[usize::from(n) % self.routes.len()];
                let mut path = String::new();
                let mut params = BTreeMap::new();
                let mut vals = r.target.params.iter();
                for seg in t.split('/').skip(1) {
                    path.push('/');
                    match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                        Some(name) => {
                            let v = vals.next().map_or(Value::Known(0), Param::value);
                            let v = self.value(name, &v);
                            path.push_str(&v);
                            params.insert(name, v);
                        }
                        None => path.push_str(seg),
                    }
                }
                (m.clone(), *t, *kind, path, params)
            }
        };
        let mut pq = path;
        // Long-polls always with wait=0: a waiting request only slows the fuzzer down.
        let long_poll = method == Method::GET
            && (template.starts_with("/v1/pairing/") || template.ends_with("/messages"));
        let mut query = Vec::new();
        if long_poll {
            query.push("wait=0".to_owned());
        }
        for (k, v) in r.query.iter().take(4) {
            let name = QUERY_NAMES[usize::from(*k) % QUERY_NAMES.len()];
            query.push(format!("{name}={}", self.value(name, &v.value())));
        }
        if !query.is_empty() {
            pq.push('?');
            pq.push_str(&query.join("&"));
        }
        let share: [u8; 16] = params
            .get("share_id")
            .and_then(|s| HEXLOWER.decode(s.as_bytes()).ok())
            .and_then(|b| b.try_into().ok())
            .unwrap_or([0; 16]);
        let auth = match &r.auth {
            Auth::Auto => Self::auto_auth(&method, template),
            a => a.clone(),
        };
        let signer = match &auth {
            Auth::Owner {
                key: KeyChoice::Key(n),
                ..
            } => usize::from(*n) % KEYS,
            _ => {
                let p = self.pools.lock().expect("pools");
                params
                    .get("share_id")
                    .or_else(|| params.get("backup_id"))
                    .and_then(|id| p.owners.get(id).copied())
                    .unwrap_or(0)
            }
        };
        let ctx = Ctx { share, signer };

        let mut body = match &r.body {
            BodyIn::Raw(b) => b.clone(),
            BodyIn::Object(fields) => {
                let mut o = serde_json::Map::new();
                for (k, f) in fields.iter().take(12) {
                    let name = NAMES[usize::from(*k) % NAMES.len()];
                    o.insert(name.to_owned(), self.field(&ctx, f, 0));
                }
                serde_json::to_vec(&o).expect("a JSON object serialises")
            }
        };

        let mut headers: Vec<(&str, String)> = Vec::new();
        match &auth {
            Auth::Auto | Auth::None => {}
            Auth::Owner {
                counter,
                owner_key_header,
                ..
            } => {
                let c = match counter {
                    Counter::Fresh => self.next_counter(),
                    Counter::Replayed => self.counter.load(Ordering::Relaxed),
                    Counter::Chosen(c) => *c,
                };
                if let Ok(msg) = owner_message(method.as_str(), &pq, ORIGIN, &body, c) {
                    headers.push(("carekey-counter", c.to_string()));
                    headers.push((
                        "carekey-signature",
                        b64(&self.keys[signer].sign(&msg).to_bytes()),
                    ));
                }
                if *owner_key_header {
                    headers.push((
                        "carekey-owner-key",
                        b64(self.keys[signer].verifying_key().as_bytes()),
                    ));
                }
            }
            Auth::Bearer {
                token,
                reader,
                receipt,
                skew,
            } => {
                // Even: a read token of seed_share's (or of the fixed ones, which an input may
                // register), with its reader unless `reader` names another; odd: a mailbox token.
                let n = usize::from(*token);
                let (bearer, own_reader) = {
                    let p = self.pools.lock().expect("pools");
                    if n % 2 == 1 && !p.bearers.is_empty() {
                        (p.bearers[n / 2 % p.bearers.len()].clone(), 0)
                    } else if n % 4 == 0 && !p.readers.is_empty() {
                        // A token of the share the path names, when the harness has one.
                        let path_share = params.get("share_id");
                        let mine: Vec<_> = p
                            .readers
                            .iter()
                            .filter(|r| Some(&r.0) == path_share)
                            .collect();
                        let (_, t, k) = if mine.is_empty() {
                            &p.readers[n / 4 % p.readers.len()]
                        } else {
                            mine[n / 4 % mine.len()]
                        };
                        (b64(t), *k)
                    } else {
                        (b64(&self.tokens[n / 4 % TOKENS]), n / 4 % KEYS)
                    }
                };
                let reader = reader.map_or(own_reader, |k| usize::from(k) % KEYS);
                headers.push(("authorization", format!("Bearer {bearer}")));
                let batch = template.ends_with("/fetch");
                let object = match receipt {
                    None => None,
                    Some(ReceiptFor::Object(o)) => Some(o.clone()),
                    Some(ReceiptFor::ThisRequest) if batch => {
                        let blobs = self.pools.lock().expect("pools").blobs.clone();
                        Some(format!("blobs:{}", blobs.concat()))
                    }
                    Some(ReceiptFor::ThisRequest) => Some(
                        params
                            .get("blob_id")
                            .cloned()
                            .unwrap_or_else(|| "manifest".to_owned()),
                    ),
                    Some(ReceiptFor::Batch(idx)) => {
                        let blobs = self.pools.lock().expect("pools").blobs.clone();
                        let ids: Vec<String> = idx
                            .iter()
                            .take(16)
                            .filter_map(|i| Self::pick(&blobs, *i))
                            .collect();
                        Some(format!("blobs:{}", ids.concat()))
                    }
                };
                if let Some(object) = object {
                    let receipt = self.receipt(&share, &object, reader, skew.unwrap_or(0));
                    if batch {
                        // relay-formats.md "Batch fetch": the receipt is the body.
                        body = receipt;
                    } else {
                        headers.push(("carekey-receipt", b64(&receipt)));
                    }
                }
            }
            Auth::Raw {
                counter,
                signature,
                bearer,
                receipt,
            } => {
                for (name, v) in [
                    ("carekey-counter", counter),
                    ("carekey-signature", signature),
                    ("carekey-receipt", receipt),
                ] {
                    if let Some(v) = v {
                        headers.push((name, v.clone()));
                    }
                }
                if let Some(t) = bearer {
                    headers.push(("authorization", format!("Bearer {t}")));
                }
            }
        }

        let mut b = Request::builder().method(method.clone()).uri(&pq);
        for (name, v) in &headers {
            b = b.header(*name, v.as_str());
        }
        let content_type = match (&r.content_type, kind) {
            (ContentType::Route, BodyKind::Json) | (ContentType::Json, _) => {
                Some("application/json")
            }
            (ContentType::Route, _) => None,
            (ContentType::Octet, _) => Some("application/octet-stream"),
            (ContentType::Other(s), _) => Some(s.as_str()),
        };
        if let Some(ct) = content_type {
            b = b.header("content-type", ct);
        }
        // Header values and URIs the http crate refuses are not requests a client could send.
        let Ok(req) = b.body(Body::from(body)) else {
            return;
        };
        let signed = matches!(auth, Auth::Owner { .. }).then_some(signer);
        let (status, _) = self.send_signed(req, signed);
        // An input that deleted a share or revoked a token gets a fresh share with live tokens,
        // so later inputs still have something to read.
        if status.is_success() && method == Method::DELETE {
            if template == "/v1/shares/{share_id}" {
                if let Some(id) = params.get("share_id") {
                    self.pools.lock().expect("pools").shares.retain(|s| s != id);
                }
                self.seed_share(signer);
            } else if template.ends_with("/tokens/{token_hash}") {
                self.seed_share(signer);
            }
        }
        self.record(&method, template, status);
        if std::env::var_os("CAREKEY_FUZZ_ERRORS").is_some() && !status.is_success() {
            eprintln!("ROUTE {method} {template} {status}");
        }
        assert_ne!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{method} {template}: {r:?}"
        );
    }
}

fuzz_target!(|reqs: Vec<Req>| {
    let h = &*H;
    for r in reqs.iter().take(8) {
        h.run(r);
    }
});
