//! The JSON shapes the doctor UI relies on: sample values of every type a command returns (and
//! takes) are serialized here, and their key sets are kept in `doctor-ui/src/ipc.fixture.json`,
//! which `doctor-ui/tests/ipc.test.ts` checks against the TypeScript types of `src/ipc.ts`.
//!
//! The chart types are built by the app's own display code from real vault records (an
//! imported NDJSON with a vital sign, a lab with its reference range, a document), so a changed
//! shape fails here. Regenerate with `CAREKEY_UPDATE_IPC_FIXTURE=1 cargo test -p
//! carekey-doctor --test ipc_fixture`, then fix `ipc.ts` until vitest passes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use carekey_app::AppError;
use carekey_app::display;
use carekey_app::events::{AppEvent, NoEvents};
use carekey_app::ipc;
use carekey_app::session::{
    AppConfig, ChartView, ColleagueView, ForwardOutcome, InviteView, PatientApp, PatientLinkView,
    ProfileView, ScanView, SentNoteView, SmartOpenView,
};
use carekey_doctor::COMMAND_NAMES;
use carekey_doctor::commands::{AppStatus, Created};
use serde::Serialize;
use serde_json::{Value, json};

fn keys<T: Serialize>(v: &T) -> Value {
    let v = serde_json::to_value(v).expect("serializes");
    let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
    k.sort();
    json!(k)
}

