//! A hostile relay operator replays and injects relationship messages (edits the relay's
//! SQLite while it runs): a replayed note, a replayed introduction (an old grant), and a
//! forward request forged by a stranger are all rejected, and nothing of them is stored.

mod common;

use carekey_client::ClientError;
use carekey_client::doctor::Doctor;
use carekey_client::note;
use carekey_client::patient::{Patient, ShareOptions};
use carekey_client::progress::{Cancel, NoProgress};
use carekey_client::relay::Relay;
use carekey_core::forward::{ColleagueInvite, ForwardRequest};
use carekey_core::grant::{DelegationLink, Policy, Scope};
use carekey_core::keys::{Card, DeviceIdentity, ReadToken, Role, RootSecret, SigningSecret};
use carekey_core::message::{self, MessageKind};
use carekey_core::wire::Wire;
use carekey_vault::Vault;
use common::{identity, in_a_day, pair, share_items, start_relay};
use rand_core::OsRng;

type Row = (Vec<u8>, i64, i64, Vec<u8>);

fn db(relay: &common::RelayProcess) -> rusqlite::Connection {
    rusqlite::Connection::open(relay.data.path().join("relay.sqlite3")).expect("relay db")
}

fn rows(relay: &common::RelayProcess) -> Vec<Row> {
    let c = db(relay);
    let mut s = c
        .prepare("SELECT mailbox_id, seq, time, body FROM messages ORDER BY mailbox_id, seq")
        .expect("query");
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("rows")
        .collect::<rusqlite::Result<_>>()
        .expect("rows")
}

/// Puts `body` back into `mailbox` past every message it has (so the relay serves it anew).
fn reinsert(relay: &common::RelayProcess, mailbox: &[u8], time: i64, body: &[u8]) {
    let c = db(relay);
    let next: i64 = c
        .query_row(
            "SELECT coalesce(max(seq), 0) + 100 FROM messages WHERE mailbox_id = ?1",
            [mailbox],
            |r| r.get(0),
        )
        .expect("next seq");
    c.execute(
        "INSERT INTO messages (mailbox_id, seq, time, body) VALUES (?1, ?2, ?3, ?4)",
        rusqlite::params![mailbox, next, time, body],
    )
    .expect("replay");
    // The mailbox's own counter may lag behind: keep later appends working.
    let _ = c.execute(
        "UPDATE mailboxes SET next_seq = ?1 + 1 WHERE mailbox_id = ?2",
        rusqlite::params![next, mailbox],
    );
}

