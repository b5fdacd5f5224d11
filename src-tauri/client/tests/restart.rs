//! Both apps restart mid-relationship: the state saved in each device's vault brings back
//! shares, grants, relationships, cursors, replay guards and the audit pin, and every flow
//! goes on (fetch, note, access log extending the pinned head, revoke, forwarding). Each start
//! takes the device identity and card from the vault (carekey-vault docs/vault.md "Device
//! identity and card"), and each restart closes, reopens and unlocks the vault file.

mod common;

use carekey_client::doctor::Doctor;
use carekey_client::patient::{Patient, ShareOptions, summarize};
use carekey_client::progress::{Cancel, NoProgress};
use carekey_client::relay::Relay;
use carekey_core::grant::Policy;
use carekey_core::keys::{Card, DeviceIdentity, Role};
use carekey_vault::Vault;
use common::{in_a_day, share_items, start_relay};

fn vault(dir: &tempfile::TempDir, name: &str) -> Vault {
    common::test_vault(dir, name)
}

/// What an app does at start: the identity and card come from the vault alone (the identity is
/// derived from the root, the card is the one stored at the first start).
fn from_vault(v: &mut Vault, name: &str, role: Role) -> (DeviceIdentity, Card) {
    let id = v.device_identity().expect("identity from the vault");
    let card = v
        .device_card(name, role, None)
        .expect("card from the vault");
    (id, card)
}

