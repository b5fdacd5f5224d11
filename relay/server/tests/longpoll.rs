//! Long-polls have limits of their own (issue 14 part 3): 600 long-polls parked by one client
//! on a relay with the default 512 concurrency permits, over real loopback sockets; another
//! client's requests still answer at once, the parking client's 601st is refused at once, the
//! relay-wide limit holds, and every slot comes back when the connections close. Both
//! backends; 127.0.0.1/8 only; no timing bound tighter than a few seconds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use carekey_relay::client::ClientId;
use carekey_relay::server;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const PARKED: usize = 600;
/// "At once": far above any honest answer time, far below a long-poll's 30 s.
const PROMPT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_parked_long_polls_leave_others_alone() {
    parked_long_polls_leave_others_alone(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_parked_long_polls_leave_others_alone() {
    if pg_url().is_none() {
        return;
    }
    parked_long_polls_leave_others_alone(Backend::Postgres).await;
}

/// The soft open-file limit of this process (`/proc/self/limits`), if known.
fn open_file_limit() -> Option<u64> {
    let l = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = l.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// A connection from `from` (any 127.0.0.0/8 address) to `to`.
async fn connect(from: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

fn request(method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: relay.test\r\nConnection: close\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut r = r.into_bytes();
    r.extend_from_slice(body);
    r
}

/// Sends `req` from `from` and reads the whole answer within [`PROMPT`]: (status, body).
async fn exchange(from: &str, to: SocketAddr, req: &[u8]) -> (u16, Vec<u8>) {
    let started = Instant::now();
    let mut s = connect(from, to).await;
    s.write_all(req).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(PROMPT, s.read_to_end(&mut out))
        .await
        .unwrap_or_else(|_| panic!("no answer within {PROMPT:?} from {from}"))
        .unwrap();
    assert!(started.elapsed() < PROMPT);
    let text = String::from_utf8_lossy(&out);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad answer: {text}"));
    let body = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or_else(Vec::new, |i| out[i + 4..].to_vec());
    (status, body)
}

async fn until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn parked_long_polls_leave_others_alone(b: Backend) {
    match open_file_limit() {
        Some(n) if n < 3 * PARKED as u64 => {
            eprintln!(
                "long-poll test skipped: open-file limit {n} < {}",
                3 * PARKED
            );
            return;
        }
        _ => {}
    }
    let mut c = test_config();
    c.long_polls_per_client = PARKED;
    c.long_polls_total = PARKED + 50;
    assert_eq!(
        c.concurrency_limit, 512,
        "the default, fewer than the parked polls"
    );
    let h = b.harness_with(c).await.unwrap();

    // In-process setup: a mailbox to park on, a share with a blob to read.
    let m = h
        .send(
            axum::http::Request::builder()
                .method("POST")
                .uri("/v1/mailboxes")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .json();
    let poll_path = format!(
        "/v1/mailboxes/{}/messages?wait=30",
        m["mailbox_id"].as_str().unwrap()
    );
    let poll_auth = (
        "Authorization",
        format!("Bearer {}", m["read_token"].as_str().unwrap()),
    );
    let poll = request("GET", &poll_path, std::slice::from_ref(&poll_auth), b"");
    let o = h.create_share().await;
    let (token, reader) = h.register_token(&o, &scope(1, &[]), now() + 3600, 0).await;
    let blob = rand::<16>();
    assert_eq!(
        h.put_blob(&o, &blob, 1, b"record").await.status.as_u16(),
        201
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let srv = tokio::spawn(server::serve(
        listener,
        h.app.clone(),
        Duration::from_secs(10),
        None,
        async {
            let _ = stopped.await;
        },
    ));

    // One client parks 600 long-polls.
    let hog = ClientId::V4([127, 0, 0, 1]);
    let mut parked = Vec::with_capacity(PARKED);
    for _ in 0..PARKED {
        let mut s = connect("127.0.0.1", addr).await;
        s.write_all(&poll).await.unwrap();
        parked.push(s);
    }
    let polls = h.state.long_polls.clone();
    until("600 parked long-polls", || {
        polls.active(&hog) == (PARKED, PARKED)
    })
    .await;

    // Its 601st is refused at once, as JSON with Retry-After.
    let (status, body) = exchange("127.0.0.1", addr, &poll).await;
    assert_eq!(status, 429, "{}", String::from_utf8_lossy(&body));
    let e: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(e["error"], "too_many_requests");

    // Another client: health, a blob read (token + receipt, logged) and a batch, all at once.
    let other = "127.0.0.2";
    for _ in 0..3 {
        assert_eq!(
            exchange(other, addr, &request("GET", "/healthz", &[], b""))
                .await
                .0,
            200
        );
        let read = request(
            "GET",
            &format!("/v1/shares/{}/blobs/{}", o.share_hex, hex(&blob)),
            &[
                ("Authorization", format!("Bearer {}", b64(&token))),
                (
                    "Carekey-Receipt",
                    receipt(&reader, &o.share_id, &hex(&blob)),
                ),
            ],
            b"",
        );
        let (status, body) = exchange(other, addr, &read).await;
        assert_eq!((status, body.as_slice()), (200, &b"record"[..]));
        let batch = request(
            "POST",
            &format!("/v1/shares/{}/fetch", o.share_hex),
            &[("Authorization", format!("Bearer {}", b64(&token)))],
            &unb64(&receipt(&reader, &o.share_id, &batch_object(&[blob]))),
        );
        assert_eq!(exchange(other, addr, &batch).await.0, 200);
    }
    // Its own long-poll is admitted (a short one: answered empty after its wait).
    let short = request(
        "GET",
        &poll_path.replace("wait=30", "wait=1"),
        std::slice::from_ref(&poll_auth),
        b"",
    );
    let (status, body) = exchange(other, addr, &short).await;
    assert_eq!(status, 200);
    let msgs: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(msgs["messages"], serde_json::json!([]));

    // The relay-wide limit: 50 more slots, then nobody gets one; other requests still go.
    let mut more = Vec::new();
    for _ in 0..50 {
        let mut s = connect(other, addr).await;
        s.write_all(&poll).await.unwrap();
        more.push(s);
    }
    until("650 parked long-polls", || {
        polls.active(&hog).0 == PARKED + 50
    })
    .await;
    let third = "127.0.0.3";
    assert_eq!(exchange(third, addr, &poll).await.0, 429);
    assert_eq!(
        exchange(third, addr, &request("GET", "/healthz", &[], b""))
            .await
            .0,
        200
    );

    // Closing the connections gives every slot back.
    drop(parked);
    drop(more);
    until("every long-poll slot back", || polls.active(&hog) == (0, 0)).await;
    assert_eq!(exchange(third, addr, &short).await.0, 200);

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(40), srv)
        .await
        .expect("server stops")
        .unwrap();
}
