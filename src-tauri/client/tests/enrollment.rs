//! A closed relay (`--enrollment-key`, docs/relay.md "Enrollment") through the client: without
//! the operator's key, or with a wrong one, nothing can be created there (`enrollment_required`,
//! with nothing stored); with it, a whole check-up runs, the doctor holding the key for that
//! relay only. The key never shows in `Debug` output.

mod common;

use carekey_client::doctor::Doctor;
use carekey_client::patient::{Patient, ShareOptions};
use carekey_client::progress::{Cancel, NoProgress};
use carekey_client::relay::Relay;
use carekey_core::grant::Policy;
use carekey_core::keys::Role;
use common::{RelayOptions, identity, in_a_day, share_items, start_relay_with};

const KEY: &str = "clinic-network-7f3a9c41e2b8";

fn options() -> ShareOptions {
    ShareOptions {
        expires_at: in_a_day(),
        policy: Policy::Ask,
        delegation_depth: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_relay_needs_the_operators_key_to_create_and_only_that() {
    let relay = start_relay_with(&RelayOptions {
        env: vec![("CAREKEY_RELAY_ENROLLMENT_KEY".into(), KEY.into())],
        ..RelayOptions::default()
    });
    let cancel = Cancel::new();
    let open = Relay::new(&relay.url).expect("URL");
    let wrong = open
        .clone()
        .with_enrollment_key("clinic-network-0000")
        .expect("well-formed");
    let right = open.clone().with_enrollment_key(KEY).expect("well-formed");
    assert!(right.has_enrollment_key() && !open.has_enrollment_key());

    // Malformed keys are refused before anything is sent, without repeating them.
    for bad in ["", "two words", "tab\tkey", "ключ", &"k".repeat(257)] {
        let e = open
            .clone()
            .with_enrollment_key(bad)
            .expect_err("malformed key");
        assert_eq!(e.code(), "invalid_input");
        assert!(bad.is_empty() || !e.to_string().contains(bad), "{e}");
    }

    // Without the key, or with a wrong one: every create is refused, in words.
    for r in [&open, &wrong] {
        let (pid, pcard) = identity("Pat Closed", Role::Patient);
        let mut patient = Patient::new(pid, pcard, r.clone());
        let e = patient
            .create_share(share_items(2_000), options(), &NoProgress, &cancel)
            .await
            .expect_err("no share without the key");
        assert_eq!(e.code(), "enrollment_required", "{e}");
        assert!(e.to_string().contains("enrollment key"), "{e}");
        let e = r.open_mailbox().await.expect_err("no mailbox");
        assert_eq!(e.code(), "enrollment_required", "{e}");
        let e = r.open_pairing().await.expect_err("no pairing box");
        assert_eq!(e.code(), "enrollment_required", "{e}");
    }

    // With it: the patient shares; a doctor without the key cannot answer the QR (its reply
    // mailbox is a create), the same doctor with the key for this relay can.
    let (pid, pcard) = identity("Pat Closed", Role::Patient);
    let mut patient = Patient::new(pid, pcard, right.clone());
    let items = share_items(2_000);
    let share = patient
        .create_share(items.clone(), options(), &NoProgress, &cancel)
        .await
        .expect("share with the key");
    let (did, dcard) = identity("Dr. Closed", Role::Doctor);
    let mut doctor = Doctor::new(did, dcard);
    let mut session = patient.start_pairing(&share).await.expect("pairing opens");
    let e = doctor
        .scan(&session.qr_text())
        .await
        .expect_err("no reply mailbox without the key");
    assert_eq!(e.code(), "enrollment_required", "{e}");
    // A key held for another relay is not sent here.
    doctor
        .set_enrollment_key("https://relay.elsewhere.example", Some(KEY))
        .expect("key for another relay");
    let e = doctor
        .scan(&session.qr_text())
        .await
        .expect_err("the other relay's key is not used");
    assert_eq!(e.code(), "enrollment_required", "{e}");
    doctor
        .set_enrollment_key(&format!("{}/", relay.url), Some(KEY))
        .expect("key for this relay");
    let scan = doctor.scan(&session.qr_text()).await.expect("doctor scans");
    patient
        .wait_for_doctor(&mut session, 10, &cancel)
        .await
        .expect("reply arrives");
    patient.confirm(session).await.expect("confirm");
    let link = doctor
        .wait_for_grant(scan, 10, &cancel)
        .await
        .expect("grant arrives");
    let got = doctor
        .fetch(&link, &NoProgress, &cancel)
        .await
        .expect("reads need no key");
    assert_eq!(got.len(), items.len());
    // A colleague's invite opens a mailbox there too: with the doctor's key it works.
    doctor
        .invite(&relay.url, 300)
        .await
        .expect("invite on the closed relay");

    // The key is a credential: no Debug output shows it.
    for (what, text) in [
        ("Relay", format!("{right:?}")),
        ("Patient", format!("{patient:?}")),
        ("Doctor", format!("{doctor:?}")),
    ] {
        assert!(!text.contains(KEY), "{what} Debug shows the key: {text}");
    }
    doctor
        .set_enrollment_key(&relay.url, None)
        .expect("key removed");
    let e = doctor.invite(&relay.url, 300).await.expect_err("removed");
    assert_eq!(e.code(), "enrollment_required", "{e}");
}
