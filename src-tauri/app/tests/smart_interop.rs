//! A SMART Health Card issued by an independent implementation, `kill-the-clipboard`
//! (TypeScript, pinned in `src-tauri/shl/tests/interop/package.json`, run by Node through
//! `interop.mjs issue`), opened by the doctor app's `open_smart_link` (docs/shl.md "In the
//! doctor app"): its issuer's JWK set comes from a local axum server at
//! `<iss>/.well-known/jwks.json` (SHC "Determining keys associated with an issuer"), so the
//! card reads "signature valid"; the same card with one bit of its signature flipped is
//! refused as `tampered`.
//!
//! Skipped, saying so, without `node` or the npm packages; a failure instead when
//! `CAREKEY_REQUIRE_SHL_INTEROP=1` (`npm ci --prefix src-tauri/shl/tests/interop`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use carekey_app::events::NoEvents;
use carekey_app::ipc;
use carekey_app::session::{AppConfig, DoctorApp};
use carekey_shl::shc::encode_qr;
use carekey_vault::KdfParams;
use serde_json::{Value, json};

const REQUIRE: &str = "CAREKEY_REQUIRE_SHL_INTEROP";

fn interop_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shl/tests/interop");
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let pkg_ok = dir
        .join("node_modules/kill-the-clipboard/package.json")
        .is_file();
    if node_ok && pkg_ok {
        return Some(dir);
    }
    let why = format!(
        "SHC interop skipped: node {}, kill-the-clipboard {} (run `npm ci --prefix src-tauri/shl/tests/interop`)",
        if node_ok { "found" } else { "missing" },
        if pkg_ok { "installed" } else { "not installed" },
    );
    assert!(
        std::env::var(REQUIRE).as_deref() != Ok("1"),
        "{why} but {REQUIRE}=1"
    );
    println!("{why}");
    None
}

async fn jwks(State(set): State<Arc<Mutex<Value>>>) -> impl IntoResponse {
    Json(set.lock().expect("lock").clone())
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_it_issues_opens_signature_valid_and_a_flipped_bit_is_tampered() {
    let Some(dir) = interop_dir() else { return };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let iss = format!("http://{}/issuer", listener.local_addr().expect("addr"));
    let set = Arc::new(Mutex::new(json!({"keys": []})));
    let app = Router::new()
        .route("/issuer/.well-known/jwks.json", get(jwks))
        .with_state(set.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });

    let tmp = tempfile::tempdir().expect("dir");
    let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "resource:0", "resource": {"resourceType": "Patient",
            "name": [{"family": "Anyperson", "given": ["Jane"]}]}},
        {"fullUrl": "resource:1", "resource": {"resourceType": "Immunization",
            "status": "completed", "vaccineCode": {"coding": [
                {"system": "http://hl7.org/fhir/sid/cvx", "code": "207"}]},
            "patient": {"reference": "resource:0"}, "occurrenceDateTime": "2021-01-01"}}]});
    let bundle_path = tmp.path().join("bundle.json");
    std::fs::write(&bundle_path, bundle.to_string()).expect("bundle");
    let o = Command::new("node")
        .current_dir(&dir)
        .arg("interop.mjs")
        .arg("issue")
        .arg(&bundle_path)
        .arg(&iss)
        .output()
        .expect("node runs");
    assert!(
        o.status.success(),
        "node issue failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let issued: Value = serde_json::from_slice(&o.stdout).expect("one JSON line");
    assert_eq!(issued["iss"], iss.as_str());
    *set.lock().expect("lock") = issued["jwks"].clone();
    let jws = issued["jws"].as_str().expect("jws");

    let d = DoctorApp::new(config(tmp.path()), Arc::new(NoEvents));
    d.create_vault(ipc::CreateVault {
        passphrase: "correct horse battery staple".into(),
        name: "Dr. Ada Quinn".into(),
        licence: None,
        relay_url: "https://relay.example.org".into(),
    })
    .await
    .expect("doctor vault");
    let open = |text: String| {
        let d = &d;
        async move {
            d.open_smart_link(ipc::OpenSmartLink {
                text,
                passcode: None,
            })
            .await
        }
    };
    let v = open(encode_qr(jws).expect("qr"))
        .await
        .expect("the card opens");
    assert_eq!(
        v.patient.trust,
        format!("SMART Health Card from {iss}, signature valid")
    );
    assert_eq!(v.patient.name, "Jane Anyperson");
    assert_eq!(v.patient.records, 2);

    // One bit of the signature (R || S, RFC 7518 §3.4) flipped: refused, not imported.
    let (head, sig) = jws.rsplit_once('.').expect("three parts");
    let b64 = data_encoding::BASE64URL_NOPAD;
    let mut sig = b64.decode(sig.as_bytes()).expect("base64url signature");
    sig[17] ^= 0x01;
    let flipped = format!("{head}.{}", b64.encode(&sig));
    let e = open(encode_qr(&flipped).expect("qr"))
        .await
        .expect_err("a flipped bit must fail");
    assert_eq!(e.code, "tampered", "{}", e.message);
    assert_eq!(d.patients().await.expect("patients").len(), 1);
}
