//! Streamed downloads (docs/relay.md "Streaming"): blobs, batches, backups, manifests and SHL
//! files larger than one piece come out byte for byte on both backends, a blob deleted or a
//! manifest swapped while it streams is cut (the relay did not hold the rest of it in memory),
//! and a client that stops reading is disconnected by the send timeout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use carekey_relay::Config;
use carekey_relay::server::{Timeouts, serve_with};
use common::*;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config() -> Config {
    let mut c = test_config();
    c.max_body_bytes = 4 << 20;
    c.max_blob_bytes = 64 << 20;
    c.max_backup_bytes = 8 << 20;
    c.max_batch_bytes = 16 << 20;
    c
}

/// Bytes that differ at every offset (a piece read at a wrong offset shows).
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[i % 4] ^ seed)
        .collect()
}

/// Stores `data` as blob `blob` through a chunked upload in `chunk`-byte chunks.
async fn upload(h: &Harness, o: &Owner, blob: &[u8; 16], data: &[u8], chunk: usize) {
    let pq = format!(
        "/v1/shares/{}/uploads?blob={}&epoch=1",
        o.share_hex,
        hex(blob)
    );
    let r = h.owner(o, "POST", &pq, vec![]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let upload = r.json()["upload_id"].as_str().unwrap().to_owned();
    let chunks: Vec<&[u8]> = data.chunks(chunk).collect();
    for (n, c) in chunks.iter().enumerate() {
        let pq = format!("/v1/shares/{}/uploads/{upload}/chunks/{n}", o.share_hex);
        let r = h.owner(o, "PUT", &pq, c.to_vec()).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    }
    let body = serde_json::to_vec(&serde_json::json!({
        "chunks": chunks.len(),
        "sha256": b64(&Sha256::digest(data)),
    }))
    .unwrap();
    let pq = format!("/v1/shares/{}/uploads/{upload}/commit", o.share_hex);
    let r = h.owner(o, "POST", &pq, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
}

async fn large_bodies_byte_for_byte(h: Harness) {
    let o = h.create_share().await;
    let (token, reader) = h.register_token(&o, &scope(1, &[]), now() + 3600, 0).await;
    // One request (a cell larger than a piece), chunked (pieces across chunk boundaries,
    // a short last chunk), and a small one.
    let (whole, chunked, small) = (rand::<16>(), rand::<16>(), rand::<16>());
    let whole_data = pattern(3 << 20, 1);
    let chunked_data = pattern((5 << 20) + 12_345, 2);
    let small_data = pattern(4096, 3);
    let r = h.put_blob(&o, &whole, 1, &whole_data).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    upload(&h, &o, &chunked, &chunked_data, (1 << 20) + 1).await;
    let r = h.put_blob(&o, &small, 1, &small_data).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    for (id, data) in [
        (&whole, &whole_data),
        (&chunked, &chunked_data),
        (&small, &small_data),
    ] {
        let r = h.read(&o, &hex(id), &token, &reader).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.headers["content-type"], "application/octet-stream");
        assert_eq!(r.headers["content-length"], data.len().to_string());
        assert!(r.body == *data, "blob bytes differ");
    }
    // A batch streams entry by entry: `u32 length || bytes` each, in the receipt's order.
    let ids = [small, chunked, whole];
    let r = h.batch(&o, &batch_object(&ids), &token, &reader).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let mut want = Vec::new();
    for d in [&small_data, &chunked_data, &whole_data] {
        want.extend_from_slice(&(d.len() as u32).to_be_bytes());
        want.extend_from_slice(d);
    }
    assert_eq!(r.headers["content-length"], want.len().to_string());
    assert!(r.body == want, "batch bytes differ");
    // A backup larger than a piece.
    let k = key();
    let id = hex(&rand::<16>());
    let backup = pattern((2 << 20) + 7, 4);
    let mut req = Harness::owner_request(
        &k,
        "PUT",
        &format!("/v1/backups/{id}?version=1"),
        backup.clone(),
        1,
    );
    req.headers_mut().insert(
        "carekey-owner-key",
        b64(k.verifying_key().as_bytes()).parse().unwrap(),
    );
    let r = h.send(req).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = h
        .send(Harness::owner_request(
            &k,
            "GET",
            &format!("/v1/backups/{id}"),
            vec![],
            2,
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.headers["carekey-backup-version"], "1");
    assert_eq!(r.headers["content-length"], backup.len().to_string());
    assert!(r.body == backup, "backup bytes differ");
    // A manifest larger than a piece, then a small one swapped in (read whole while planning).
    for (version, manifest) in [(1u64, pattern((3 << 20) + 5, 7)), (2, pattern(1000, 8))] {
        put_manifest(&h, &o, version, &manifest).await;
        let r = h.read(&o, "manifest", &token, &reader).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.headers["content-type"], "application/octet-stream");
        assert_eq!(r.headers["carekey-manifest-version"], version.to_string());
        assert_eq!(r.headers["content-length"], manifest.len().to_string());
        assert!(r.body == manifest, "manifest bytes differ");
    }
}

/// Swaps in `manifest` as version `version` (from `version - 1`).
async fn put_manifest(h: &Harness, o: &Owner, version: u64, manifest: &[u8]) {
    let pq = format!(
        "/v1/shares/{}/manifest?version={version}&prev={}",
        o.share_hex,
        version - 1
    );
    let r = h.owner(o, "PUT", &pq, manifest.to_vec()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_large_bodies_byte_for_byte() {
    let h = Backend::Sqlite.harness_with(config()).await.unwrap();
    large_bodies_byte_for_byte(h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_large_bodies_byte_for_byte() {
    let Some(h) = Backend::Postgres.harness_with(config()).await else {
        return;
    };
    large_bodies_byte_for_byte(h).await;
}

/// Serves `h` on 127.0.0.1 with `send` as the send timeout; returns the address.
async fn listen(h: &Harness, send: Duration) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let timeouts = Timeouts {
        header: Duration::from_secs(10),
        send,
    };
    tokio::spawn(serve_with(
        listener,
        h.app.clone(),
        timeouts,
        None,
        std::future::pending(),
    ));
    addr
}

/// Sends a GET of `object` (a blob id in hex, or "manifest") over a socket and reads the
/// answer's head; returns the stream, the announced length and the body bytes read with the
/// head.
async fn get_over_socket(
    addr: std::net::SocketAddr,
    o: &Owner,
    object: &str,
    token: &[u8; 32],
    reader: &ed25519_dalek::SigningKey,
) -> (tokio::net::TcpStream, usize, usize) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let path = if object == "manifest" {
        format!("/v1/shares/{}/manifest", o.share_hex)
    } else {
        format!("/v1/shares/{}/blobs/{object}", o.share_hex)
    };
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: relay.test\r\nConnection: close\r\n\
         Authorization: Bearer {}\r\nCarekey-Receipt: {}\r\n\r\n",
        b64(token),
        receipt(reader, &o.share_id, object),
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the head");
        head.extend_from_slice(&buf[..n]);
        if let Some(p) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    let len = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("content-length")
        .trim()
        .parse()
        .unwrap();
    (s, len, head.len() - end)
}

/// Reads until the server closes (or 10 s of silence); returns the bytes read.
async fn drain(s: &mut tokio::net::TcpStream) -> usize {
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got += n,
            Err(_) => panic!("no close and no bytes for 10 s"),
        }
    }
}

const BIG: usize = 32 << 20;

/// A blob deleted while a slow client reads it is cut: the relay streams from storage and
/// had not read (held) the rest, so the client gets fewer bytes than announced, not the blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_while_streaming_is_cut() {
    let h = Backend::Sqlite.harness_with(config()).await.unwrap();
    let o = h.create_share().await;
    let (token, reader) = h.register_token(&o, &scope(1, &[]), now() + 3600, 0).await;
    let blob = rand::<16>();
    upload(&h, &o, &blob, &pattern(BIG, 5), 4 << 20).await;
    let addr = listen(&h, Duration::from_secs(60)).await;
    let (mut s, len, first) = get_over_socket(addr, &o, &hex(&blob), &token, &reader).await;
    assert_eq!(len, BIG);
    // The socket buffers fill; the relay holds one piece.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = h
        .owner(
            &o,
            "DELETE",
            &format!("/v1/shares/{}/epochs/1", o.share_hex),
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let got = first + drain(&mut s).await;
    assert!(
        got < BIG / 2,
        "{got} of {BIG} bytes arrived after the blob was deleted: the body was not streamed"
    );
}

/// A manifest swapped while a slow client reads it is cut the same way: the pieces are read
/// at the version the download started with, so the reader never gets a mix of two manifests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_swapped_while_streaming_is_cut() {
    let mut c = config();
    c.max_body_bytes = BIG + 1024;
    let h = Backend::Sqlite.harness_with(c).await.unwrap();
    let o = h.create_share().await;
    let (token, reader) = h.register_token(&o, &scope(1, &[]), now() + 3600, 0).await;
    put_manifest(&h, &o, 1, &pattern(BIG, 9)).await;
    let addr = listen(&h, Duration::from_secs(60)).await;
    let (mut s, len, first) = get_over_socket(addr, &o, "manifest", &token, &reader).await;
    assert_eq!(len, BIG);
    tokio::time::sleep(Duration::from_millis(500)).await;
    put_manifest(&h, &o, 2, &pattern(BIG, 10)).await;
    let got = first + drain(&mut s).await;
    assert!(
        got < BIG / 2,
        "{got} of {BIG} bytes arrived after the manifest was swapped: it was not streamed"
    );
    // The next read gets the new manifest whole.
    let (mut s, len, first) = get_over_socket(addr, &o, "manifest", &token, &reader).await;
    assert_eq!((len, first + drain(&mut s).await), (BIG, BIG));
}

/// A client that stops reading is disconnected after the send timeout (here 1 s), and one
/// that reads steadily gets the whole blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_reader_is_disconnected() {
    let h = Backend::Sqlite.harness_with(config()).await.unwrap();
    let o = h.create_share().await;
    let (token, reader) = h.register_token(&o, &scope(1, &[]), now() + 3600, 0).await;
    let blob = rand::<16>();
    upload(&h, &o, &blob, &pattern(BIG, 6), 4 << 20).await;
    let addr = listen(&h, Duration::from_secs(1)).await;
    let (mut s, len, first) = get_over_socket(addr, &o, &hex(&blob), &token, &reader).await;
    assert_eq!(len, BIG);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let got = first + drain(&mut s).await;
    assert!(
        got < BIG,
        "a reader stalled past the send timeout got the whole blob"
    );
    // A steady reader is never cut.
    let (mut s, _, first) = get_over_socket(addr, &o, &hex(&blob), &token, &reader).await;
    assert_eq!(first + drain(&mut s).await, BIG);
    // The relay still answers.
    let r = h.get("/healthz").await;
    assert_eq!(r.status, StatusCode::OK);
}
