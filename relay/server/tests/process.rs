//! Tests that run the real `carekey-relay` binary: SIGKILL durability, ciphertext-only scan of
//! database files and logs, slow-header cut-off, graceful shutdown, and two processes on one
//! PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use common::process::{ProcOwner, Relay, blob_bytes, free_port, http, iterations, owner_headers};
use common::*;
use sha2::{Digest, Sha256};

/// (share index, blob id) -> (length, acknowledged with a 2xx).
type Uploads = HashMap<(usize, [u8; 16]), (usize, bool)>;

/// SIGKILL during concurrent single-PUT and chunked uploads; after restart every upload that
/// got a 2xx is intact and no other upload is partially visible.
#[test]
fn sigkill_during_uploads_loses_nothing_acknowledged() {
    let iters = iterations();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("relay.log");
    let port = free_port();
    let data_s = data.to_str().unwrap().to_owned();
    let relay = Relay::start(port, &["--data", &data_s], &log);
    let addr = relay.addr;
    let owners: Vec<ProcOwner> = (0..4).map(|_| ProcOwner::create(addr)).collect();
    let owners: Vec<Arc<Mutex<ProcOwner>>> = owners
        .into_iter()
        .map(|o| Arc::new(Mutex::new(o)))
        .collect();
    let mut relay = Some(relay);
    let (mut total_acked, mut total_unacked) = (0usize, 0usize);
    for iter in 0..iters {
        // (share index, blob id, len) -> acknowledged?
        let results: Arc<Mutex<Uploads>> = Arc::default();
        let stop_at = Instant::now() + Duration::from_millis(150 + (iter as u64 * 37) % 250);
        let mut threads = vec![];
        for (i, o) in owners.iter().enumerate() {
            let o = Arc::clone(o);
            let results = Arc::clone(&results);
            threads.push(std::thread::spawn(move || {
                let mut o = o.lock().unwrap();
                let mut n = 0usize;
                loop {
                    let id = rand::<16>();
                    let len = 1 + (u16::from_be_bytes([id[0], id[1]]) as usize * 7) % 300_000;
                    results.lock().unwrap().insert((i, id), (len, false));
                    let bytes = blob_bytes(&id, len);
                    let ok = if n % 3 == 2 {
                        // Chunked: open, 3 chunks, commit.
                        let open = format!("/v1/shares/{}/uploads?blob={}&epoch=1", o.share_hex, hex(&id));
                        match o.send(addr, "POST", &open, b"") {
                            Ok((201, b)) => {
                                let up: serde_json::Value = serde_json::from_slice(&b).unwrap();
                                let up = up["upload_id"].as_str().unwrap().to_owned();
                                let parts: Vec<&[u8]> = bytes.chunks(len.div_ceil(3)).collect();
                                let mut good = true;
                                for (k, p) in parts.iter().enumerate() {
                                    let pq = format!("/v1/shares/{}/uploads/{up}/chunks/{k}", o.share_hex);
                                    if !matches!(o.send(addr, "PUT", &pq, p), Ok((204, _))) {
                                        good = false;
                                        break;
                                    }
                                }
                                good && {
                                    let body = serde_json::to_vec(&serde_json::json!({
                                        "chunks": parts.len(), "sha256": b64(&Sha256::digest(&bytes)),
                                    }))
                                    .unwrap();
                                    let pq = format!("/v1/shares/{}/uploads/{up}/commit", o.share_hex);
                                    matches!(o.send(addr, "POST", &pq, &body), Ok((201, _)))
                                }
                            }
                            _ => false,
                        }
                    } else {
                        let pq = format!("/v1/shares/{}/blobs/{}?epoch=1", o.share_hex, hex(&id));
                        matches!(o.send(addr, "PUT", &pq, &bytes), Ok((201, _)))
                    };
                    if ok {
                        results.lock().unwrap().insert((i, id), (len, true));
                    } else {
                        return;
                    }
                    n += 1;
                }
            }));
        }
        while Instant::now() < stop_at {
            std::thread::sleep(Duration::from_millis(10));
        }
        relay.take().unwrap().kill();
        for t in threads {
            t.join().unwrap();
        }
        let r = Relay::start(port, &["--data", &data_s], &log);
        let results = results.lock().unwrap();
        for ((i, id), (len, acked)) in results.iter() {
            let o = owners[*i].lock().unwrap();
            let (st, body) = o.fetch(addr, &hex(id));
            if *acked {
                total_acked += 1;
                assert_eq!(st, 200, "iteration {iter}: acknowledged upload lost");
                assert_eq!(
                    body,
                    blob_bytes(id, *len),
                    "iteration {iter}: acknowledged upload corrupted"
                );
            } else {
                total_unacked += 1;
                assert!(
                    st == 404 || (st == 200 && body == blob_bytes(id, *len)),
                    "iteration {iter}: partial blob visible (status {st}, {} bytes of {len})",
                    body.len()
                );
            }
        }
        relay = Some(r);
        if (iter + 1) % 50 == 0 {
            let _ = writeln!(
                std::io::stderr(),
                "durability: {} of {iters} iterations done",
                iter + 1
            );
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "durability: {iters} SIGKILL iterations, {total_acked} acknowledged uploads intact, {total_unacked} interrupted uploads never partially visible"
    );
    assert!(total_acked > 0);
}

/// Reads a share's whole audit chain through the owner API, checks every link and hash, and
/// returns the receipts (base64url) of its fetch entries.
fn audit_fetch_receipts(o: &mut ProcOwner, addr: SocketAddr) -> Vec<String> {
    let mut prev = vec![0u8; 32];
    let mut next = 1u64;
    let mut receipts = Vec::new();
    loop {
        let pq = format!("/v1/shares/{}/audit?from={next}", o.share_hex);
        let (st, body) = o.send(addr, "GET", &pq, b"").unwrap();
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
        let log: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let entries = log["entries"].as_array().unwrap();
        if entries.is_empty() {
            assert_eq!(log["head"]["seq"].as_u64().unwrap(), next - 1);
            assert_eq!(unb64(log["head"]["entry_hash"].as_str().unwrap()), prev);
            return receipts;
        }
        for e in entries {
            let seq = e["seq"].as_u64().unwrap();
            assert_eq!(seq, next, "gap in the audit chain");
            assert_eq!(unb64(e["prev_hash"].as_str().unwrap()), prev);
            let kind = e["kind"].as_u64().unwrap() as u8;
            let b = unb64(e["body"].as_str().unwrap());
            let h = entry_hash(
                &o.share_id,
                seq,
                &prev,
                e["time"].as_u64().unwrap(),
                kind,
                &b,
            );
            assert_eq!(
                unb64(e["entry_hash"].as_str().unwrap()),
                h,
                "entry {seq} hash"
            );
            if kind == 1 {
                receipts.push(b64(&b));
            }
            prev = h;
            next += 1;
        }
    }
}

/// SIGKILL during concurrent fetches (group commit of their audit entries): after restart every
/// fetch that was answered 200 is in its share's audit chain exactly once, and the chain is
/// intact.
#[test]
fn sigkill_during_fetches_every_answered_fetch_is_logged() {
    let iters = iterations();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("relay.log");
    let port = free_port();
    let data_s = data.to_str().unwrap().to_owned();
    let relay = Relay::start(port, &["--data", &data_s], &log);
    let addr = relay.addr;
    let mut owners: Vec<ProcOwner> = (0..2).map(|_| ProcOwner::create(addr)).collect();
    let blobs: Vec<String> = owners
        .iter_mut()
        .map(|o| {
            let id = hex(&rand::<16>());
            let pq = format!("/v1/shares/{}/blobs/{id}?epoch=1", o.share_hex);
            assert_eq!(o.send(addr, "PUT", &pq, b"fetched bytes").unwrap().0, 201);
            id
        })
        .collect();
    let mut relay = Some(relay);
    let mut acked: Vec<Vec<String>> = vec![Vec::new(), Vec::new()];
    for iter in 0..iters {
        let stop_at = Instant::now() + Duration::from_millis(100 + (iter as u64 * 41) % 250);
        let got: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
        let mut threads = vec![];
        for t in 0..8usize {
            let i = t % 2;
            let (share_hex, share_id) = (owners[i].share_hex.clone(), owners[i].share_id);
            let (token, reader) = (owners[i].token, owners[i].reader.clone());
            let blob = blobs[i].clone();
            let got = Arc::clone(&got);
            threads.push(std::thread::spawn(move || {
                loop {
                    let rc = receipt(&reader, &share_id, &blob);
                    let r = http(
                        addr,
                        "GET",
                        &format!("/v1/shares/{share_hex}/blobs/{blob}"),
                        &[
                            ("Authorization", format!("Bearer {}", b64(&token))),
                            ("Carekey-Receipt", rc.clone()),
                        ],
                        b"",
                    );
                    match r {
                        Ok((200, body)) => {
                            assert_eq!(body, b"fetched bytes");
                            got.lock().unwrap().push((i, rc));
                        }
                        Ok((st, body)) => {
                            panic!("fetch answered {st}: {}", String::from_utf8_lossy(&body))
                        }
                        Err(_) => return,
                    }
                }
            }));
        }
        while Instant::now() < stop_at {
            std::thread::sleep(Duration::from_millis(10));
        }
        relay.take().unwrap().kill();
        for t in threads {
            t.join().unwrap();
        }
        for (i, rc) in got.lock().unwrap().drain(..) {
            acked[i].push(rc);
        }
        let r = Relay::start(port, &["--data", &data_s], &log);
        for (i, o) in owners.iter_mut().enumerate() {
            let logged = audit_fetch_receipts(o, addr);
            let set: std::collections::HashSet<&String> = logged.iter().collect();
            assert_eq!(set.len(), logged.len(), "a receipt was logged twice");
            for rc in &acked[i] {
                assert!(
                    set.contains(rc),
                    "iteration {iter}: an answered fetch is missing from the audit chain"
                );
            }
        }
        relay = Some(r);
    }
    let total: usize = acked.iter().map(Vec::len).sum();
    let _ = writeln!(
        std::io::stderr(),
        "fetch durability: {iters} SIGKILL iterations, {total} answered fetches all in the audit chain"
    );
    assert!(total > 0);
}

/// Blobs sealed with canaries, mailbox messages and tokens never appear in clear in the
/// database files or the (debug-level) logs; ids and tokens never appear in logs.
#[test]
fn ciphertext_only_files_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("relay.log");
    let relay = Relay::start(free_port(), &["--data", data.to_str().unwrap()], &log);
    let addr = relay.addr;
    let mut o = ProcOwner::create(addr);
    let canary = format!("CANARY-{}", hex(&rand::<8>()));
    let key = ChaCha20Poly1305::new(Key::from_slice(&rand::<32>()));
    let mut blob_ids = vec![];
    for i in 0..5u8 {
        let plain =
            format!("{{\"resourceType\":\"Patient\",\"name\":\"{canary}\",\"n\":{i}}}").repeat(20);
        let sealed = key
            .encrypt(Nonce::from_slice(&[i; 12]), plain.as_bytes())
            .unwrap();
        assert!(!sealed.windows(canary.len()).any(|w| w == canary.as_bytes()));
        let id = rand::<16>();
        let pq = format!("/v1/shares/{}/blobs/{}?epoch=1", o.share_hex, hex(&id));
        assert_eq!(o.send(addr, "PUT", &pq, &sealed).unwrap().0, 201);
        assert_eq!(o.fetch(addr, &hex(&id)).0, 200);
        blob_ids.push(id);
    }
    let sealed_manifest = key
        .encrypt(Nonce::from_slice(&[9; 12]), canary.as_bytes())
        .unwrap();
    let pq = format!("/v1/shares/{}/manifest?version=1&prev=0", o.share_hex);
    assert_eq!(o.send(addr, "PUT", &pq, &sealed_manifest).unwrap().0, 200);
    // Mailboxes.
    let (st, b) = http(addr, "POST", "/v1/mailboxes", &[], b"").unwrap();
    assert_eq!(st, 201);
    let mb: serde_json::Value = serde_json::from_slice(&b).unwrap();
    let mid = mb["mailbox_id"].as_str().unwrap().to_owned();
    let sealed_msg = key
        .encrypt(Nonce::from_slice(&[7; 12]), canary.as_bytes())
        .unwrap();
    let (st, _) = http(
        addr,
        "POST",
        &format!("/v1/mailboxes/{mid}/messages"),
        &[(
            "Authorization",
            format!("Bearer {}", mb["write_token"].as_str().unwrap()),
        )],
        &sealed_msg,
    )
    .unwrap();
    assert_eq!(st, 201);
    assert!(relay.terminate(), "graceful shutdown failed");

    let mut needles: Vec<(String, Vec<u8>)> = vec![
        ("canary".into(), canary.clone().into_bytes()),
        ("token raw".into(), o.token.to_vec()),
        ("token b64".into(), b64(&o.token).into_bytes()),
        (
            "mailbox read token".into(),
            mb["read_token"].as_str().unwrap().as_bytes().to_vec(),
        ),
        (
            "mailbox write token".into(),
            mb["write_token"].as_str().unwrap().as_bytes().to_vec(),
        ),
        (
            "mailbox read token raw".into(),
            unb64(mb["read_token"].as_str().unwrap()),
        ),
    ];
    let mut files = 0;
    for e in std::fs::read_dir(&data).unwrap() {
        let p = e.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        files += 1;
        for (what, n) in &needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n.as_slice()),
                "{what} found in clear in {}",
                p.display()
            );
        }
    }
    assert!(files >= 1);
    // Logs: additionally no ids at all.
    needles.push(("share id".into(), o.share_hex.clone().into_bytes()));
    needles.push(("mailbox id".into(), mid.into_bytes()));
    for id in &blob_ids {
        needles.push(("blob id".into(), hex(id).into_bytes()));
    }
    let logs = std::fs::read(&log).unwrap();
    assert!(logs.windows(7).any(|w| w == b"request"), "logs are empty");
    for (what, n) in &needles {
        assert!(
            !logs.windows(n.len()).any(|w| w == n.as_slice()),
            "{what} found in the logs"
        );
    }
}

