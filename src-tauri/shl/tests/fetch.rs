//! The `fetch` module against a local HTTP server on 127.0.0.1: manifest POST (body, passcode,
//! 401 with `remainingAttempts`, 404, 429), `location` GETs, the `U`-flag direct GET with
//! `recipient`, and a refused redirect.

use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use carekey_shl::fetch::ShlClient;
use carekey_shl::{ContentType, EncryptOptions, Flags, Opened, ShlError, ShlKey, Shlink, jwe};
use serde_json::{Value, json};

#[derive(Clone)]
struct Srv {
    base: String,
    fhir_jwe: String,
    card_jwe: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

async fn manifest(State(s): State<Srv>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    s.bodies.lock().expect("lock").push(body);
    Json(json!({"files": [
        {"contentType": "application/fhir+json", "embedded": s.fhir_jwe},
        {"contentType": "application/smart-health-card", "location": format!("{}/f/card", s.base)},
        {"contentType": "application/smart-api-access", "location": format!("{}/f/none", s.base)},
        {"contentType": "application/fhir+json", "location": format!("{}/f/gone", s.base)},
    ]}))
    .into_response()
}

async fn passcode(State(s): State<Srv>, Json(body): Json<Value>) -> Response {
    if body["passcode"] == "1234" {
        return Json(
            json!({"files": [{"contentType": "application/fhir+json", "embedded": s.fhir_jwe}]}),
        )
        .into_response();
    }
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"remainingAttempts": 4})),
    )
        .into_response()
}

async fn direct(State(s): State<Srv>, Query(q): Query<Vec<(String, String)>>) -> Response {
    if !q
        .iter()
        .any(|(k, v)| k == "recipient" && v == "Dr. Test, Test Clinic")
    {
        return StatusCode::BAD_REQUEST.into_response();
    }
    ([(header::CONTENT_TYPE, "application/jose")], s.fhir_jwe).into_response()
}

async fn start(key: &ShlKey) -> Srv {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let fhir = br#"{"resourceType":"Bundle","type":"document","entry":[]}"#;
    let fhir_jwe = jwe::encrypt(
        fhir,
        key,
        &EncryptOptions {
            cty: Some("application/fhir+json"),
            zip: true,
        },
    )
    .expect("encrypt");
    let card_jwe = jwe::encrypt(
        br#"{"verifiableCredential":[]}"#,
        key,
        &EncryptOptions {
            cty: Some("application/smart-health-card"),
            zip: false,
        },
    )
    .expect("encrypt");
    let srv = Srv {
        base,
        fhir_jwe,
        card_jwe,
        bodies: Arc::default(),
    };
    let app = Router::new()
        .route("/m/open", post(manifest))
        .route("/m/pass", post(passcode))
        .route("/m/gone", post(|| async { StatusCode::NOT_FOUND }))
        .route(
            "/m/busy",
            post(|| async { (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "30")]) }),
        )
        .route(
            "/m/redirect",
            post(|| async {
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(header::LOCATION, "http://example.com/m")],
                )
            }),
        )
        .route(
            "/f/card",
            get(|State(s): State<Srv>| async move { s.card_jwe }),
        )
        .route("/f/gone", get(|| async { StatusCode::NOT_FOUND }))
        .route("/direct", get(direct))
        .with_state(srv.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    srv
}

fn link(srv: &Srv, path: &str, key: &ShlKey, flags: Flags) -> Shlink {
    Shlink::new(
        &format!("{}{path}", srv.base),
        key.clone(),
        flags,
        Some("Test"),
        None,
    )
    .expect("link")
}

const RECIPIENT: &str = "Dr. Test, Test Clinic";

