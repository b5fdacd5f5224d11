//! Load helper for `scripts/relay-load.sh` (a test client, so it may hold keys):
//!   relay_load seed ORIGIN ADDR FILE     -> writes `BLOB_PATH=… TOKEN=… RECEIPT=… BATCH_…` to FILE
//!                                           for wrk, and a 64-blob batch receipt to FILE.batch
//!                                           (a file, not stdout: the token stays out of logs)
//!   relay_load put ORIGIN ADDR CONNS SECS -> 64 KiB PUT throughput, prints `PUTS_PER_SEC=…`
//!   relay_load slow ORIGIN ADDR CLIENTS SECS MIB
//!                                        -> stores one MIB MiB blob (chunked upload), then
//!                                           CLIENTS connections GET it at once and read it
//!                                           slowly (1 MiB/s each) for SECS seconds; prints
//!                                           `SLOW_CLIENTS_OK=…` and `SLOW_READ_MIB=…`
//! Talks HTTP/1.1 over std TCP to 127.0.0.1 only.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use data_encoding::{BASE64URL_NOPAD as B64, HEXLOWER};
use ed25519_dalek::{Signer, SigningKey};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

fn rand<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    OsRng.fill_bytes(&mut b);
    b
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn str16(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = String::from_utf8_lossy(&out[..split])
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    (status, out[split + 4..].to_vec())
}

struct Owner {
    key: SigningKey,
    share_hex: String,
    share_id: Vec<u8>,
    counter: u64,
    origin: String,
    addr: SocketAddr,
}

impl Owner {
    fn send(&mut self, method: &str, pq: &str, body: &[u8]) -> (u16, Vec<u8>) {
        self.counter += 1;
        let mut m = b"carekey/v1/owner-write\0".to_vec();
        str16(&mut m, method);
        str16(&mut m, pq);
        str16(&mut m, &self.origin);
        m.extend_from_slice(&Sha256::digest(body));
        m.extend_from_slice(&self.counter.to_be_bytes());
        let sig = B64.encode(&self.key.sign(&m).to_bytes());
        http(
            self.addr,
            method,
            pq,
            &[
                ("Carekey-Counter", self.counter.to_string()),
                ("Carekey-Signature", sig),
            ],
            body,
        )
    }

    fn create(origin: &str, addr: SocketAddr) -> Owner {
        let mut o = Owner {
            key: SigningKey::generate(&mut OsRng),
            share_hex: String::new(),
            share_id: vec![],
            counter: 0,
            origin: origin.to_owned(),
            addr,
        };
        let body = format!(
            r#"{{"owner_key":"{}","expires_at":{}}}"#,
            B64.encode(o.key.verifying_key().as_bytes()),
            now() + 86_400
        );
        let (st, b) = o.send("POST", "/v1/shares", body.as_bytes());
        assert_eq!(st, 201, "{}", String::from_utf8_lossy(&b));
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        o.share_hex = v["share_id"].as_str().unwrap().to_owned();
        o.share_id = HEXLOWER.decode(o.share_hex.as_bytes()).unwrap();
        o
    }
}

