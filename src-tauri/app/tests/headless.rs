//! The session calls a headless shell (the `carekey` CLI, docs/cli.md "Sessions") needs
//! besides the screens' (issue 10 "One session layer for apps and CLI"): onboarding for an
//! identity the user already holds, importing data already in memory, a SMART Health Link with
//! a chosen passcode and attempt count, and a received share as files.

// The client's relay-process harness, shared rather than copied.
#[path = "../../client/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::sync::Arc;

use carekey_app::events::NoEvents;
use carekey_app::ipc::{self, PolicyChoice, ShareCategory};
use carekey_app::session::{AppConfig, DoctorApp, ImportData, PatientApp};
use carekey_core::keys::{DeviceIdentity, RootSecret};
use carekey_vault::{KdfParams, NdjsonFile, RecoveryPhrase};
use zeroize::Zeroizing;

const PASS: &str = "correct horse battery staple";

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

fn create(name: &str, relay_url: &str) -> ipc::CreateVault {
    ipc::CreateVault {
        passphrase: PASS.into(),
        name: name.into(),
        licence: None,
        relay_url: relay_url.into(),
    }
}

/// A bundle with a Condition and a DocumentReference carrying an inline PDF.
const BUNDLE: &[u8] = br#"{"resourceType":"Bundle","type":"collection","entry":[
 {"resource":{"resourceType":"Condition","id":"c1","code":{"text":"Asthma"}}},
 {"resource":{"resourceType":"DocumentReference","id":"d1","status":"current","content":[{"attachment":{"contentType":"application/pdf","title":"letter","data":"JVBERi0xLjQK"}}]}}]}"#;

#[tokio::test]
async fn a_vault_made_from_a_phrase_is_that_identity() {
    let dir = tempfile::tempdir().expect("dir");
    let root = RootSecret::random(&mut rand_core::OsRng);
    let expected = DeviceIdentity::from_root(&root).signing_public();
    let phrase = RecoveryPhrase::from_root(&root);
    let url = "http://127.0.0.1:9";
    let doctor = DoctorApp::new(config(dir.path(), "d.vault"), Arc::new(NoEvents));
    doctor
        .create_vault_with_phrase(create("Dr. Ada Quinn", url), &phrase)
        .await
        .expect("doctor vault");
    assert_eq!(
        doctor.card().await.expect("card").body.signing_key,
        expected
    );
    // A headless doctor turns auto-lock off (its own waits bound its life); bad values refused.
    doctor
        .set_auto_lock(ipc::SetAutoLock { secs: None })
        .await
        .expect("auto-lock off");
    let e = doctor
        .set_auto_lock(ipc::SetAutoLock { secs: Some(0) })
        .await
        .expect_err("zero seconds");
    assert_eq!(e.code, "invalid_input");
    // The same words make the same patient identity elsewhere; a vault is never overwritten.
    let patient = PatientApp::new(config(dir.path(), "p.vault"), Arc::new(NoEvents));
    patient
        .create_vault_with_phrase(create("Pat Example", url), &phrase)
        .await
        .expect("patient vault");
    let e = patient
        .create_vault_with_phrase(create("Pat Example", url), &phrase)
        .await
        .expect_err("exists");
    assert_eq!(e.code, "vault_exists");
    // Arguments are validated first.
    let bad = create("", url);
    let other = DoctorApp::new(config(dir.path(), "o.vault"), Arc::new(NoEvents));
    let e = other
        .create_vault_with_phrase(bad, &phrase)
        .await
        .expect_err("no name");
    assert_eq!(e.code, "invalid_input");
}

