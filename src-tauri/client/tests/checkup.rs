//! The check-up flows end to end through a real `carekey-relay` process on 127.0.0.1:
//! share → QR → scan → check codes → grant → fetch with progress → note back → access log →
//! revoke (one doctor loses access, the other follows the re-key).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use carekey_client::ClientError;
use carekey_client::doctor::Doctor;
use carekey_client::patient::{AccessKind, Patient, ShareItem, ShareOptions, summarize};
use carekey_client::progress::{Cancel, NoProgress, Progress, Stage};
use carekey_client::relay::Relay;
use carekey_core::grant::{Category, Policy};
use carekey_core::keys::{DeviceIdentity, Role, RootSecret};
use rand_core::OsRng;
use zeroize::Zeroizing;

/// A relay process on a free loopback port; killed on drop.
struct RelayProcess {
    child: Child,
    url: String,
    _data: tempfile::TempDir,
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn relay_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CAREKEY_RELAY_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let p = target.join("debug/carekey-relay");
    assert!(
        p.is_file(),
        "relay binary not found at {} (run `cargo build -p carekey-relay` or set CAREKEY_RELAY_BIN)",
        p.display()
    );
    p
}

fn start_relay() -> RelayProcess {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let data = tempfile::tempdir().expect("temp dir");
    let child = Command::new(relay_bin())
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--origin",
            &url,
            "--data",
        ])
        .arg(data.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("relay starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "relay did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    RelayProcess {
        child,
        url,
        _data: data,
    }
}

fn in_a_day() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
        + 86_400
}

fn identity(name: &str, role: Role) -> (DeviceIdentity, carekey_core::keys::Card) {
    let id = DeviceIdentity::from_root(&RootSecret::random(&mut OsRng));
    let card = id
        .card(
            name,
            role,
            (role == Role::Doctor).then_some("GMC-7"),
            1_800_000_000,
        )
        .expect("card");
    (id, card)
}

fn category_of(resource_type: &str) -> Category {
    match resource_type {
        "AllergyIntolerance" => Category::Allergies,
        "Condition" => Category::Conditions,
        "MedicationStatement" | "MedicationRequest" | "Medication" => Category::Medications,
        "Immunization" => Category::Immunizations,
        "Procedure" => Category::Procedures,
        "Observation" | "DiagnosticReport" => Category::Observations,
        "Patient" => Category::Demographics,
        _ => Category::Other,
    }
}

