//! Runs the real `carekey-relay` binary and talks to it over plain TCP (HTTP/1.1,
//! `Connection: close`), for the tests that need a process: SIGKILL durability, log and file
//! scans, header timeouts, several instances on one PostgreSQL.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

use super::{b64, key, now, owner_sig, rand, receipt, scope, token_hash};

/// Origin every process test signs with (independent of the port).
pub const PROC_ORIGIN: &str = "http://relay.process.test";

/// A running relay process.
pub struct Relay {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

/// The relay binary: `CAREKEY_RELAY_BIN` if set (the soak script runs a copy so rebuilds
/// cannot swap it mid-run), else the one cargo built for this test.
pub fn relay_bin() -> PathBuf {
    std::env::var_os("CAREKEY_RELAY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_carekey-relay")))
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Relay {
    /// Starts the binary with `args` (plus listen/origin/generous limits) and waits for /healthz.
    pub fn start(port: u16, args: &[&str], log: &Path) -> Relay {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(relay_bin())
            .args(["--listen", &addr.to_string(), "--origin", PROC_ORIGIN])
            .args([
                "--ip-rate",
                "1000000",
                "--ip-burst",
                "1000000",
                "--token-rate",
                "1000000",
                "--token-burst",
                "1000000",
            ])
            .args(args)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(logf))
            .spawn()
            .unwrap();
        let r = Relay {
            child,
            addr,
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if matches!(http(addr, "GET", "/healthz", &[], b""), Ok((200, _))) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "relay did not start; log: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    /// SIGKILL, no chance to flush anything.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait; returns whether it exited successfully.
    pub fn terminate(mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().map(|s| s.success()).unwrap_or(false)
    }

    pub fn send_term(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request; returns (status, body).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    http_full(addr, method, path, headers, body).map(|r| (r.status, r.body))
}

/// A response of [`http_full`]: status, header lines (names lowercased) and body.
pub struct HttpResp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResp {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request; returns status, headers and body.
pub fn http_full(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<HttpResp> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(HttpResp {
        status,
        headers,
        body: out[split + 4..].to_vec(),
    })
}

/// An owner-side client for one share over a process.
pub struct ProcOwner {
    pub key: SigningKey,
    pub share_hex: String,
    pub share_id: [u8; 16],
    pub counter: u64,
    pub token: [u8; 32],
    pub reader: SigningKey,
}

/// `Carekey-Counter` and `Carekey-Signature` of an owner request signed for [`PROC_ORIGIN`].
pub fn owner_headers(
    k: &SigningKey,
    method: &str,
    pq: &str,
    body: &[u8],
    counter: u64,
) -> Vec<(&'static str, String)> {
    vec![
        ("Carekey-Counter", counter.to_string()),
        (
            "Carekey-Signature",
            owner_sig(k, method, pq, PROC_ORIGIN, body, counter),
        ),
    ]
}

impl ProcOwner {
    pub fn create(addr: SocketAddr) -> ProcOwner {
        let key = key();
        let body = serde_json::to_vec(&serde_json::json!({
            "owner_key": b64(key.verifying_key().as_bytes()),
            "expires_at": now() + 86_400,
        }))
        .unwrap();
        let (st, resp) = http(
            addr,
            "POST",
            "/v1/shares",
            &owner_headers(&key, "POST", "/v1/shares", &body, 1),
            &body,
        )
        .unwrap();
        assert_eq!(st, 201, "{}", String::from_utf8_lossy(&resp));
        let v: serde_json::Value = serde_json::from_slice(&resp).unwrap();
        let share_hex = v["share_id"].as_str().unwrap().to_owned();
        let share_id: [u8; 16] = data_encoding::HEXLOWER
            .decode(share_hex.as_bytes())
            .unwrap()
            .try_into()
            .unwrap();
        let mut o = ProcOwner {
            key,
            share_hex,
            share_id,
            counter: 1,
            token: rand::<32>(),
            reader: super::key(),
        };
        let body = serde_json::to_vec(&serde_json::json!({
            "token_hash": b64(&token_hash(&o.token)),
            "reader_key": b64(o.reader.verifying_key().as_bytes()),
            "scope": b64(&scope(1, &[])),
            "expires_at": now() + 3600,
            "depth": 0,
        }))
        .unwrap();
        let pq = format!("/v1/shares/{}/tokens", o.share_hex);
        let (st, _) = o.send(addr, "POST", &pq, &body).unwrap();
        assert_eq!(st, 201);
        o
    }

    pub fn send(
        &mut self,
        addr: SocketAddr,
        method: &str,
        pq: &str,
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<u8>)> {
        self.counter += 1;
        http(
            addr,
            method,
            pq,
            &owner_headers(&self.key, method, pq, body, self.counter),
            body,
        )
    }

    pub fn fetch(&self, addr: SocketAddr, blob_hex: &str) -> (u16, Vec<u8>) {
        http(
            addr,
            "GET",
            &format!("/v1/shares/{}/blobs/{blob_hex}", self.share_hex),
            &[
                ("Authorization", format!("Bearer {}", b64(&self.token))),
                (
                    "Carekey-Receipt",
                    receipt(&self.reader, &self.share_id, blob_hex),
                ),
            ],
            b"",
        )
        .unwrap()
    }
}

/// SIGKILL iterations of each durability loop: `CAREKEY_DURABILITY_ITERS`, 10 by default (CI
/// sets 50).
pub fn iterations() -> usize {
    std::env::var("CAREKEY_DURABILITY_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

/// Deterministic pseudo-random bytes for a blob (so the checker knows the expected content).
pub fn blob_bytes(seed: &[u8; 16], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut ctr = 0u64;
    while out.len() < len {
        let mut h = Sha256::new();
        h.update(seed);
        h.update(ctr.to_be_bytes());
        out.extend_from_slice(&h.finalize());
        ctr += 1;
    }
    out.truncate(len);
    out
}
