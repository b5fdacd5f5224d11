//! A headless walk through both apps' screens, command by command, against a real relay
//! process: onboarding → import the largest Synthea patient → share chosen categories →
//! doctor scans → same check code → confirm → chart rows and counts → note back → patient
//! accepts → revoke → doctor sees access ended and its copy purged. Also: a long wait does
//! not block the other commands, and lock means locked.
//!
//! Needs the relay binary (`cargo build -p carekey-relay`) and `$CAREKEY_FIXTURES`; without
//! them the tests say they were skipped, unless `CAREKEY_REQUIRE_FIXTURES` is set (CI), where
//! a skip is a failure.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use carekey_app::events::NoEvents;
use carekey_app::ipc::{self, PolicyChoice, ShareCategory};
use carekey_app::session::{AppConfig, DoctorApp, GrantScopeView, PatientApp};
use carekey_vault::KdfParams;
use support::{fixtures, largest_synthea_patient};

mod support;

struct Relay {
    child: Child,
    url: String,
    _data: tempfile::TempDir,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn required() -> bool {
    std::env::var_os("CAREKEY_REQUIRE_FIXTURES").is_some()
}

fn skip(why: &str) {
    assert!(!required(), "CAREKEY_REQUIRE_FIXTURES is set but {why}");
    eprintln!("skipped: {why}");
}

fn start_relay() -> Option<Relay> {
    start_relay_with(&[])
}

/// [`start_relay`] with extra environment for the relay process (its flags are environment
/// variables too, docs/relay.md).
fn start_relay_with(env: &[(&str, &str)]) -> Option<Relay> {
    let bin = std::env::var_os("CAREKEY_RELAY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
                .join("debug/carekey-relay")
        });
    if !bin.is_file() {
        skip("the relay binary is not built (cargo build -p carekey-relay)");
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let data = tempfile::tempdir().expect("temp dir");
    let child = Command::new(bin)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--origin", &url])
        .args(["--sweep-secs", "1", "--data"])
        .arg(data.path())
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("relay starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "relay did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Relay {
        child,
        url,
        _data: data,
    })
}

fn config(dir: &Path, name: &str) -> AppConfig {
    AppConfig {
        vault_path: dir.join(name),
        // Cheap Argon2id: these tests are about the flows, not the passphrase cost.
        kdf: KdfParams {
            m_kib: 8 * 1024,
            t: 1,
            p: 1,
        },
    }
}

const PASS: &str = "correct horse battery staple";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_apps_walk_every_screen() {
    let Some(fx) = fixtures() else {
        return skip("CAREKEY_FIXTURES (synthea-10) not found");
    };
    let Some(relay) = start_relay() else { return };
    let dir = tempfile::tempdir().expect("dir");
    let patient = PatientApp::new(config(dir.path(), "patient.vault"), Arc::new(NoEvents));
    let doctor = DoctorApp::new(config(dir.path(), "doctor.vault"), Arc::new(NoEvents));

    // Onboarding.
    let words = patient
        .create_vault(ipc::CreateVault {
            passphrase: PASS.into(),
            name: "Pat Example".into(),
            licence: None,
            relay_url: relay.url.clone(),
        })
        .await
        .expect("patient vault");
    assert_eq!(words.split_whitespace().count(), 24);
    doctor
        .create_vault(ipc::CreateVault {
            passphrase: PASS.into(),
            name: "Dr. Ada Quinn".into(),
            licence: Some("GMC-7".into()),
            relay_url: relay.url.clone(),
        })
        .await
        .expect("doctor vault");

    // Import the largest Synthea patient.
    let file = dir.path().join("export.ndjson");
    let resources = largest_synthea_patient(&fx, &file);
    let report = patient
        .import_file(ipc::ImportFile {
            path: file.to_string_lossy().into_owned(),
        })
        .await
        .expect("import");
    assert_eq!(report.records, resources);
    let rows = patient.timeline().await.expect("timeline");
    assert_eq!(rows.len(), resources);

    // Share chosen categories.
    let chosen = [
        ShareCategory::Conditions,
        ShareCategory::Allergies,
        ShareCategory::Medications,
        ShareCategory::Immunizations,
    ];
    let started = patient
        .start_share(ipc::StartShare {
            categories: chosen.to_vec(),
            records: Vec::new(),
            expires_in_secs: 86_400,
            policy: PolicyChoice::Ask,
            depth: 0,
        })
        .await
        .expect("share");
    assert!(started.records > 0);
    assert!(started.qr_svg.starts_with("<svg") || started.qr_svg.contains("<svg"));

    // The doctor scans; both screens show the same code; the patient confirms.
    let scan = doctor
        .scan_text(ipc::ScanText {
            text: started.qr_text.to_lowercase(),
        })
        .await
        .expect("scan");
    let door = patient
        .wait_for_doctor(ipc::Wait {
            id: started.pairing.clone(),
            wait_secs: 20,
        })
        .await
        .expect("doctor at the door");
    assert_eq!(door.check_code, scan.check_code);
    assert_eq!(door.name, "Dr. Ada Quinn");
    assert!(door.trust.contains("self-asserted"), "{}", door.trust);
    let rel = patient
        .answer_doctor(ipc::AnswerDoctor {
            id: started.pairing.clone(),
            accept: true,
            categories: None,
        })
        .await
        .expect("confirm")
        .expect("relationship");
    let link = doctor
        .wait_for_grant(ipc::Wait {
            id: scan.scan.clone(),
            wait_secs: 20,
        })
        .await
        .expect("grant");

    // The doctor fetches; the chart holds exactly what was shared.
    let view = doctor
        .refresh_patient(ipc::IdRef { id: link.clone() })
        .await
        .expect("fetch");
    assert_eq!(view.status, "active");
    assert_eq!(view.records, started.records);
    let chart = doctor
        .chart(ipc::IdRef { id: link.clone() })
        .await
        .expect("chart");
    assert_eq!(chart.rows.len(), started.records);
    assert_eq!(chart.patient.id, link);
    // Every row opens as a record of this share (the detail view with provenance).
    let first = doctor
        .chart_record(ipc::RecordRef {
            id: chart.rows[0].id.clone(),
        })
        .await
        .expect("chart record");
    assert_eq!(first.summary.id.to_string(), chart.rows[0].id);
    let first_record = chart.rows[0].id.clone();
    let patients = doctor.patients().await.expect("patients");
    assert_eq!(patients.len(), 1);
    assert_eq!(patients[0].name, "Pat Example");
    let _ = chart.summary;

    // A note back (composed as a blood pressure; the app builds the FHIR); the patient keeps
    // it until accepting, then it is a signed record.
    let sent = doctor
        .write_back(ipc::WriteBack::BloodPressure {
            patient: link.clone(),
            systolic: 121.0,
            diastolic: 79.0,
            date: "2026-11-30".into(),
        })
        .await
        .expect("note");
    assert_eq!(sent.resource_type, "Observation");
    let listed = doctor.sent_notes().await.expect("sent list");
    assert_eq!(listed, vec![sent]);
    let mut inbox = Vec::new();
    for _ in 0..10 {
        inbox = patient.check_inbox(2).await.expect("inbox");
        if !inbox.is_empty() {
            break;
        }
    }
    assert_eq!(inbox.len(), 1, "the note arrived");
    assert_eq!(inbox[0].author, "Dr. Ada Quinn");
    assert!(inbox[0].signature.starts_with("signature valid"));
    // Kept in the vault: a restart (lock + unlock) still lists it.
    patient.lock().await;
    assert_eq!(patient.timeline().await.expect_err("locked").code, "locked");
    patient
        .unlock(ipc::Unlock {
            passphrase: PASS.into(),
        })
        .await
        .expect("unlock");
    let inbox = patient.inbox().await.expect("inbox after restart");
    assert_eq!(inbox.len(), 1);
    patient
        .answer_note(ipc::Answer {
            id: inbox[0].id.clone(),
            accept: true,
        })
        .await
        .expect("accept");
    assert!(patient.inbox().await.expect("inbox").is_empty());
    let rows = patient.timeline().await.expect("timeline");
    assert_eq!(rows.len(), resources + 1);

    // The Access screen lists the doctor; revoke.
    let shares = patient.shares().await.expect("shares");
    assert_eq!(shares.len(), 1);
    assert_eq!(shares[0].grantees.len(), 1);
    assert_eq!(shares[0].grantees[0].relationship, rel);
    assert_eq!(shares[0].grantees[0].status, "active");
    patient
        .revoke(ipc::Revoke {
            share: started.share.clone(),
            relationship: rel.clone(),
        })
        .await
        .expect("revoke");
    assert_eq!(
        patient.shares().await.expect("shares")[0].grantees[0].status,
        "revoked"
    );

    // Grants and revokes are backed up on their own, a few seconds after the last change
    // (the upload of a 3,489-record vault takes a while in a debug build: poll for it).
    let deadline = Instant::now() + carekey_app::session::AUTO_BACKUP_DELAY * 8;
    while patient
        .settings()
        .await
        .expect("settings")
        .last_backup_at
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "no automatic backup after the grant and revoke"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The doctor learns access ended; its copy is purged.
    let ended = doctor
        .refresh_patient(ipc::IdRef { id: link.clone() })
        .await
        .expect("refresh after revoke");
    assert_eq!(ended.status, "ended");
    assert_eq!(ended.records, 0);
    assert_eq!(
        doctor
            .chart(ipc::IdRef { id: link })
            .await
            .expect_err("ended")
            .code,
        "access_ended"
    );
    // Nothing of the ended share opens any more.
    assert_eq!(
        doctor
            .chart_record(ipc::RecordRef { id: first_record })
            .await
            .expect_err("purged")
            .code,
        "not_found"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_wait_does_not_block_other_commands() {
    let Some(relay) = start_relay() else { return };
    let dir = tempfile::tempdir().expect("dir");
    let patient = PatientApp::new(config(dir.path(), "p.vault"), Arc::new(NoEvents));
    patient
        .create_vault(ipc::CreateVault {
            passphrase: PASS.into(),
            name: "Pat Example".into(),
            licence: None,
            relay_url: relay.url.clone(),
        })
        .await
        .expect("vault");
    patient
        .add_record(ipc::ManualRecord::Allergy {
            text: "Penicillin".into(),
            reaction: Some("rash".into()),
        })
        .await
        .expect("record");
    let started = patient
        .start_share(ipc::StartShare {
            categories: vec![ShareCategory::Allergies],
            records: Vec::new(),
            expires_in_secs: 3600,
            policy: PolicyChoice::Never,
            depth: 0,
        })
        .await
        .expect("share");
    let waiting = {
        let p = patient.clone();
        let id = started.pairing.clone();
        tokio::spawn(async move { p.wait_for_doctor(ipc::Wait { id, wait_secs: 30 }).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    let rows = patient.timeline().await.expect("timeline during the wait");
    let shares = patient.shares().await.expect("shares during the wait");
    let took = t.elapsed();
    assert_eq!(rows.len(), 1);
    assert_eq!(shares.len(), 1);
    // A lock check, not a timing goal: a blocked command would wait out the 30 s poll.
    assert!(
        took < Duration::from_secs(5),
        "other commands waited {took:?}"
    );
    assert!(!waiting.is_finished(), "the wait goes on");
    waiting.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_paths_lose_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let patient = PatientApp::new(config(dir.path(), "p.vault"), Arc::new(NoEvents));
    // Bad arguments are refused before any work: no vault file appears.
    let e = patient
        .create_vault(ipc::CreateVault {
            passphrase: "short".into(),
            name: "Pat".into(),
            licence: None,
            relay_url: "http://relay.example.org".into(),
        })
        .await
        .expect_err("weak passphrase");
    assert_eq!(e.code, "invalid_input");
    assert!(!patient.vault_exists());
    let e = patient
        .unlock(ipc::Unlock {
            passphrase: PASS.into(),
        })
        .await
        .expect_err("no vault yet");
    assert_eq!(e.code, "no_vault");
    patient
        .create_vault(ipc::CreateVault {
            passphrase: PASS.into(),
            name: "Pat Example".into(),
            licence: None,
            relay_url: "https://relay.example.org".into(),
        })
        .await
        .expect("vault");
    patient
        .add_record(ipc::ManualRecord::Condition {
            text: "Asthma".into(),
            onset: Some("2019-04-01".into()),
        })
        .await
        .expect("record");

    // A malformed import changes nothing.
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        b"{\"resourceType\": \"Bundle\", \"entry\": [{\"resource\": 7}]}",
    )
    .expect("write");
    let e = patient
        .import_file(ipc::ImportFile {
            path: bad.to_string_lossy().into_owned(),
        })
        .await
        .expect_err("malformed");
    assert_ne!(e.code, "internal");
    let pdf = dir.path().join("scan.pdf");
    std::fs::write(&pdf, b"%PDF-1.7 not FHIR").expect("write");
    let e = patient
        .import_file(ipc::ImportFile {
            path: pdf.to_string_lossy().into_owned(),
        })
        .await
        .expect_err("not FHIR");
    assert_eq!(e.code, "invalid_input");
    assert_eq!(patient.timeline().await.expect("timeline").len(), 1);

    // A wrong passphrase after a lock: refused, and the vault still opens with the right one.
    patient.lock().await;
    let e = patient
        .unlock(ipc::Unlock {
            passphrase: "not the passphrase".into(),
        })
        .await
        .expect_err("wrong passphrase");
    assert_eq!(e.code, "wrong_passphrase");
    assert!(!e.message.contains("not the passphrase"));
    patient
        .unlock(ipc::Unlock {
            passphrase: PASS.into(),
        })
        .await
        .expect("right passphrase");
    let rows = patient.timeline().await.expect("timeline");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].title, "Asthma");
    // An old QR (or any text that is not a Carekey code) reads as what it is.
    let doctor = DoctorApp::new(config(dir.path(), "d.vault"), Arc::new(NoEvents));
    doctor
        .create_vault(ipc::CreateVault {
            passphrase: PASS.into(),
            name: "Dr. Ada Quinn".into(),
            licence: None,
            relay_url: "https://relay.example.org".into(),
        })
        .await
        .expect("doctor vault");
    let e = doctor
        .scan_text(ipc::ScanText {
            text: "shlink:/eyJ1cmwiOiJodHRwczovL2V4YW1wbGUub3JnIn0".into(),
        })
        .await
        .expect_err("a SMART Health Link goes to open_smart_link");
    assert_eq!(e.code, "smart_link");
    let e = doctor
        .scan_text(ipc::ScanText {
            text: "https://example.org/hello".into(),
        })
        .await
        .expect_err("not a code");
    assert_eq!(e.code, "not_supported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejecting_the_code_tells_the_doctor_and_a_used_qr_says_so() {
    let Some(relay) = start_relay() else { return };
    let dir = tempfile::tempdir().expect("dir");
    let patient = PatientApp::new(config(dir.path(), "p.vault"), Arc::new(NoEvents));
    let doctor = DoctorApp::new(config(dir.path(), "d.vault"), Arc::new(NoEvents));
    let second = DoctorApp::new(config(dir.path(), "d2.vault"), Arc::new(NoEvents));
    for (app, name) in [(&doctor, "Dr. Ada Quinn"), (&second, "Dr. Bo Lind")] {
        app.create_vault(ipc::CreateVault {
            passphrase: PASS.into(),
            name: name.into(),
            licence: None,
            relay_url: relay.url.clone(),
        })
        .await
        .expect("doctor vault");
    }
    patient
        .create_vault(ipc::CreateVault {
            passphrase: PASS.into(),
            name: "Pat Example".into(),
            licence: None,
            relay_url: relay.url.clone(),
        })
        .await
        .expect("vault");
    patient
        .add_record(ipc::ManualRecord::Medication {
            text: "Salbutamol inhaler".into(),
            dosage: None,
        })
        .await
        .expect("record");
    let started = patient
        .start_share(ipc::StartShare {
            categories: vec![ShareCategory::Medications],
            records: Vec::new(),
            expires_in_secs: 3600,
            policy: PolicyChoice::Never,
            depth: 0,
        })
        .await
        .expect("share");
    let scan = doctor
        .scan_text(ipc::ScanText {
            text: started.qr_text.clone(),
        })
        .await
        .expect("scan");
    patient
        .wait_for_doctor(ipc::Wait {
            id: started.pairing.clone(),
            wait_secs: 20,
        })
        .await
        .expect("doctor at the door");
    // A second device scanning the same QR after the first answer.
    let e = second
        .scan_text(ipc::ScanText {
            text: started.qr_text.clone(),
        })
        .await
        .expect_err("QR already used");
    assert_eq!(e.code, "already_used", "{e:?}");
    // The patient rejects (codes did not match): the doctor hears it well before its wait.
    patient
        .answer_doctor(ipc::AnswerDoctor {
            id: started.pairing.clone(),
            accept: false,
            categories: None,
        })
        .await
        .expect("reject");
    let t = Instant::now();
    let e = doctor
        .wait_for_grant(ipc::Wait {
            id: scan.scan,
            wait_secs: 60,
        })
        .await
        .expect_err("declined");
    assert_eq!(e.code, "declined");
    assert!(t.elapsed() < Duration::from_secs(30));
    assert!(
        patient.shares().await.expect("shares")[0]
            .grantees
            .is_empty()
    );
    let activity = patient.activity().await.expect("local audit");
    assert!(
        activity.iter().any(|r| matches!(&r.event,
            carekey_vault::AuditEvent::Declined { doctor, .. } if doctor == "Dr. Ada Quinn")),
        "the decline is in the device's own log"
    );
    // "New QR" for the same share: the second doctor pairs with it and gets the grant.
    let again = patient
        .new_qr(ipc::IdRef {
            id: started.share.clone(),
        })
        .await
        .expect("new QR");
    assert_eq!(again.share, started.share);
    assert_ne!(again.qr_text, started.qr_text);
    assert_eq!(again.records, started.records);
    let scan2 = second
        .scan_text(ipc::ScanText {
            text: again.qr_text.clone(),
        })
        .await
        .expect("second doctor scans the new QR");
    patient
        .wait_for_doctor(ipc::Wait {
            id: again.pairing.clone(),
            wait_secs: 20,
        })
        .await
        .expect("second doctor at the door");
    patient
        .answer_doctor(ipc::AnswerDoctor {
            id: again.pairing,
            accept: true,
            categories: None,
        })
        .await
        .expect("confirm");
    second
        .wait_for_grant(ipc::Wait {
            id: scan2.scan,
            wait_secs: 20,
        })
        .await
        .expect("grant through the new QR");
    let shares = patient.shares().await.expect("shares");
    assert_eq!(shares.len(), 1);
    assert_eq!(shares[0].grantees.len(), 1);
    assert_eq!(shares[0].grantees[0].name, "Dr. Bo Lind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_backup_restore_and_relay_check() {
    let Some(relay) = start_relay() else { return };
    let dir = tempfile::tempdir().expect("dir");
    let patient = PatientApp::new(config(dir.path(), "p.vault"), Arc::new(NoEvents));
    let words = patient
        .create_vault(ipc::CreateVault {
            passphrase: PASS.into(),
            name: "Pat Example".into(),
            licence: None,
            relay_url: relay.url.clone(),
        })
        .await
        .expect("vault");
    let check = patient
        .check_relay(ipc::SetRelay {
            relay_url: relay.url.clone(),
        })
        .await
        .expect("check");
    assert!(check.reachable, "{}", check.message);
    let dead = patient
        .check_relay(ipc::SetRelay {
            relay_url: "http://127.0.0.1:9".into(),
        })
        .await
        .expect("check answers");
    assert!(!dead.reachable);
    for text in ["Asthma", "Hay fever"] {
        patient
            .add_record(ipc::ManualRecord::Condition {
                text: text.into(),
                onset: None,
            })
            .await
            .expect("record");
    }
    // Records are backed up on their own, a few seconds after the last change.
    let deadline = Instant::now() + carekey_app::session::AUTO_BACKUP_DELAY * 4;
    let auto = loop {
        if let Some(at) = patient.settings().await.expect("settings").last_backup_at {
            break at;
        }
        assert!(
            Instant::now() < deadline,
            "no automatic backup of the records"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let status = patient.backup_now().await.expect("backup");
    assert!(status.version >= 2, "the automatic backup came first");
    assert!(status.at >= auto);
    assert_eq!(
        patient.settings().await.expect("settings").last_backup_at,
        Some(status.at)
    );
    // The passphrase changes; the old one no longer opens the vault.
    patient
        .change_passphrase(ipc::ChangePassphrase {
            old: PASS.into(),
            new: "another long passphrase 42".into(),
        })
        .await
        .expect("changed");
    patient.lock().await;
    assert_eq!(
        patient
            .unlock(ipc::Unlock {
                passphrase: PASS.into()
            })
            .await
            .expect_err("old passphrase")
            .code,
        "wrong_passphrase"
    );
    // A new device: the 24 words and the relay bring the records back.
    let other = tempfile::tempdir().expect("dir");
    let restored = PatientApp::new(config(other.path(), "p.vault"), Arc::new(NoEvents));
    let mut wrong: Vec<&str> = words.split_whitespace().collect();
    wrong.swap(0, 1);
    let e = restored
        .restore_vault(ipc::RestoreVault {
            phrase: wrong.join(" "),
            new_passphrase: "new device passphrase 7".into(),
            name: "Pat Example".into(),
            relay_url: relay.url.clone(),
        })
        .await
        .expect_err("wrong words");
    assert!(
        ["invalid_phrase", "not_found", "invalid_input"].contains(&e.code.as_str()),
        "{e:?}"
    );
    restored
        .restore_vault(ipc::RestoreVault {
            phrase: words,
            new_passphrase: "new device passphrase 7".into(),
            name: "Pat Example".into(),
            relay_url: relay.url.clone(),
        })
        .await
        .expect("restore");
    let rows = restored.timeline().await.expect("timeline");
    let mut titles: Vec<_> = rows.iter().map(|r| r.title.clone()).collect();
    titles.sort();
    assert_eq!(titles, ["Asthma", "Hay fever"]);
    assert_eq!(
        restored.settings().await.expect("settings").relay_url,
        relay.url
    );
}

/// Issue 11 item 2 through the app: a backup made before a revoke, restored on a new device,
/// does not bring the revoked doctor back: the restore reconciles with the relay, the Shares
/// screen says `revoked`, and the doctor's next read ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_of_a_backup_older_than_a_revoke_keeps_the_doctor_revoked() {
    let Some(relay) = start_relay() else { return };
    let dir = tempfile::tempdir().expect("dir");
    let (patient, doctor, link, words) =
        paired_with_words(&relay, dir.path(), PolicyChoice::Never, 0).await;
    patient
        .backup_now()
        .await
        .expect("backup before the revoke");
    let shares = patient.shares().await.expect("shares");
    let (share, grantee) = (shares[0].id.clone(), shares[0].grantees[0].clone());
    patient
        .revoke(ipc::Revoke {
            share: share.clone(),
            relationship: grantee.relationship.clone(),
        })
        .await
        .expect("revoke");
    // The phone is lost before the automatic backup ran (locked, it cannot run).
    patient.lock().await;
    drop(patient);
    let other = tempfile::tempdir().expect("dir");
    let restored = PatientApp::new(config(other.path(), "p.vault"), Arc::new(NoEvents));
    restored
        .restore_vault(ipc::RestoreVault {
            phrase: words,
            new_passphrase: "new device passphrase 7".into(),
            name: "Pat Example".into(),
            relay_url: relay.url.clone(),
        })
        .await
        .expect("restore");
    let shares = restored.shares().await.expect("shares");
    let g = shares
        .iter()
        .find(|s| s.id == share)
        .and_then(|s| {
            s.grantees
                .iter()
                .find(|g| g.relationship == grantee.relationship)
        })
        .expect("grantee listed");
    assert_eq!(g.status, "revoked", "the screen says so");
    let ended = doctor
        .refresh_patient(ipc::IdRef { id: link })
        .await
        .expect("refresh after the restore");
    assert_eq!(ended.status, "ended");
}

/// The child half of [`a_note_survives_sigkill_between_receive_and_accept`]: unlocks the
/// patient app in `$CAREKEY_SIGKILL_CHILD`, receives the inbox, says so, and waits to be
/// killed. Run only by that test (`--ignored --exact`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of a_note_survives_sigkill_between_receive_and_accept"]
async fn sigkill_child() {
    let Some(dir) = std::env::var_os("CAREKEY_SIGKILL_CHILD") else {
        return;
    };
    let patient = PatientApp::new(config(Path::new(&dir), "p.vault"), Arc::new(NoEvents));
    patient
        .unlock(ipc::Unlock {
            passphrase: PASS.into(),
        })
        .await
        .expect("child unlocks");
    let mut got = Vec::new();
    for _ in 0..10 {
        got = patient.check_inbox(2).await.expect("child inbox");
        if !got.is_empty() {
            break;
        }
    }
    println!("RECEIVED {}", got.len());
    tokio::time::sleep(Duration::from_secs(120)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_note_survives_sigkill_between_receive_and_accept() {
    use std::io::BufRead;
    let Some(relay) = start_relay() else { return };
    let dir = tempfile::tempdir().expect("dir");
    {
        let (patient, doctor, link) = paired(&relay, dir.path(), PolicyChoice::Never, 0).await;
        doctor
            .send_note(ipc::SendNote {
                patient: link,
                resource: serde_json::json!({"resourceType": "Observation", "status": "final",
                    "code": {"text": "Peak flow"},
                    "valueQuantity": {"value": 480, "unit": "L/min"}}),
            })
            .await
            .expect("note");
        patient.lock().await;
    }

    // The patient app process receives the note (the relay's copy is then deleted) and is
    // killed before anyone answers it.
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["sigkill_child", "--exact", "--ignored", "--nocapture"])
        .env("CAREKEY_SIGKILL_CHILD", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("child starts");
    let stdout = child.stdout.take().expect("piped");
    let mut received = None;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.expect("child output");
        if let Some(n) = line.strip_prefix("RECEIVED ") {
            received = Some(n.trim().to_owned());
            break;
        }
    }
    // SIGKILL: no destructor, no lock, no save runs in the child after this.
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert_eq!(
        received.as_deref(),
        Some("1"),
        "the child received the note"
    );

    let patient = PatientApp::new(config(dir.path(), "p.vault"), Arc::new(NoEvents));
    patient
        .unlock(ipc::Unlock {
            passphrase: PASS.into(),
        })
        .await
        .expect("unlock after the kill");
    // Nothing is left at the relay to read again: the note is only in the vault.
    assert!(patient.check_inbox(1).await.expect("inbox").len() == 1);
    let inbox = patient.inbox().await.expect("inbox");
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].author, "Dr. Ada Quinn");
    assert!(inbox[0].signature.starts_with("signature valid"));
    patient
        .answer_note(ipc::Answer {
            id: inbox[0].id.clone(),
            accept: true,
        })
        .await
        .expect("accept");
    let rows = patient.timeline().await.expect("timeline");
    assert!(
        rows.iter().any(|r| r.title == "Peak flow"),
        "accepted into the vault"
    );
}

/// At the check-up confirm the patient narrows the share to some of its kinds of record
/// (`answer_doctor` with `categories`): a list outside the share, an empty one, or one on a
/// reject is refused before anything is sent and the doctor stays at the door; the narrower
/// confirm gives the doctor exactly the records of the ticked kinds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirm_narrower_than_the_share_gives_only_the_ticked_kinds() {
    let Some(relay) = start_relay() else { return };
    let dir = tempfile::tempdir().expect("dir");
    let patient = PatientApp::new(config(dir.path(), "p.vault"), Arc::new(NoEvents));
    let doctor = DoctorApp::new(config(dir.path(), "d.vault"), Arc::new(NoEvents));
    let vault = |name: &str| ipc::CreateVault {
        passphrase: PASS.into(),
        name: name.into(),
        licence: None,
        relay_url: relay.url.clone(),
    };
    patient
        .create_vault(vault("Pat Example"))
        .await
        .expect("patient vault");
    doctor
        .create_vault(vault("Dr. Ada Quinn"))
        .await
        .expect("doctor vault");
    for r in [
        ipc::ManualRecord::Allergy {
            text: "Penicillin".into(),
            reaction: None,
        },
        ipc::ManualRecord::Allergy {
            text: "Peanuts".into(),
            reaction: None,
        },
        ipc::ManualRecord::Condition {
            text: "Asthma".into(),
            onset: None,
        },
        ipc::ManualRecord::Immunization {
            text: "Influenza".into(),
            date: "2026-10-01".into(),
        },
    ] {
        patient.add_record(r).await.expect("record");
    }
    let started = patient
        .start_share(ipc::StartShare {
            categories: vec![
                ShareCategory::Allergies,
                ShareCategory::Conditions,
                ShareCategory::Immunizations,
            ],
            records: Vec::new(),
            expires_in_secs: 3600,
            policy: PolicyChoice::Never,
            depth: 0,
        })
        .await
        .expect("share");
    assert_eq!(started.records, 4);
    let scan = doctor
        .scan_text(ipc::ScanText {
            text: started.qr_text.clone(),
        })
        .await
        .expect("scan");
    patient
        .wait_for_doctor(ipc::Wait {
            id: started.pairing.clone(),
            wait_secs: 20,
        })
        .await
        .expect("door");
    let answer = |accept, categories| ipc::AnswerDoctor {
        id: started.pairing.clone(),
        accept,
        categories,
    };
    for (bad, why) in [
        (
            answer(true, Some(vec![ShareCategory::Medications])),
            "a kind the share does not hold",
        ),
        (
            answer(
                true,
                Some(vec![ShareCategory::Allergies, ShareCategory::Medications]),
            ),
            "partly outside the share",
        ),
        (answer(true, Some(vec![])), "nothing ticked"),
        (
            answer(
                true,
                Some(vec![ShareCategory::Allergies, ShareCategory::Allergies]),
            ),
            "a kind twice",
        ),
        (
            answer(false, Some(vec![ShareCategory::Allergies])),
            "categories on a reject",
        ),
    ] {
        let e = patient.answer_doctor(bad).await.expect_err(why);
        assert_eq!(e.code, "invalid_input", "{why}: {e:?}");
        assert!(e.message.starts_with("categories:"), "{why}: {}", e.message);
    }
    // Still at the door after every refusal: the narrower confirm goes through.
    let rel = patient
        .answer_doctor(answer(
            true,
            Some(vec![ShareCategory::Allergies, ShareCategory::Immunizations]),
        ))
        .await
        .expect("narrower confirm");
    assert!(rel.is_some());
    let link = doctor
        .wait_for_grant(ipc::Wait {
            id: scan.scan,
            wait_secs: 20,
        })
        .await
        .expect("grant");
    let chart = doctor
        .refresh_patient(ipc::IdRef { id: link.clone() })
        .await
        .expect("doctor fetches");
    assert_eq!(chart.records, 3, "two allergies and the immunization");
    let chart = doctor.chart(ipc::IdRef { id: link }).await.expect("chart");
    let count = |ty: &str| chart.rows.iter().filter(|r| r.fhir_type == ty).count();
    assert_eq!(count("AllergyIntolerance"), 2);
    assert_eq!(count("Immunization"), 1);
    assert_eq!(
        count("Condition"),
        0,
        "the unticked condition never reached the doctor"
    );
    assert_eq!(chart.rows.len(), 3);
    assert!(chart.rows.iter().all(|r| !r.title.contains("Asthma")));
    let mut kinds = chart.categories.clone();
    kinds.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(
        kinds,
        vec![ShareCategory::Allergies, ShareCategory::Immunizations]
    );
    // The patient's own log says what this doctor can read, not what the share holds.
    let shared: Vec<_> = patient
        .activity()
        .await
        .expect("activity")
        .into_iter()
        .filter_map(|a| match a.event {
            carekey_vault::AuditEvent::Shared { records, .. } => Some(records),
            _ => None,
        })
        .collect();
    assert_eq!(shared, vec![3]);
    // The Access screen says what this doctor sees: the ticked kinds, not the share's three.
    let shares = patient.shares().await.expect("shares");
    assert_eq!(shares[0].categories.len(), 3);
    assert_eq!(
        shares[0].grantees[0].scope,
        GrantScopeView::Only {
            categories: vec![ShareCategory::Allergies, ShareCategory::Immunizations],
            records: 0,
        }
    );
}

/// A patient with one hand-entered allergy, shared under `policy` with a doctor who has
/// fetched it: (patient, doctor, the doctor's link to the patient).
async fn paired(
    relay: &Relay,
    dir: &Path,
    policy: PolicyChoice,
    depth: u8,
) -> (PatientApp, DoctorApp, String) {
    let (patient, doctor, link, _) = paired_with_words(relay, dir, policy, depth).await;
    (patient, doctor, link)
}

/// [`paired`], with the patient's 24 words.
async fn paired_with_words(
    relay: &Relay,
    dir: &Path,
    policy: PolicyChoice,
    depth: u8,
) -> (PatientApp, DoctorApp, String, String) {
    let allergy = ipc::ManualRecord::Allergy {
        text: "Penicillin".into(),
        reaction: None,
    };
    let cats = vec![ShareCategory::Allergies];
    paired_full(relay, dir, policy, depth, vec![allergy], cats, None).await
}

/// [`paired`] with these records added and these categories shared.
async fn paired_with(
    relay: &Relay,
    dir: &Path,
    policy: PolicyChoice,
    depth: u8,
    records: Vec<ipc::ManualRecord>,
    categories: Vec<ShareCategory>,
    import: Option<&Path>,
) -> (PatientApp, DoctorApp, String) {
    let (patient, doctor, link, _) =
        paired_full(relay, dir, policy, depth, records, categories, import).await;
    (patient, doctor, link)
}

/// [`paired_with`], also returning the patient's 24 words. `import` is a FHIR file imported
/// before the share.
async fn paired_full(
    relay: &Relay,
    dir: &Path,
    policy: PolicyChoice,
    depth: u8,
    records: Vec<ipc::ManualRecord>,
    categories: Vec<ShareCategory>,
    import: Option<&Path>,
) -> (PatientApp, DoctorApp, String, String) {
    let (patient, doctor, words) = two_apps(relay, dir).await;
    for r in records {
        patient.add_record(r).await.expect("record");
    }
    if let Some(file) = import {
        patient
            .import_file(ipc::ImportFile {
                path: file.to_string_lossy().into_owned(),
            })
            .await
            .expect("import");
    }
    let started = patient
        .start_share(ipc::StartShare {
            categories,
            records: Vec::new(),
            expires_in_secs: 3600,
            policy,
            depth,
        })
        .await
        .expect("share");
    let link = checkup(&patient, &doctor, started).await;
    (patient, doctor, link, words)
}

/// Both apps with new vaults on `relay` (Pat Example, Dr. Ada Quinn): (patient, doctor, the
/// patient's 24 words).
async fn two_apps(relay: &Relay, dir: &Path) -> (PatientApp, DoctorApp, String) {
    let patient = PatientApp::new(config(dir, "p.vault"), Arc::new(NoEvents));
    let doctor = DoctorApp::new(config(dir, "d.vault"), Arc::new(NoEvents));
    let vault = |name: &str| ipc::CreateVault {
        passphrase: PASS.into(),
        name: name.into(),
        licence: None,
        relay_url: relay.url.clone(),
    };
    let words = patient
        .create_vault(vault("Pat Example"))
        .await
        .expect("patient vault");
    doctor
        .create_vault(vault("Dr. Ada Quinn"))
        .await
        .expect("doctor vault");
    (patient, doctor, words)
}

/// The doctor scans `started`'s QR and the patient confirms the whole share: the doctor's
/// link id.
async fn checkup(
    patient: &PatientApp,
    doctor: &DoctorApp,
    started: carekey_app::session::ShareStarted,
) -> String {
    let scan = doctor
        .scan_text(ipc::ScanText {
            text: started.qr_text.clone(),
        })
        .await
        .expect("scan");
    patient
        .wait_for_doctor(ipc::Wait {
            id: started.pairing.clone(),
            wait_secs: 20,
        })
        .await
        .expect("door");
    patient
        .answer_doctor(ipc::AnswerDoctor {
            id: started.pairing,
            accept: true,
            categories: None,
        })
        .await
        .expect("confirm");
    doctor
        .wait_for_grant(ipc::Wait {
            id: scan.scan,
            wait_secs: 20,
        })
        .await
        .expect("grant")
}

/// A colleague's doctor app with an invite on `relay`: (app, invite view).
async fn colleague(relay: &Relay, dir: &Path) -> (DoctorApp, carekey_app::session::InviteView) {
    let cole = DoctorApp::new(config(dir, "c.vault"), Arc::new(NoEvents));
    cole.create_vault(ipc::CreateVault {
        passphrase: PASS.into(),
        name: "Dr. Cole Reyes".into(),
        licence: Some("GMC-9".into()),
        relay_url: relay.url.clone(),
    })
    .await
    .expect("colleague vault");
    let invite = cole
        .colleague_invite(ipc::SetRelay {
            relay_url: relay.url.clone(),
        })
        .await
        .expect("invite");
    (cole, invite)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_under_ask_and_never() {
    let Some(relay) = start_relay() else { return };
    let dir = tempfile::tempdir().expect("dir");
    let (patient, doctor, link) = paired(&relay, dir.path(), PolicyChoice::Ask, 0).await;
    let (cole, invite) = colleague(&relay, dir.path()).await;
    assert!(invite.text.starts_with("CAREKEY-INVITE:"));
    // The doctor reads the invite (from the QR) and sees the same code as the colleague.
    assert!(invite.qr_svg.contains("<svg"));
    let read = doctor
        .read_invite(ipc::ScanText {
            text: invite.text.to_lowercase(),
        })
        .await
        .expect("read invite");
    assert_eq!(read.code, invite.code);
    assert_eq!(read.name, "Dr. Cole Reyes");
    let waiting = {
        let cole = cole.clone();
        let id = invite.invite.clone();
        tokio::spawn(async move {
            cole.wait_for_introduction(ipc::Wait { id, wait_secs: 60 })
                .await
        })
    };
    // Only the allergies: the colleague's grant is narrower than the doctor's (a forward by
    // kind covers what the doctor's chart holds, so it is fetched first).
    doctor
        .refresh_patient(ipc::IdRef { id: link.clone() })
        .await
        .expect("doctor fetches");
    let outcome = doctor
        .forward(ipc::Forward {
            patient: link.clone(),
            invite: invite.text.clone(),
            reason: "Second opinion from allergology".into(),
            categories: vec![ShareCategory::Allergies],
        })
        .await
        .expect("forward request");
    assert_eq!(
        outcome,
        carekey_app::session::ForwardOutcome::WaitingForPatient
    );
    // The patient sees the request with the colleague's name and reason, and approves.
    let mut requests = Vec::new();
    for _ in 0..10 {
        patient.check_inbox(2).await.expect("inbox");
        requests = patient.forward_requests().await.expect("requests");
        if !requests.is_empty() {
            break;
        }
    }
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].colleague, "Dr. Cole Reyes");
    assert_eq!(requests[0].from, "Dr. Ada Quinn");
    assert_eq!(requests[0].reason, "Second opinion from allergology");
    patient
        .answer_forward(ipc::Answer {
            id: requests[0].id.clone(),
            accept: true,
        })
        .await
        .expect("approve");
    assert!(
        patient.activity().await.expect("local audit").iter().any(
            |r| matches!(&r.event, carekey_vault::AuditEvent::ForwardAnswered {
                colleague, approved: true, .. } if colleague == "Dr. Cole Reyes")
        ),
        "the forward answer is in the device's own log"
    );
    assert!(
        patient
            .forward_requests()
            .await
            .expect("requests")
            .is_empty()
    );
    // The colleague reads the share.
    let cole_link = waiting.await.expect("task").expect("introduced");
    let view = cole
        .refresh_patient(ipc::IdRef { id: cole_link })
        .await
        .expect("colleague fetches");
    assert_eq!(view.records, 1);
    assert_eq!(view.name, "Pat Example");
    // The Access screen lists the approved colleague beside the doctor, each with what their
    // own grant covers; revoking the colleague there leaves the doctor's access alone.
    let shares = patient.shares().await.expect("shares");
    let g = &shares[0].grantees;
    assert_eq!(g.len(), 2, "{g:?}");
    assert_eq!(
        (g[0].name.as_str(), &g[0].scope),
        ("Dr. Ada Quinn", &GrantScopeView::Everything)
    );
    assert_eq!(g[1].name, "Dr. Cole Reyes");
    assert_eq!(
        g[1].scope,
        GrantScopeView::Only {
            categories: vec![ShareCategory::Allergies],
            records: 0,
        }
    );
    assert!(
        g[1].trust.contains("Dr. Ada Quinn asked you"),
        "{}",
        g[1].trust
    );
    assert!(g[1].expires_at > 0);
    patient
        .revoke(ipc::Revoke {
            share: shares[0].id.clone(),
            relationship: g[1].relationship.clone(),
        })
        .await
        .expect("revoke the colleague");
    let status: Vec<_> = patient.shares().await.expect("shares")[0]
        .grantees
        .iter()
        .map(|g| g.status.clone())
        .collect();
    assert_eq!(status, ["active", "revoked"]);

    // Under `never` the action is unavailable and says why.
    let other = tempfile::tempdir().expect("dir");
    let (_p2, d2, link2) = paired(&relay, other.path(), PolicyChoice::Never, 0).await;
    let (_c2, inv2) = colleague(&relay, other.path()).await;
    let e = d2
        .forward(ipc::Forward {
            patient: link2,
            invite: inv2.text,
            reason: "Referral".into(),
            categories: Vec::new(),
        })
        .await
        .expect_err("never");
    assert_eq!(e.code, "not_allowed");
    assert!(e.message.contains("does not allow"));
}

/// A forward request that follows an accepted note reaches the patient through the
/// background inbox loop (the order of the two-app end-to-end test).
/// Share screen, single records: a category plus one chosen record reaches the doctor as
/// exactly those records; an id the vault does not hold, or not an id at all, is refused
/// before anything is shared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_records_share_exactly_what_was_chosen() {
    let Some(relay) = start_relay() else { return };
    let dir = tempfile::tempdir().expect("dir");
    let patient = PatientApp::new(config(dir.path(), "p.vault"), Arc::new(NoEvents));
    let doctor = DoctorApp::new(config(dir.path(), "d.vault"), Arc::new(NoEvents));
    for (app_vault, name) in [("patient", "Pat Example"), ("doctor", "Dr. Ada Quinn")] {
        let args = ipc::CreateVault {
            passphrase: PASS.into(),
            name: name.into(),
            licence: None,
            relay_url: relay.url.clone(),
        };
        if app_vault == "patient" {
            patient.create_vault(args).await.expect("patient vault");
        } else {
            doctor.create_vault(args).await.expect("doctor vault");
        }
    }
    let add = |r: ipc::ManualRecord| {
        let patient = &patient;
        async move { patient.add_record(r).await.expect("record") }
    };
    add(ipc::ManualRecord::Allergy {
        text: "Penicillin".into(),
        reaction: None,
    })
    .await;
    let asthma = add(ipc::ManualRecord::Condition {
        text: "Asthma".into(),
        onset: Some("2019-04-01".into()),
    })
    .await;
    add(ipc::ManualRecord::Condition {
        text: "Type 2 diabetes".into(),
        onset: None,
    })
    .await;
    add(ipc::ManualRecord::Medication {
        text: "Metformin".into(),
        dosage: None,
    })
    .await;
    let share = |records: Vec<String>| ipc::StartShare {
        categories: vec![ShareCategory::Allergies],
        records,
        expires_in_secs: 3600,
        policy: PolicyChoice::Never,
        depth: 0,
    };

    let e = patient
        .start_share(share(vec!["00".repeat(32)]))
        .await
        .expect_err("unknown record");
    assert_eq!(e.code, "not_found", "{e:?}");
    let e = patient
        .start_share(share(vec!["Asthma".into()]))
        .await
        .expect_err("not an id");
    assert_eq!(e.code, "invalid_input", "{e:?}");
    assert!(patient.shares().await.expect("shares").is_empty());

    let started = patient
        .start_share(share(vec![asthma]))
        .await
        .expect("share");
    assert_eq!(started.records, 2);
    assert_eq!(
        started.categories,
        vec![ShareCategory::Allergies, ShareCategory::Conditions]
    );
    let link = checkup(&patient, &doctor, started).await;
    let view = doctor
        .refresh_patient(ipc::IdRef { id: link.clone() })
        .await
        .expect("refresh");
    assert_eq!(view.records, 2);
    let chart = doctor.chart(ipc::IdRef { id: link }).await.expect("chart");
    let mut titles: Vec<&str> = chart.rows.iter().map(|r| r.title.as_str()).collect();
    titles.sort_unstable();
    assert_eq!(titles, ["Asthma", "Penicillin"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_request_after_a_note_through_the_background_loop() {
    let Some(relay) = start_relay() else { return };
    let dir = tempfile::tempdir().expect("dir");
    let (patient, doctor, link) = paired(&relay, dir.path(), PolicyChoice::Ask, 0).await;
    let loops = carekey_app::background::spawn_patient(patient.clone());
    doctor
        .write_back(ipc::WriteBack::Note {
            patient: link.clone(),
            text: "Keep using the inhaler.".into(),
        })
        .await
        .expect("note");
    let mut notes = Vec::new();
    for _ in 0..100 {
        notes = patient.inbox().await.expect("inbox");
        if !notes.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(notes.len(), 1, "the note arrived through the loop");
    patient
        .answer_note(ipc::Answer {
            id: notes[0].id.clone(),
            accept: true,
        })
        .await
        .expect("accept");
    let (_cole, invite) = colleague(&relay, dir.path()).await;
    doctor
        .forward(ipc::Forward {
            patient: link.clone(),
            invite: invite.text.clone(),
            reason: "Cardiology opinion".into(),
            categories: Vec::new(),
        })
        .await
        .expect("forward request");
    let mut requests = Vec::new();
    for _ in 0..300 {
        requests = patient.forward_requests().await.expect("requests");
        if !requests.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for l in loops {
        l.abort();
    }
    assert_eq!(
        requests.len(),
        1,
        "the forward request arrived through the loop"
    );
}

/// Under `allowed` the doctor forwards only the allergies of a share that also holds a
/// condition: the colleague's app stores the allergy alone, the patient's Access screen lists
/// the colleague under the doctor, and revoking the colleague alone cuts them off while the
/// doctor reads on (issue 11 items 1 and 4, as the app runs them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narrower_forward_and_revoking_the_colleague_alone() {
    let Some(relay) = start_relay() else { return };
    let dir = tempfile::tempdir().expect("dir");
    let records = vec![
        ipc::ManualRecord::Allergy {
            text: "Penicillin".into(),
            reaction: None,
        },
        ipc::ManualRecord::Condition {
            text: "Asthma".into(),
            onset: None,
        },
    ];
    let cats = vec![ShareCategory::Allergies, ShareCategory::Conditions];
    let (patient, doctor, link) = paired_with(
        &relay,
        dir.path(),
        PolicyChoice::Allowed,
        1,
        records,
        cats,
        None,
    )
    .await;
    let chart = doctor
        .refresh_patient(ipc::IdRef { id: link.clone() })
        .await
        .expect("doctor fetches");
    assert_eq!(chart.records, 2, "the doctor holds both records");
    let (cole, invite) = colleague(&relay, dir.path()).await;
    // Nothing of a kind the doctor does not hold: refused before anything is sent.
    let e = doctor
        .forward(ipc::Forward {
            patient: link.clone(),
            invite: invite.text.clone(),
            reason: "Vaccines".into(),
            categories: vec![ShareCategory::Immunizations],
        })
        .await
        .expect_err("no such records");
    assert_eq!(e.code, "invalid_input");
    let waiting = {
        let cole = cole.clone();
        let id = invite.invite.clone();
        tokio::spawn(async move {
            cole.wait_for_introduction(ipc::Wait { id, wait_secs: 60 })
                .await
        })
    };
    let outcome = doctor
        .forward(ipc::Forward {
            patient: link.clone(),
            invite: invite.text.clone(),
            reason: "Allergy work-up".into(),
            categories: vec![ShareCategory::Allergies],
        })
        .await
        .expect("forward");
    assert_eq!(outcome, carekey_app::session::ForwardOutcome::Forwarded);
    let cole_link = waiting.await.expect("task").expect("introduced");
    let seen = cole
        .refresh_patient(ipc::IdRef {
            id: cole_link.clone(),
        })
        .await
        .expect("colleague fetches");
    assert_eq!(seen.records, 1, "the colleague holds the allergy only");
    let cole_chart = cole
        .chart(ipc::IdRef {
            id: cole_link.clone(),
        })
        .await
        .expect("colleague chart");
    assert!(
        cole_chart.rows.iter().all(|r| !r.title.contains("Asthma")),
        "the condition never reached the colleague"
    );

    // The patient sees the colleague under the doctor and revokes them alone.
    let share = patient.shares().await.expect("shares")[0].clone();
    let log = patient
        .access_log(ipc::IdRef {
            id: share.id.clone(),
        })
        .await
        .expect("access log");
    let who: Vec<&str> = log.lines.iter().map(|l| l.who.as_str()).collect();
    assert!(
        who.contains(&"Dr. Ada Quinn") && who.contains(&"Dr. Cole Reyes"),
        "{who:?}"
    );
    assert!(log.alerts.is_empty(), "{:?}", log.alerts);
    let tree = patient
        .delegations(ipc::IdRef {
            id: share.id.clone(),
        })
        .await
        .expect("delegations");
    assert_eq!(tree.len(), 1);
    assert_eq!(tree[0].colleague, "Dr. Cole Reyes");
    assert_eq!(tree[0].by, "Dr. Ada Quinn");
    assert_eq!(tree[0].root, share.grantees[0].relationship);
    assert_eq!(tree[0].status, "active");
    let bad = patient
        .revoke_delegation(ipc::RevokeDelegation {
            share: share.id.clone(),
            delegation: "00".repeat(16),
        })
        .await
        .expect_err("unknown delegation");
    assert_eq!(bad.code, "not_found");
    patient
        .revoke_delegation(ipc::RevokeDelegation {
            share: share.id.clone(),
            delegation: tree[0].id.clone().expect("revocable"),
        })
        .await
        .expect("revoke colleague");
    let tree = patient
        .delegations(ipc::IdRef { id: share.id })
        .await
        .expect("delegations");
    assert_eq!(tree[0].status, "revoked");
    let after = cole.refresh_patient(ipc::IdRef { id: cole_link }).await;
    assert!(
        after.is_err() || after.as_ref().is_ok_and(|v| v.status != "active"),
        "the colleague reads nothing new: {after:?}"
    );
    let still = doctor
        .refresh_patient(ipc::IdRef { id: link })
        .await
        .expect("the doctor reads on");
    assert_eq!(still.records, 2);
}

/// A clinic attests the doctor's card "elsewhere" (its own tool signs the card text the
/// Profile shows); the doctor imports it; a patient's phone says "attested by" only while it
/// trusts that clinic's key, and a self-made attestation never counts (issue 11 item 5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clinic_attestation_counts_only_under_a_trusted_clinic_key() {
    use carekey_app::session::{ClinicKey, attestation_text, parse_card};
    use carekey_core::keys::SigningSecret;
    let Some(relay) = start_relay() else { return };
    let dir = tempfile::tempdir().expect("dir");
    let patient = PatientApp::new(config(dir.path(), "p.vault"), Arc::new(NoEvents));
    let doctor = DoctorApp::new(config(dir.path(), "d.vault"), Arc::new(NoEvents));
    for (app, name) in [(None, "Pat Example"), (Some(&doctor), "Dr. Ada Quinn")] {
        let v = ipc::CreateVault {
            passphrase: PASS.into(),
            name: name.into(),
            licence: None,
            relay_url: relay.url.clone(),
        };
        match app {
            None => drop(patient.create_vault(v).await.expect("patient vault")),
            Some(d) => drop(d.create_vault(v).await.expect("doctor vault")),
        }
    }
    patient
        .add_record(ipc::ManualRecord::Allergy {
            text: "Penicillin".into(),
            reaction: None,
        })
        .await
        .expect("record");

    // The clinic's tool: reads the card text, signs it, hands back the attestation text.
    let clinic = SigningSecret::random(&mut rand_core::OsRng);
    let profile = doctor.profile().await.expect("profile");
    let mut card = parse_card(&profile.card_text).expect("card text");
    card.attest(&clinic, "St. Mary's Clinic").expect("attest");
    let attestation = attestation_text(card.attestation.as_ref().expect("attested"));
    // One signed over somebody else's card is refused and changes nothing.
    let mut other = parse_card(&profile.card_text).expect("card text");
    other.body.name = "Dr. Eve Mallory".into();
    other.attest(&clinic, "St. Mary's Clinic").expect("attest");
    let e = doctor
        .import_attestation(ipc::ScanText {
            text: attestation_text(other.attestation.as_ref().expect("attested")),
        })
        .await
        .expect_err("not this card");
    assert_eq!(e.code, "invalid_input");
    assert!(doctor.card().await.expect("card").attestation.is_none());
    let after = doctor
        .import_attestation(ipc::ScanText { text: attestation })
        .await
        .expect("import");
    assert!(after.appears_as.contains("attested by St. Mary's Clinic"));
    assert_eq!(
        after.fingerprint, profile.fingerprint,
        "the card's hash, which patients pin, is unchanged"
    );
    // It survives a lock and unlock (stored with the card in the vault).
    doctor.lock().await;
    doctor
        .unlock(ipc::Unlock {
            passphrase: PASS.into(),
        })
        .await
        .expect("unlock");
    assert!(doctor.card().await.expect("card").attestation.is_some());

    // The patient's phone, first without the clinic's key, then with it, then without.
    let door = |started: carekey_app::session::ShareStarted| {
        let (patient, doctor) = (patient.clone(), doctor.clone());
        async move {
            doctor
                .scan_text(ipc::ScanText {
                    text: started.qr_text.clone(),
                })
                .await
                .expect("scan");
            patient
                .wait_for_doctor(ipc::Wait {
                    id: started.pairing.clone(),
                    wait_secs: 20,
                })
                .await
                .expect("door")
        }
    };
    let started = patient
        .start_share(ipc::StartShare {
            categories: vec![ShareCategory::Allergies],
            records: Vec::new(),
            expires_in_secs: 3600,
            policy: PolicyChoice::Never,
            depth: 0,
        })
        .await
        .expect("share");
    let share = started.share.clone();
    let seen = door(started).await;
    assert!(!seen.attested, "no clinic key on this phone yet");
    assert!(seen.trust.contains("not verified"), "{}", seen.trust);
    let key = ClinicKey {
        name: "St. Mary's Clinic".into(),
        key: clinic.public(),
    };
    let list = patient
        .trust_clinic(ipc::ScanText {
            text: key.to_text(),
        })
        .await
        .expect("trust");
    assert_eq!(list.len(), 1);
    let seen = door(
        patient
            .new_qr(ipc::IdRef { id: share.clone() })
            .await
            .expect("new qr"),
    )
    .await;
    assert!(seen.attested);
    assert!(
        seen.trust.contains("attested by St. Mary's Clinic"),
        "{}",
        seen.trust
    );
    patient
        .untrust_clinic(ipc::ClinicRef {
            key: list[0].key.clone(),
        })
        .await
        .expect("untrust");
    let seen = door(
        patient
            .new_qr(ipc::IdRef { id: share })
            .await
            .expect("new qr"),
    )
    .await;
    assert!(!seen.attested, "the key was removed");
    let bad = patient
        .trust_clinic(ipc::ScanText {
            text: "CAREKEY-CLINIC:NOTBASE32!".into(),
        })
        .await
        .expect_err("junk");
    assert_eq!(bad.code, "invalid_input");
}

/// "Share as SMART Health Link": the patient publishes a share, the doctor app opens it as
/// any SHL viewer would (wrong passcode first), the patient's access log names the download,
/// and deleting the link stops new downloads (issue 15, publish side, as the apps run it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_published_as_a_smart_health_link_opens_and_deleting_it_stops_downloads() {
    let Some(relay) = start_relay() else { return };
    let dir = tempfile::tempdir().expect("dir");
    let (patient, _doctor, _link) = paired(&relay, dir.path(), PolicyChoice::Never, 0).await;
    let clinic = DoctorApp::new(config(dir.path(), "clinic.vault"), Arc::new(NoEvents));
    clinic
        .create_vault(ipc::CreateVault {
            passphrase: PASS.into(),
            name: "Dr. Noor Hale".into(),
            licence: None,
            relay_url: relay.url.clone(),
        })
        .await
        .expect("clinic vault");
    let share = patient.shares().await.expect("shares")[0].id.clone();
    let bad = patient
        .publish_link(ipc::PublishLink {
            share: share.clone(),
            passcode: true,
            expires_in_secs: 5,
            label: None,
        })
        .await
        .expect_err("too short");
    assert_eq!(bad.code, "invalid_input");
    let published = patient
        .publish_link(ipc::PublishLink {
            share: share.clone(),
            passcode: true,
            expires_in_secs: 3600,
            label: Some("Pat's allergies".into()),
        })
        .await
        .expect("publish");
    // The share was made first, for the same hour: the link ends with it, never after.
    let share_ends = patient.shares().await.expect("shares")[0].expires_at;
    assert!(published.expires_at <= share_ends);
    assert!(published.expires_at + 60 >= share_ends);
    assert!(published.shlink.starts_with("shlink:/"));
    assert!(published.qr_svg.contains("<svg"));
    assert!(published.warning.contains("We cannot tell who opened it"));
    let passcode = published.passcode.clone().expect("a passcode by default");
    assert!(!format!("{published:?}").contains(&passcode));
    let rows = patient
        .links(ipc::IdRef { id: share.clone() })
        .await
        .expect("links");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "active");

    let wrong = clinic
        .open_smart_link(ipc::OpenSmartLink {
            text: published.shlink.clone(),
            passcode: Some("00000000".into()),
        })
        .await
        .expect_err("wrong passcode");
    assert!(wrong.message.contains("attempt"), "{wrong:?}");
    let opened = clinic
        .open_smart_link(ipc::OpenSmartLink {
            text: published.shlink.clone(),
            passcode: Some(passcode.clone()),
        })
        .await
        .expect("opens");
    let chart = clinic
        .chart(ipc::IdRef {
            id: opened.patient.id.clone(),
        })
        .await
        .expect("chart");
    assert!(
        chart.rows.iter().any(|r| r.title.contains("Penicillin")),
        "the allergy arrived through the link"
    );
    let log = patient
        .access_log(ipc::IdRef { id: share.clone() })
        .await
        .expect("log");
    assert!(
        log.downloads
            .iter()
            .any(|d| d.starts_with("Dr. Noor Hale downloaded the link")),
        "{:?}",
        log.downloads
    );

    patient
        .delete_link(ipc::LinkRef {
            id: published.id.clone(),
        })
        .await
        .expect("delete");
    assert!(
        patient
            .links(ipc::IdRef { id: share })
            .await
            .expect("links")
            .is_empty()
    );
    let gone = clinic
        .open_smart_link(ipc::OpenSmartLink {
            text: published.shlink,
            passcode: Some(passcode),
        })
        .await;
    assert!(gone.is_err(), "a deleted link gives nothing");
}

/// The demo patient's documents, plus a text note kept inside its resource (as Synthea's
/// notes are) and a file known only by its URL: (bundle, PDF bytes, note text).
fn bundle_with_documents() -> (serde_json::Value, Vec<u8>, &'static str) {
    let mut bundle = carekey_app::demo::patient_bundle();
    let note = "Chief complaint: cough.\nPlan: rest and fluids.\n";
    let entries = bundle["entry"].as_array_mut().expect("entries");
    entries.push(serde_json::json!({"resource": {
        "resourceType": "DocumentReference", "id": "d-note", "status": "current",
        "type": {"text": "Visit note"}, "date": "2025-10-01T09:00:00Z",
        "content": [{"attachment": {"contentType": "text/plain; charset=utf-8",
            "data": data_encoding::BASE64.encode(note.as_bytes())}}]}}));
    entries.push(serde_json::json!({"resource": {
        "resourceType": "DocumentReference", "id": "d-elsewhere", "status": "current",
        "type": {"text": "Scan kept at the hospital"}, "date": "2025-09-01T09:00:00Z",
        "content": [{"attachment": {"contentType": "image/png",
            "url": "https://hospital.example/scan.png"}}]}}));
    let pdf = entries
        .iter()
        .find(|e| e["resource"]["id"] == "d-letter")
        .and_then(|e| e["resource"]["content"][0]["attachment"]["data"].as_str())
        .and_then(|b| data_encoding::BASE64.decode(b.as_bytes()).ok())
        .expect("the demo letter");
    // A report whose PDF is its presentedForm (not a DocumentReference): the vault keeps it
    // inline in the resource, and it must reach the doctor all the same.
    entries.push(serde_json::json!({"resource": {
        "resourceType": "DiagnosticReport", "id": "r-form", "status": "final",
        "code": {"text": "Chest X-ray report"}, "effectiveDateTime": "2025-08-01",
        "presentedForm": [{"contentType": "application/pdf",
            "data": data_encoding::BASE64.encode(&pdf)}]}}));
    (bundle, pdf, note)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_open_on_both_devices_and_close_when_access_ends() {
    let Some(relay) = start_relay() else { return };
    let dir = tempfile::tempdir().expect("dir");
    let (bundle, pdf, note) = bundle_with_documents();
    let file = dir.path().join("docs.json");
    std::fs::write(&file, serde_json::to_vec(&bundle).expect("json")).expect("write");
    let (patient, doctor, link) = paired_with(
        &relay,
        dir.path(),
        PolicyChoice::Never,
        0,
        Vec::new(),
        vec![ShareCategory::Documents, ShareCategory::Observations],
        Some(&file),
    )
    .await;

    // The patient's own record detail lists the files and opens each kind.
    let rows = patient.timeline().await.expect("timeline");
    let by_title = |t: &str| {
        rows.iter()
            .find(|r| r.title.contains(t))
            .map(|r| r.id.clone())
            .expect("a row")
    };
    let letter = by_title("Clinic letter");
    let files = patient
        .record_files(ipc::RecordRef { id: letter.clone() })
        .await
        .expect("files");
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].kind, carekey_app::display::DocKind::Pdf);
    let at = |record_id: &str, index: u32| ipc::AttachmentRef {
        record_id: record_id.to_owned(),
        index,
    };
    let got = patient.attachment(at(&letter, 0)).await.expect("pdf");
    assert_eq!(got.bytes.as_slice(), pdf.as_slice());
    let visit = by_title("Visit note");
    let got = patient.attachment(at(&visit, 0)).await.expect("note");
    assert_eq!(got.kind, carekey_app::display::DocKind::Text);
    assert_eq!(got.bytes.as_slice(), note.as_bytes());
    // Past the last file, and a file this device does not hold, say so.
    let code = |r: Result<carekey_app::session::FileBytes, carekey_app::AppError>| {
        r.expect_err("refused").code
    };
    assert_eq!(code(patient.attachment(at(&letter, 1)).await), "not_found");
    let elsewhere = by_title("Scan kept");
    assert_eq!(
        code(patient.attachment(at(&elsewhere, 0)).await),
        "not_supported"
    );
    assert_eq!(code(patient.attachment(at("zz", 0)).await), "invalid_input");

    // The doctor's chart lists the same documents and opens the same bytes.
    doctor
        .refresh_patient(ipc::IdRef { id: link.clone() })
        .await
        .expect("fetch");
    let chart = doctor
        .chart(ipc::IdRef { id: link.clone() })
        .await
        .expect("chart");
    let doc = |t: &str| {
        chart
            .documents
            .iter()
            .find(|d| d.title.contains(t))
            .expect("a document row")
            .clone()
    };
    let shared_letter = doc("Clinic letter");
    assert_eq!(shared_letter.kind, carekey_app::display::DocKind::Pdf);
    let got = doctor
        .attachment(at(&shared_letter.id, 0))
        .await
        .expect("the doctor opens the letter");
    assert_eq!(got.bytes.as_slice(), pdf.as_slice());
    let shared_note = doc("Visit note");
    let got = doctor
        .attachment(at(&shared_note.id, 0))
        .await
        .expect("the doctor opens the note");
    assert_eq!(got.bytes.as_slice(), note.as_bytes());
    let report = doc("Chest X-ray report");
    let got = doctor
        .attachment(at(&report.id, 0))
        .await
        .expect("the doctor opens the report's form");
    assert_eq!(got.bytes.as_slice(), pdf.as_slice());
    // A patient's record id is not a key into the doctor's vault.
    assert_eq!(code(doctor.attachment(at(&letter, 0)).await), "not_found");

    // Access ends: the files close with the chart.
    let shares = patient.shares().await.expect("shares");
    patient
        .revoke(ipc::Revoke {
            share: shares[0].id.clone(),
            relationship: shares[0].grantees[0].relationship.clone(),
        })
        .await
        .expect("revoke");
    let ended = doctor
        .refresh_patient(ipc::IdRef { id: link })
        .await
        .expect("refresh");
    assert_eq!(ended.status, "ended");
    assert_eq!(
        code(doctor.attachment(at(&shared_letter.id, 0)).await),
        "not_found"
    );
}

/// A closed relay (docs/relay.md "Enrollment") through both apps: until the patient holds its
/// operator's key, sharing and backing up are refused in words and nothing is kept half made;
/// the doctor's scan likewise until the doctor holds it. The key is listed by relay, never
/// shown, and sent to that relay only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_relay_works_once_both_devices_hold_its_key() {
    const KEY: &str = "clinic-network-app-91c4";
    let Some(relay) = start_relay_with(&[("CAREKEY_RELAY_ENROLLMENT_KEY", KEY)]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let (patient, doctor, _) = two_apps(&relay, dir.path()).await;
    patient
        .add_record(ipc::ManualRecord::Condition {
            text: "Asthma".into(),
            onset: None,
        })
        .await
        .expect("record");
    let share = || ipc::StartShare {
        categories: vec![ShareCategory::Conditions],
        records: Vec::new(),
        expires_in_secs: 3600,
        policy: PolicyChoice::Never,
        depth: 0,
    };
    let e = patient
        .start_share(share())
        .await
        .expect_err("closed relay");
    assert_eq!(e.code, "enrollment_required", "{e:?}");
    assert!(e.message.contains("enrollment key"), "{e:?}");
    assert!(patient.shares().await.expect("shares").is_empty());
    let e = patient.backup_now().await.expect_err("closed relay");
    assert_eq!(e.code, "enrollment_required", "{e:?}");

    // A malformed key is refused without being repeated; a good one is listed by relay.
    let e = patient
        .set_enrollment_key(ipc::SetEnrollmentKey {
            relay_url: relay.url.clone(),
            key: Some("two words".into()),
        })
        .await
        .expect_err("malformed");
    assert_eq!(e.code, "invalid_input");
    assert!(!e.message.contains("two words"), "{e:?}");
    patient
        .set_enrollment_key(ipc::SetEnrollmentKey {
            relay_url: format!("{}/", relay.url),
            key: Some(KEY.into()),
        })
        .await
        .expect("key saved");
    let s = patient.settings().await.expect("settings");
    assert_eq!(s.enrolled_relays, std::slice::from_ref(&relay.url));
    assert!(!serde_json::to_string(&s).expect("json").contains(KEY));
    patient.backup_now().await.expect("backup with the key");
    let started = patient
        .start_share(share())
        .await
        .expect("share with the key");

    let e = doctor
        .scan_text(ipc::ScanText {
            text: started.qr_text.clone(),
        })
        .await
        .expect_err("the doctor's reply mailbox is refused");
    assert_eq!(e.code, "enrollment_required", "{e:?}");
    doctor
        .set_enrollment_key(ipc::SetEnrollmentKey {
            relay_url: relay.url.clone(),
            key: Some(KEY.into()),
        })
        .await
        .expect("doctor's key saved");
    let profile = doctor.profile().await.expect("profile");
    assert_eq!(profile.enrolled_relays, std::slice::from_ref(&relay.url));
    // The key survives a lock: it is kept in the vault and set again on unlock.
    doctor.lock().await;
    doctor
        .unlock(ipc::Unlock {
            passphrase: PASS.into(),
        })
        .await
        .expect("unlock");
    let link = checkup(&patient, &doctor, started).await;
    let view = doctor
        .refresh_patient(ipc::IdRef { id: link.clone() })
        .await
        .expect("reads need no key");
    assert_eq!(view.records, 1);
    let chart = doctor.chart(ipc::IdRef { id: link }).await.expect("chart");
    assert_eq!(chart.rows.len(), 1);
}
