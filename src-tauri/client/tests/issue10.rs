//! Issue #10 gaps through a real relay process: errors by kind (an old or used QR never reads
//! "tampered"), relay URLs the doctor's scan refuses, storable notes, forward request ids that
//! survive a restart, and an inbox that loses nothing when the app dies before acknowledging.

mod common;

use carekey_client::ClientError;
use carekey_client::doctor::Doctor;
use carekey_client::note::Note;
use carekey_client::patient::{ForwardRequestId, Patient, ShareOptions};
use carekey_client::progress::{Cancel, NoProgress};
use carekey_client::relay::Relay;
use carekey_core::grant::Policy;
use carekey_core::keys::{DeviceIdentity, Role, RootSecret};
use carekey_core::pairing::PatientPairing;
use common::{in_a_day, pair, share_items, start_relay, test_vault};
use rand_core::OsRng;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// The same device identity every time the app starts.
struct Device {
    root: RootSecret,
    name: &'static str,
    role: Role,
}

impl Device {
    fn new(name: &'static str, role: Role) -> Self {
        Self {
            root: RootSecret::random(&mut OsRng),
            name,
            role,
        }
    }
    fn identity(&self) -> (DeviceIdentity, carekey_core::keys::Card) {
        let id = DeviceIdentity::from_root(&self.root);
        let card = id.card(self.name, self.role, None, 1).expect("card");
        (id, card)
    }
    fn doctor(&self) -> Doctor {
        let (id, card) = self.identity();
        Doctor::new(id, card)
    }
}

async fn patient_with_share(
    dev: &Device,
    url: &str,
    policy: Policy,
) -> (Patient, carekey_client::ShareId) {
    let (pid, pcard) = dev.identity();
    let mut patient = Patient::new(pid, pcard, Relay::new(url).expect("relay URL"));
    let share = patient
        .create_share(
            share_items(1000),
            ShareOptions {
                expires_at: in_a_day(),
                policy,
                delegation_depth: 0,
            },
            &NoProgress,
            &Cancel::new(),
        )
        .await
        .expect("share uploads");
    (patient, share)
}

