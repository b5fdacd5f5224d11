//! Runs the real `carekey-relay` binary and talks to it over plain TCP (HTTP/1.1,
//! `Connection: close`), for the tests that need a process: SIGKILL durability, log and file
//! scans, header timeouts, several instances on one PostgreSQL.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
    Ok((status, out[split + 4..].to_vec()))
}
