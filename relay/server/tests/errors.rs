//! Every error the relay answers is `{"error", "message"}` JSON, also the answers axum and tower
//! produce by themselves (issue 14 part 1), no message echoes what the client sent, 5xx bodies
//! say nothing, and `/openapi.json` lists every route the router serves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use carekey_relay::{BodyKind, RouteInfo, app_with_routes};
use common::*;

/// A string no relay message contains; sent everywhere a client can put text.
const CANARY: &str = "Xyzzy9Canary";

/// Asserts `r` is a JSON error of `status` with exactly the keys `error` and `message`;
/// returns the code.
#[track_caller]
fn json_error(r: &Resp, status: StatusCode) -> String {
    assert_eq!(r.status, status, "{}", r.text());
    let ct = r.headers["content-type"].to_str().unwrap();
    assert!(ct.starts_with("application/json"), "content-type {ct}");
    let v = r.json();
    let obj = v.as_object().expect("object");
    assert_eq!(
        obj.keys().map(String::as_str).collect::<Vec<_>>(),
        ["error", "message"],
        "{}",
        r.text()
    );
    assert!(!obj["message"].as_str().unwrap().is_empty());
    obj["error"].as_str().unwrap().to_owned()
}

async fn harness() -> Harness {
    Backend::Sqlite.harness().await.unwrap()
}

fn routes(h: &Harness) -> Vec<RouteInfo> {
    app_with_routes(h.state.clone()).1
}

