//! The JSON shapes the UI relies on: sample values of every type a command returns (and
//! takes) are serialized here, and their key sets are kept in `patient-ui/src/ipc.fixture.json`,
//! which `patient-ui/tests/ipc.test.ts` checks against the TypeScript types of `src/ipc.ts`.
//!
//! A changed shape fails this test; regenerate with `CAREKEY_UPDATE_IPC_FIXTURE=1 cargo test
//! -p carekey-patient --test ipc_fixture`, then fix `ipc.ts` until vitest passes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use carekey_app::events::{AppEvent, NoEvents};
use carekey_app::ipc::{self, PolicyChoice, ShareCategory};
use carekey_app::session::{
    AccessLine, AccessLogView, AppConfig, DelegationRow, DoctorAtTheDoorView, ForwardRequestRow,
    GrantScopeView, GranteeView, InboxNoteView, LinkRow, PatientApp, PublishedLinkView,
    ShareStarted, ShareView,
};
use carekey_app::{AppError, validate};
use carekey_patient::commands::{AppStatus, CategoryInfo};
use carekey_patient::{COMMAND_NAMES, Options};
use serde::Serialize;
use serde_json::{Value, json};

fn keys<T: Serialize>(v: &T) -> Value {
    let v = serde_json::to_value(v).expect("serializes");
    let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
    k.sort();
    json!(k)
}

