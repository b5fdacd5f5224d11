//! Long waits must not lock the service (issue #10): an app keeps its `Patient` / `Doctor` in
//! a `tokio::sync::Mutex`, takes the lock only to build a waiter, and waits without it, so
//! every other command goes on meanwhile (docs/architecture.md "Long waits"). Real relay
//! process; nobody writes during the waits, so each would run its full 30 s.

mod common;

use std::sync::Arc;
use std::time::Duration;

use carekey_client::doctor::Doctor;
use carekey_client::patient::{Patient, ShareItem, ShareOptions};
use carekey_client::progress::{Cancel, NoProgress};
use carekey_client::relay::Relay;
use carekey_core::grant::{Category, Policy};
use carekey_core::keys::Role;
use common::{identity, in_a_day, pair, start_relay};
use tokio::sync::Mutex;
use zeroize::Zeroizing;

/// How long a second command may take to get the lock: it is a lock check, not a timing
/// goal (the wait it competes with runs 30 s).
const LOCK_DEADLINE: Duration = Duration::from_secs(5);

fn tiny_items() -> Vec<ShareItem> {
    vec![ShareItem {
        record_id: [1; 16],
        category: Category::Conditions,
        title: "Condition".into(),
        data: Zeroizing::new(br#"{"resourceType":"Condition","id":"c1"}"#.to_vec()),
        attachment: false,
    }]
}

fn options() -> ShareOptions {
    ShareOptions {
        expires_at: in_a_day(),
        policy: Policy::Never,
        delegation_depth: 0,
    }
}

async fn patient_with_share(url: &str) -> (Patient, carekey_client::ShareId) {
    let (pid, pcard) = identity("Pat Example", Role::Patient);
    let mut patient = Patient::new(pid, pcard, Relay::new(url).expect("relay URL"));
    let share = patient
        .create_share(tiny_items(), options(), &NoProgress, &Cancel::new())
        .await
        .expect("share uploads");
    (patient, share)
}

/// Gives the waiting task time to be in its long-poll.
async fn let_it_wait() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_wait_does_not_hold_the_patient() {
    let relay = start_relay();
    let (mut patient, share) = patient_with_share(&relay.url).await;
    let (mut doctor, link, rel) = pair(&mut patient, &share, "Dr. Ada Quinn").await;
    let patient = Arc::new(Mutex::new(patient));

    let p = Arc::clone(&patient);
    let waiting = tokio::spawn(async move {
        // The lock only to build the waiter.
        let waiter = p.lock().await.inbox_waiter(&rel).expect("waiter");
        waiter.wait(30).await
    });
    let_it_wait().await;
    assert!(!waiting.is_finished(), "the wait is on");

    // Another command on the same mutex answers while the wait goes on.
    let got = tokio::time::timeout(LOCK_DEADLINE, async {
        let mut p = patient.lock().await;
        assert!(p.relationship(&rel).is_some());
        p.create_share(tiny_items(), options(), &NoProgress, &Cancel::new())
            .await
    })
    .await
    .expect("the lock is free during the inbox wait");
    got.expect("second share uploads");
    assert!(!waiting.is_finished(), "the wait is still on");

    // A note ends the wait; opening it takes the lock briefly, acknowledging deletes it.
    doctor
        .send_note(
            &link,
            &serde_json::json!({"resourceType": "Observation", "id": "bp"}),
        )
        .await
        .expect("note sent");
    let msgs = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the note ends the wait")
        .expect("task")
        .expect("wait");
    assert_eq!(msgs.len(), 1);
    let mut p = patient.lock().await;
    let got = p.open_inbox(&rel, msgs).expect("opens");
    assert!(got.rejected.is_none());
    assert_eq!(got.notes.len(), 1);
    assert_eq!(got.notes[0].resource["id"], "bp");
    p.ack_inbox(&rel).await.expect("ack");
    let again = p.inbox_waiter(&rel).expect("waiter").wait(0).await;
    assert!(
        again.expect("wait").is_empty(),
        "acknowledged messages are gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_wait_does_not_hold_the_patient() {
    let relay = start_relay();
    let (patient, share) = patient_with_share(&relay.url).await;
    let patient = Arc::new(Mutex::new(patient));

    let p = Arc::clone(&patient);
    let cancel = Cancel::new();
    let c = cancel.clone();
    let waiting = tokio::spawn(async move {
        let (mut session, relay) = {
            let mut p = p.lock().await;
            let session = p.start_pairing(&share).await.expect("pairing opens");
            (session, p.relay())
        };
        assert_eq!(session.share_id(), share);
        session.wait_for_doctor(&relay, 30, &c).await
    });
    let_it_wait().await;
    assert!(!waiting.is_finished(), "the wait is on");
    let got = tokio::time::timeout(LOCK_DEADLINE, async {
        let mut p = patient.lock().await;
        p.create_share(tiny_items(), options(), &NoProgress, &Cancel::new())
            .await
    })
    .await
    .expect("the lock is free during the pairing wait");
    got.expect("second share uploads");
    assert!(!waiting.is_finished(), "the wait is still on");
    // Cancel: the wait notices at its next poll; dropping the task ends it at once.
    cancel.cancel();
    waiting.abort();
    let _ = waiting.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_wait_does_not_hold_the_doctor() {
    let relay = start_relay();
    let (mut patient, share) = patient_with_share(&relay.url).await;
    let mut session = patient.start_pairing(&share).await.expect("pairing");
    let (did, dcard) = identity("Dr. Ada Quinn", Role::Doctor);
    let doctor = Arc::new(Mutex::new(Doctor::new(did, dcard)));
    let scan = doctor
        .lock()
        .await
        .scan(&session.qr_text())
        .await
        .expect("scan");
    let code = scan.check_code();

    let cancel = Cancel::new();
    let c = cancel.clone();
    let waiting = tokio::spawn(async move {
        let mut scan = scan;
        let r = scan.wait_for_confirmation(30, &c).await;
        (scan, r)
    });
    let_it_wait().await;
    assert!(!waiting.is_finished(), "the wait is on");
    let ok = tokio::time::timeout(LOCK_DEADLINE, async {
        let d = doctor.lock().await;
        d.patient(&carekey_client::LinkId::default()).is_none()
    })
    .await
    .expect("the lock is free during the scan wait");
    assert!(ok);

    // The patient confirms; the wait returns; the commit takes the lock briefly.
    let door = patient
        .wait_for_doctor(&mut session, 10, &Cancel::new())
        .await
        .expect("reply");
    assert_eq!(door.check_code, code);
    patient.confirm(session).await.expect("confirm");
    let (scan, confirmation) = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the confirmation ends the wait")
        .expect("task");
    let confirmation = confirmation.expect("confirmation");
    assert_eq!(confirmation.patient().body.name, "Pat Example");
    assert_eq!(confirmation.share().share_id, share);
    let mut d = doctor.lock().await;
    let link = d.accept_grant(scan, confirmation).await.expect("commit");
    let records = d
        .fetch(&link, &NoProgress, &Cancel::new())
        .await
        .expect("fetch");
    assert_eq!(records.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introduction_wait_does_not_hold_the_colleague() {
    let relay = start_relay();
    let (pid, pcard) = identity("Pat Example", Role::Patient);
    let mut patient = Patient::new(pid, pcard, Relay::new(&relay.url).expect("relay URL"));
    let share = patient
        .create_share(
            tiny_items(),
            ShareOptions {
                expires_at: in_a_day(),
                policy: Policy::Ask,
                delegation_depth: 0,
            },
            &NoProgress,
            &Cancel::new(),
        )
        .await
        .expect("share uploads");
    let (mut ada, link, rel) = pair(&mut patient, &share, "Dr. Ada Quinn").await;
    let (cid, ccard) = identity("Dr. Cole Reyes", Role::Doctor);
    let cole = Arc::new(Mutex::new(Doctor::new(cid, ccard)));
    let carekey_client::doctor::Invitation { id: handle, invite } = cole
        .lock()
        .await
        .invite(ada.relay_url(&link).expect("link"), 300)
        .await
        .expect("invite");

    let c = Arc::clone(&cole);
    let waiting = tokio::spawn(async move {
        let waiter = c.lock().await.invite_waiter(&handle).expect("waiter");
        waiter.wait(30).await
    });
    let_it_wait().await;
    let ok = tokio::time::timeout(LOCK_DEADLINE, async {
        cole.lock()
            .await
            .patient(&carekey_client::LinkId::default())
            .is_none()
    })
    .await
    .expect("the lock is free during the introduction wait");
    assert!(ok);
    assert!(!waiting.is_finished(), "the wait is still on");

    ada.request_forward(&link, &invite, None, "second opinion")
        .await
        .expect("request");
    patient.inbox(&rel, 10).await.expect("inbox");
    let id = patient.forward_requests()[0].id;
    patient
        .answer_forward(&id, true)
        .await
        .expect("approve")
        .expect("colleague relationship");
    let msgs = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the introduction ends the wait")
        .expect("task")
        .expect("wait");
    let mut c = cole.lock().await;
    let clink = c
        .open_introduction_messages(&handle, msgs)
        .await
        .expect("opens")
        .expect("a link");
    let records = c
        .fetch(&clink, &NoProgress, &Cancel::new())
        .await
        .expect("fetch");
    assert_eq!(records.len(), 1);
    // The invite is spent.
    assert!(c.invite_waiter(&handle).is_err());
}
