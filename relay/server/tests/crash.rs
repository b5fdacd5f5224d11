//! SIGKILL durability of the writes other than uploads and fetch logging (issue 14): token
//! revoke, manifest swap, backup write and mailbox append. Each loop runs concurrent writers
//! against the real `carekey-relay` binary, SIGKILLs it at a varying moment, restarts it on the
//! same data directory and checks that every acknowledged write survived and that the write in
//! flight at the kill is there wholly or not at all; `CAREKEY_DURABILITY_ITERS` iterations (10
//! by default, CI sets 50). No payload byte is ever printed: failures name ids and lengths only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::io::{ErrorKind, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Duration;

use common::process::{
    ProcOwner, Relay, blob_bytes, free_port, http, http_full, iterations, owner_headers,
};
use common::*;
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

/// One relay process restarted on the same data directory and port.
struct Proc {
    _dir: tempfile::TempDir,
    port: u16,
    data: String,
    log: PathBuf,
    relay: Option<Relay>,
}

impl Proc {
    fn start() -> Proc {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir
            .path()
            .join("data")
            .to_str()
            .expect("UTF-8 temp path")
            .to_owned();
        let log = dir.path().join("relay.log");
        let port = free_port();
        let relay = Relay::start(port, &["--data", &data], &log);
        Proc {
            _dir: dir,
            port,
            data,
            log,
            relay: Some(relay),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.relay.as_ref().expect("relay running").addr
    }

    /// Lets the writers run for a time that varies with `iter`, SIGKILLs the relay, waits for
    /// every writer (each stops at its first failed request) and starts the relay again.
    fn kill_and_restart<T>(&mut self, iter: usize, writers: Vec<JoinHandle<T>>) -> Vec<T> {
        std::thread::sleep(Duration::from_millis(30 + (iter as u64 * 37) % 120));
        self.relay.take().expect("relay running").kill();
        let out = writers
            .into_iter()
            .map(|t| t.join().expect("writer thread panicked"))
            .collect();
        self.relay = Some(Relay::start(self.port, &["--data", &self.data], &self.log));
        out
    }
}

/// Whether a failed request never reached the relay (it was already dead): such a write is not
/// counted as in flight.
fn never_sent(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::ConnectionRefused
}

/// Deterministic bytes naming `version` (or sequence number) in their first 8 bytes, of a
/// length between `min` and `min + spread` derived from `seed` and `version`.
fn versioned_bytes(seed: &[u8], version: u64, min: usize, spread: usize) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(seed);
    h.update(version.to_be_bytes());
    let d: [u8; 32] = h.finalize().into();
    let len = min + (u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize) % spread;
    let mut out = version.to_be_bytes().to_vec();
    let filler_seed: [u8; 16] = d[16..].try_into().expect("16 bytes");
    out.extend_from_slice(&blob_bytes(&filler_seed, len.saturating_sub(8)));
    out
}

/// The version (first 8 bytes, big-endian) a [`versioned_bytes`] body names, if it is long
/// enough to name one.
fn named_version(body: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(body.get(..8)?.try_into().ok()?))
}

/// What a versioned writer (manifest, backup) did before the kill: the last acknowledged
/// version, how many writes were acknowledged and the version in flight, if any.
struct Written<W> {
    who: W,
    cur: u64,
    acked: usize,
    in_flight: Option<u64>,
}

impl<W> Written<W> {
    /// Ends a writer at its failed write of `version`.
    fn new(who: W, cur: u64, acked: usize, version: u64, e: &std::io::Error) -> Self {
        Written {
            who,
            cur,
            acked,
            in_flight: (!never_sent(e)).then_some(version),
        }
    }
}

/// What the kills landed on, for the summary lines and the "really tested" assertions.
#[derive(Default)]
struct Tally {
    acked: usize,
    in_flight: usize,
    in_flight_landed: usize,
}

impl Tally {
    fn in_flight(&mut self, landed: bool) {
        self.in_flight += 1;
        self.in_flight_landed += usize::from(landed);
    }

    fn assert_tested(&self, what: &str) {
        assert!(self.acked > 0, "no {what} was ever acknowledged");
        assert!(
            self.in_flight > 0,
            "no SIGKILL landed while a {what} was in flight: the loop tested nothing"
        );
    }
}

/// The audit chain of one share read so far (verified link by link), with the token hashes of
/// its registration and revocation entries.
struct Chain {
    next: u64,
    prev: Vec<u8>,
    registered: HashSet<Vec<u8>>,
    revoked: HashSet<Vec<u8>>,
}

