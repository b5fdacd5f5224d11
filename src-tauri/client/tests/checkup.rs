//! The check-up flows end to end through a real `carekey-relay` process on 127.0.0.1:
//! share → QR → scan → check codes → grant → fetch with progress → note back → access log →
//! revoke (one doctor loses access, the other follows the re-key).

mod common;

use std::net::TcpListener;
use std::sync::Mutex;

use carekey_client::ClientError;
use carekey_client::doctor::Doctor;
use carekey_client::patient::{AccessKind, Patient, ShareOptions, summarize};
use carekey_client::progress::{Cancel, NoProgress, Progress, Stage};
use carekey_client::relay::Relay;
use carekey_core::grant::Policy;
use carekey_core::keys::Role;
use common::{identity, in_a_day, share_items, start_relay};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkup_share_scan_note_log_and_revoke() {
    let relay = start_relay();
    let (pid, pcard) = identity("Pat Example", Role::Patient);
    let mut patient = Patient::new(pid, pcard, Relay::new(&relay.url).expect("relay URL"));
    let items = share_items(3 * 1024 * 1024 + 123);
    let n_items = items.len();
    let cancel = Cancel::new();
    let uploads = Mutex::new(Vec::<Progress>::new());
    let record = |p: Progress| uploads.lock().expect("lock").push(p);
    let share = patient
        .create_share(
            items.clone(),
            ShareOptions {
                expires_at: in_a_day(),
                policy: Policy::Ask,
                delegation_depth: 0,
            },
            &record,
            &cancel,
        )
        .await
        .expect("share uploads");
    {
        let u = uploads.lock().expect("lock");
        assert!(
            u.iter()
                .any(|p| p.stage == Stage::Uploading && p.done == p.total && p.total > 3_000_000)
        );
    }

    // Two doctors pair, one after the other.
    let mut doctors = Vec::new();
    for name in ["Dr. Ada Quinn", "Dr. Ben Stone"] {
        let (did, dcard) = identity(name, Role::Doctor);
        let mut doctor = Doctor::new(did, dcard.clone());
        let mut session = patient.start_pairing(&share).await.expect("pairing opens");
        let qr = session.qr_text();
        assert!(qr.starts_with("CAREKEY:"));
        let scan = doctor.scan(&qr).await.expect("doctor scans");
        let at_door = patient
            .wait_for_doctor(&mut session, 10, &cancel)
            .await
            .expect("reply arrives");
        assert_eq!(at_door.card, dcard);
        assert!(!at_door.attested);
        assert_eq!(
            at_door.check_code,
            scan.check_code(),
            "both screens show the same code"
        );
        let rel = patient.confirm(session).await.expect("patient confirms");
        let link = doctor
            .wait_for_grant(scan, 10, &cancel)
            .await
            .expect("grant arrives");
        assert_eq!(
            doctor.patient(&link).expect("linked").body.name,
            "Pat Example"
        );
        doctors.push((doctor, link, rel));
    }

    // Each doctor fetches and verifies everything, with progress.
    for (doctor, link, _) in doctors.iter_mut() {
        let seen = Mutex::new(0u64);
        let got = doctor
            .fetch(
                link,
                &|p: Progress| *seen.lock().expect("lock") = p.done,
                &cancel,
            )
            .await
            .expect("fetch verifies");
        assert_eq!(got.len(), n_items);
        for (r, it) in got.iter().zip(&items) {
            assert_eq!(r.record_id, it.record_id);
            assert_eq!(r.data.as_slice(), it.data.as_slice());
            assert_eq!(r.attachment, it.attachment);
        }
        assert!(*seen.lock().expect("lock") > 3_000_000);
    }

    // Doctor A writes a note back; the patient sees it signed by the paired card.
    let note = serde_json::json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "Blood pressure"},
        "valueString": "120/80 mmHg"
    });
    let (da, link_a, rel_a) = &mut doctors[0];
    da.send_note(link_a, &note).await.expect("note sent");
    let notes = patient.inbox(rel_a, 5).await.expect("inbox");
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].resource, note);
    assert_eq!(notes[0].author.body.name, "Dr. Ada Quinn");
    // Reading again yields nothing new (deleted after read, replay guard holds).
    assert!(patient.inbox(rel_a, 0).await.expect("inbox").is_empty());

    // The access log: verified chain, readable per doctor.
    let events = patient.access_log(&share).await.expect("log verifies");
    let per = summarize(&events);
    for name in ["Dr. Ada Quinn", "Dr. Ben Stone"] {
        let n = per.iter().find(|s| s.who == name).map(|s| s.fetched);
        assert_eq!(
            n,
            Some(n_items + 1),
            "{name} fetched the manifest and every blob: {per:?}"
        );
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e.what, AccessKind::Relay(2)))
    );

    // Revoke doctor A: token first, then a new epoch for the others.
    let rel_a = doctors[0].2;
    patient
        .revoke(&share, &rel_a, &NoProgress, &cancel)
        .await
        .expect("revoke");
    let (da, link_a, _) = &mut doctors[0];
    match da.fetch(link_a, &NoProgress, &cancel).await {
        Err(ClientError::AccessEnded) => {}
        other => panic!("revoked doctor must get AccessEnded, got {other:?}"),
    }
    let (db, link_b, _) = &mut doctors[1];
    let again = db
        .fetch(link_b, &NoProgress, &cancel)
        .await
        .expect("remaining doctor follows the re-key");
    assert_eq!(again.len(), n_items);
    assert_eq!(patient.active_grants(&share).len(), 1);

    // The log still extends the pinned head and shows the revocation.
    let events = patient
        .access_log(&share)
        .await
        .expect("log still verifies");
    assert!(
        events
            .iter()
            .any(|e| matches!(e.what, AccessKind::Relay(3)))
    );
}

#[tokio::test]
async fn unreachable_relay_and_bad_qr_are_clear_errors() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let (pid, pcard) = identity("Pat", Role::Patient);
    let mut patient = Patient::new(
        pid,
        pcard,
        Relay::new(&format!("http://127.0.0.1:{port}")).expect("url"),
    );
    let err = patient
        .create_share(
            Vec::new(),
            ShareOptions {
                expires_at: in_a_day(),
                policy: Policy::Never,
                delegation_depth: 0,
            },
            &NoProgress,
            &Cancel::new(),
        )
        .await
        .expect_err("nothing listens there");
    assert_eq!(err.code(), "relay_unreachable");
    let (did, dcard) = identity("Dr. X", Role::Doctor);
    let doctor = Doctor::new(did, dcard);
    let err = doctor
        .scan("HTTPS://example.org")
        .await
        .expect_err("not ours");
    // Text that is not a pairing QR is the user's input, not a forgery (issue #10).
    assert_eq!(err.code(), "invalid_input");
    assert!(!err.to_string().contains("example.org"));
}