/// A real restart: the vault file is closed, opened again and unlocked with the passphrase.
fn restart(v: Vault) -> Vault {
    let path = v.path().to_owned();
    drop(v);
    let mut v = Vault::open(&path).expect("vault opens");
    v.unlock("pass phrase").expect("vault unlocks");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_apps_restart_and_every_flow_goes_on() {
    let relay = start_relay();
    let dir = tempfile::tempdir().expect("dir");
    let mut pv = vault(&dir, "patient.vault");
    let mut dv = vault(&dir, "doctor.vault");
    let cancel = Cancel::new();
    let pat = ("Pat Example", Role::Patient);
    let doc = ("Dr. Ada Quinn", Role::Doctor);
    let items = share_items(1_500_000);

    // First run: share, pair, fetch, one access-log read (pins a head).
    let (share, rel, link, first_cards) = {
        let (pid, pcard) = from_vault(&mut pv, pat.0, pat.1);
        let pcard_hash = pcard.hash();
        let mut patient = Patient::new(pid, pcard, Relay::new(&relay.url).expect("URL"));
        let share = patient
            .create_share(
                items.clone(),
                ShareOptions {
                    expires_at: in_a_day(),
                    policy: Policy::Allowed,
                    delegation_depth: 1,
                },
                &NoProgress,
                &cancel,
            )
            .await
            .expect("share");
        let (did, dcard) = from_vault(&mut dv, doc.0, doc.1);
        let first_cards = (pcard_hash, dcard.hash());
        let mut doctor = Doctor::new(did, dcard);
        let mut session = patient.start_pairing(&share).await.expect("pairing");
        let scan = doctor.scan(&session.qr_text()).await.expect("scan");
        patient
            .wait_for_doctor(&mut session, 10, &cancel)
            .await
            .expect("reply");
        let rel = patient.confirm(session).await.expect("confirm");
        let link = doctor
            .wait_for_grant(scan, 10, &cancel)
            .await
            .expect("grant");
        doctor
            .fetch(&link, &NoProgress, &cancel)
            .await
            .expect("fetch");
        patient.access_log(&share).await.expect("log");
        patient.save_to(&mut pv).expect("patient saves");
        doctor.save_to(&mut dv).expect("doctor saves");
        (share, rel, link, first_cards)
    };

    // Both apps restart (a second later, so a card stamped at start would differ): vault files
    // reopened and unlocked, identity and card taken from them.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let mut pv = restart(pv);
    let mut dv = restart(dv);
    let (pid, pcard) = from_vault(&mut pv, pat.0, pat.1);
    let pcard_hash = pcard.hash();
    let mut patient = Patient::load_from(&mut pv, pid, pcard, Relay::new(&relay.url).expect("URL"))
        .expect("patient loads")
        .expect("patient state saved");
    let (did, dcard) = from_vault(&mut dv, doc.0, doc.1);
    assert_eq!(
        (pcard_hash, dcard.hash()),
        first_cards,
        "the cards grants and messages bind are the ones from the first start"
    );
    let mut doctor = Doctor::load_from(&mut dv, did, dcard)
        .expect("doctor loads")
        .expect("doctor state saved");
    assert_eq!(
        patient
            .relationship(&rel)
            .expect("remembered")
            .card
            .body
            .name,
        "Dr. Ada Quinn"
    );
    assert_eq!(
        doctor.patient(&link).expect("remembered").body.name,
        "Pat Example"
    );
    let got = doctor
        .fetch(&link, &NoProgress, &cancel)
        .await
        .expect("fetch after restart");
    assert_eq!(got.len(), items.len());
    doctor
        .send_note(
            &link,
            &serde_json::json!({"resourceType": "Observation", "status": "final",
                "code": {"text": "after restart"}}),
        )
        .await
        .expect("note");
    assert_eq!(patient.inbox(&rel, 5).await.expect("inbox").len(), 1);
    // The log still extends the head pinned before the restart, and names the doctor.
    let log = patient
        .access_log(&share)
        .await
        .expect("log extends the pin");
    assert!(summarize(&log).iter().any(|s| s.who == "Dr. Ada Quinn"));
    patient.save_to(&mut pv).expect("save");

    // A state saved a few writes late still writes: reload the patient from the saved state
    // after more owner writes happened (the access log read is one), then revoke.
    patient
        .access_log(&share)
        .await
        .expect("another owner read");
    let mut pv = restart(pv);
    let (pid, pcard) = from_vault(&mut pv, pat.0, pat.1);
    let mut patient = Patient::load_from(&mut pv, pid, pcard, Relay::new(&relay.url).expect("URL"))
        .expect("loads")
        .expect("saved");
    patient
        .revoke(&share, &rel, &NoProgress, &cancel)
        .await
        .expect("revoke with a resumed owner counter");
    patient.save_to(&mut pv).expect("save");
    assert_eq!(
        doctor
            .fetch(&link, &NoProgress, &cancel)
            .await
            .expect_err("revoked")
            .code(),
        "access_ended"
    );
    // The saved state is sealed: nothing of the doctor's card name in clear in either file.
    drop(pv);
    drop(dv);
    for f in ["patient.vault", "doctor.vault"] {
        let raw = std::fs::read(dir.path().join(f)).expect("vault file");
        for needle in [&b"Dr. Ada Quinn"[..], b"Pat Example"] {
            assert!(
                !raw.windows(needle.len()).any(|w| w == needle),
                "a card name is in clear in {f}"
            );
        }
    }
}

#[tokio::test]
async fn corrupt_saved_state_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("dir");
    let mut pv = vault(&dir, "p.vault");
    for junk in [&b""[..], b"\x01", b"\x02garbage", &[1u8; 300]] {
        pv.put_state("carekey/patient/v1", junk).expect("put");
        let (pid, pcard) = from_vault(&mut pv, "Pat Example", Role::Patient);
        let e = Patient::load_from(
            &mut pv,
            pid,
            pcard,
            Relay::new("http://127.0.0.1:9").expect("URL"),
        )
        .expect_err("junk refused");
        assert!(matches!(e.code(), "tampered" | "invalid_input"), "{e}");
    }
    let mut dvv = vault(&dir, "d.vault");
    for junk in [&b""[..], b"\x01\x00\x00\x00\x05", &[1u8; 300]] {
        dvv.put_state("carekey/doctor/v1", junk).expect("put");
        let (did, dcard) = from_vault(&mut dvv, "Dr. Ada Quinn", Role::Doctor);
        assert!(Doctor::load_from(&mut dvv, did, dcard).is_err());
    }
}