/// A client that never finishes its headers is cut off by the header timeout.
#[test]
fn slow_header_client_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("relay.log");
    let data = dir.path().join("data");
    let relay = Relay::start(
        free_port(),
        &[
            "--data",
            data.to_str().unwrap(),
            "--header-timeout-secs",
            "1",
        ],
        &log,
    );
    let mut s = std::net::TcpStream::connect(relay.addr).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "connection kept open for {took:?}"
    );
    // Answered with nothing useful (connection closed, or a 408).
    assert!(
        buf.is_empty() || String::from_utf8_lossy(&buf).contains("408"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
}

/// SIGTERM while an upload is in flight: the upload completes and is durable.
#[test]
fn graceful_shutdown_finishes_in_flight_upload() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("relay.log");
    let data = dir.path().join("data");
    let port = free_port();
    let relay = Relay::start(port, &["--data", data.to_str().unwrap()], &log);
    let addr = relay.addr;
    let mut o = ProcOwner::create(addr);
    let id = rand::<16>();
    let bytes = blob_bytes(&id, 2_000_000);
    let pq = format!("/v1/shares/{}/blobs/{}?epoch=1", o.share_hex, hex(&id));
    o.counter += 1;
    let headers = owner_headers(&o.key, "PUT", &pq, &bytes, o.counter);
    // Send headers and half the body, then SIGTERM, then the rest.
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let mut req = format!(
        "PUT {pq} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        bytes.len()
    );
    for (k, v) in &headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(&bytes[..1_000_000]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    relay.send_term();
    std::thread::sleep(Duration::from_millis(200));
    s.write_all(&bytes[1_000_000..]).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 201"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let mut relay = relay;
    let status = relay.child.wait().unwrap();
    assert!(status.success());
    drop(relay);
    let relay = Relay::start(port, &["--data", data.to_str().unwrap()], &log);
    let (st, body) = o.fetch(relay.addr, &hex(&id));
    assert_eq!(st, 200);
    assert_eq!(body, bytes);
}

/// Two relay processes on one PostgreSQL behave as one relay: write via A, read and revoke via
/// B, the revoke enforced by A at once.
#[test]
fn two_processes_on_one_postgres() {
    let Some(url) = pg_url() else { return };
    let schema = fresh_schema();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(carekey_relay::storage::postgres::PgStorage::open(
        &url,
        Some(&schema),
    ))
    .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    let scoped = format!("{url}{sep}options=-csearch_path%3D{schema}");
    let dir = tempfile::tempdir().unwrap();
    let a = Relay::start(
        free_port(),
        &["--database-url", &scoped],
        &dir.path().join("a.log"),
    );
    let b = Relay::start(
        free_port(),
        &["--database-url", &scoped],
        &dir.path().join("b.log"),
    );
    let mut o = ProcOwner::create(a.addr);
    let id = rand::<16>();
    let pq = format!("/v1/shares/{}/blobs/{}?epoch=1", o.share_hex, hex(&id));
    assert_eq!(o.send(a.addr, "PUT", &pq, b"written via A").unwrap().0, 201);
    let (st, body) = o.fetch(b.addr, &hex(&id));
    assert_eq!((st, body.as_slice()), (200, b"written via A".as_slice()));
    // A replay through B of the request A accepted is rejected (one counter).
    let replay = owner_headers(&o.key, "PUT", &pq, b"written via A", o.counter);
    assert_eq!(
        http(b.addr, "PUT", &pq, &replay, b"written via A")
            .unwrap()
            .0,
        409
    );
    let th = hex(&token_hash(&o.token));
    let rp = format!("/v1/shares/{}/tokens/{th}", o.share_hex);
    assert_eq!(o.send(b.addr, "DELETE", &rp, b"").unwrap().0, 200);
    assert_eq!(o.fetch(a.addr, &hex(&id)).0, 410);
    assert_eq!(o.fetch(b.addr, &hex(&id)).0, 410);
    let (_, ka) = http(a.addr, "GET", "/.well-known/carekey-relay", &[], b"").unwrap();
    let (_, kb) = http(b.addr, "GET", "/.well-known/carekey-relay", &[], b"").unwrap();
    assert_eq!(ka, kb);
}

/// `--tls-cert/--tls-key`: the relay serves HTTPS directly (self-signed cert made by openssl;
/// skipped with a message when openssl or curl is missing).
#[test]
fn serves_tls_with_cert_and_key() {
    let have = |b: &str| {
        std::process::Command::new(b)
            .arg("--version")
            .output()
            .is_ok()
    };
    if !have("openssl") || !have("curl") {
        let _ = writeln!(
            std::io::stderr(),
            "TLS test skipped: openssl or curl not installed"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, keyf) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&keyf)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let port = free_port();
    let log = dir.path().join("relay.log");
    let logf = std::fs::File::create(&log).unwrap();
    let mut child = std::process::Command::new(common::process::relay_bin())
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(dir.path().join("data"))
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&keyf)
        .stderr(logf)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut body = String::new();
    while Instant::now() < deadline {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(&cert)
            .arg(format!("https://127.0.0.1:{port}/healthz"))
            .output()
            .unwrap();
        if out.status.success() {
            body = String::from_utf8_lossy(&out.stdout).into_owned();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        body.contains("\"ok\""),
        "no HTTPS answer; log: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}