/// The HL7 IPS example's resources when the fixtures are there, else a few hand-made ones;
/// plus one 3 MiB attachment (chunked upload path).
fn share_items() -> Vec<ShareItem> {
    let dir = std::env::var_os("CAREKEY_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"));
    let mut items = Vec::new();
    match std::fs::read(dir.join("fhir/ips-bundle-01.json")) {
        Ok(b) => {
            let bundle: serde_json::Value = serde_json::from_slice(&b).expect("IPS bundle is JSON");
            for (i, e) in bundle["entry"]
                .as_array()
                .expect("entries")
                .iter()
                .enumerate()
            {
                let r = &e["resource"];
                let t = r["resourceType"].as_str().unwrap_or("Unknown");
                items.push(ShareItem {
                    record_id: [i as u8 + 1; 16],
                    category: category_of(t),
                    title: t.to_owned(),
                    data: Zeroizing::new(serde_json::to_vec(r).expect("re-encodes")),
                    attachment: false,
                });
            }
        }
        Err(_) => {
            println!(
                "fixtures not found at {}: using hand-made resources",
                dir.display()
            );
            for i in 0..5u8 {
                items.push(ShareItem {
                    record_id: [i + 1; 16],
                    category: Category::Conditions,
                    title: format!("Condition {i}"),
                    data: Zeroizing::new(
                        format!(r#"{{"resourceType":"Condition","id":"c{i}"}}"#).into_bytes(),
                    ),
                    attachment: false,
                });
            }
        }
    }
    let pdf: Vec<u8> = (0..3 * 1024 * 1024 + 123)
        .map(|i| (i % 251) as u8)
        .collect();
    items.push(ShareItem {
        record_id: [0xee; 16],
        category: Category::Documents,
        title: "discharge-letter.pdf".into(),
        data: Zeroizing::new(pdf),
        attachment: true,
    });
    items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkup_share_scan_note_log_and_revoke() {
    let relay = start_relay();
    let (pid, pcard) = identity("Pat Example", Role::Patient);
    let mut patient = Patient::new(pid, pcard, Relay::new(&relay.url).expect("relay URL"));
    let items = share_items();
    let n_items = items.len();
    let cancel = Cancel::new();
    let uploads = Mutex::new(Vec::<Progress>::new());
    let record = |p: Progress| uploads.lock().expect("lock").push(p);
    let share = patient
        .create_share(
            items.clone(),
            ShareOptions {
                expires_at: in_a_day(),
                policy: Policy::Ask,
                delegation_depth: 0,
            },
            &record,
            &cancel,
        )
        .await
        .expect("share uploads");
    {
        let u = uploads.lock().expect("lock");
        assert!(
            u.iter()
                .any(|p| p.stage == Stage::Uploading && p.done == p.total && p.total > 3_000_000)
        );
    }

    // Two doctors pair, one after the other.
    let mut doctors = Vec::new();
    for name in ["Dr. Ada Quinn", "Dr. Ben Stone"] {
        let (did, dcard) = identity(name, Role::Doctor);
        let mut doctor = Doctor::new(did, dcard.clone());
        let mut session = patient.start_pairing(&share).await.expect("pairing opens");
        let qr = session.qr_text();
        assert!(qr.starts_with("CAREKEY:"));
        let scan = doctor.scan(&qr).await.expect("doctor scans");
        let at_door = patient
            .wait_for_doctor(&mut session, 10, &cancel)
            .await
            .expect("reply arrives");
        assert_eq!(at_door.card, dcard);
        assert!(!at_door.attested);
        assert_eq!(
            at_door.check_code,
            scan.check_code(),
            "both screens show the same code"
        );
        let rel = patient.confirm(session).await.expect("patient confirms");
        let link = doctor
            .wait_for_grant(scan, 10, &cancel)
            .await
            .expect("grant arrives");
        assert_eq!(
            doctor.patient(link).expect("linked").body.name,
            "Pat Example"
        );
        doctors.push((doctor, link, rel));
    }

    // Each doctor fetches and verifies everything, with progress.
    for (doctor, link, _) in doctors.iter_mut() {
        let seen = Mutex::new(0u64);
        let got = doctor
            .fetch(
                *link,
                &|p: Progress| *seen.lock().expect("lock") = p.done,
                &cancel,
            )
            .await
            .expect("fetch verifies");
        assert_eq!(got.len(), n_items);
        for (r, it) in got.iter().zip(&items) {
            assert_eq!(r.record_id, it.record_id);
            assert_eq!(r.data.as_slice(), it.data.as_slice());
            assert_eq!(r.attachment, it.attachment);
        }
        assert!(*seen.lock().expect("lock") > 3_000_000);
    }

    // Doctor A writes a note back; the patient sees it signed by the paired card.
    let note = serde_json::json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "Blood pressure"},
        "valueString": "120/80 mmHg"
    });
    let (da, link_a, rel_a) = &mut doctors[0];
    da.send_note(*link_a, &note).await.expect("note sent");
    let notes = patient.inbox(*rel_a, 5).await.expect("inbox");
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].resource, note);
    assert_eq!(notes[0].author.body.name, "Dr. Ada Quinn");
    // Reading again yields nothing new (deleted after read, replay guard holds).
    assert!(patient.inbox(*rel_a, 0).await.expect("inbox").is_empty());

    // The access log: verified chain, readable per doctor.
    let events = patient.access_log(&share).await.expect("log verifies");
    let per = summarize(&events);
    for name in ["Dr. Ada Quinn", "Dr. Ben Stone"] {
        let n = per.iter().find(|(w, _)| w == name).map(|(_, n)| *n);
        assert_eq!(
            n,
            Some(n_items + 1),
            "{name} fetched the manifest and every blob: {per:?}"
        );
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e.what, AccessKind::Relay(2)))
    );

    // Revoke doctor A: token first, then a new epoch for the others.
    let rel_a = doctors[0].2;
    patient
        .revoke(&share, rel_a, &NoProgress, &cancel)
        .await
        .expect("revoke");
    let (da, link_a, _) = &mut doctors[0];
    match da.fetch(*link_a, &NoProgress, &cancel).await {
        Err(ClientError::AccessEnded) => {}
        other => panic!("revoked doctor must get AccessEnded, got {other:?}"),
    }
    let (db, link_b, _) = &mut doctors[1];
    let again = db
        .fetch(*link_b, &NoProgress, &cancel)
        .await
        .expect("remaining doctor follows the re-key");
    assert_eq!(again.len(), n_items);
    assert_eq!(patient.active_grants(&share).len(), 1);

    // The log still extends the pinned head and shows the revocation.
    let events = patient
        .access_log(&share)
        .await
        .expect("log still verifies");
    assert!(
        events
            .iter()
            .any(|e| matches!(e.what, AccessKind::Relay(3)))
    );
}

#[tokio::test]
async fn unreachable_relay_and_bad_qr_are_clear_errors() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let (pid, pcard) = identity("Pat", Role::Patient);
    let mut patient = Patient::new(
        pid,
        pcard,
        Relay::new(&format!("http://127.0.0.1:{port}")).expect("url"),
    );
    let err = patient
        .create_share(
            Vec::new(),
            ShareOptions {
                expires_at: in_a_day(),
                policy: Policy::Never,
                delegation_depth: 0,
            },
            &NoProgress,
            &Cancel::new(),
        )
        .await
        .expect_err("nothing listens there");
    assert_eq!(err.code(), "relay_unreachable");
    let (did, dcard) = identity("Dr. X", Role::Doctor);
    let doctor = Doctor::new(did, dcard);
    let err = doctor
        .scan("HTTPS://example.org")
        .await
        .expect_err("not ours");
    assert_eq!(err.code(), "tampered");
    assert!(!err.to_string().contains("example.org"));
}