#[tokio::test]
async fn data_in_memory_imports_like_a_file() {
    let dir = tempfile::tempdir().expect("dir");
    let patient = PatientApp::new(config(dir.path(), "p.vault"), Arc::new(NoEvents));
    drop(
        patient
            .create_vault(create("Pat Example", "http://127.0.0.1:9"))
            .await
            .expect("vault"),
    );
    let report = patient
        .import_data(
            "b.json".into(),
            ImportData::Bundle(Zeroizing::new(BUNDLE.to_vec())),
        )
        .await
        .expect("bundle imports");
    assert_eq!(report.records, 2);
    let report = patient
        .import_data(
            "Observation.ndjson".into(),
            ImportData::Ndjson(vec![NdjsonFile {
                name: "Observation.ndjson".into(),
                data: br#"{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"BP"}}"#.to_vec(),
            }]),
        )
        .await
        .expect("ndjson imports");
    assert_eq!(report.records, 1);
    assert_eq!(patient.timeline().await.expect("rows").len(), 3);
    // NDJSON handed over as a Bundle, or no source label: refused before any import.
    let e = patient
        .import_data(
            "x".into(),
            ImportData::Bundle(Zeroizing::new(
                b"{\"resourceType\":\"Patient\"}\n{\"resourceType\":\"Patient\"}".to_vec(),
            )),
        )
        .await
        .expect_err("not a bundle");
    assert_eq!(e.code, "invalid_input");
    let e = patient
        .import_data(
            String::new(),
            ImportData::Bundle(Zeroizing::new(BUNDLE.to_vec())),
        )
        .await
        .expect_err("no source");
    assert_eq!(e.code, "invalid_input");
    assert_eq!(patient.timeline().await.expect("rows").len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_received_share_as_files_and_a_link_with_a_chosen_passcode() {
    let relay = common::start_relay();
    let dir = tempfile::tempdir().expect("dir");
    let patient = PatientApp::new(config(dir.path(), "p.vault"), Arc::new(NoEvents));
    let doctor = DoctorApp::new(config(dir.path(), "d.vault"), Arc::new(NoEvents));
    drop(
        patient
            .create_vault(create("Pat Example", &relay.url))
            .await
            .expect("p"),
    );
    drop(
        doctor
            .create_vault(create("Dr. Ada Quinn", &relay.url))
            .await
            .expect("d"),
    );
    patient
        .import_data(
            "b.json".into(),
            ImportData::Bundle(Zeroizing::new(BUNDLE.to_vec())),
        )
        .await
        .expect("import");
    let started = patient
        .start_share(ipc::StartShare {
            categories: vec![ShareCategory::Conditions, ShareCategory::Documents],
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
        .expect("door");
    patient
        .answer_doctor(ipc::AnswerDoctor {
            id: started.pairing.clone(),
            accept: true,
            categories: None,
        })
        .await
        .expect("confirm");
    let link = doctor
        .wait_for_grant(ipc::Wait {
            id: scan.scan,
            wait_secs: 20,
        })
        .await
        .expect("grant");
    let id = ipc::IdRef { id: link };
    doctor.refresh_patient(id.clone()).await.expect("fetch");
    let files = doctor.received_files(id).await.expect("files");
    let records: Vec<serde_json::Value> = files
        .iter()
        .filter(|f| !f.attachment)
        .map(|f| serde_json::from_slice(&f.data).expect("JSON"))
        .collect();
    assert_eq!(records.len(), 2);
    let doc = records
        .iter()
        .find(|r| r["resourceType"] == "DocumentReference")
        .expect("the document");
    assert!(
        doc["content"][0]["attachment"].get("data").is_none(),
        "inline bytes travel as the attachment file: {doc}"
    );
    let pdf: Vec<_> = files.iter().filter(|f| f.attachment).collect();
    assert_eq!(pdf.len(), 1);
    assert_eq!(pdf[0].data.as_slice(), b"%PDF-1.4\n");
    assert_eq!(pdf[0].title, "letter.pdf");
    assert!(
        !format!("{:?}", pdf[0]).contains("PDF"),
        "Debug leaves out the bytes"
    );
    // Unknown patient ids are refused.
    let e = doctor
        .received_files(ipc::IdRef {
            id: "00".repeat(16),
        })
        .await
        .expect_err("unknown");
    assert_eq!(e.code, "not_found");

    // The same share as a SMART Health Link with the patient's own passcode.
    let shl = patient
        .publish_link_with(
            ipc::PublishLink {
                share: started.share.clone(),
                passcode: true,
                expires_in_secs: 600,
                label: Some("For the clinic".into()),
            },
            Some("24681357".into()),
            2,
        )
        .await
        .expect("link");
    assert_eq!(shl.passcode.as_deref(), Some("24681357"));
    assert!(shl.shlink.starts_with("shlink:/"));
    let generated = patient
        .publish_link(ipc::PublishLink {
            share: started.share,
            passcode: true,
            expires_in_secs: 600,
            label: None,
        })
        .await
        .expect("link");
    assert_ne!(generated.passcode.as_deref(), Some("24681357"));
}
