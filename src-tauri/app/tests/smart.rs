//! The doctor app opens SMART Health Links and Cards (docs/shl.md "In the doctor app") from a
//! local axum server on 127.0.0.1 (plain http is accepted for loopback only): a manifest with
//! an embedded and a `location` file encrypted by `carekey-shl`, the `P` flag without and with
//! a wrong passcode, an expired link, `application/smart-api-access`, a card signed in the test
//! and verified with the JWK set the same server serves, and a chunked `shc:/` card whose
//! issuer has no key set.
//!
//! The IPS test uses `$CAREKEY_FIXTURES/fhir/ips-bundle-01.json` (default `../shared/fixtures`
//! beside the repository); without it it prints "skipped", unless `CAREKEY_REQUIRE_FIXTURES`
//! is set, where it fails.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use carekey_app::events::NoEvents;
use carekey_app::ipc;
use carekey_app::session::{AppConfig, DoctorApp, SmartOpenView};
use carekey_shl::shc::{IssuerKey, card_file, encode_qr, sign_card};
use carekey_shl::{EncryptOptions, Flags, Jwks, ShlKey, Shlink, jwe};
use carekey_vault::KdfParams;
use serde_json::{Value, json};

const DOCTOR: &str = "Dr. Ada Quinn";
const PASS: &str = "correct horse battery staple";

#[derive(Clone)]
struct Srv {
    key: Arc<ShlKey>,
    base: String,
    fhir: Arc<Mutex<Value>>,
    issuer: Arc<IssuerKey>,
    recipients: Arc<Mutex<Vec<Value>>>,
}

fn enc(s: &Srv, plain: &[u8], cty: &str) -> String {
    jwe::encrypt(
        plain,
        &s.key,
        &EncryptOptions {
            cty: Some(cty),
            zip: true,
        },
    )
    .expect("encrypt")
}

fn observation() -> Value {
    json!({"resourceType": "Observation", "id": "shl-obs-1", "status": "final",
        "code": {"text": "Body weight"}, "valueQuantity": {"value": 71.5, "unit": "kg"}})
}

fn card_payload(iss: &str) -> Value {
    json!({
        "iss": iss,
        "nbf": 1_700_000_000u64,
        "vc": {
            "type": ["https://smarthealth.cards#health-card"],
            "credentialSubject": {
                "fhirVersion": "4.0.1",
                "fhirBundle": {"resourceType": "Bundle", "type": "collection", "entry": [
                    {"fullUrl": "resource:0", "resource": {"resourceType": "Patient",
                        "name": [{"family": "Anyperson", "given": ["Jane"]}]}},
                    {"fullUrl": "resource:1", "resource": {"resourceType": "Immunization",
                        "status": "completed", "vaccineCode": {"coding": [
                            {"system": "http://hl7.org/fhir/sid/cvx", "code": "207"}]},
                        "patient": {"reference": "resource:0"},
                        "occurrenceDateTime": "2021-01-01"}}
                ]}
            }
        }
    })
}

async fn plain_manifest(State(s): State<Srv>, Json(body): Json<Value>) -> Response {
    s.recipients.lock().expect("lock").push(body);
    let fhir = s.fhir.lock().expect("lock").to_string();
    Json(json!({"files": [
        {"contentType": "application/fhir+json", "embedded": enc(&s, fhir.as_bytes(), "application/fhir+json")},
        {"contentType": "application/fhir+json", "location": format!("{}/f/obs", s.base)},
    ]}))
    .into_response()
}

async fn obs_file(State(s): State<Srv>) -> Response {
    enc(
        &s,
        observation().to_string().as_bytes(),
        "application/fhir+json",
    )
    .into_response()
}

async fn pass_manifest(State(s): State<Srv>, Json(body): Json<Value>) -> Response {
    if body["passcode"] == "1234" {
        let plain = observation().to_string();
        return Json(json!({"files": [{"contentType": "application/fhir+json",
            "embedded": enc(&s, plain.as_bytes(), "application/fhir+json")}]}))
        .into_response();
    }
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"remainingAttempts": 2})),
    )
        .into_response()
}

