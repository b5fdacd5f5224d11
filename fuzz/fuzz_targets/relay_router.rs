//! The relay's router driven in-process with structured requests (issue #4): arbitrary
//! methods, route shapes, ids, headers and bodies. Nothing may panic and no request may end in a
//! 500: the router's panic-catching layer turns a panic into a 500, so a 500 here is a bug.
#![no_main]

use std::sync::{Arc, LazyLock};

use arbitrary::Arbitrary;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use carekey_relay::config::Config;
use carekey_relay::storage::sqlite::SqliteStorage;
use carekey_relay::{AppState, app};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

const ORIGIN: &str = "http://127.0.0.1:8080";

struct Harness {
    rt: tokio::runtime::Runtime,
    state: AppState,
    _dir: tempfile::TempDir,
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
    let state = rt
        .block_on(AppState::new(storage, config))
        .expect("state");
    Harness {
        rt,
        state,
        _dir: dir,
    }
});

#[derive(Debug, Arbitrary)]
enum Route {
    Shares,
    Share(u8),
    Blob(u8, u8, Option<u32>),
    Uploads(u8, u8, Option<u32>),
    Chunk(u8, u8, u32),
    Commit(u8, u8),
    Manifest(u8, Option<(u64, u64)>),
    Epoch(u8, u32),
    Tokens(u8),
    Token(u8, u8),
    Delegations(u8),
    Audit(u8, Option<u64>),
    Notices(u8),
    Pairing,
    PairingBox(u8, Option<u8>),
    Mailboxes,
    Mailbox(u8),
    Messages(u8, Option<u64>, Option<u8>),
    Fetch(u8),
    Raw(String),
}

#[derive(Debug, Arbitrary)]
struct Req {
    method: u8,
    route: Route,
    counter: Option<String>,
    signature: Option<String>,
    bearer: Option<String>,
    receipt: Option<String>,
    json: bool,
    body: Vec<u8>,
}

fn id(n: u8) -> String {
    format!("{:032x}", u128::from(n) * 0x0101_0101_0101_0101_0101_0101_0101_0101)
}

fn path(r: &Route) -> String {
    match r {
        Route::Shares => "/v1/shares".into(),
        Route::Share(s) => format!("/v1/shares/{}", id(*s)),
        Route::Blob(s, b, e) => match e {
            Some(e) => format!("/v1/shares/{}/blobs/{}?epoch={e}", id(*s), id(*b)),
            None => format!("/v1/shares/{}/blobs/{}", id(*s), id(*b)),
        },
        Route::Uploads(s, b, e) => format!(
            "/v1/shares/{}/uploads?blob={}&epoch={}",
            id(*s),
            id(*b),
            e.unwrap_or(1)
        ),
        Route::Chunk(s, u, n) => format!("/v1/shares/{}/uploads/{}/chunks/{n}", id(*s), id(*u)),
        Route::Commit(s, u) => format!("/v1/shares/{}/uploads/{}/commit", id(*s), id(*u)),
        Route::Manifest(s, q) => match q {
            Some((v, p)) => format!("/v1/shares/{}/manifest?version={v}&prev={p}", id(*s)),
            None => format!("/v1/shares/{}/manifest", id(*s)),
        },
        Route::Epoch(s, e) => format!("/v1/shares/{}/epochs/{e}", id(*s)),
        Route::Tokens(s) => format!("/v1/shares/{}/tokens", id(*s)),
        Route::Token(s, t) => format!("/v1/shares/{}/tokens/{}{}", id(*s), id(*t), id(*t)),
        Route::Delegations(s) => format!("/v1/shares/{}/delegations", id(*s)),
        Route::Audit(s, f) => format!("/v1/shares/{}/audit?from={}", id(*s), f.unwrap_or(1)),
        Route::Notices(s) => format!("/v1/shares/{}/notices?after=0", id(*s)),
        Route::Pairing => "/v1/pairing".into(),
        // Long-polls always with wait=0: a waiting request only slows the fuzzer down.
        Route::PairingBox(m, close) => match close {
            Some(c) => format!("/v1/pairing/{}?wait=0&close={}", id(*m), c % 2 == 0),
            None => format!("/v1/pairing/{}", id(*m)),
        },
        Route::Mailboxes => "/v1/mailboxes".into(),
        Route::Mailbox(m) => format!("/v1/mailboxes/{}", id(*m)),
        Route::Messages(m, a, t) => format!(
            "/v1/mailboxes/{}/messages?after={}&wait=0&through={}",
            id(*m),
            a.unwrap_or(0),
            t.map_or(0, u64::from)
        ),
        Route::Fetch(s) => format!("/v1/shares/{}/fetch", id(*s)),
        Route::Raw(s) => format!("/{}", s.chars().filter(|c| c.is_ascii_graphic()).collect::<String>()),
    }
}

fuzz_target!(|reqs: Vec<Req>| {
    let h = &*H;
    for r in reqs.iter().take(8) {
        let method = ["GET", "POST", "PUT", "DELETE", "PATCH"][usize::from(r.method % 5)];
        let mut b = Request::builder().method(method).uri(path(&r.route));
        for (name, v) in [
            ("carekey-counter", &r.counter),
            ("carekey-signature", &r.signature),
            ("carekey-receipt", &r.receipt),
        ] {
            if let Some(v) = v {
                b = b.header(name, v.as_str());
            }
        }
        if let Some(t) = &r.bearer {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        if r.json {
            b = b.header("content-type", "application/json");
        }
        // Header values the http crate refuses are not requests a client could send.
        let Ok(req) = b.body(Body::from(r.body.clone())) else {
            continue;
        };
        let status = h
            .rt
            .block_on(app(h.state.clone()).oneshot(req))
            .map(|resp| resp.status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{r:?}");
    }
});
