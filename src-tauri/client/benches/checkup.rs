//! Check-up and revocation timings through a real (release) `carekey-relay` process on
//! 127.0.0.1. Run with `scripts/checkup-bench.sh`. Final lines:
//!
//! - `RESULT checkup_largest_synthea_s <s>`: QR text in hand (the patient already shared the
//!   largest Synthea patient: every resource a record, every DocumentReference attachment
//!   decoded as an attachment) → scan → wait_for_doctor → confirm → wait_for_grant → fetch of
//!   everything, verified and decrypted.
//! - `RESULT checkup_100MiB_s <s>`: the same flow for a 100 MiB share (4 × 25 MiB attachments
//!   of random bytes), and `RESULT checkup_100MiB_vs_crypto <ratio>`: that time over sealing and
//!   opening the same bytes in-process with the same core calls, measured in the same run.
//! - `RESULT revoke_100MiB_s <s>`: `Patient::revoke` of one of two doctors on a 100 MiB share
//!   (revoke token, re-seal, upload, deliver, swap, delete the old epoch).
//!
//! Every figure is the median of several runs. The relay runs with its rate limits raised (see
//! `RATE_ENV`): at the defaults (50 requests/s per token) a share of thousands of records is
//! throttled, which is a limit of the one-request-per-blob API, not of this code path.
//! Only timings and counts are printed, never record contents.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use carekey_client::doctor::Doctor;
use carekey_client::patient::{Patient, ShareItem, ShareOptions};
use carekey_client::progress::{Cancel, NoProgress, Progress, Stage};
use carekey_client::relay::{ReaderCap, Relay};
use carekey_core::grant::{Category, Policy};
use carekey_core::keys::Role;
use carekey_core::keys::SigningSecret;
use carekey_core::manifest::ManifestEntry;
use common::{RelayOptions, identity, in_a_day, start_relay_with, synthea_largest};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

const MIB: usize = 1024 * 1024;

/// Rate limits raised far above what one loopback client can reach.
const RATE_ENV: [(&str, &str); 4] = [
    ("CAREKEY_RELAY_IP_RATE", "1000000"),
    ("CAREKEY_RELAY_IP_BURST", "1000000"),
    ("CAREKEY_RELAY_TOKEN_RATE", "1000000"),
    ("CAREKEY_RELAY_TOKEN_BURST", "1000000"),
];

fn runs(default: usize) -> usize {
    std::env::var("CAREKEY_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `CAREKEY_BENCH_ONLY=synthea,100mib,revoke` runs a subset (all by default).
fn wanted(part: &str) -> bool {
    std::env::var("CAREKEY_BENCH_ONLY").map_or(true, |v| v.split(',').any(|p| p == part))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn relay_options() -> RelayOptions {
    let bin = std::env::var_os("CAREKEY_RELAY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/carekey-relay")
        });
    assert!(
        bin.is_file(),
        "release relay not found at {} (cargo build --release -p carekey-relay)",
        bin.display()
    );
    // CAREKEY_BENCH_DEFAULT_LIMITS=1 keeps the relay's default rate limits (to see them bite).
    let default_limits = std::env::var("CAREKEY_BENCH_DEFAULT_LIMITS").as_deref() == Ok("1");
    RelayOptions {
        env: RATE_ENV
            .iter()
            .filter(|_| !default_limits)
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        bin: Some(bin),
        ..RelayOptions::default()
    }
}

fn fixtures() -> Option<PathBuf> {
    let p = std::env::var_os("CAREKEY_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"));
    p.join("synthea-10").is_dir().then_some(p)
}

/// 100 MiB of random bytes as 4 attachments of 25 MiB.
fn hundred_mib() -> Vec<ShareItem> {
    (0..4u8)
        .map(|i| {
            let mut data = vec![0u8; 25 * MIB];
            OsRng.fill_bytes(&mut data);
            ShareItem {
                record_id: [i + 1; 16],
                category: Category::Documents,
                title: format!("scan-{i}.dcm"),
                data: Zeroizing::new(data),
                attachment: true,
            }
        })
        .collect()
}

async fn new_share(
    relay: &common::RelayProcess,
    items: &[ShareItem],
) -> (Patient, carekey_client::ShareId) {
    let (pid, pcard) = identity("Pat Bench", Role::Patient);
    let mut patient = Patient::new(pid, pcard, Relay::new(&relay.url).unwrap());
    let share = patient
        .create_share(
            items.to_vec(),
            ShareOptions {
                expires_at: in_a_day(),
                policy: Policy::Ask,
                delegation_depth: 0,
            },
            &NoProgress,
            &Cancel::new(),
        )
        .await
        .expect("share uploads");
    (patient, share)
}

