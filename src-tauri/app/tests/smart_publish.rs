//! A share published as a SMART Health Link carries its files (issue 15; docs/shl.md
//! "Publishing"): the patient app publishes the demo data's PDF letter through a real relay
//! process, the doctor app opens the link with `open_smart_link` as any SHL viewer would, and
//! the PDF comes out of `attachment` (the `open_attachment` command) byte for byte; a file over
//! the relay's per-file cap is left out and the publish answer says so.
//!
//! Needs the relay binary in the target dir (`cargo build -p carekey-relay`).

// The client's relay-process harness, shared rather than copied.
#[path = "../../client/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::sync::Arc;

use carekey_app::events::NoEvents;
use carekey_app::ipc::{self, PolicyChoice, ShareCategory};
use carekey_app::session::{AppConfig, DoctorApp, ImportData, PatientApp};
use carekey_shl::fhir::attachment_hash;
use carekey_vault::KdfParams;
use serde_json::{Value, json};
use zeroize::Zeroizing;

const PASS: &str = "correct horse battery staple";

fn config(dir: &Path, name: &str) -> AppConfig {
    AppConfig {
        vault_path: dir.join(name),
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

/// The demo letter's bytes, as the demo bundle carries them.
fn demo_pdf(bundle: &Value) -> Vec<u8> {
    let doc = bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["resourceType"] == "DocumentReference")
        .expect("the demo has a letter");
    let data = doc["content"][0]["attachment"]["data"]
        .as_str()
        .expect("inline PDF");
    data_encoding::BASE64
        .decode(data.as_bytes())
        .expect("base64")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_link_carries_the_pdf_and_leaves_out_what_is_too_large() {
    let relay = common::start_relay();
    let dir = tempfile::tempdir().expect("dir");
    let patient = PatientApp::new(config(dir.path(), "p.vault"), Arc::new(NoEvents));
    let doctor = DoctorApp::new(config(dir.path(), "d.vault"), Arc::new(NoEvents));
    drop(
        patient
            .create_vault(create("Pat Example", &relay.url))
            .await
            .expect("patient vault"),
    );
    drop(
        doctor
            .create_vault(create("Dr. Ada Quinn", &relay.url))
            .await
            .expect("doctor vault"),
    );
    let bundle = carekey_app::demo::patient_bundle();
    let pdf = demo_pdf(&bundle);
    assert!(pdf.starts_with(b"%PDF-"));
    patient
        .import_data(
            "demo.json".into(),
            ImportData::Bundle(Zeroizing::new(serde_json::to_vec(&bundle).expect("bundle"))),
        )
        .await
        .expect("demo imports");
    // A scan over the per-file cap: 3 MB of incompressible bytes (the PDF above is 1 KB).
    let mut big = vec![0u8; 3_000_000];
    let mut x: u32 = 0x2545_f491;
    for b in &mut big {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = (x >> 24) as u8;
    }
    let scan = json!({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {
        "resourceType": "DocumentReference", "id": "big-scan", "status": "current",
        "content": [{"attachment": {"contentType": "image/png", "title": "Scan.png",
            "data": data_encoding::BASE64.encode(&big)}}]}}]});
    patient
        .import_data(
            "scan.json".into(),
            ImportData::Bundle(Zeroizing::new(serde_json::to_vec(&scan).expect("scan"))),
        )
        .await
        .expect("scan imports");
    let started = patient
        .start_share(ipc::StartShare {
            categories: vec![ShareCategory::Documents, ShareCategory::Conditions],
            records: Vec::new(),
            expires_in_secs: 3600,
            policy: PolicyChoice::Never,
            depth: 0,
        })
        .await
        .expect("share");
    let link = patient
        .publish_link(ipc::PublishLink {
            share: started.share.clone(),
            passcode: false,
            expires_in_secs: 600,
            label: Some("For the clinic".into()),
        })
        .await
        .expect("published");
    assert_eq!(link.attachments, 1, "the PDF goes in");
    assert_eq!(link.left_out, 1, "the 3 MB scan does not");
    assert_eq!(
        link.left_out_note.as_deref(),
        Some("1 attached file was left out: 1 is larger than the 2.4 MB one file of a link holds.")
    );

    // The doctor's app opens it as any SHL viewer: manifest, files, then the vault import.
    let opened = doctor
        .open_smart_link(ipc::OpenSmartLink {
            text: link.shlink.clone(),
            passcode: None,
        })
        .await
        .expect("the link opens");
    assert!(opened.skipped.is_empty(), "{:?}", opened.skipped);
    assert_eq!(opened.patient.trust, "unsigned (SMART Health Link)");
    let chart = doctor
        .chart(ipc::IdRef {
            id: opened.patient.id.clone(),
        })
        .await
        .expect("chart");
    let letter = chart
        .documents
        .iter()
        .find(|d| {
            d.attachments
                .iter()
                .any(|a| a.content_type.as_deref() == Some("application/pdf"))
        })
        .expect("the letter is listed with its PDF");
    let file = doctor
        .attachment(ipc::AttachmentRef {
            record_id: letter.id.clone(),
            index: 0,
        })
        .await
        .expect("open_attachment");
    assert_eq!(
        file.bytes.as_slice(),
        pdf.as_slice(),
        "the PDF, byte for byte"
    );
    assert_eq!(file.content_type.as_deref(), Some("application/pdf"));
    // The record as imported states the size and SHA-1 hash FHIR R4 Attachment asks for.
    let rec = doctor
        .chart_record(ipc::RecordRef {
            id: letter.id.clone(),
        })
        .await
        .expect("record");
    let att = &rec.resource["content"][0]["attachment"];
    assert_eq!(att["size"], pdf.len());
    assert_eq!(att["hash"], attachment_hash(&pdf));
    // The scan's record came without its data: listed, nothing to open.
    let scan_row = chart
        .documents
        .iter()
        .find(|d| {
            d.title.contains("Scan")
                || d.attachments
                    .iter()
                    .any(|a| a.content_type.as_deref() == Some("image/png"))
        })
        .expect("the scan's record is there");
    let e = doctor
        .attachment(ipc::AttachmentRef {
            record_id: scan_row.id.clone(),
            index: 0,
        })
        .await
        .expect_err("its bytes were left out");
    assert_eq!(e.code, "not_supported", "{}", e.message);

    // The same share over Carekey itself: the letter's `DocumentReference/<id>` arrives again,
    // and lands as a second entry with a record of its own (the SMART import is in its own
    // vault namespace), each entry with its own provenance wording.
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
    let carekey = doctor
        .wait_for_grant(ipc::Wait {
            id: scan.scan,
            wait_secs: 20,
        })
        .await
        .expect("grant");
    let carekey = ipc::IdRef { id: carekey };
    doctor
        .refresh_patient(carekey.clone())
        .await
        .expect("fetch");
    let entries = doctor.patients().await.expect("patients");
    assert_eq!(entries.len(), 2, "two entries: {entries:?}");
    let shared = entries
        .iter()
        .find(|l| l.id == carekey.id)
        .expect("the Carekey entry");
    assert_ne!(shared.trust, opened.patient.trust);
    assert!(!shared.trust.contains("SMART"), "{}", shared.trust);
    let carekey_chart = doctor.chart(carekey).await.expect("chart");
    let letter_id = rec.resource["id"].as_str().expect("FHIR id");
    let mut shared_letter = None;
    for r in carekey_chart
        .rows
        .iter()
        .filter(|r| r.fhir_type == "DocumentReference")
    {
        let full = doctor
            .chart_record(ipc::RecordRef { id: r.id.clone() })
            .await
            .expect("record");
        if full.resource["id"].as_str() == Some(letter_id) {
            shared_letter = Some(r);
        }
    }
    let shared_letter = shared_letter.expect("the letter came over Carekey too");
    assert_ne!(shared_letter.id, letter.id, "two records for {letter_id}");
    assert!(
        shared_letter.provenance_label.starts_with("shared by"),
        "{}",
        shared_letter.provenance_label
    );
    let smart_again = doctor
        .chart(ipc::IdRef {
            id: opened.patient.id.clone(),
        })
        .await
        .expect("the SMART chart still");
    let smart_letter = smart_again
        .rows
        .iter()
        .find(|r| r.id == letter.id)
        .expect("the SMART copy is still its own record");
    assert_eq!(smart_letter.provenance_label, "imported, unsigned");
    let carekey_file = doctor
        .attachment(ipc::AttachmentRef {
            record_id: shared_letter.id.clone(),
            index: 0,
        })
        .await
        .expect("the Carekey copy's PDF");
    assert_eq!(carekey_file.bytes.as_slice(), pdf.as_slice());
}