fn qr_for(relay_url: &str, expires_at: u64) -> String {
    PatientPairing::start(
        relay_url,
        [7; 16],
        u32::try_from(expires_at).expect("fits"),
        &mut OsRng,
    )
    .expect("pairing")
    .qr()
    .to_text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_or_used_qr_is_never_tampered() {
    let relay = start_relay();
    let doc = Device::new("Dr. Ada Quinn", Role::Doctor);

    // An expired QR: `expired`, with the advice to ask for a new one.
    let err = doc
        .doctor()
        .scan(&qr_for(&relay.url, now() - 60))
        .await
        .expect_err("expired QR refused");
    assert_eq!(err.code(), "expired");
    assert!(matches!(err, ClientError::Expired { .. }));
    assert_eq!(
        err.to_string(),
        "this QR code has expired: ask the patient for a new one"
    );
    // Text that is no QR: invalid input.
    for garbage in ["garbage", "CAREKEY:", "CAREKEY:!!!!", ""] {
        let err = doc.doctor().scan(garbage).await.expect_err("garbage");
        assert_eq!(err.code(), "invalid_input", "{garbage:?}");
    }
    // A QR pointing at plain HTTP on a remote host: refused before any network use.
    let err = doc
        .doctor()
        .scan(&qr_for("http://relay.example.org", now() + 600))
        .await
        .expect_err("remote plain http refused");
    assert_eq!(err.code(), "invalid_input");

    // A QR another doctor answered: `already_used`, before and after the patient read it.
    let pat = Device::new("Pat Example", Role::Patient);
    let (mut patient, share) = patient_with_share(&pat, &relay.url, Policy::Never).await;
    let mut session = patient.start_pairing(&share).await.expect("pairing");
    let qr = session.qr_text();
    let first = doc.doctor().scan(&qr).await.expect("first doctor answers");
    let other = Device::new("Dr. Mallory", Role::Doctor);
    let err = other.doctor().scan(&qr).await.expect_err("second scan");
    assert_eq!(err.code(), "already_used");
    assert_eq!(
        err.to_string(),
        "this QR was already used: ask the patient for a new one"
    );
    let door = patient
        .wait_for_doctor(&mut session, 10, &Cancel::new())
        .await
        .expect("the first reply arrives");
    assert_eq!(door.check_code, first.check_code());
    let err = other
        .doctor()
        .scan(&qr)
        .await
        .expect_err("scan after close");
    assert_eq!(err.code(), "already_used");
}

#[test]
fn core_errors_map_by_kind() {
    let e = ClientError::from(carekey_core::Error::Expired { what: "pairing QR" });
    assert_eq!(e.code(), "expired");
    assert!(e.to_string().contains("ask the patient for a new one"));
    let e = ClientError::from(carekey_core::Error::Expired { what: "grant" });
    assert_eq!(e.code(), "expired");
    assert_eq!(e.to_string(), "grant has expired");
    let e = ClientError::from(carekey_core::Error::PairingClosed);
    assert_eq!(e.code(), "already_used");
    let e = ClientError::from(carekey_core::Error::Encoding { what: "QR payload" });
    assert_eq!(e.code(), "invalid_input");
    let e = ClientError::from(carekey_core::Error::BadSignature { what: "note" });
    assert_eq!(e.code(), "tampered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_are_storable_and_reverified() {
    let relay = start_relay();
    let pat = Device::new("Pat Example", Role::Patient);
    let (mut patient, share) = patient_with_share(&pat, &relay.url, Policy::Never).await;
    let (mut doctor, link, rel) = pair(&mut patient, &share, "Dr. Ada Quinn").await;
    let resource = serde_json::json!({"resourceType": "Observation", "id": "bp", "value": 120});
    doctor.send_note(&link, &resource).await.expect("note sent");
    let notes = patient.inbox(&rel, 10).await.expect("inbox");
    assert_eq!(notes.len(), 1);

    let stored = notes[0].to_bytes().expect("encodes");
    assert_eq!(stored[0], carekey_client::note::NOTE_STORE_VERSION);
    let back = Note::from_bytes(&stored).expect("decodes and verifies");
    assert_eq!(back.resource, resource);
    assert_eq!(back.signature, notes[0].signature);
    assert_eq!(back.author, notes[0].author);

    // Trailing bytes, another version, a truncation: refused.
    let mut longer = stored.clone();
    longer.push(0);
    assert!(Note::from_bytes(&longer).is_err());
    let mut v2 = stored.clone();
    v2[0] = 2;
    assert!(Note::from_bytes(&v2).is_err());
    assert!(Note::from_bytes(&stored[..stored.len() - 1]).is_err());
    // A changed resource byte or signature byte fails the signature check again.
    let i = stored
        .windows(3)
        .position(|w| w == b"120")
        .expect("value in the stored note");
    let mut altered = stored.clone();
    altered[i] = b'9';
    assert_eq!(
        Note::from_bytes(&altered).expect_err("altered").code(),
        "tampered"
    );
    let mut bad_sig = stored.clone();
    let last = bad_sig.len() - 1;
    bad_sig[last] ^= 1;
    assert_eq!(
        Note::from_bytes(&bad_sig).expect_err("bad sig").code(),
        "tampered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_request_id_survives_a_restart() {
    let relay = start_relay();
    let dir = tempfile::tempdir().expect("dir");
    let mut pv = test_vault(&dir, "patient.vault");
    let pat = Device::new("Pat Example", Role::Patient);
    let (mut patient, share) = patient_with_share(&pat, &relay.url, Policy::Ask).await;
    let (mut ada, link, rel) = pair(&mut patient, &share, "Dr. Ada Quinn").await;
    let cole = Device::new("Dr. Cole Reyes", Role::Doctor);
    let mut cole_doctor = cole.doctor();
    let mut ids = Vec::new();
    for reason in ["first opinion", "second opinion"] {
        let carekey_client::doctor::Invitation { id: _, invite } = cole_doctor
            .invite(ada.relay_url(&link).expect("link"), 300)
            .await
            .expect("invite");
        let hash = ada
            .request_forward(&link, &invite, None, reason)
            .await
            .expect("request sent");
        ids.push(hash);
    }
    let msgs = patient
        .inbox_waiter(&rel)
        .expect("waiter")
        .wait(10)
        .await
        .expect("wait");
    let got = patient.open_inbox(&rel, msgs).expect("opens");
    assert!(got.rejected.is_none());
    assert_eq!(got.forward_requests.len(), 2);
    patient.ack_inbox(&rel).await.expect("ack");
    let before = patient.forward_requests();
    assert_eq!(
        before.iter().map(|r| r.id).collect::<Vec<_>>(),
        got.forward_requests
    );
    // Text form round-trips.
    let text = before[1].id.to_string();
    assert_eq!(text.len(), 32);
    assert_eq!(
        text.parse::<ForwardRequestId>().expect("parses"),
        before[1].id
    );
    assert!("not hex".parse::<ForwardRequestId>().is_err());
    patient.save_to(&mut pv).expect("saves");
    drop(patient);

    let (pid, pcard) = pat.identity();
    let mut patient = Patient::load_from(&mut pv, pid, pcard, Relay::new(&relay.url).expect("URL"))
        .expect("loads")
        .expect("saved");
    let after = patient.forward_requests();
    assert_eq!(
        after.iter().map(|r| r.id).collect::<Vec<_>>(),
        before.iter().map(|r| r.id).collect::<Vec<_>>()
    );
    // The second request answered by its id: the first stays, with its id.
    assert_eq!(after[1].reason, "second opinion");
    assert_eq!(
        patient
            .answer_forward(&before[1].id, false)
            .await
            .expect("declined"),
        None
    );
    let left = patient.forward_requests();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, before[0].id);
    assert_eq!(left[0].reason, "first opinion");
    // An id answered already is unknown.
    let err = patient
        .answer_forward(&before[1].id, false)
        .await
        .expect_err("gone");
    assert_eq!(err.code(), "invalid_input");
    ada.sync(&link, 5).await.expect("sync");
    assert_eq!(ada.forward_answer(&link, &ids[1]), Some(false));
    assert_eq!(ada.forward_answer(&link, &ids[0]), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_loses_nothing_before_the_ack() {
    let relay = start_relay();
    let dir = tempfile::tempdir().expect("dir");
    let mut pv = test_vault(&dir, "patient.vault");
    let pat = Device::new("Pat Example", Role::Patient);
    let (mut patient, share) = patient_with_share(&pat, &relay.url, Policy::Never).await;
    let (mut doctor, link, rel) = pair(&mut patient, &share, "Dr. Ada Quinn").await;
    patient.save_to(&mut pv).expect("saves");
    doctor
        .send_note(
            &link,
            &serde_json::json!({"resourceType": "Observation", "id": "o1"}),
        )
        .await
        .expect("note");
    let msgs = patient
        .inbox_waiter(&rel)
        .expect("waiter")
        .wait(10)
        .await
        .expect("wait");
    let got = patient.open_inbox(&rel, msgs.clone()).expect("opens");
    assert_eq!(got.notes.len(), 1);
    // The same batch opened again (a relay serving it again) is a replay, never a second note.
    let again = patient.open_inbox(&rel, msgs).expect("opens");
    assert!(again.notes.is_empty());
    assert_eq!(again.rejected.expect("replay").code(), "tampered");
    // The app dies before storing the note and acknowledging: nothing is lost.
    drop(patient);
    let (pid, pcard) = pat.identity();
    let mut patient = Patient::load_from(&mut pv, pid, pcard, Relay::new(&relay.url).expect("URL"))
        .expect("loads")
        .expect("saved");
    let msgs = patient
        .inbox_waiter(&rel)
        .expect("waiter")
        .wait(10)
        .await
        .expect("wait");
    let got = patient.open_inbox(&rel, msgs).expect("opens");
    assert_eq!(got.notes.len(), 1, "the note is delivered again");
    assert_eq!(got.notes[0].resource["id"], "o1");
    patient.ack_inbox(&rel).await.expect("ack");
    patient.save_to(&mut pv).expect("saves");
    let rest = patient
        .inbox_waiter(&rel)
        .expect("waiter")
        .wait(0)
        .await
        .expect("wait");
    assert!(rest.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declining_tells_the_doctor_at_once() {
    let relay = start_relay();
    let pat = Device::new("Pat Example", Role::Patient);
    let (mut patient, share) = patient_with_share(&pat, &relay.url, Policy::Never).await;
    let doc = Device::new("Dr. Ada Quinn", Role::Doctor);
    let mut session = patient.start_pairing(&share).await.expect("pairing");
    let mut scan = doc.doctor().scan(&session.qr_text()).await.expect("scan");
    patient
        .wait_for_doctor(&mut session, 10, &Cancel::new())
        .await
        .expect("reply");
    let cancel = Cancel::new();
    let waiting = tokio::spawn(async move { scan.wait_for_confirmation(60, &cancel).await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    patient.decline(session).await.expect("declined");
    let err = tokio::time::timeout(std::time::Duration::from_secs(20), waiting)
        .await
        .expect("the decline ends the wait, not its 60 s timeout")
        .expect("task")
        .expect_err("declined");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(err.code(), "declined");
    assert_eq!(err.to_string(), "the patient declined");
    assert!(
        patient.active_grants(&share).is_empty(),
        "nothing was shared"
    );

    // Declined before any doctor answered: the QR is dead.
    let session = patient.start_pairing(&share).await.expect("pairing");
    let qr = session.qr_text();
    patient.decline(session).await.expect("declined");
    let err = doc.doctor().scan(&qr).await.expect_err("dead QR");
    assert_eq!(err.code(), "already_used");
}