/// Where a check-up's time goes: milliseconds between consecutive marks (scan → doctor at
/// the door → confirm → grant → fetch), printed per run so a regression points at its step.
struct Steps {
    last: Instant,
    marks: Vec<(&'static str, f64)>,
}

impl Steps {
    fn new() -> Self {
        Self {
            last: Instant::now(),
            marks: Vec::new(),
        }
    }

    fn mark(&mut self, step: &'static str) {
        let now = Instant::now();
        self.marks
            .push((step, (now - self.last).as_secs_f64() * 1000.0));
        self.last = now;
    }

    fn line(&self) -> String {
        self.marks
            .iter()
            .map(|(step, ms)| format!("{step} {ms:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// QR text in hand → every record decrypted at the doctor. Returns (seconds, doctor, link,
/// relationship index).
async fn checkup(
    patient: &mut Patient,
    share: &carekey_client::ShareId,
    items: &[ShareItem],
    name: &str,
) -> (
    f64,
    Doctor,
    carekey_client::LinkId,
    carekey_client::RelationshipId,
) {
    let cancel = Cancel::new();
    let (did, dcard) = identity(name, Role::Doctor);
    let mut doctor = Doctor::new(did, dcard);
    let mut session = patient.start_pairing(share).await.unwrap();
    let qr = session.qr_text();
    let t = Instant::now();
    let mut steps = Steps::new();
    let scan = doctor.scan(&qr).await.expect("scan");
    steps.mark("scan");
    let code = scan.check_code();
    let door = patient
        .wait_for_doctor(&mut session, 10, &cancel)
        .await
        .expect("reply");
    steps.mark("door");
    let rel = patient.confirm(session).await.expect("confirm");
    steps.mark("confirm");
    let link = doctor
        .wait_for_grant(scan, 10, &cancel)
        .await
        .expect("grant");
    steps.mark("grant");
    let got = doctor
        .fetch(&link, &NoProgress, &cancel)
        .await
        .expect("fetch");
    steps.mark("fetch");
    let s = t.elapsed().as_secs_f64();
    println!("    steps (ms): {}", steps.line());
    assert_eq!(door.check_code, code);
    assert_eq!(got.len(), items.len());
    for (r, it) in got.iter().zip(items) {
        assert_eq!(r.data.as_slice(), it.data.as_slice());
    }
    (s, doctor, link, rel)
}

/// Informational baseline: the same fetch (manifest + every blob, verified and opened) with one
/// audited GET per blob (no batch fetch) in `lanes` sequential request streams in parallel,
/// from the doctor's held secrets.
async fn fetch_in_lanes(
    url: &str,
    doctor: &Doctor,
    link: carekey_client::LinkId,
    lanes: usize,
    n: usize,
) -> f64 {
    let h = doctor.held_secrets_for_test(&link).unwrap();
    let relay = Relay::new(url).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let t = Instant::now();
    let cap = ReaderCap {
        token: &h.read_token,
        reader: &h.reader,
        share_id: h.share_id,
    };
    let (_, sealed) = relay.get_manifest(&cap, now).await.unwrap();
    let m = h
        .keys
        .open_manifest(&sealed, h.share_id.as_bytes(), h.epoch, &h.patient_key)
        .unwrap();
    let mut set = tokio::task::JoinSet::new();
    for lane in 0..lanes {
        let entries: Vec<ManifestEntry> = m
            .entries
            .iter()
            .skip(lane)
            .step_by(lanes)
            .cloned()
            .collect();
        let (relay, token, seed, share_id, epoch) = (
            relay.clone(),
            h.read_token.clone(),
            *h.reader.expose_secret(),
            h.share_id,
            m.epoch,
        );
        set.spawn(async move {
            let reader = SigningSecret::from_seed(&seed);
            let cap = ReaderCap {
                token: &token,
                reader: &reader,
                share_id,
            };
            for e in &entries {
                let blob = relay
                    .get_blob(&cap, &carekey_client::BlobId(e.blob_id), now)
                    .await
                    .unwrap();
                e.open_blob(epoch, &blob).unwrap();
            }
            entries.len()
        });
    }
    let mut got = 0;
    while let Some(r) = set.join_next().await {
        got += r.unwrap();
    }
    assert_eq!(got, n);
    t.elapsed().as_secs_f64()
}

/// Seal + open of the same attachments in-process (the crypto floor of the flow).
fn crypto_only(items: &[ShareItem]) -> f64 {
    let t = Instant::now();
    for it in items {
        let (e, blob) = ManifestEntry::seal_attachment(
            it.record_id,
            it.category,
            &it.title,
            2,
            &it.data,
            &mut OsRng,
        )
        .unwrap();
        let pt = e.open_blob(2, &blob).unwrap();
        assert_eq!(pt.len(), it.data.len());
    }
    t.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let opts = relay_options();
    let mut results = Vec::new();

    // 1. Largest Synthea patient.
    match fixtures().filter(|_| wanted("synthea")) {
        Some(fx) => {
            let (items, resources, attachments) = synthea_largest(&fx);
            let relay = start_relay_with(&opts);
            let t = Instant::now();
            let (mut patient, share) = new_share(&relay, &items).await;
            println!(
                "synthea largest: {resources} resources + {attachments} attachments = {} blobs, {:.1} MiB; share created in {:.2} s",
                items.len(),
                items.iter().map(|i| i.data.len()).sum::<usize>() as f64 / MIB as f64,
                t.elapsed().as_secs_f64()
            );
            let mut times = Vec::new();
            for i in 0..runs(5) {
                let (s, ..) = checkup(&mut patient, &share, &items, &format!("Dr. S{i}")).await;
                println!("  checkup synthea run {i}: {s:.3} s");
                times.push(s);
            }
            let (_, doctor, link, _) = checkup(&mut patient, &share, &items, "Dr. Lanes").await;
            // Baseline of the same run: one audited GET per blob (no batches).
            let mut per_blob = 0.0;
            for lanes in [1, 4, 16] {
                let s = fetch_in_lanes(&relay.url, &doctor, link, lanes, items.len()).await;
                println!("  info: fetch only, one GET per blob, {lanes} request lane(s): {s:.3} s");
                per_blob = s;
            }
            let med = median(times);
            println!(
                "  info: whole batched check-up / fetch alone with one GET per blob at 16 lanes: {:.3}",
                med / per_blob
            );
            results.push(format!("RESULT checkup_largest_synthea_s {med:.3}"));
        }
        None if !wanted("synthea") => {}
        None => {
            if std::env::var("CAREKEY_REQUIRE_FIXTURES").as_deref() == Ok("1") {
                panic!("fixtures required (CAREKEY_REQUIRE_FIXTURES=1) but not found");
            }
            println!("fixtures not found (set CAREKEY_FIXTURES): skipping the Synthea figure");
        }
    }

    // 2. 100 MiB check-up vs the in-process crypto of the same bytes.
    let items = hundred_mib();
    if wanted("100mib") {
        let relay = start_relay_with(&opts);
        let t = Instant::now();
        let (mut patient, share) = new_share(&relay, &items).await;
        println!(
            "100 MiB share created in {:.2} s",
            t.elapsed().as_secs_f64()
        );
        let (mut flow, mut crypto) = (Vec::new(), Vec::new());
        for i in 0..runs(5) {
            let (s, ..) = checkup(&mut patient, &share, &items, &format!("Dr. M{i}")).await;
            let c = crypto_only(&items);
            println!("  checkup 100 MiB run {i}: {s:.3} s (crypto only {c:.3} s)");
            flow.push(s);
            crypto.push(c);
        }
        let (f, c) = (median(flow), median(crypto));
        results.push(format!("RESULT checkup_100MiB_s {f:.3}"));
        results.push(format!("RESULT checkup_100MiB_vs_crypto {:.2}", f / c));
    }

    // 3. Revoke one of two doctors on a 100 MiB share (fresh share per run).
    if wanted("revoke") {
        let relay = start_relay_with(&opts);
        let cancel = Cancel::new();
        let mut times = Vec::new();
        for i in 0..runs(3) {
            let (mut patient, share) = new_share(&relay, &items).await;
            let (_, _, _, rel_a) = checkup(&mut patient, &share, &items, "Dr. A").await;
            let (_, mut b, link_b, _) = checkup(&mut patient, &share, &items, "Dr. B").await;
            // Where the time goes: when sealing ended and the upload ended, from progress.
            let marks = std::sync::Mutex::new((0.0f64, 0.0f64));
            let t = Instant::now();
            let sink = |p: Progress| {
                let mut m = marks.lock().unwrap();
                match p.stage {
                    Stage::Sealing => m.0 = t.elapsed().as_secs_f64(),
                    Stage::Uploading => m.1 = t.elapsed().as_secs_f64(),
                    _ => {}
                }
            };
            patient
                .revoke(&share, &rel_a, &sink, &cancel)
                .await
                .expect("revoke");
            let s = t.elapsed().as_secs_f64();
            let (sealed, uploaded) = *marks.lock().unwrap();
            println!(
                "  revoke 100 MiB run {i}: {s:.3} s (token revoke + sealing {sealed:.3} s, upload {:.3} s, deliver + swap + delete {:.3} s)",
                uploaded - sealed,
                s - uploaded
            );
            times.push(s);
            let got = b
                .fetch(&link_b, &NoProgress, &cancel)
                .await
                .expect("B follows");
            assert_eq!(got.len(), items.len());
        }
        results.push(format!("RESULT revoke_100MiB_s {:.3}", median(times)));
    }

    for r in results {
        println!("{r}");
    }
}