/// Blobs named by the seeded batch fetch receipt.
const BATCH: usize = 64;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (cmd, origin, addr) = (&args[1], &args[2], args[3].parse::<SocketAddr>().unwrap());
    assert!(addr.ip().is_loopback(), "loopback only");
    match cmd.as_str() {
        "seed" => {
            let mut o = Owner::create(origin, addr);
            let token = rand::<32>();
            let reader = SigningKey::generate(&mut OsRng);
            let mut th = Sha256::new();
            th.update(b"carekey/v1/read-token\0");
            th.update(token);
            let body = format!(
                r#"{{"token_hash":"{}","reader_key":"{}","scope":"{}","expires_at":{},"depth":0}}"#,
                B64.encode(&th.finalize()),
                B64.encode(reader.verifying_key().as_bytes()),
                B64.encode(&[0, 0, 0, 1, 0, 0]),
                now() + 86_400
            );
            let (st, _) = o.send(
                "POST",
                &format!("/v1/shares/{}/tokens", o.share_hex),
                body.as_bytes(),
            );
            assert_eq!(st, 201);
            let blob = HEXLOWER.encode(&rand::<16>());
            let data = vec![0x5au8; 4096];
            let (st, _) = o.send(
                "PUT",
                &format!("/v1/shares/{}/blobs/{blob}?epoch=1", o.share_hex),
                &data,
            );
            assert_eq!(st, 201);
            let share_id = o.share_id.clone();
            let receipt = |object: &str| {
                let mut r = vec![1u8];
                r.extend_from_slice(&share_id);
                str16(&mut r, object);
                r.extend_from_slice(reader.verifying_key().as_bytes());
                r.extend_from_slice(&now().to_be_bytes());
                r.extend_from_slice(&rand::<16>());
                let mut m = b"carekey/v1/fetch-receipt\0".to_vec();
                m.extend_from_slice(&r);
                r.extend_from_slice(&reader.sign(&m).to_bytes());
                r
            };
            let r = receipt(&blob);
            // A batch fetch of BATCH more 4 KiB blobs (relay-formats.md "Batch fetch").
            let mut object = "blobs:".to_owned();
            for _ in 0..BATCH {
                let b = HEXLOWER.encode(&rand::<16>());
                let (st, _) = o.send(
                    "PUT",
                    &format!("/v1/shares/{}/blobs/{b}?epoch=1", o.share_hex),
                    &data,
                );
                assert_eq!(st, 201);
                object.push_str(&b);
            }
            let batch = receipt(&object);
            let file = args
                .get(4)
                .expect("usage: relay_load seed ORIGIN ADDR FILE");
            let env = format!(
                "BLOB_PATH=/v1/shares/{}/blobs/{blob}\nTOKEN={}\nRECEIPT={}\nBATCH_PATH=/v1/shares/{}/fetch\nBATCH_BLOBS={BATCH}\nBATCH_RECEIPT_FILE={file}.batch\n",
                o.share_hex,
                B64.encode(&token),
                B64.encode(&r),
                o.share_hex,
            );
            std::fs::write(format!("{file}.batch"), batch).expect("seed file writable");
            std::fs::write(file, env).expect("seed file writable");
        }
        "put" => {
            let conns: usize = args[4].parse().unwrap();
            let secs: u64 = args[5].parse().unwrap();
            let deadline = Instant::now() + Duration::from_secs(secs);
            let threads: Vec<_> = (0..conns)
                .map(|_| {
                    let origin = origin.clone();
                    std::thread::spawn(move || {
                        let mut o = Owner::create(&origin, addr);
                        let data = vec![0xa5u8; 64 * 1024];
                        let mut n = 0u64;
                        while Instant::now() < deadline {
                            let pq = format!(
                                "/v1/shares/{}/blobs/{}?epoch=1",
                                o.share_hex,
                                HEXLOWER.encode(&rand::<16>())
                            );
                            let (st, _) = o.send("PUT", &pq, &data);
                            if st == 201 {
                                n += 1;
                            }
                        }
                        n
                    })
                })
                .collect();
            let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
            println!("PUTS_PER_SEC={:.1}", total as f64 / secs as f64);
            println!(
                "PUT_MIB_PER_SEC={:.1}",
                total as f64 * 64.0 / 1024.0 / secs as f64
            );
        }
        "slow" => {
            let clients: usize = args[4].parse().unwrap();
            let secs: u64 = args[5].parse().unwrap();
            let mib: usize = args[6].parse().unwrap();
            slow_readers(origin, addr, clients, secs, mib);
        }
        _ => panic!("unknown command"),
    }
}

/// A read token for a new reader of `o`'s share: (token, reader key).
fn grant(o: &mut Owner) -> ([u8; 32], SigningKey) {
    let token = rand::<32>();
    let reader = SigningKey::generate(&mut OsRng);
    let mut th = Sha256::new();
    th.update(b"carekey/v1/read-token\0");
    th.update(token);
    let body = format!(
        r#"{{"token_hash":"{}","reader_key":"{}","scope":"{}","expires_at":{},"depth":0}}"#,
        B64.encode(&th.finalize()),
        B64.encode(reader.verifying_key().as_bytes()),
        B64.encode(&[0, 0, 0, 1, 0, 0]),
        now() + 86_400
    );
    let pq = format!("/v1/shares/{}/tokens", o.share_hex);
    let (st, _) = o.send("POST", &pq, body.as_bytes());
    assert_eq!(st, 201);
    (token, reader)
}