impl Chain {
    fn new() -> Chain {
        Chain {
            next: 1,
            prev: vec![0u8; 32],
            registered: HashSet::new(),
            revoked: HashSet::new(),
        }
    }

    /// Reads the entries appended since the last call, checking seq, links and hashes.
    fn catch_up(&mut self, o: &mut ProcOwner, addr: SocketAddr) {
        loop {
            let pq = format!("/v1/shares/{}/audit?from={}", o.share_hex, self.next);
            let (st, body) = o.send(addr, "GET", &pq, b"").expect("audit read");
            assert_eq!(st, 200, "audit read answered {st}");
            let log: serde_json::Value = serde_json::from_slice(&body).expect("audit JSON");
            let entries = log["entries"].as_array().expect("entries array");
            if entries.is_empty() {
                assert_eq!(log["head"]["seq"].as_u64(), Some(self.next - 1), "head seq");
                return;
            }
            for e in entries {
                let seq = e["seq"].as_u64().expect("seq");
                assert_eq!(seq, self.next, "gap in the audit chain");
                let prev = unb64(e["prev_hash"].as_str().expect("prev_hash"));
                assert_eq!(prev, self.prev, "audit entry {seq}: broken link");
                let kind = u8::try_from(e["kind"].as_u64().expect("kind")).expect("kind < 256");
                let b = unb64(e["body"].as_str().expect("body"));
                let time = e["time"].as_u64().expect("time");
                let h = entry_hash(&o.share_id, seq, &self.prev, time, kind, &b);
                assert_eq!(
                    unb64(e["entry_hash"].as_str().expect("entry_hash")),
                    h,
                    "audit entry {seq}: hash"
                );
                match kind {
                    2 => {
                        self.registered.insert(b[..32].to_vec());
                    }
                    3 => {
                        self.revoked.insert(b.clone());
                    }
                    _ => {}
                }
                self.prev = h;
                self.next += 1;
            }
        }
    }
}

/// A read token's life in the revoke loop.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tok {
    /// Registration sent, not answered.
    RegisterSent,
    /// Registered (201), revoke not sent.
    Live,
    /// Revoke sent, not answered.
    RevokeSent,
    /// Revoke answered 200.
    Revoked,
}

struct TokRec {
    token: [u8; 32],
    reader: SigningKey,
    state: Tok,
}

