//! Pairing and relationship mailboxes (docs/relay.md "HTTP API").
//! Each case runs as `sqlite::<case>` and `postgres::<case>` (the latter return early when
//! `CAREKEY_TEST_PG_URL` is unset); split out of the one suite file by resource.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use carekey_relay::sweeper;
use common::*;

both_backends!(
    pairing_mailbox_single_use,
    relationship_mailbox_long_poll,
    mailbox_pages_are_cut_at_their_byte_budget,
);

async fn pairing_mailbox_single_use(h: Harness) {
    let r = h
        .send(
            Request::builder()
                .method("POST")
                .uri("/v1/pairing")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let j = r.json();
    let id = j["mailbox_id"].as_str().unwrap().to_owned();
    let tok = j["read_token"].as_str().unwrap().to_owned();
    let read = |wait: u64, tok: &str| {
        Request::builder()
            .uri(format!("/v1/pairing/{id}?wait={wait}"))
            .header("authorization", format!("Bearer {tok}"))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(h.send(read(0, &tok)).await.status, StatusCode::NO_CONTENT);
    assert_eq!(
        h.send(read(0, &b64(&rand::<32>()))).await.status,
        StatusCode::UNAUTHORIZED
    );
    // The patient long-polls; the doctor's reply wakes it at once.
    let app = h.app.clone();
    let req = read(20, &tok);
    let started = std::time::Instant::now();
    let waiter = tokio::spawn(async move {
        use tower::ServiceExt;
        let r = app.oneshot(req).await.unwrap();
        let status = r.status();
        let body = http_body_util::BodyExt::collect(r.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, body)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reply = |b: &'static str| {
        Request::builder()
            .method("PUT")
            .uri(format!("/v1/pairing/{id}"))
            .body(Body::from(b))
            .unwrap()
    };
    assert_eq!(h.send(reply("hello")).await.status, StatusCode::CREATED);
    // Either still unread (409: one reply only) or already read and closed (404).
    let again = h.send(reply("again")).await.status;
    assert!(
        again == StatusCode::CONFLICT || again == StatusCode::NOT_FOUND,
        "{again}"
    );
    let (status, body) = waiter.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"hello");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "long-poll was not woken"
    );
    // Read once: closed.
    assert_eq!(h.send(read(0, &tok)).await.status, StatusCode::NOT_FOUND);
    // A second reply to an unread mailbox is refused.
    let r = h
        .send(
            Request::builder()
                .method("POST")
                .uri("/v1/pairing")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let id3 = r.json()["mailbox_id"].as_str().unwrap().to_owned();
    let put3 = |b: &'static str| {
        Request::builder()
            .method("PUT")
            .uri(format!("/v1/pairing/{id3}"))
            .body(Body::from(b))
            .unwrap()
    };
    assert_eq!(h.send(put3("first")).await.status, StatusCode::CREATED);
    let r = h.send(put3("second")).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["error"], "mailbox_closed");
    // close=false hands out an (invalid) reply and keeps the mailbox open for the real one.
    let r = h
        .send(
            Request::builder()
                .method("POST")
                .uri("/v1/pairing")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .json();
    let (id4, tok4) = (
        r["mailbox_id"].as_str().unwrap().to_owned(),
        r["read_token"].as_str().unwrap().to_owned(),
    );
    let put4 = |b: &'static str| {
        Request::builder()
            .method("PUT")
            .uri(format!("/v1/pairing/{id4}"))
            .body(Body::from(b))
            .unwrap()
    };
    let get4 = |q: &str| {
        Request::builder()
            .uri(format!("/v1/pairing/{id4}?{q}"))
            .header("authorization", format!("Bearer {tok4}"))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(h.send(put4("forged")).await.status, StatusCode::CREATED);
    assert_eq!(h.send(get4("close=false")).await.body, b"forged");
    assert_eq!(h.send(put4("real")).await.status, StatusCode::CREATED);
    assert_eq!(h.send(get4("close=true")).await.body, b"real");
    assert_eq!(h.send(get4("")).await.status, StatusCode::NOT_FOUND);
    // Explicit close.
    let r = h
        .send(
            Request::builder()
                .method("POST")
                .uri("/v1/pairing")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .json();
    let del = Request::builder()
        .method("DELETE")
        .uri(format!("/v1/pairing/{}", r["mailbox_id"].as_str().unwrap()))
        .header(
            "authorization",
            format!("Bearer {}", r["read_token"].as_str().unwrap()),
        )
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(del).await.status, StatusCode::NO_CONTENT);
    // Expiry: 410 before the sweeper, gone after it.
    let r = h
        .send(
            Request::builder()
                .method("POST")
                .uri("/v1/pairing")
                .body(Body::from(r#"{"ttl_seconds":60}"#))
                .unwrap(),
        )
        .await;
    let id2 = r.json()["mailbox_id"].as_str().unwrap().to_owned();
    h.state.clock.advance(120);
    let r = h
        .send(
            Request::builder()
                .method("PUT")
                .uri(format!("/v1/pairing/{id2}"))
                .body(Body::from("late"))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::GONE);
    sweeper::sweep_once(&h.state).await.unwrap();
    let r = h
        .send(
            Request::builder()
                .method("PUT")
                .uri(format!("/v1/pairing/{id2}"))
                .body(Body::from("late"))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// A new relationship mailbox: (id, read token, write token).
async fn open_mailbox(h: &Harness) -> (String, String, String) {
    let r = h
        .send(
            Request::builder()
                .method("POST")
                .uri("/v1/mailboxes")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let j = r.json();
    let field = |k: &str| j[k].as_str().unwrap().to_owned();
    (
        field("mailbox_id"),
        field("read_token"),
        field("write_token"),
    )
}

/// An append of `body` to mailbox `id` with bearer `tok`.
fn append_request(id: &str, tok: &str, body: impl Into<Body>) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri(format!("/v1/mailboxes/{id}/messages"))
        .header("authorization", format!("Bearer {tok}"))
        .body(body.into())
        .unwrap()
}

/// A read of mailbox `id` after `after`, waiting up to `wait` s, with bearer `tok`.
fn fetch_request(id: &str, tok: &str, after: u64, wait: u64) -> Request<Body> {
    Request::builder()
        .uri(format!(
            "/v1/mailboxes/{id}/messages?after={after}&wait={wait}"
        ))
        .header("authorization", format!("Bearer {tok}"))
        .body(Body::empty())
        .unwrap()
}

async fn relationship_mailbox_long_poll(h: Harness) {
    let (id, rt, wt) = open_mailbox(&h).await;
    let append = |body: &'static str, tok: &str| append_request(&id, tok, body);
    let fetch = |after: u64, wait: u64| fetch_request(&id, &rt, after, wait);
    // The read token cannot append; the write token cannot read.
    assert_eq!(
        h.send(append("x", &rt)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = h
        .send(
            Request::builder()
                .uri(format!("/v1/mailboxes/{id}/messages"))
                .header("authorization", format!("Bearer {wt}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(h.send(append("one", &wt)).await.json()["seq"], 1);
    assert_eq!(h.send(append("two", &wt)).await.json()["seq"], 2);
    let r = h.send(fetch(0, 0)).await.json();
    assert_eq!(r["messages"].as_array().unwrap().len(), 2);
    assert_eq!(r["cursor"], 2);
    let r = h.send(fetch(1, 0)).await.json();
    assert_eq!(unb64(r["messages"][0]["body"].as_str().unwrap()), b"two");
    // Long-poll past the cursor wakes on the next append.
    let app = h.app.clone();
    let req = fetch(2, 20);
    let started = std::time::Instant::now();
    let waiter = tokio::spawn(async move {
        use tower::ServiceExt;
        let r = app.oneshot(req).await.unwrap();
        http_body_util::BodyExt::collect(r.into_body())
            .await
            .unwrap()
            .to_bytes()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.send(append("three", &wt)).await;
    let body: serde_json::Value = serde_json::from_slice(&waiter.await.unwrap()).unwrap();
    assert_eq!(body["cursor"], 3);
    assert!(started.elapsed() < Duration::from_secs(5));
    // Empty long-poll returns after the wait with no messages.
    let r = h.send(fetch(3, 1)).await.json();
    assert_eq!(r["messages"].as_array().unwrap().len(), 0);
    assert_eq!(r["cursor"], 3);
    // Delete after read.
    let r = h
        .send(
            Request::builder()
                .method("DELETE")
                .uri(format!("/v1/mailboxes/{id}/messages?through=2"))
                .header("authorization", format!("Bearer {rt}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.json()["deleted"], 2);
    let r = h.send(fetch(0, 0)).await.json();
    assert_eq!(r["messages"].as_array().unwrap().len(), 1);
}

/// A page holds at most `MAILBOX_PAGE_BYTES` of message bodies (and always one message), so a
/// reader never gets a page of 200 full messages (about 70 MB of JSON): six messages of the
/// largest size come as pages of four and two, in order, each page moving the cursor on.
async fn mailbox_pages_are_cut_at_their_byte_budget(h: Harness) {
    use carekey_relay::mailbox::MAX_MESSAGE_BYTES;
    use carekey_relay_api::MAILBOX_PAGE_BYTES;
    let (id, rt, wt) = open_mailbox(&h).await;
    let per_page = MAILBOX_PAGE_BYTES / MAX_MESSAGE_BYTES;
    assert_eq!(per_page, 4, "the test's page arithmetic");
    for n in 0..6u8 {
        let r = h
            .send(append_request(&id, &wt, vec![n; MAX_MESSAGE_BYTES]))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    }
    let mut after = 0;
    let mut pages = Vec::new();
    loop {
        let r = h.send(fetch_request(&id, &rt, after, 0)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let j = r.json();
        let msgs = j["messages"].as_array().unwrap();
        if msgs.is_empty() {
            assert_eq!(j["cursor"], after);
            break;
        }
        for m in msgs {
            let body = unb64(m["body"].as_str().unwrap());
            let seq = m["seq"].as_u64().unwrap();
            assert_eq!(
                body,
                vec![(seq - 1) as u8; MAX_MESSAGE_BYTES],
                "message {seq}"
            );
        }
        after = j["cursor"].as_u64().unwrap();
        pages.push(msgs.len());
        assert!(pages.len() <= 6, "pages did not end: {pages:?}");
    }
    assert_eq!(pages, [4, 2]);
}