/// A concrete path for a template: ids of the right shape (`fill`) in every `{param}`.
fn concrete(template: &str, fill: &str) -> String {
    template
        .split('/')
        .map(|seg| {
            if seg.starts_with('{') {
                match seg {
                    "{n}" | "{epoch}" => "1".to_owned(),
                    "{token_hash}" => format!("{fill}{fill}"),
                    _ => fill.to_owned(),
                }
            } else {
                seg.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn path_rejections_are_json_400() {
    let h = harness().await;
    let o = h.create_share().await;
    // An epoch that is not a u32 (axum's Path rejection quotes the segment).
    let r = h
        .owner(
            &o,
            "DELETE",
            &format!("/v1/shares/{}/epochs/{CANARY}", o.share_hex),
            vec![],
        )
        .await;
    assert_eq!(json_error(&r, StatusCode::BAD_REQUEST), "bad_path");
    assert!(!r.text().contains(CANARY));
    // A chunk index over u32.
    let r = h
        .owner(
            &o,
            "PUT",
            &format!(
                "/v1/shares/{}/uploads/{}/chunks/99999999999",
                o.share_hex,
                hex(&rand::<16>())
            ),
            b"x".to_vec(),
        )
        .await;
    assert_eq!(json_error(&r, StatusCode::BAD_REQUEST), "bad_path");
    // Invalid UTF-8 after percent-decoding, on a handler that takes a plain string.
    let r = h.get("/v1/shares/%FF%FE/blobs/00").await;
    json_error(&r, StatusCode::BAD_REQUEST);
    // An id that is not hex: the handler's own message.
    let r = h.get(&format!("/v1/shares/{CANARY}/blobs/00")).await;
    assert_eq!(json_error(&r, StatusCode::BAD_REQUEST), "bad_id");
    assert!(!r.text().contains(CANARY));
}

#[tokio::test]
async fn query_rejections_are_json_400() {
    let h = harness().await;
    let o = h.create_share().await;
    let blob = hex(&rand::<16>());
    for q in ["", "?epoch=", &format!("?epoch={CANARY}"), "?epoch=-1"] {
        let r = h
            .owner(
                &o,
                "PUT",
                &format!("/v1/shares/{}/blobs/{blob}{q}", o.share_hex),
                b"x".to_vec(),
            )
            .await;
        assert_eq!(json_error(&r, StatusCode::BAD_REQUEST), "bad_query", "{q}");
        assert!(!r.text().contains(CANARY));
    }
    let r = h
        .owner(
            &o,
            "GET",
            &format!("/v1/shares/{}/audit?from={CANARY}", o.share_hex),
            vec![],
        )
        .await;
    assert_eq!(json_error(&r, StatusCode::BAD_REQUEST), "bad_query");
    // A route whose handler keeps axum's Query: still JSON, still no echo.
    let r = h
        .owner(
            &o,
            "GET",
            &format!("/v1/shares/{}/notices?after={CANARY}", o.share_hex),
            vec![],
        )
        .await;
    json_error(&r, StatusCode::BAD_REQUEST);
    assert!(!r.text().contains(CANARY));
}

#[tokio::test]
async fn json_body_errors_are_400_and_quote_nothing() {
    let h = harness().await;
    let k = key();
    let bodies: Vec<Vec<u8>> = vec![
        format!(r#"{{"{CANARY}": 1}}"#).into_bytes(),
        format!(r#"{{"owner_key": {{"{CANARY}": 2}}, "expires_at": 1}}"#).into_bytes(),
        format!(r#"{{"owner_key": "{CANARY}", "expires_at": "{CANARY}"}}"#).into_bytes(),
        format!(r#"{{"owner_key": "{CANARY}"#).into_bytes(),
        b"\xff\xfe".to_vec(),
        Vec::new(),
    ];
    for (i, body) in bodies.into_iter().enumerate() {
        let r = h
            .send(Harness::owner_request(&k, "POST", "/v1/shares", body, 1))
            .await;
        assert_eq!(
            json_error(&r, StatusCode::BAD_REQUEST),
            "bad_json",
            "body {i}"
        );
        assert!(!r.text().contains(CANARY), "{}", r.text());
        assert!(
            r.json()["message"]
                .as_str()
                .unwrap()
                .starts_with("malformed JSON body")
        );
    }
}

#[tokio::test]
async fn body_limit_is_json_413() {
    let h = harness().await;
    let o = h.create_share().await;
    let big = vec![0u8; (1 << 20) + 1];
    let r = h.put_blob(&o, &rand::<16>(), 1, &big).await;
    assert_eq!(json_error(&r, StatusCode::PAYLOAD_TOO_LARGE), "too_large");
    // The backup route has its own (larger) limit; over it: the same JSON 413.
    let r = h
        .send(Harness::owner_request(
            &key(),
            "PUT",
            &format!("/v1/backups/{}?version=1", hex(&rand::<16>())),
            vec![0u8; (3 << 20) + 1],
            1,
        ))
        .await;
    assert_eq!(json_error(&r, StatusCode::PAYLOAD_TOO_LARGE), "too_large");
    // A body sent without Content-Length (chunked) over the limit: also JSON.
    let stream = futures_stream(vec![vec![0u8; 700 << 10], vec![0u8; 700 << 10]]);
    let pq = format!(
        "/v1/shares/{}/blobs/{}?epoch=1",
        o.share_hex,
        hex(&rand::<16>())
    );
    let req = Request::builder()
        .method("PUT")
        .uri(&pq)
        .header("carekey-counter", "1000")
        .header("carekey-signature", b64(&[0u8; 64]))
        .body(stream)
        .unwrap();
    let r = h.send(req).await;
    assert_eq!(json_error(&r, StatusCode::PAYLOAD_TOO_LARGE), "too_large");
}

/// A body streamed in `parts` (no Content-Length, no size hint).
fn futures_stream(parts: Vec<Vec<u8>>) -> Body {
    Body::new(Chunks(parts.into_iter()))
}

struct Chunks(std::vec::IntoIter<Vec<u8>>);

impl axum::body::HttpBody for Chunks {
    type Data = axum::body::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Ready(
            self.0
                .next()
                .map(|c| Ok(hyper::body::Frame::data(axum::body::Bytes::from(c)))),
        )
    }
}

/// The methods each path template is routed for.
fn methods_by_path(routes: &[RouteInfo]) -> BTreeMap<&'static str, BTreeSet<String>> {
    let mut m: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    for r in routes {
        m.entry(r.path).or_default().insert(r.method.to_string());
    }
    m
}

#[tokio::test]
async fn method_not_allowed_is_json_405_with_allow() {
    let h = harness().await;
    let routes = routes(&h);
    let fill = hex(&rand::<16>());
    for (path, methods) in methods_by_path(&routes) {
        let mut want = methods.clone();
        if want.contains("GET") {
            want.insert("HEAD".into());
        }
        for m in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            if methods.contains(m) {
                continue;
            }
            let req = Request::builder()
                .method(m)
                .uri(concrete(path, &fill))
                .header("content-type", "text/plain")
                .body(Body::from(CANARY))
                .unwrap();
            let r = h.send(req).await;
            assert_eq!(
                json_error(&r, StatusCode::METHOD_NOT_ALLOWED),
                "method_not_allowed",
                "{m} {path}"
            );
            let allow: BTreeSet<String> = r.headers["allow"]
                .to_str()
                .unwrap()
                .split(',')
                .map(|s| s.trim().to_owned())
                .collect();
            assert_eq!(allow, want, "Allow of {path}");
        }
    }
}

#[tokio::test]
async fn request_timeout_is_json_408() {
    let mut c = test_config();
    c.request_timeout = Duration::from_millis(300);
    let h = Backend::Sqlite.harness_with(c).await.unwrap();
    let j = h
        .send(
            Request::builder()
                .method("POST")
                .uri("/v1/mailboxes")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .json();
    let req = Request::builder()
        .uri(format!(
            "/v1/mailboxes/{}/messages?wait=5",
            j["mailbox_id"].as_str().unwrap()
        ))
        .header(
            "authorization",
            format!("Bearer {}", j["read_token"].as_str().unwrap()),
        )
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        json_error(&h.send(req).await, StatusCode::REQUEST_TIMEOUT),
        "timeout"
    );
}

#[tokio::test]
async fn wrong_media_type_is_json_415() {
    let h = harness().await;
    let k = key();
    let body = serde_json::to_vec(&serde_json::json!({
        "owner_key": b64(k.verifying_key().as_bytes()),
        "expires_at": now() + 3600,
    }))
    .unwrap();
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let mut req = Harness::owner_request(&k, "POST", "/v1/shares", body.clone(), 1);
        req.headers_mut()
            .insert("content-type", ct.parse().unwrap());
        let r = h.send(req).await;
        assert_eq!(
            json_error(&r, StatusCode::UNSUPPORTED_MEDIA_TYPE),
            "unsupported_media_type",
            "{ct}"
        );
    }
    // The right type (with parameters) and no type at all are both fine.
    let mut req = Harness::owner_request(&k, "POST", "/v1/shares", body, 1);
    req.headers_mut().insert(
        "content-type",
        "application/json; charset=utf-8".parse().unwrap(),
    );
    let r = h.send(req).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let o = h.create_share().await;
    let pq = format!(
        "/v1/shares/{}/blobs/{}?epoch=1",
        o.share_hex,
        hex(&rand::<16>())
    );
    let mut req = Harness::owner_request(&o.key, "PUT", &pq, b"abc".to_vec(), 50);
    req.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    let r = h.send(req).await;
    assert_eq!(
        json_error(&r, StatusCode::UNSUPPORTED_MEDIA_TYPE),
        "unsupported_media_type"
    );
    let mut req = Harness::owner_request(&o.key, "PUT", &pq, b"abc".to_vec(), 51);
    req.headers_mut()
        .insert("content-type", "application/octet-stream".parse().unwrap());
    assert_eq!(h.send(req).await.status, StatusCode::CREATED);
    // Routes without a body ignore the header.
    let req = Request::builder()
        .method("POST")
        .uri(format!(
            "/v1/shares/{}/uploads?blob={}&epoch=1",
            o.share_hex,
            hex(&rand::<16>())
        ))
        .header("content-type", "text/plain")
        .body(Body::empty())
        .unwrap();
    assert_ne!(h.send(req).await.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn unknown_route_is_json_404() {
    let h = harness().await;
    for p in [
        "/nope",
        "/v1",
        "/v1/shares/00/blobs",
        &format!("/v1/shares/a/b/c/{CANARY}"),
        "/openapi.json/x",
    ] {
        let r = h.get(p).await;
        assert_eq!(json_error(&r, StatusCode::NOT_FOUND), "not_found", "{p}");
        assert_eq!(r.json()["message"], "no such route");
        assert!(!r.text().contains(CANARY));
    }
}

#[tokio::test]
async fn server_errors_reveal_nothing() {
    let h = harness().await;
    let o = h.create_share().await;
    // Break the storage under the relay: every blob write now fails inside the database.
    h.state
        .storage
        .transact(|tx| tx.exec("DROP TABLE blobs", &[]).map(|_| ()))
        .await
        .unwrap();
    let r = h.put_blob(&o, &rand::<16>(), 1, b"abc").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        r.body,
        br#"{"error":"internal","message":"internal error"}"#
    );
    let (token, reader) = h.register_token(&o, &scope(1, &[]), now() + 60, 0).await;
    let r = h.read(&o, &hex(&rand::<16>()), &token, &reader).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        r.body,
        br#"{"error":"internal","message":"internal error"}"#
    );
}

/// Every route, with the canary in every place a client controls: path parameters, query
/// values, headers and (JSON and raw) bodies. No answer may quote it, and every error answer
/// is the JSON error shape.
#[tokio::test]
async fn no_message_echoes_client_input() {
    let h = harness().await;
    let o = h.create_share().await;
    let routes = routes(&h);
    let docs: BTreeMap<(String, &str), &carekey_relay::openapi::RouteDoc> =
        carekey_relay::openapi::ROUTES
            .iter()
            .map(|d| ((d.method.to_owned(), d.path), d))
            .collect();
    let fills = [CANARY.to_owned(), o.share_hex.clone(), hex(&rand::<16>())];
    let mut seen = 0;
    for r in &routes {
        let doc = docs[&(r.method.to_string(), r.path)];
        for fill in &fills {
            for query in [
                doc.query
                    .iter()
                    .map(|(n, _)| format!("{n}={CANARY}"))
                    .collect::<Vec<_>>()
                    .join("&"),
                doc.query
                    .iter()
                    .map(|(n, _)| format!("{n}=1"))
                    .collect::<Vec<_>>()
                    .join("&"),
            ] {
                let uri = format!("{}?{query}", concrete(r.path, fill));
                let bodies: Vec<Vec<u8>> = vec![
                    format!(r#"{{"{CANARY}":"{CANARY}","owner_key":"{CANARY}","chain":["{CANARY}"],"token_hash":"{CANARY}"}}"#).into_bytes(),
                    CANARY.as_bytes().to_vec(),
                ];
                for body in bodies {
                    let req = Request::builder()
                        .method(r.method.clone())
                        .uri(&uri)
                        .header("authorization", format!("Bearer {CANARY}"))
                        .header("carekey-counter", CANARY)
                        .header("carekey-signature", CANARY)
                        .header("carekey-receipt", CANARY)
                        .header("carekey-owner-key", CANARY)
                        .body(Body::from(body))
                        .unwrap();
                    let resp = h.send(req).await;
                    assert!(
                        !resp.text().contains(CANARY),
                        "{} {uri} echoed: {}",
                        r.method,
                        resp.text()
                    );
                    if resp.status.as_u16() >= 400 {
                        json_error(&resp, resp.status);
                        assert_ne!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
                    }
                    seen += 1;
                }
            }
        }
    }
    assert!(seen >= routes.len() * 12);
}

/// The routes the router serves and the operations `/openapi.json` lists are the same; every
/// operation names its path and query parameters, its body, and every error it can answer
/// (the common ones included), each an ErrorBody.
#[tokio::test]
async fn openapi_lists_every_route_method_and_error() {
    let h = harness().await;
    let routes = routes(&h);
    let served = h.get("/openapi.json").await.json();
    assert_eq!(
        served,
        serde_json::to_value(carekey_relay::openapi::document()).unwrap()
    );
    let paths = served["paths"].as_object().unwrap();
    // Router -> document.
    for r in &routes {
        let m = r.method.as_str().to_ascii_lowercase();
        let op = &paths
            .get(r.path)
            .unwrap_or_else(|| panic!("{} missing from /openapi.json", r.path))[&m];
        assert!(
            op.is_object(),
            "{} {} missing from /openapi.json",
            r.method,
            r.path
        );
        let body = &op["requestBody"]["content"];
        match r.body {
            BodyKind::None => assert!(op.get("requestBody").is_none(), "{} {}", r.method, r.path),
            BodyKind::Json => assert!(body.get("application/json").is_some(), "{}", r.path),
            BodyKind::Raw => {
                assert!(body.get("application/octet-stream").is_some(), "{}", r.path)
            }
        }
        let responses = op["responses"].as_object().unwrap();
        let mut want = vec!["400", "408", "429", "500"];
        if r.body != BodyKind::None {
            want.extend(["413", "415"]);
        }
        for s in want {
            assert!(
                responses.contains_key(s),
                "{} {} lacks {s}",
                r.method,
                r.path
            );
        }
        for (s, resp) in responses {
            if s.as_str() >= "400" {
                // A refused SHL passcode is an ErrorBody plus remainingAttempts.
                let want = if r.path == "/shl/{link_id}" && s == "401" {
                    "#/components/schemas/ShlPasscodeRejected"
                } else {
                    "#/components/schemas/ErrorBody"
                };
                assert_eq!(
                    resp["content"]["application/json"]["schema"]["$ref"], want,
                    "{} {} {s}",
                    r.method, r.path
                );
            } else if let Some(content) = resp["content"].as_object() {
                // A success answer with a body names its media type and schema.
                assert!(
                    content.values().all(|c| c["schema"].is_object()),
                    "{} {} {s}",
                    r.method,
                    r.path
                );
            }
        }
        // Every path and query parameter states what the relay parses (a pattern, an integer
        // range or a boolean), so a value matching it is never refused as malformed.
        for p in op["parameters"].as_array().into_iter().flatten() {
            if p["in"] == "path" || p["in"] == "query" {
                let sc = &p["schema"];
                assert!(
                    sc["pattern"].is_string()
                        || (sc["type"] == "integer" && sc["minimum"].is_number())
                        || sc["type"] == "boolean",
                    "{} {} {}",
                    r.method,
                    r.path,
                    p["name"]
                );
            }
        }
        // Owner, reader and mailbox routes name their security scheme.
        let doc = carekey_relay::openapi::ROUTES
            .iter()
            .find(|d| d.method == r.method.as_str() && d.path == r.path)
            .unwrap();
        if ["owner", "reader", "mailbox"]
            .iter()
            .any(|a| doc.auth.starts_with(a))
        {
            assert!(op["security"].is_array(), "{} {}", r.method, r.path);
        }
        let params: BTreeSet<String> = op["parameters"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        let want: BTreeSet<String> = r
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_owned)
            .collect();
        assert_eq!(params, want, "{} {}", r.method, r.path);
    }
    // Document -> router.
    let routed: BTreeSet<(String, String)> = routes
        .iter()
        .map(|r| (r.method.as_str().to_ascii_lowercase(), r.path.to_owned()))
        .collect();
    let mut listed = BTreeSet::new();
    for (path, item) in paths {
        for m in [
            "get", "put", "post", "delete", "patch", "head", "options", "trace",
        ] {
            if item.get(m).is_some() {
                listed.insert((m.to_owned(), path.clone()));
            }
        }
    }
    assert_eq!(listed, routed);
    // And every recorded route really is routed: a request to it is neither 405 nor the
    // unknown-route 404.
    let fill = hex(&rand::<16>());
    for r in &routes {
        let req = Request::builder()
            .method(r.method.clone())
            .uri(concrete(r.path, &fill))
            .body(Body::empty())
            .unwrap();
        let resp = h.send(req).await;
        assert_ne!(
            resp.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{} {}",
            r.method,
            r.path
        );
        if resp.status == StatusCode::NOT_FOUND {
            assert_ne!(
                resp.json()["message"],
                "no such route",
                "{} {}",
                r.method,
                r.path
            );
        }
    }
    assert!(routes.iter().any(|r| r.method == Method::PUT));
}