/// SIGKILL while tokens are registered and revoked: after restart every acknowledged revoke
/// holds (the token's reads answer 410), every token never revoked still reads (200), a revoke
/// in flight either fully took (410 and its `token_revoked` audit entry) or not at all (200, no
/// entry), and each share's audit chain verifies.
#[test]
fn sigkill_during_revokes_acknowledged_revokes_hold() {
    let iters = iterations();
    let mut p = Proc::start();
    let addr = p.addr();
    let mut owners: Vec<ProcOwner> = (0..4).map(|_| ProcOwner::create(addr)).collect();
    let blobs: Vec<String> = owners
        .iter_mut()
        .map(|o| {
            let id = hex(&rand::<16>());
            let pq = format!("/v1/shares/{}/blobs/{id}?epoch=1", o.share_hex);
            let (st, _) = o
                .send(addr, "PUT", &pq, b"revoke probe")
                .expect("probe upload");
            assert_eq!(st, 201, "probe upload");
            id
        })
        .collect();
    let mut chains: Vec<Chain> = owners.iter().map(|_| Chain::new()).collect();
    let (mut t, mut live) = (Tally::default(), 0usize);
    for iter in 0..iters {
        let writers: Vec<JoinHandle<(ProcOwner, Vec<TokRec>)>> = owners
            .drain(..)
            .map(|mut o| {
                std::thread::spawn(move || {
                    let mut recs: Vec<TokRec> = Vec::new();
                    let tokens = format!("/v1/shares/{}/tokens", o.share_hex);
                    for k in 0usize.. {
                        let (token, reader) = (rand::<32>(), key());
                        let th = token_hash(&token);
                        let body = serde_json::to_vec(&serde_json::json!({
                            "token_hash": b64(&th),
                            "reader_key": b64(reader.verifying_key().as_bytes()),
                            "scope": b64(&scope(1, &[])),
                            "expires_at": now() + 3600,
                            "depth": 0,
                        }))
                        .expect("JSON");
                        match o.send(addr, "POST", &tokens, &body) {
                            Ok((201, _)) => {}
                            Ok((st, _)) => panic!("token registration answered {st}"),
                            Err(e) if never_sent(&e) => return (o, recs),
                            Err(_) => {
                                recs.push(TokRec {
                                    token,
                                    reader,
                                    state: Tok::RegisterSent,
                                });
                                return (o, recs);
                            }
                        }
                        recs.push(TokRec {
                            token,
                            reader,
                            state: Tok::Live,
                        });
                        if k % 4 == 3 {
                            // Kept live: a revoke must touch only the token it names.
                            continue;
                        }
                        let last = recs.len() - 1;
                        let pq = format!("{tokens}/{}", hex(&th));
                        match o.send(addr, "DELETE", &pq, b"") {
                            Ok((200, b)) => {
                                let v: serde_json::Value =
                                    serde_json::from_slice(&b).expect("revoke JSON");
                                assert_eq!(v["revoked"].as_u64(), Some(1), "revoked count");
                                recs[last].state = Tok::Revoked;
                            }
                            Ok((st, _)) => panic!("revoke answered {st}"),
                            Err(e) if never_sent(&e) => return (o, recs),
                            Err(_) => {
                                recs[last].state = Tok::RevokeSent;
                                return (o, recs);
                            }
                        }
                    }
                    unreachable!("token counter exhausted")
                })
            })
            .collect();
        let results = p.kill_and_restart(iter, writers);
        let addr = p.addr();
        for (i, (mut o, recs)) in results.into_iter().enumerate() {
            chains[i].catch_up(&mut o, addr);
            for r in &recs {
                let object = &blobs[i];
                let (st, _) = http(
                    addr,
                    "GET",
                    &format!("/v1/shares/{}/blobs/{object}", o.share_hex),
                    &[
                        ("Authorization", format!("Bearer {}", b64(&r.token))),
                        ("Carekey-Receipt", receipt(&r.reader, &o.share_id, object)),
                    ],
                    b"",
                )
                .expect("probe fetch");
                let th = token_hash(&r.token).to_vec();
                let (registered, revoked) = (
                    chains[i].registered.contains(&th),
                    chains[i].revoked.contains(&th),
                );
                match r.state {
                    Tok::RegisterSent => {
                        assert!(
                            (st == 200 && registered) || (st == 401 && !registered),
                            "iteration {iter}: interrupted registration half there (read {st}, logged {registered})"
                        );
                        continue;
                    }
                    Tok::Live => {
                        live += 1;
                        assert_eq!(
                            st, 200,
                            "iteration {iter}: a token never revoked does not read"
                        );
                    }
                    Tok::Revoked => {
                        t.acked += 1;
                        assert_eq!(st, 410, "iteration {iter}: an acknowledged revoke was lost");
                    }
                    Tok::RevokeSent => {
                        assert!(
                            st == 200 || st == 410,
                            "iteration {iter}: token after an interrupted revoke reads {st}"
                        );
                        t.in_flight(st == 410);
                    }
                }
                assert!(
                    registered,
                    "iteration {iter}: registered token not in the chain"
                );
                assert_eq!(
                    st == 410,
                    revoked,
                    "iteration {iter}: revoke state and audit chain disagree (read {st}, logged {revoked})"
                );
            }
            owners.push(o);
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "revoke durability: {iters} SIGKILL iterations, {} acknowledged revokes all still revoked, {} kills mid-revoke all-or-nothing ({} took, {} did not), {live} unrevoked tokens still live",
        t.acked,
        t.in_flight,
        t.in_flight_landed,
        t.in_flight - t.in_flight_landed
    );
    t.assert_tested("revoke");
}

/// Manifest bytes of `share` at `version` (naming the version in their first 8 bytes).
fn manifest_bytes(share: &[u8; 16], version: u64) -> Vec<u8> {
    versioned_bytes(share, version, 8, 64_000)
}

/// SIGKILL during concurrent manifest swaps (`PUT .../manifest?version=V&prev=P`): after restart
/// each share serves exactly the last acknowledged version or the one in flight, with that
/// version's bytes (never torn, never older).
#[test]
fn sigkill_during_manifest_swaps_serves_an_acknowledged_version() {
    let iters = iterations();
    let mut p = Proc::start();
    let addr = p.addr();
    let mut owners: Vec<(ProcOwner, u64)> = (0..3)
        .map(|_| {
            let mut o = ProcOwner::create(addr);
            let pq = format!("/v1/shares/{}/manifest?version=1&prev=0", o.share_hex);
            let (st, _) = o
                .send(addr, "PUT", &pq, &manifest_bytes(&o.share_id, 1))
                .expect("first manifest");
            assert_eq!(st, 200, "first manifest");
            (o, 1)
        })
        .collect();
    let mut t = Tally::default();
    for iter in 0..iters {
        let writers: Vec<JoinHandle<Written<ProcOwner>>> = owners
            .drain(..)
            .map(|(mut o, mut cur)| {
                std::thread::spawn(move || {
                    let mut acked = 0;
                    loop {
                        let v = cur + 1;
                        let pq =
                            format!("/v1/shares/{}/manifest?version={v}&prev={cur}", o.share_hex);
                        match o.send(addr, "PUT", &pq, &manifest_bytes(&o.share_id, v)) {
                            Ok((200, _)) => (cur, acked) = (v, acked + 1),
                            Ok((st, _)) => panic!("manifest swap answered {st}"),
                            Err(e) => return Written::new(o, cur, acked, v, &e),
                        }
                    }
                })
            })
            .collect();
        let results = p.kill_and_restart(iter, writers);
        let addr = p.addr();
        for Written {
            who: o,
            cur,
            acked,
            in_flight,
        } in results
        {
            t.acked += acked;
            let r = http_full(
                addr,
                "GET",
                &format!("/v1/shares/{}/manifest", o.share_hex),
                &[
                    ("Authorization", format!("Bearer {}", b64(&o.token))),
                    (
                        "Carekey-Receipt",
                        receipt(&o.reader, &o.share_id, "manifest"),
                    ),
                ],
                b"",
            )
            .expect("manifest read");
            assert_eq!(
                r.status, 200,
                "iteration {iter}: manifest read answered {}",
                r.status
            );
            let served: u64 = r
                .header("carekey-manifest-version")
                .and_then(|v| v.parse().ok())
                .expect("Carekey-Manifest-Version header");
            assert!(
                served == cur || Some(served) == in_flight,
                "iteration {iter}: serves version {served}, last acknowledged {cur}, in flight {in_flight:?}"
            );
            assert!(
                r.body == manifest_bytes(&o.share_id, served),
                "iteration {iter}: manifest torn: version {served} served with {} bytes naming version {:?} (expected {})",
                r.body.len(),
                named_version(&r.body),
                manifest_bytes(&o.share_id, served).len()
            );
            if let Some(v) = in_flight {
                t.in_flight(served == v);
            }
            owners.push((o, served));
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "manifest durability: {iters} SIGKILL iterations, {} acknowledged swaps, {} kills mid-swap ({} committed, {} rolled back), never torn or older than acknowledged",
        t.acked,
        t.in_flight,
        t.in_flight_landed,
        t.in_flight - t.in_flight_landed
    );
    t.assert_tested("manifest swap");
}

/// A backup slot and its owner key (relay-formats.md "Owner write signature", as for shares).
struct Slot {
    key: SigningKey,
    id: [u8; 16],
    counter: u64,
}

impl Slot {
    /// An owner request on the slot with the next counter (plus `Carekey-Owner-Key` when
    /// `bind`, the first write).
    fn send(
        &mut self,
        addr: SocketAddr,
        method: &str,
        pq: &str,
        body: &[u8],
        bind: bool,
    ) -> std::io::Result<common::process::HttpResp> {
        self.counter += 1;
        let mut h = owner_headers(&self.key, method, pq, body, self.counter);
        if bind {
            h.push((
                "Carekey-Owner-Key",
                b64(self.key.verifying_key().as_bytes()),
            ));
        }
        http_full(addr, method, pq, &h, body)
    }
}

/// Backup bytes of slot `id` at `version` (naming the version in their first 8 bytes).
fn backup_bytes(id: &[u8; 16], version: u64) -> Vec<u8> {
    versioned_bytes(id, version, 8, 200_000)
}

/// SIGKILL during concurrent backup writes (`PUT /v1/backups/{id}?version=V`): after restart
/// each slot holds exactly the last acknowledged backup or the one in flight, byte for byte,
/// under its own version.
#[test]
fn sigkill_during_backup_writes_keeps_a_whole_backup() {
    let iters = iterations();
    let mut p = Proc::start();
    let addr = p.addr();
    let mut slots: Vec<(Slot, u64)> = (0..3)
        .map(|_| {
            let mut s = Slot {
                key: key(),
                id: rand::<16>(),
                counter: 0,
            };
            let pq = format!("/v1/backups/{}?version=1", hex(&s.id));
            let r = s
                .send(addr, "PUT", &pq, &backup_bytes(&s.id, 1), true)
                .expect("first backup");
            assert_eq!(r.status, 201, "first backup");
            (s, 1)
        })
        .collect();
    let mut t = Tally::default();
    for iter in 0..iters {
        let writers: Vec<JoinHandle<Written<Slot>>> = slots
            .drain(..)
            .map(|(mut s, mut cur)| {
                std::thread::spawn(move || {
                    let mut acked = 0;
                    loop {
                        let v = cur + 1;
                        let pq = format!("/v1/backups/{}?version={v}", hex(&s.id));
                        let body = backup_bytes(&s.id, v);
                        match s.send(addr, "PUT", &pq, &body, false) {
                            Ok(r) if r.status == 200 => (cur, acked) = (v, acked + 1),
                            Ok(r) => panic!("backup write answered {}", r.status),
                            Err(e) => return Written::new(s, cur, acked, v, &e),
                        }
                    }
                })
            })
            .collect();
        let results = p.kill_and_restart(iter, writers);
        let addr = p.addr();
        for Written {
            who: mut s,
            cur,
            acked,
            in_flight,
        } in results
        {
            t.acked += acked;
            let pq = format!("/v1/backups/{}", hex(&s.id));
            let r = s.send(addr, "GET", &pq, b"", false).expect("backup read");
            assert_eq!(
                r.status, 200,
                "iteration {iter}: backup read answered {}",
                r.status
            );
            let served: u64 = r
                .header("carekey-backup-version")
                .and_then(|v| v.parse().ok())
                .expect("Carekey-Backup-Version header");
            assert!(
                served == cur || Some(served) == in_flight,
                "iteration {iter}: slot holds version {served}, last acknowledged {cur}, in flight {in_flight:?}"
            );
            let want = backup_bytes(&s.id, served);
            assert!(
                r.body == want,
                "iteration {iter}: backup torn: version {served} served with {} bytes naming version {:?} (expected {})",
                r.body.len(),
                named_version(&r.body),
                want.len()
            );
            if let Some(v) = in_flight {
                t.in_flight(served == v);
            }
            slots.push((s, served));
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "backup durability: {iters} SIGKILL iterations, {} acknowledged backup writes, {} kills mid-write ({} committed, {} rolled back), every slot whole byte for byte",
        t.acked,
        t.in_flight,
        t.in_flight_landed,
        t.in_flight - t.in_flight_landed
    );
    t.assert_tested("backup write");
}

/// A relationship mailbox, its tokens and what the checker verified so far.
struct Mbox {
    id: String,
    read: String,
    write: String,
    seed: [u8; 16],
    /// Number of the next message to send (messages are numbered 0, 1, ... in their bytes).
    next_n: u64,
    /// Messages up to this seq were verified and deleted.
    through: u64,
}

/// Message `n` of a mailbox (naming `n` in its first 8 bytes).
fn message_bytes(seed: &[u8; 16], n: u64) -> Vec<u8> {
    versioned_bytes(seed, n, 8, 16_000)
}

/// What a mailbox writer did before the kill: (message number, seq) of each acknowledged
/// append, and the number of the message in flight.
struct Appended {
    mbox: Mbox,
    acked: Vec<(u64, u64)>,
    in_flight: Option<u64>,
}

/// SIGKILL during concurrent mailbox appends: after restart every acknowledged message is there
/// under the seq it was acknowledged with, in order, whole, once; the only other message that
/// may be there is the one in flight, after them.
#[test]
fn sigkill_during_mailbox_appends_keeps_every_acknowledged_message() {
    let iters = iterations();
    let mut p = Proc::start();
    let addr = p.addr();
    let mut boxes: Vec<Mbox> = (0..3)
        .map(|_| {
            let (st, b) = http(addr, "POST", "/v1/mailboxes", &[], b"").expect("open mailbox");
            assert_eq!(st, 201, "open mailbox");
            let v: serde_json::Value = serde_json::from_slice(&b).expect("mailbox JSON");
            let s = |k: &str| v[k].as_str().expect("mailbox field").to_owned();
            Mbox {
                id: s("mailbox_id"),
                read: s("read_token"),
                write: s("write_token"),
                seed: rand::<16>(),
                next_n: 0,
                through: 0,
            }
        })
        .collect();
    let mut t = Tally::default();
    for iter in 0..iters {
        let writers: Vec<JoinHandle<Appended>> = boxes
            .drain(..)
            .map(|mbox| {
                std::thread::spawn(move || {
                    let mut acked = Vec::new();
                    let pq = format!("/v1/mailboxes/{}/messages", mbox.id);
                    let auth = [("Authorization", format!("Bearer {}", mbox.write))];
                    for n in mbox.next_n.. {
                        match http(addr, "POST", &pq, &auth, &message_bytes(&mbox.seed, n)) {
                            Ok((201, b)) => {
                                let v: serde_json::Value =
                                    serde_json::from_slice(&b).expect("append JSON");
                                acked.push((n, v["seq"].as_u64().expect("seq")));
                            }
                            Ok((st, _)) => panic!("append answered {st}"),
                            Err(e) => {
                                let in_flight = (!never_sent(&e)).then_some(n);
                                return Appended {
                                    mbox,
                                    acked,
                                    in_flight,
                                };
                            }
                        }
                    }
                    unreachable!("message numbers exhausted")
                })
            })
            .collect();
        let results = p.kill_and_restart(iter, writers);
        let addr = p.addr();
        for Appended {
            mut mbox,
            acked,
            in_flight,
        } in results
        {
            t.acked += acked.len();
            // Everything stored since the last check, page by page.
            let auth = [("Authorization", format!("Bearer {}", mbox.read))];
            let mut stored: Vec<(u64, Vec<u8>)> = Vec::new();
            let mut after = mbox.through;
            loop {
                let pq = format!("/v1/mailboxes/{}/messages?after={after}", mbox.id);
                let (st, b) = http(addr, "GET", &pq, &auth, b"").expect("mailbox fetch");
                assert_eq!(st, 200, "iteration {iter}: mailbox fetch answered {st}");
                let v: serde_json::Value = serde_json::from_slice(&b).expect("messages JSON");
                let msgs = v["messages"].as_array().expect("messages array");
                if msgs.is_empty() {
                    break;
                }
                for m in msgs {
                    let seq = m["seq"].as_u64().expect("seq");
                    assert!(seq > after, "iteration {iter}: seq {seq} out of order");
                    after = seq;
                    stored.push((seq, unb64(m["body"].as_str().expect("body"))));
                }
            }
            // In order, whole, once: message numbers run on from the last check without a gap.
            let mut n = mbox.next_n;
            for (seq, body) in &stored {
                let want = message_bytes(&mbox.seed, n);
                assert!(
                    *body == want,
                    "iteration {iter}: message at seq {seq} is not message {n} whole ({} bytes naming {:?}, expected {}): partial, duplicated or out of order",
                    body.len(),
                    named_version(body),
                    want.len()
                );
                n += 1;
            }
            let sent_end = mbox.next_n + acked.len() as u64;
            for (k, (an, aseq)) in acked.iter().enumerate() {
                let got = stored.get(k).map(|(s, _)| *s);
                assert_eq!(
                    got,
                    Some(*aseq),
                    "iteration {iter}: acknowledged message {an} (seq {aseq}) missing or moved"
                );
            }
            assert!(
                n == sent_end || (Some(sent_end) == in_flight && n == sent_end + 1),
                "iteration {iter}: {} messages stored, {} acknowledged, in flight {in_flight:?}",
                n - mbox.next_n,
                acked.len()
            );
            if in_flight.is_some() {
                t.in_flight(n == sent_end + 1);
            }
            // Delete what was verified, so each check reads only the new messages.
            if let Some((last, _)) = stored.last() {
                let pq = format!("/v1/mailboxes/{}/messages?through={last}", mbox.id);
                let (st, _) = http(addr, "DELETE", &pq, &auth, b"").expect("delete read");
                assert_eq!(st, 200, "delete read messages");
                mbox.through = *last;
            }
            mbox.next_n = n;
            boxes.push(mbox);
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "mailbox durability: {iters} SIGKILL iterations, {} acknowledged messages all there in order, {} kills mid-append ({} stored whole, {} absent), no partial or duplicate message",
        t.acked,
        t.in_flight,
        t.in_flight_landed,
        t.in_flight - t.in_flight_landed
    );
    t.assert_tested("mailbox append");
}