/// A fetch receipt of `reader` for `object` of `share_id` (relay-formats.md "Fetch receipt").
fn receipt(reader: &SigningKey, share_id: &[u8], object: &str) -> Vec<u8> {
    let mut r = vec![1u8];
    r.extend_from_slice(share_id);
    str16(&mut r, object);
    r.extend_from_slice(reader.verifying_key().as_bytes());
    r.extend_from_slice(&now().to_be_bytes());
    r.extend_from_slice(&rand::<16>());
    let mut m = b"carekey/v1/fetch-receipt\0".to_vec();
    m.extend_from_slice(&r);
    r.extend_from_slice(&reader.sign(&m).to_bytes());
    r
}

/// The slow-reader run of `scripts/relay-load.sh` (docs/relay.md "Streaming"): the relay's
/// memory must not grow with the blob size times the readers.
fn slow_readers(origin: &str, addr: SocketAddr, clients: usize, secs: u64, mib: usize) {
    let mut o = Owner::create(origin, addr);
    let (token, reader) = grant(&mut o);
    let blob = HEXLOWER.encode(&rand::<16>());
    // Chunked upload in 4 MiB chunks (the default --max-body-bytes is 8 MiB).
    let (st, b) = o.send(
        "POST",
        &format!("/v1/shares/{}/uploads?blob={blob}&epoch=1", o.share_hex),
        b"",
    );
    assert_eq!(st, 201, "{}", String::from_utf8_lossy(&b));
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    let upload = v["upload_id"].as_str().unwrap().to_owned();
    let chunk = 4 << 20;
    let mut sha = Sha256::new();
    let mut n = 0;
    let mut left = mib << 20;
    while left > 0 {
        let len = left.min(chunk);
        let data: Vec<u8> = (0..len).map(|i| (i as u8) ^ (n as u8)).collect();
        sha.update(&data);
        let pq = format!("/v1/shares/{}/uploads/{upload}/chunks/{n}", o.share_hex);
        let (st, b) = o.send("PUT", &pq, &data);
        assert_eq!(st, 204, "{}", String::from_utf8_lossy(&b));
        left -= len;
        n += 1;
    }
    let body = format!(
        r#"{{"chunks":{n},"sha256":"{}"}}"#,
        B64.encode(&sha.finalize())
    );
    let pq = format!("/v1/shares/{}/uploads/{upload}/commit", o.share_hex);
    let (st, b) = o.send("POST", &pq, body.as_bytes());
    assert_eq!(st, 201, "{}", String::from_utf8_lossy(&b));
    let path = format!("/v1/shares/{}/blobs/{blob}", o.share_hex);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let r = B64.encode(&receipt(&reader, &o.share_id, &blob));
            let (path, token) = (path.clone(), B64.encode(&token));
            std::thread::spawn(move || -> (bool, u64) {
                let mut s = TcpStream::connect(addr).unwrap();
                let req = format!(
                    "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
                     Authorization: Bearer {token}\r\nCarekey-Receipt: {r}\r\n\r\n"
                );
                s.write_all(req.as_bytes()).unwrap();
                // Generous: an unstreamed relay first builds every whole answer in memory.
                s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
                // 1 MiB/s: 16 KiB every 15.6 ms.
                let mut buf = vec![0u8; 16 << 10];
                let (mut got, mut head) = (0u64, Vec::new());
                let t0 = Instant::now();
                while Instant::now() < deadline {
                    let n = match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if head.len() < 16 {
                        head.extend_from_slice(&buf[..n.min(16)]);
                    }
                    got += n as u64;
                    let due = t0 + Duration::from_secs_f64(got as f64 / f64::from(1u32 << 20));
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
                let ok = head.starts_with(b"HTTP/1.1 200");
                if !ok {
                    eprintln!("slow reader: {:?}", String::from_utf8_lossy(&head));
                }
                (ok, got)
            })
        })
        .collect();
    let (mut ok, mut total) = (0, 0u64);
    for t in threads {
        let (good, got) = t.join().unwrap();
        ok += usize::from(good);
        total += got;
    }
    println!("SLOW_CLIENTS_OK={ok}");
    println!("SLOW_READ_MIB={:.1}", total as f64 / f64::from(1u32 << 20));
    println!("SLOW_SECS={:.1}", start.elapsed().as_secs_f64());
}