const PASS: &str = "correct horse battery staple";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipc_shapes_match_the_ui_fixture() {
    let dir = tempfile::tempdir().expect("dir");
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
        passphrase: PASS.into(),
        name: "Pat Example".into(),
        licence: None,
        relay_url: "http://127.0.0.1:9".into(),
    })
    .await
    .expect("vault");
    let id = app
        .add_record(ipc::ManualRecord::Measurement {
            text: "Body weight".into(),
            value: 71.5,
            unit: "kg".into(),
            date: "2026-11-30".into(),
        })
        .await
        .expect("add");
    let file = dir.path().join("x.ndjson");
    std::fs::write(
        &file,
        "{\"resourceType\":\"Condition\",\"id\":\"c1\",\"code\":{\"text\":\"Asthma\"}}\n",
    )
    .expect("write");
    let report = app
        .import_file(ipc::ImportFile {
            path: file.to_string_lossy().into_owned(),
        })
        .await
        .expect("import");
    let rows = app.timeline().await.expect("timeline");
    let record = app
        .record(ipc::RecordRef { id: id.clone() })
        .await
        .expect("record");
    let settings = app.settings().await.expect("settings");
    let trends = app.trends().await.expect("trends");

    let hex32 = "ab".repeat(16);
    let mut out = BTreeMap::<String, Value>::new();
    out.insert("AppError".into(), keys(&AppError::invalid_input("x")));
    out.insert(
        "AppStatus".into(),
        keys(&AppStatus {
            vault_exists: true,
            unlocked: true,
            default_relay_url: String::new(),
            categories: vec![],
            settings: Some(settings.clone()),
        }),
    );
    out.insert(
        "CategoryInfo".into(),
        keys(&CategoryInfo {
            category: json!("condition"),
            label: "Problems",
        }),
    );
    out.insert("Settings".into(), keys(&settings));
    out.insert(
        "RelayCheck".into(),
        keys(&carekey_app::session::RelayCheck {
            relay_url: "u".into(),
            reachable: true,
            message: "m".into(),
        }),
    );
    out.insert(
        "BackupStatus".into(),
        keys(&carekey_app::session::BackupStatus { version: 1, at: 2 }),
    );
    out.insert(
        "RestoreVault".into(),
        keys(&ipc::RestoreVault {
            phrase: "w".into(),
            new_passphrase: "p".into(),
            name: "n".into(),
            relay_url: "u".into(),
        }),
    );
    out.insert(
        "ChangePassphrase".into(),
        keys(&ipc::ChangePassphrase {
            old: "o".into(),
            new: "n".into(),
        }),
    );
    out.insert("ImportReport".into(), keys(&report));
    out.insert("TimelineRow".into(), keys(&rows[0]));
    out.insert("RecordDetail".into(), keys(&record));
    out.insert("RecordSummary".into(), keys(&record.summary));
    out.insert("TrendsView".into(), keys(&trends));
    let started = ShareStarted {
        share: hex32.clone(),
        pairing: hex32.clone(),
        qr_svg: "<svg/>".into(),
        qr_text: "CAREKEY:".into(),
        qr_expires_at: 1,
        expires_at: 2,
        records: 3,
        attachments: 0,
        categories: vec![ShareCategory::Conditions],
    };
    out.insert("ShareStarted".into(), keys(&started));
    out.insert(
        "DoctorAtTheDoor".into(),
        keys(&DoctorAtTheDoorView {
            pairing: hex32.clone(),
            name: "Dr. Ada Quinn".into(),
            licence: None,
            check_code: "123-4567".into(),
            attested: false,
            trust: "self-asserted".into(),
        }),
    );
    let grantee = GranteeView {
        relationship: hex32.clone(),
        name: "Dr. Ada Quinn".into(),
        trust: "t".into(),
        status: "active".into(),
        expires_at: 2,
        scope: GrantScopeView::Everything,
    };
    out.insert("Grantee".into(), keys(&grantee));
    for (name, scope) in [
        ("GrantScope.everything", GrantScopeView::Everything),
        (
            "GrantScope.only",
            GrantScopeView::Only {
                categories: vec![ShareCategory::Conditions],
                records: 1,
            },
        ),
        ("GrantScope.not_recorded", GrantScopeView::NotRecorded),
    ] {
        out.insert(name.into(), keys(&scope));
    }
    out.insert(
        "ShareView".into(),
        keys(&ShareView {
            id: hex32.clone(),
            created_at: 1,
            expires_at: 2,
            policy: PolicyChoice::Ask,
            depth: 0,
            categories: vec![ShareCategory::Conditions],
            records: 1,
            attachments: 0,
            grantees: vec![grantee],
        }),
    );
    out.insert(
        "ForwardRequestRow".into(),
        keys(&ForwardRequestRow {
            id: hex32.clone(),
            from: "Dr. Ada Quinn".into(),
            colleague: "Dr. Bo Lind".into(),
            colleague_trust: "t".into(),
            share: hex32.clone(),
            reason: "r".into(),
            categories: vec![ShareCategory::Allergies],
            records: 0,
        }),
    );
    out.insert(
        "DelegationRow".into(),
        keys(&DelegationRow {
            id: Some(hex32.clone()),
            by: "Dr. Ada Quinn".into(),
            colleague: "Dr. Bo Lind".into(),
            root: hex32.clone(),
            level: 1,
            expires_at: 2,
            status: "active".into(),
        }),
    );
    out.insert(
        "AccessLine".into(),
        keys(&AccessLine {
            who: "Dr. Ada Quinn".into(),
            records: 12,
        }),
    );
    out.insert(
        "AccessLogView".into(),
        keys(&AccessLogView {
            lines: vec![],
            downloads: vec!["d".into()],
            alerts: vec!["a".into()],
        }),
    );
    out.insert(
        "InboxNote".into(),
        keys(&InboxNoteView {
            id: hex32.clone(),
            author: "Dr. Ada Quinn".into(),
            signature: "signature valid".into(),
            resource_type: "Observation".into(),
            title: "t".into(),
            received_at: 1,
            resource: json!({}),
        }),
    );
    for (name, ev) in [
        ("AppEvent.locked", AppEvent::Locked),
        (
            "AppEvent.progress",
            AppEvent::Progress {
                op: hex32.clone(),
                stage: "importing".into(),
                done: 1,
                total: 2,
            },
        ),
        (
            "AppEvent.inbox_changed",
            AppEvent::InboxChanged {
                notes: 1,
                forward_requests: 0,
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
    out.insert(
        "PublishedLinkView".into(),
        keys(&PublishedLinkView {
            id: "ab".repeat(32),
            qr_svg: "<svg/>".into(),
            shlink: "shlink:/".into(),
            passcode: Some("12345678".into()),
            expires_at: 2,
            files: 1,
            attachments: 1,
            left_out: 1,
            left_out_note: Some("1 attached file was left out.".into()),
            warning: "w".into(),
        }),
    );
    out.insert(
        "LinkRow".into(),
        keys(&LinkRow {
            id: "ab".repeat(32),
            label: None,
            expires_at: 2,
            status: "active".into(),
            files: 1,
        }),
    );
    // Arguments the UI sends.
    out.insert(
        "PublishLink".into(),
        keys(&ipc::PublishLink {
            share: hex32.clone(),
            passcode: true,
            expires_in_secs: 86_400,
            label: None,
        }),
    );
    out.insert(
        "ClinicRef".into(),
        keys(&ipc::ClinicRef {
            key: "ab".repeat(32),
        }),
    );
    out.insert(
        "RevokeDelegation".into(),
        keys(&ipc::RevokeDelegation {
            share: hex32.clone(),
            delegation: hex32.clone(),
        }),
    );
    out.insert(
        "StartShare".into(),
        keys(&ipc::StartShare {
            categories: vec![ShareCategory::Conditions],
            records: vec![],
            expires_in_secs: 86_400,
            policy: PolicyChoice::Ask,
            depth: 0,
        }),
    );
    out.insert(
        "AnswerDoctor".into(),
        keys(&ipc::AnswerDoctor {
            id: hex32.clone(),
            accept: true,
            categories: Some(vec![ShareCategory::Allergies]),
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
    for (name, m) in [
        (
            "ManualRecord.condition",
            ipc::ManualRecord::Condition {
                text: "t".into(),
                onset: None,
            },
        ),
        (
            "ManualRecord.medication",
            ipc::ManualRecord::Medication {
                text: "t".into(),
                dosage: None,
            },
        ),
        (
            "ManualRecord.allergy",
            ipc::ManualRecord::Allergy {
                text: "t".into(),
                reaction: None,
            },
        ),
        (
            "ManualRecord.immunization",
            ipc::ManualRecord::Immunization {
                text: "t".into(),
                date: "2026-01-01".into(),
            },
        ),
        (
            "ManualRecord.measurement",
            ipc::ManualRecord::Measurement {
                text: "t".into(),
                value: 1.0,
                unit: "kg".into(),
                date: "2026-01-01".into(),
            },
        ),
    ] {
        out.insert(name.into(), keys(&m));
    }
    // The strength meter mirrors the Rust score.
    let samples = [
        "",
        "abc",
        "abcdefghij",
        "password12",
        "correct horse battery staple",
        "Tr0ub4dor&3",
        "aaaaaaaaaaaaaaaa",
        "Zürich-Grüße 2026!",
        "1234567890",
        "q7#Lp!x2@Vm9",
    ];
    out.insert(
        "strength".into(),
        json!(
            samples
                .iter()
                .map(|s| json!([s, validate::passphrase_strength(s)]))
                .collect::<Vec<_>>()
        ),
    );
    out.insert("commands".into(), json!(COMMAND_NAMES));

    let text = serde_json::to_string_pretty(&out).expect("json") + "\n";
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../patient-ui/src/ipc.fixture.json");
    let update = std::env::var_os("CAREKEY_UPDATE_IPC_FIXTURE").is_some();
    match std::fs::read_to_string(&path) {
        Ok(old) if !update => assert_eq!(
            old, text,
            "the IPC shapes changed: run with CAREKEY_UPDATE_IPC_FIXTURE=1, then update patient-ui/src/ipc.ts until `npm test` passes"
        ),
        _ => std::fs::write(&path, text).expect("write the fixture"),
    }
    let _ = Options::default();
}