const NDJSON: &str = r#"{"resourceType":"Condition","id":"c1","code":{"text":"Asthma"},"clinicalStatus":{"coding":[{"code":"active"}]},"onsetDateTime":"2019-04-02"}
{"resourceType":"MedicationStatement","id":"m1","status":"active","medicationCodeableConcept":{"text":"Salbutamol"},"dosage":[{"text":"2 puffs"}]}
{"resourceType":"AllergyIntolerance","id":"a1","code":{"text":"Penicillin"},"criticality":"high","reaction":[{"manifestation":[{"text":"Rash"}]}]}
{"resourceType":"Observation","id":"o1","status":"final","category":[{"coding":[{"code":"vital-signs"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}],"text":"Heart rate"},"effectiveDateTime":"2026-11-01","valueQuantity":{"value":72,"unit":"/min"}}
{"resourceType":"Observation","id":"o2","status":"final","category":[{"coding":[{"code":"laboratory"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"2339-0"}],"text":"Glucose"},"effectiveDateTime":"2026-11-01","valueQuantity":{"value":130,"unit":"mg/dL"},"referenceRange":[{"low":{"value":70},"high":{"value":99}}],"component":[{"code":{"text":"part"},"valueQuantity":{"value":1,"unit":"x"},"referenceRange":[{"low":{"value":0}}]}]}
{"resourceType":"DocumentReference","id":"d1","status":"current","date":"2026-11-02","content":[{"attachment":{"contentType":"application/pdf","title":"Letter","size":10}}]}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipc_shapes_match_the_ui_fixture() {
    let dir = tempfile::tempdir().expect("dir");
    // A vault of real records for the display code (the doctor's chart reads the same
    // functions over the records a share brought).
    let app = PatientApp::new(
        AppConfig {
            vault_path: dir.path().join("v"),
            kdf: carekey_vault::KdfParams {
                m_kib: 8 * 1024,
                t: 1,
                p: 1,
            },
        },
        Arc::new(NoEvents),
    );
    app.create_vault(ipc::CreateVault {
        passphrase: "correct horse battery staple".into(),
        name: "Pat Example".into(),
        licence: None,
        relay_url: "http://127.0.0.1:9".into(),
    })
    .await
    .expect("vault");
    let file = dir.path().join("x.ndjson");
    std::fs::write(&file, NDJSON).expect("write");
    app.import_file(ipc::ImportFile {
        path: file.to_string_lossy().into_owned(),
    })
    .await
    .expect("import");
    let rows = app.timeline().await.expect("timeline");
    let mut records = Vec::new();
    for r in &rows {
        records.push(
            app.record(ipc::RecordRef { id: r.id.clone() })
                .await
                .expect("record"),
        );
    }
    let hex32 = "ab".repeat(16);
    let link = PatientLinkView {
        id: hex32.clone(),
        name: "Pat Example".into(),
        trust: "the device you paired with".into(),
        share: hex32.clone(),
        expires_at: 2,
        status: "active".into(),
        records: rows.len(),
        fetched_at: Some(1),
    };
    let chart = ChartView {
        patient: link.clone(),
        rows: rows.clone(),
        summary: display::chart_summary(&records),
        labs: display::lab_table(&records),
        lab_trends: display::lab_series(&display::lab_table(&records)),
        vitals: display::vitals_series(&records),
        documents: display::documents(&records),
        categories: vec![ipc::ShareCategory::Allergies],
    };
    let first = |v: Value, what: &str| -> Value {
        v.as_array()
            .and_then(|a| a.first().cloned())
            .unwrap_or_else(|| panic!("the sample has no {what}"))
    };
    let summary = serde_json::to_value(&chart.summary).expect("json");
    let labs = serde_json::to_value(&chart.labs).expect("json");
    let lab = first(labs, "lab");
    let vitals = serde_json::to_value(&chart.vitals).expect("json");
    let series = first(vitals, "vital series");
    let line = first(series["lines"].clone(), "series line");
    let docs = serde_json::to_value(&chart.documents).expect("json");
    let doc = first(docs, "document");

    let mut out = BTreeMap::<String, Value>::new();
    out.insert("AppError".into(), keys(&AppError::invalid_input("x")));
    out.insert(
        "AppStatus".into(),
        keys(&AppStatus {
            vault_exists: true,
            unlocked: true,
            default_relay_url: String::new(),
        }),
    );
    out.insert("Created".into(), keys(&Created { words: "w".into() }));
    out.insert(
        "ProfileView".into(),
        keys(&ProfileView {
            name: "Dr. Ada Quinn".into(),
            role: "doctor".into(),
            licence: None,
            fingerprint: "abcd".into(),
            appears_as: "a".into(),
            card_text: "CAREKEY-CARD:".into(),
            relay_url: "u".into(),
            enrolled_relays: vec!["u".into()],
        }),
    );
    out.insert(
        "ScanView".into(),
        keys(&ScanView {
            scan: hex32.clone(),
            check_code: "123-4567".into(),
        }),
    );
    out.insert("PatientLinkView".into(), keys(&link));
    out.insert(
        "SmartOpenView".into(),
        keys(&SmartOpenView {
            patient: link.clone(),
            skipped: vec![],
        }),
    );
    out.insert("ChartView".into(), keys(&chart));
    out.insert("ChartSummary".into(), keys(&chart.summary));
    for (name, field) in [
        ("ProblemRow", "problems"),
        ("MedicationRow", "medications"),
        ("AllergyRow", "allergies"),
        ("VitalRow", "vitals"),
    ] {
        out.insert(name.into(), keys(&first(summary[field].clone(), field)));
    }
    out.insert("LabRow".into(), keys(&lab));
    out.insert("ReferenceRange".into(), keys(&lab["reference_range"]));
    out.insert(
        "LabComponent".into(),
        keys(&first(lab["components"].clone(), "lab component")),
    );
    out.insert("Series".into(), keys(&series));
    out.insert("SeriesLine".into(), keys(&line));
    out.insert(
        "Point".into(),
        keys(&first(line["points"].clone(), "point")),
    );
    out.insert("DocumentRow".into(), keys(&doc));
    out.insert(
        "DocumentAttachment".into(),
        keys(&first(doc["attachments"].clone(), "attachment")),
    );
    out.insert("ChartRecord".into(), keys(&records[0]));
    out.insert("ChartRecordSummary".into(), keys(&records[0].summary));
    out.insert(
        "SentNoteView".into(),
        keys(&SentNoteView {
            id: hex32.clone(),
            patient: hex32.clone(),
            patient_name: "Pat Example".into(),
            resource_type: "Communication".into(),
            title: "t".into(),
            sent_at: 1,
            delivery: "d".into(),
        }),
    );
    out.insert(
        "InviteView".into(),
        keys(&InviteView {
            invite: hex32.clone(),
            qr_svg: "<svg/>".into(),
            text: "CAREKEY-INVITE:".into(),
            code: "123-4567".into(),
            expires_at: 1,
        }),
    );
    out.insert(
        "ColleagueView".into(),
        keys(&ColleagueView {
            name: "Dr. B".into(),
            licence: None,
            trust: "t".into(),
            code: "123-4567".into(),
        }),
    );
    out.insert(
        "ForwardOutcome.waiting_for_patient".into(),
        json!(serde_json::to_value(ForwardOutcome::WaitingForPatient).expect("json")),
    );
    out.insert(
        "ForwardOutcome.forwarded".into(),
        json!(serde_json::to_value(ForwardOutcome::Forwarded).expect("json")),
    );
    for (name, ev) in [
        ("AppEvent.locked", AppEvent::Locked),
        (
            "AppEvent.progress",
            AppEvent::Progress {
                op: hex32.clone(),
                stage: "fetching".into(),
                done: 1,
                total: 2,
            },
        ),
        (
            "AppEvent.access_ended",
            AppEvent::AccessEnded {
                patient: hex32.clone(),
                purged: 1,
            },
        ),
        (
            "AppEvent.problem",
            AppEvent::Problem {
                code: "c".into(),
                message: "m".into(),
            },
        ),
    ] {
        out.insert(name.into(), keys(&ev));
    }
    out.insert(
        "TrustedClinic".into(),
        keys(&carekey_app::session::TrustedClinic {
            name: "St. Mary's Clinic".into(),
            key: "ab".repeat(32),
            added_at: 1,
        }),
    );
    // Arguments the UI sends.
    out.insert(
        "ClinicRef".into(),
        keys(&ipc::ClinicRef {
            key: "ab".repeat(32),
        }),
    );
    out.insert(
        "SetEnrollmentKey".into(),
        keys(&ipc::SetEnrollmentKey {
            relay_url: "u".into(),
            key: Some("k".into()),
        }),
    );
    out.insert(
        "CreateVault".into(),
        keys(&ipc::CreateVault {
            passphrase: "p".into(),
            name: "n".into(),
            licence: None,
            relay_url: "u".into(),
        }),
    );
    out.insert(
        "Forward".into(),
        keys(&ipc::Forward {
            patient: hex32.clone(),
            invite: "CAREKEY-INVITE:".into(),
            reason: "r".into(),
            categories: vec![ipc::ShareCategory::Allergies],
        }),
    );
    out.insert(
        "OpenSmartLink".into(),
        keys(&ipc::OpenSmartLink {
            text: "shlink:/".into(),
            passcode: Some("p".into()),
        }),
    );
    for (name, w) in [
        (
            "WriteBack.note",
            ipc::WriteBack::Note {
                patient: hex32.clone(),
                text: "t".into(),
            },
        ),
        (
            "WriteBack.blood_pressure",
            ipc::WriteBack::BloodPressure {
                patient: hex32.clone(),
                systolic: 120.0,
                diastolic: 80.0,
                date: "2026-11-30".into(),
            },
        ),
        (
            "WriteBack.medication",
            ipc::WriteBack::Medication {
                patient: hex32.clone(),
                text: "t".into(),
                dosage: None,
            },
        ),
    ] {
        out.insert(name.into(), keys(&w));
    }
    out.insert("commands".into(), json!(COMMAND_NAMES));

    let text = serde_json::to_string_pretty(&out).expect("json") + "\n";
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../doctor-ui/src/ipc.fixture.json");
    let update = std::env::var_os("CAREKEY_UPDATE_IPC_FIXTURE").is_some();
    match std::fs::read_to_string(&path) {
        Ok(old) if !update => assert_eq!(
            old, text,
            "the IPC shapes changed: run with CAREKEY_UPDATE_IPC_FIXTURE=1, then update doctor-ui/src/ipc.ts until `npm test` passes"
        ),
        _ => std::fs::write(&path, text).expect("write the fixture"),
    }
}