async fn share(url: &str, policy: Policy, depth: u8) -> (Patient, carekey_client::ShareId) {
    let (pid, pcard) = identity("Pat Example", Role::Patient);
    let mut patient = Patient::new(pid, pcard, Relay::new(url).expect("URL"));
    let id = patient
        .create_share(
            share_items(1000),
            ShareOptions {
                expires_at: in_a_day(),
                policy,
                delegation_depth: depth,
            },
            &NoProgress,
            &Cancel::new(),
        )
        .await
        .expect("share");
    (patient, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_note_is_rejected_and_not_stored_twice() {
    let relay = start_relay();
    let (mut patient, sid) = share(&relay.url, Policy::Ask, 0).await;
    let (mut doctor, link, rel) = pair(&mut patient, &sid, "Dr. Ada Quinn").await;
    let resource = serde_json::json!({"resourceType": "Observation", "id": "bp-1",
        "status": "final", "code": {"text": "Blood pressure"}, "valueString": "120/80"});
    doctor.send_note(&link, &resource).await.expect("note");
    let before = rows(&relay);
    assert_eq!(before.len(), 1, "only the note is waiting");
    let (mailbox, _, time, body) = before[0].clone();

    let dir = tempfile::tempdir().expect("dir");
    let opts = common::quick_vault_options();
    let (mut vault, _) =
        Vault::create(&dir.path().join("p.vault"), "pass phrase", &opts).expect("vault");
    let notes = patient.inbox(&rel, 5).await.expect("inbox");
    assert_eq!(notes.len(), 1);
    note::accept(&mut vault, &notes[0]).expect("accepted with its signature");
    assert_eq!(vault.record_count().expect("count"), 1);

    reinsert(&relay, &mailbox, time, &body);
    match patient.inbox(&rel, 0).await {
        Err(ClientError::Tampered(carekey_core::Error::Replay { .. })) => {}
        other => panic!("a replayed note must be rejected, got {other:?}"),
    }
    assert_eq!(vault.record_count().expect("count"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_introduction_is_rejected() {
    let relay = start_relay();
    let cancel = Cancel::new();
    let (mut patient, sid) = share(&relay.url, Policy::Allowed, 1).await;
    let (mut ada, link, _) = pair(&mut patient, &sid, "Dr. Ada Quinn").await;
    let (cid, ccard) = identity("Dr. Cole Reyes", Role::Doctor);
    let mut cole = Doctor::new(cid, ccard);
    let carekey_client::doctor::Invitation { id: handle, invite } =
        cole.invite(&relay.url, 300).await.expect("invite");
    ada.delegate(&link, &invite, None, None)
        .await
        .expect("delegates");
    let waiting = rows(&relay);
    assert_eq!(waiting.len(), 1, "only the introduction is waiting");
    let (mailbox, _, time, body) = waiting[0].clone();
    let clink = cole
        .accept_introduction(&handle, 10, &cancel)
        .await
        .expect("accepted");
    // The old grant comes again on the same channel: a replay, not a new grant.
    reinsert(&relay, &mailbox, time, &body);
    match cole.sync(&clink, 0).await {
        Err(ClientError::Tampered(carekey_core::Error::Replay { .. })) => {}
        other => panic!("a replayed introduction must be rejected, got {other:?}"),
    }
    cole.fetch(&clink, &NoProgress, &cancel)
        .await
        .expect("the link still works");
}

/// Injects `sealed` into every mailbox of the relay (the patient's among them).
fn inject_everywhere(relay: &common::RelayProcess, sealed: &[u8]) {
    let c = db(relay);
    let mut s = c.prepare("SELECT mailbox_id FROM mailboxes").expect("q");
    let boxes: Vec<Vec<u8>> = s
        .query_map([], |r| r.get(0))
        .expect("rows")
        .collect::<rusqlite::Result<_>>()
        .expect("rows");
    assert!(!boxes.is_empty());
    for b in &boxes {
        // Past every sequence the mailbox ever gave out (a reader's cursor may be past its
        // remaining messages once they were deleted).
        let next: i64 = c
            .query_row(
                "SELECT max(next_seq, (SELECT coalesce(max(seq), 0) FROM messages \
                 WHERE mailbox_id = ?1)) + 100 FROM mailboxes WHERE mailbox_id = ?1",
                [b],
                |r| r.get(0),
            )
            .expect("next seq");
        c.execute(
            "INSERT INTO messages (mailbox_id, seq, time, body) VALUES (?1, ?2, 0, ?3)",
            rusqlite::params![b, next, sealed],
        )
        .expect("inject");
        c.execute(
            "UPDATE mailboxes SET next_seq = ?1 + 1 WHERE mailbox_id = ?2",
            rusqlite::params![next, b],
        )
        .expect("counter");
    }
}

/// A forward request naming an accomplice colleague, for `share`.
fn forward_request(share: &carekey_client::ShareId) -> ForwardRequest {
    let (xid, xcard) = identity("Dr. Accomplice", Role::Doctor);
    let invite = ColleagueInvite::sign(
        &xid,
        &xcard,
        SigningSecret::random(&mut OsRng).public(),
        vec![1; 48],
        [2; 16],
        in_a_day(),
    )
    .expect("invite");
    ForwardRequest {
        share_id: share.to_bytes(),
        invite,
        scope: Scope::all(),
        reason: "urgent".into(),
    }
}

/// A doctor paired with `patient` whose identity the test also holds: the "modified doctor
/// client" that seals and signs what the real client would refuse to send.
async fn paired_with_a_copy(
    patient: &mut Patient,
    share: &carekey_client::ShareId,
) -> (
    Doctor,
    carekey_client::LinkId,
    carekey_client::RelationshipId,
    DeviceIdentity,
    Card,
) {
    let root = RootSecret::random(&mut OsRng);
    let card = DeviceIdentity::from_root(&root)
        .card("Dr. Ada Quinn", Role::Doctor, None, 1)
        .expect("card");
    let (d, link, rel) = common::pair_as(
        patient,
        share,
        DeviceIdentity::from_root(&root),
        card.clone(),
    )
    .await;
    (d, link, rel, DeviceIdentity::from_root(&root), card)
}

/// Seq far above anything the relationship used (the replay guard is not what is tested).
const FRESH_SEQ: u64 = 1 << 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_request_forged_by_a_stranger_is_dropped() {
    let relay = start_relay();
    let (mut patient, sid) = share(&relay.url, Policy::Ask, 0).await;
    let (ada, link, rel) = pair(&mut patient, &sid, "Dr. Ada Quinn").await;
    // A stranger (not paired) forges a request naming its own accomplice, with a card in
    // Ada's name, and seals it correctly: to the patient's card, under the real relationship
    // id (the relay sees it in the clear in no message, but suppose it leaked), with a fresh
    // sequence number. It opens, and fails at the signature: not Ada's key.
    let (mid, mcard) = identity("Dr. Ada Quinn", Role::Doctor);
    let relationship_id = ada
        .held_secrets_for_test(&link)
        .expect("link")
        .relationship_id;
    let forged = message::seal(
        &mid,
        &mcard,
        patient.card(),
        &relationship_id,
        FRESH_SEQ,
        MessageKind::ForwardRequest,
        &forward_request(&sid).to_bytes(),
        &mut OsRng,
    )
    .expect("seal");
    inject_everywhere(&relay, &forged);
    match patient.inbox(&rel, 0).await {
        Err(ClientError::Tampered(carekey_core::Error::BadSignature { .. })) => {}
        other => panic!("the forgery must fail at the signature, got {other:?}"),
    }
    assert!(
        patient.forward_requests().is_empty(),
        "nothing reaches the patient's screen"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_request_from_a_doctor_without_an_active_grant_is_refused() {
    let relay = start_relay();
    let (mut patient, sid) = share(&relay.url, Policy::Ask, 0).await;
    let (_ada, _, rel, ada_id, ada_card) = paired_with_a_copy(&mut patient, &sid).await;
    let patient_card = patient.card().clone();
    let seal = |seq| {
        message::seal(
            &ada_id,
            &ada_card,
            &patient_card,
            &rel.to_bytes(),
            seq,
            MessageKind::ForwardRequest,
            &forward_request(&sid).to_bytes(),
            &mut OsRng,
        )
        .expect("seal")
    };
    // Sealed and signed by the paired doctor itself: while its grant is active it reaches the
    // patient's screen, so what follows fails at the grant check alone.
    inject_everywhere(&relay, &seal(FRESH_SEQ));
    patient.inbox(&rel, 0).await.expect("a genuine request");
    assert_eq!(patient.forward_requests().len(), 1);
    patient
        .revoke(&sid, &rel, &NoProgress, &Cancel::new())
        .await
        .expect("revoke");
    // The same doctor, revoked, tries again with a modified client.
    inject_everywhere(&relay, &seal(FRESH_SEQ + 1));
    let e = patient.inbox(&rel, 0).await.expect_err("no active grant");
    assert_eq!(e.code(), "not_allowed", "{e}");
    assert_eq!(patient.forward_requests().len(), 1, "nothing new listed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_policy_is_refused_by_the_patient_and_the_relay_to_a_modified_client() {
    let relay = start_relay();
    let (mut patient, sid) = share(&relay.url, Policy::Never, 0).await;
    let (ada, link, rel, ada_id, ada_card) = paired_with_a_copy(&mut patient, &sid).await;
    // The patient: a correctly sealed and signed request from the active grantee is refused
    // for the share's policy.
    let sealed = message::seal(
        &ada_id,
        &ada_card,
        patient.card(),
        &rel.to_bytes(),
        FRESH_SEQ,
        MessageKind::ForwardRequest,
        &forward_request(&sid).to_bytes(),
        &mut OsRng,
    )
    .expect("seal");
    inject_everywhere(&relay, &sealed);
    let e = patient.inbox(&rel, 0).await.expect_err("policy never");
    assert_eq!(e.code(), "not_allowed", "{e}");
    assert!(patient.forward_requests().is_empty());
    // The relay: the doctor's modified client registers a delegation directly, with a link
    // signed by its own reader key, within its scope and groups: the token (depth 0) cannot
    // delegate, and nothing is registered.
    let held = ada.held_secrets_for_test(&link).expect("link");
    let child = ReadToken::random(&mut OsRng);
    let link0 = DelegationLink::sign(
        &held.reader,
        held.share_id.to_bytes(),
        SigningSecret::random(&mut OsRng).public(),
        &child,
        Scope::all(),
        held.keys.groups(),
        // Within the grant's expiry (a day from the share's making).
        in_a_day() - 3_600,
        0,
    );
    let r = Relay::new(&relay.url).expect("URL");
    match r
        .register_delegation(
            &held.share_id,
            &held.root_token_hash,
            &[link0],
            b"an opaque notice the patient would read",
        )
        .await
    {
        Err(ClientError::Refused { status: 403, code }) => assert_eq!(code, "delegation_depth"),
        other => panic!("the relay must refuse a delegation under never, got {other:?}"),
    }
    let c = db(&relay);
    let tokens: i64 = c
        .query_row("SELECT count(*) FROM tokens", [], |r| r.get(0))
        .expect("count");
    assert_eq!(tokens, 1, "only the doctor's own token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgery_beside_a_genuine_note_raises_an_alert() {
    let relay = start_relay();
    let (mut patient, sid) = share(&relay.url, Policy::Ask, 0).await;
    let (mut ada, link, rel) = pair(&mut patient, &sid, "Dr. Ada Quinn").await;
    // A stranger's message lands in the patient's inbox, then Ada's genuine note.
    let (mid, mcard) = identity("Dr. Ada Quinn", Role::Doctor);
    let forged = message::seal(
        &mid,
        &mcard,
        patient.card(),
        &[0; 16],
        1,
        MessageKind::Note,
        b"not a note",
        &mut OsRng,
    )
    .expect("seal");
    let c = db(&relay);
    let boxes: Vec<Vec<u8>> = c
        .prepare("SELECT mailbox_id FROM mailboxes")
        .expect("q")
        .query_map([], |r| r.get(0))
        .expect("rows")
        .collect::<rusqlite::Result<_>>()
        .expect("rows");
    for b in &boxes {
        reinsert(&relay, b, 0, &forged);
    }
    ada.send_note(
        &link,
        &serde_json::json!({"resourceType": "Observation", "status": "final",
            "code": {"text": "genuine"}}),
    )
    .await
    .expect("note");
    assert!(patient.take_alerts().is_empty());
    let notes = patient
        .inbox(&rel, 5)
        .await
        .expect("the genuine note comes");
    assert_eq!(notes.len(), 1);
    let alerts = patient.take_alerts();
    assert_eq!(alerts.len(), 1, "the forgery is not silently dropped");
    assert_eq!(alerts[0].code(), "tampered");
    assert!(patient.take_alerts().is_empty(), "taking clears");
}