async fn api_manifest(State(s): State<Srv>) -> Response {
    Json(json!({"files": [{"contentType": "application/smart-api-access",
        "embedded": enc(&s, br#"{"aud":"https://fhir.example.org"}"#, "application/smart-api-access")}]}))
    .into_response()
}

async fn card_manifest(State(s): State<Srv>) -> Response {
    let jws = sign_card(&card_payload(&format!("{}/issuer", s.base)), &s.issuer).expect("sign");
    let file = card_file(&[&jws]);
    Json(
        json!({"files": [{"contentType": "application/smart-health-card",
        "embedded": enc(&s, &file, "application/smart-health-card")}]}),
    )
    .into_response()
}

async fn direct_file(
    State(s): State<Srv>,
    axum::extract::Query(q): axum::extract::Query<Vec<(String, String)>>,
) -> Response {
    if !q.iter().any(|(k, v)| k == "recipient" && v == DOCTOR) {
        return StatusCode::BAD_REQUEST.into_response();
    }
    enc(
        &s,
        observation().to_string().as_bytes(),
        "application/fhir+json",
    )
    .into_response()
}

async fn jwks(State(s): State<Srv>) -> Response {
    Json(Jwks::from_keys([s.issuer.public_jwk().clone()]).to_json()).into_response()
}

async fn start(fhir: Value) -> Srv {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let s = Srv {
        key: Arc::new(ShlKey::generate()),
        base,
        fhir: Arc::new(Mutex::new(fhir)),
        issuer: Arc::new(IssuerKey::generate()),
        recipients: Arc::new(Mutex::new(Vec::new())),
    };
    let app = Router::new()
        .route("/m/plain", post(plain_manifest))
        .route("/f/obs", get(obs_file))
        .route("/m/pass", post(pass_manifest))
        .route("/m/api", post(api_manifest))
        .route("/m/card", post(card_manifest))
        .route("/d/obs", get(direct_file))
        .route("/issuer/.well-known/jwks.json", get(jwks))
        .with_state(s.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    s
}

fn link(s: &Srv, path: &str, flags: Flags, exp: Option<u64>) -> String {
    let l = Shlink::new(
        &format!("{}{path}", s.base),
        ShlKey::from_base64url(&s.key.to_base64url()).expect("the same key"),
        flags,
        Some("Records for the clinic"),
        exp,
    )
    .expect("link");
    l.to_text().to_string()
}

fn config(dir: &Path) -> AppConfig {
    AppConfig {
        vault_path: dir.join("doctor.vault"),
        kdf: KdfParams {
            m_kib: 8 * 1024,
            t: 1,
            p: 1,
        },
    }
}

async fn doctor(dir: &Path) -> DoctorApp {
    let d = DoctorApp::new(config(dir), Arc::new(NoEvents));
    d.create_vault(ipc::CreateVault {
        passphrase: PASS.into(),
        name: DOCTOR.into(),
        licence: None,
        relay_url: "https://relay.example.org".into(),
    })
    .await
    .expect("doctor vault");
    d
}

async fn open(
    d: &DoctorApp,
    text: &str,
    passcode: Option<&str>,
) -> carekey_app::Result<SmartOpenView> {
    d.open_smart_link(ipc::OpenSmartLink {
        text: text.to_owned(),
        passcode: passcode.map(str::to_owned),
    })
    .await
}

fn fixtures(what: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("CAREKEY_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"));
    if dir.join(what).exists() {
        return Some(dir);
    }
    let required =
        std::env::var_os("CAREKEY_REQUIRE_FIXTURES").is_some_and(|v| !v.is_empty() && v != "0");
    assert!(
        !required,
        "CAREKEY_REQUIRE_FIXTURES is set but {what} is missing"
    );
    println!("skipped: CAREKEY_FIXTURES not found ({what} missing)");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ips_link_lands_in_the_patients_list_unsigned() {
    let Some(fx) = fixtures("fhir/ips-bundle-01.json") else {
        return;
    };
    let ips: Value = serde_json::from_slice(
        &std::fs::read(fx.join("fhir/ips-bundle-01.json")).expect("read IPS"),
    )
    .expect("IPS JSON");
    let entries = ips["entry"].as_array().expect("entries").len();
    let s = start(ips).await;
    let dir = tempfile::tempdir().expect("dir");
    let d = doctor(dir.path()).await;

    let text = link(&s, "/m/plain", Flags::default(), None);
    // A scanned link is answered `smart_link` and kept for open_smart_link with no text.
    let e = d
        .scan_text(ipc::ScanText { text: text.clone() })
        .await
        .expect_err("a SMART link is not a Carekey pairing");
    assert_eq!(e.code, "smart_link");
    let opened = open(&d, "", None).await.expect("opens");
    assert!(opened.skipped.is_empty(), "{:?}", opened.skipped);
    let p = &opened.patient;
    assert_eq!(p.trust, "unsigned (SMART Health Link)");
    assert_eq!(p.status, "active");
    assert_eq!(p.records, entries + 1);
    assert!(p.share.starts_with("smart:"));
    assert_eq!(
        s.recipients.lock().expect("lock")[0]["recipient"],
        DOCTOR,
        "the manifest request names the doctor"
    );

    let list = d.patients().await.expect("patients");
    let listed = list.iter().find(|l| l.id == p.id).expect("listed");
    assert_eq!(listed.status, "active");
    let chart = d
        .chart(ipc::IdRef { id: p.id.clone() })
        .await
        .expect("chart");
    assert_eq!(chart.rows.len(), entries + 1);
    assert!(
        chart
            .rows
            .iter()
            .all(|r| !serde_json::to_string(r).expect("row").contains("signed by")),
        "nothing of it shows as signed"
    );
    // Opening the same link again updates its entry.
    let again = open(&d, &text, None).await.expect("opens again");
    assert_eq!(again.patient.id, p.id);
    assert_eq!(d.patients().await.expect("patients").len(), 1);
    let chart = d
        .chart(ipc::IdRef { id: p.id.clone() })
        .await
        .expect("chart");
    assert_eq!(chart.rows.len(), entries + 1);
    // A copy has no share to refresh.
    let e = d
        .refresh_patient(ipc::IdRef { id: p.id.clone() })
        .await
        .expect_err("nothing to refresh");
    assert_eq!(e.code, "not_supported");
    // Opened: the scanned text is forgotten.
    let e = open(&d, "", None).await.expect_err("nothing kept");
    assert_eq!(e.code, "invalid_input");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passcodes_expiry_api_access_and_cards() {
    let s = start(json!({"resourceType": "Bundle", "type": "collection", "entry": []})).await;
    let dir = tempfile::tempdir().expect("dir");
    let d = doctor(dir.path()).await;
    let p_flag = Flags {
        passcode: true,
        ..Flags::default()
    };
    let pass = link(&s, "/m/pass", p_flag, None);

    let e = open(&d, &pass, None).await.expect_err("needs a passcode");
    assert_eq!(e.code, "passcode_required");
    let e = open(&d, &pass, Some("9999"))
        .await
        .expect_err("wrong passcode");
    assert_eq!(e.code, "passcode_rejected");
    assert!(e.message.contains("2 attempts left"), "{}", e.message);
    assert!(!e.message.contains("9999"));
    let ok = open(&d, &pass, Some("1234")).await.expect("right passcode");
    assert_eq!(ok.patient.records, 1);
    assert_eq!(ok.patient.name, "Records for the clinic");

    // `U`: one GET of the file itself, naming the doctor.
    let direct = link(
        &s,
        "/d/obs",
        Flags {
            direct_file: true,
            ..Flags::default()
        },
        None,
    );
    let v = open(&d, &direct, None).await.expect("direct file");
    assert_eq!(v.patient.records, 1);
    assert_eq!(v.patient.trust, "unsigned (SMART Health Link)");

    // Plain http anywhere but loopback is refused, without repeating the URL.
    let payload = json!({"url": "http://shl.example.org/m",
        "key": ShlKey::generate().to_base64url().as_str()});
    let remote = format!(
        "shlink:/{}",
        data_encoding::BASE64URL_NOPAD.encode(payload.to_string().as_bytes())
    );
    let e = open(&d, &remote, None).await.expect_err("not https");
    assert_eq!(e.code, "invalid_input");
    assert!(!e.message.contains("example.org"), "{}", e.message);

    let expired = link(&s, "/m/plain", Flags::default(), Some(1_000_000));
    let e = open(&d, &expired, None).await.expect_err("expired");
    assert_eq!(e.code, "expired");
    assert!(!e.message.contains(&s.base));

    let api = link(&s, "/m/api", Flags::default(), None);
    let e = open(&d, &api, None).await.expect_err("API access");
    assert_eq!(e.code, "not_supported");
    assert!(e.message.contains("smart-api-access"), "{}", e.message);

    let card = link(&s, "/m/card", Flags::default(), None);
    let v = open(&d, &card, None).await.expect("card link");
    assert_eq!(
        v.patient.trust,
        format!("SMART Health Card from {}/issuer, signature valid", s.base)
    );
    assert_eq!(v.patient.name, "Jane Anyperson");
    assert_eq!(v.patient.records, 2);
    let chart = d
        .chart(ipc::IdRef {
            id: v.patient.id.clone(),
        })
        .await
        .expect("card chart");
    assert_eq!(chart.rows.len(), 2);
    let again = open(&d, &card, None).await.expect("card link again");
    assert_eq!(again.patient.id, v.patient.id);
    let chart = d
        .chart(ipc::IdRef {
            id: v.patient.id.clone(),
        })
        .await
        .expect("card chart");
    assert_eq!(
        chart.rows.len(),
        2,
        "the same card again replaces its records"
    );

    // A card QR in two chunks, one per line, from an issuer without a key set.
    let other = IssuerKey::generate();
    let jws = sign_card(&card_payload(&format!("{}/unknown", s.base)), &other).expect("sign");
    let digits = encode_qr(&jws).expect("qr")[5..].to_owned();
    let half = digits.len() / 2 / 2 * 2;
    let chunked = format!(
        "shc:/2/2/{}\nshc:/1/2/{}\n",
        &digits[half..],
        &digits[..half]
    );
    let v = open(&d, &chunked, None).await.expect("chunked card");
    assert_eq!(
        v.patient.trust,
        format!(
            "SMART Health Card from {}/unknown, issuer not verified",
            s.base
        )
    );
    // A key of another issuer does not vouch for it either.
    let forged = sign_card(&card_payload(&format!("{}/issuer", s.base)), &other).expect("sign");
    let v = open(&d, &encode_qr(&forged).expect("qr"), None)
        .await
        .expect("single QR card");
    assert!(v.patient.trust.ends_with("issuer not verified"));

    let all = d.patients().await.expect("patients");
    assert_eq!(all.len(), 5);
    assert!(all.iter().all(|l| l.status == "active"));
}

/// The same `Observation/shl-obs-1` through a `U` link and through a card of the same issuer
/// lands as two records of two entries (each SMART import has its own vault namespace,
/// docs/shl.md "Storage"), each entry with its own provenance wording; and neither takes a
/// write-back (there is no mailbox behind a SMART import).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_id_from_a_link_and_a_card_is_two_records_without_write_back() {
    let s = start(json!({"resourceType": "Bundle", "type": "collection", "entry": []})).await;
    let dir = tempfile::tempdir().expect("dir");
    let d = doctor(dir.path()).await;
    let direct = link(
        &s,
        "/d/obs",
        Flags {
            direct_file: true,
            ..Flags::default()
        },
        None,
    );
    let by_link = open(&d, &direct, None).await.expect("the link");
    assert_eq!(by_link.patient.trust, "unsigned (SMART Health Link)");
    let mut payload = card_payload(&format!("{}/issuer", s.base));
    payload["vc"]["credentialSubject"]["fhirBundle"]["entry"] = json!([
        {"fullUrl": "resource:0", "resource": observation()}
    ]);
    let jws = sign_card(&payload, &s.issuer).expect("sign");
    let by_card = open(&d, &encode_qr(&jws).expect("qr"), None)
        .await
        .expect("the card");
    assert_eq!(
        by_card.patient.trust,
        format!("SMART Health Card from {}/issuer, signature valid", s.base)
    );
    assert_ne!(by_link.patient.id, by_card.patient.id);
    let rows = |id: String| {
        let d = &d;
        async move {
            d.chart(ipc::IdRef { id })
                .await
                .expect("chart")
                .rows
                .into_iter()
                .filter(|r| r.fhir_type == "Observation")
                .map(|r| r.id)
                .collect::<Vec<_>>()
        }
    };
    let (a, b) = (
        rows(by_link.patient.id.clone()).await,
        rows(by_card.patient.id.clone()).await,
    );
    assert_eq!(a.len(), 1, "the link's entry keeps its record");
    assert_eq!(b.len(), 1, "the card's entry has its own");
    assert_ne!(a, b, "two vault records for one FHIR id");

    // Write-back: refused with its own code and the words the doctor UI shows.
    for entry in [&by_link.patient.id, &by_card.patient.id] {
        let e = d
            .write_back(ipc::WriteBack::Note {
                patient: entry.clone(),
                text: "Please book a follow-up.".into(),
            })
            .await
            .expect_err("no mailbox behind a SMART import");
        assert_eq!(e.code, carekey_app::session::NO_WRITE_BACK_CODE);
        assert_eq!(
            e.message,
            "this patient's records came from a SMART Health Link; there is no way to send back"
        );
    }
    assert!(d.sent_notes().await.expect("sent").is_empty());
}