#[tokio::test]
async fn manifest_flow() {
    let key = ShlKey::generate();
    let srv = start(&key).await;
    let client = ShlClient::new(RECIPIENT).expect("client");
    let entries = client
        .open(
            &link(&srv, "/m/open", &key, Flags::default()),
            Some("ignored"),
            0,
        )
        .await
        .expect("opens");
    assert_eq!(entries.len(), 4);
    let Ok(Opened::File(f)) = &entries[0].outcome else {
        panic!("{:?}", entries[0])
    };
    assert_eq!(f.fhir_resource().expect("FHIR")["type"], "document");
    let Ok(Opened::File(c)) = &entries[1].outcome else {
        panic!("{:?}", entries[1])
    };
    assert_eq!(c.content_type(), ContentType::SmartHealthCard);
    assert_eq!(
        c.health_card_jws().expect("card file"),
        Vec::<String>::new()
    );
    assert_eq!(
        entries[2].outcome.as_ref().unwrap_err(),
        &ShlError::ApiAccessNotSupported
    );
    assert_eq!(
        entries[3].outcome.as_ref().unwrap_err(),
        &ShlError::HttpStatus { status: 404 }
    );
    // The request body: recipient, no passcode without the P flag, embeddedLengthMax.
    let body = srv.bodies.lock().expect("lock")[0].clone();
    assert_eq!(body["recipient"], RECIPIENT);
    assert!(body.get("passcode").is_none());
    assert!(body["embeddedLengthMax"].as_u64().is_some());
}

#[tokio::test]
async fn passcode_flow() {
    let key = ShlKey::generate();
    let srv = start(&key).await;
    let client = ShlClient::new(RECIPIENT).expect("client");
    let l = link(
        &srv,
        "/m/pass",
        &key,
        Flags {
            passcode: true,
            ..Flags::default()
        },
    );
    assert_eq!(
        client.open(&l, None, 0).await.unwrap_err(),
        ShlError::PasscodeRequired
    );
    assert_eq!(
        client.open(&l, Some("0000"), 0).await.unwrap_err(),
        ShlError::PasscodeRejected {
            remaining_attempts: Some(4)
        }
    );
    let entries = client
        .open(&l, Some("1234"), 0)
        .await
        .expect("right passcode");
    assert!(matches!(entries[0].outcome, Ok(Opened::File(_))));
}

#[tokio::test]
async fn status_errors_and_expiry() {
    let key = ShlKey::generate();
    let srv = start(&key).await;
    let client = ShlClient::new(RECIPIENT).expect("client");
    let f = Flags::default();
    assert_eq!(
        client
            .open(&link(&srv, "/m/gone", &key, f), None, 0)
            .await
            .unwrap_err(),
        ShlError::LinkInactive
    );
    assert_eq!(
        client
            .open(&link(&srv, "/m/busy", &key, f), None, 0)
            .await
            .unwrap_err(),
        ShlError::RateLimited {
            retry_after: Some(30)
        }
    );
    // A redirect to plain http off loopback is not followed.
    let e = client
        .open(&link(&srv, "/m/redirect", &key, f), None, 0)
        .await
        .unwrap_err();
    assert!(matches!(e, ShlError::Network { .. }), "{e:?}");
    assert!(!e.to_string().contains("127.0.0.1"), "{e}");
    // Expired: refused before any request.
    let old = Shlink::new(
        &format!("{}/m/open", srv.base),
        key.clone(),
        f,
        None,
        Some(10),
    )
    .expect("link");
    assert_eq!(
        client.open(&old, None, 10).await.unwrap_err(),
        ShlError::Expired { exp: 10, now: 10 }
    );
    assert!(srv.bodies.lock().expect("lock").is_empty());
    // Nothing listening.
    let closed = Shlink::new("http://127.0.0.1:9/m", key.clone(), f, None, None).expect("link");
    assert!(matches!(
        client.open(&closed, None, 0).await.unwrap_err(),
        ShlError::Network { .. }
    ));
}

#[tokio::test]
async fn direct_file_flow() {
    let key = ShlKey::generate();
    let srv = start(&key).await;
    let client = ShlClient::new(RECIPIENT).expect("client");
    let l = link(
        &srv,
        "/direct",
        &key,
        Flags {
            direct_file: true,
            long_term: true,
            ..Flags::default()
        },
    );
    let entries = client.open(&l, None, 0).await.expect("opens");
    assert_eq!(entries.len(), 1);
    let Ok(Opened::File(f)) = &entries[0].outcome else {
        panic!("{:?}", entries[0])
    };
    assert_eq!(f.content_type(), ContentType::FhirJson);
    assert_eq!(f.fhir_resource().expect("FHIR")["resourceType"], "Bundle");
    // The wrong key for that file.
    let other = Shlink::new(l.url(), ShlKey::generate(), l.flags(), None, None).expect("link");
    assert_eq!(
        client.open(&other, None, 0).await.unwrap_err(),
        ShlError::WrongKey
    );
}
