//! Encrypted vault backup to a real relay and restore on a fresh device from the 24-word
//! phrase alone (docs/vault.md "Recovery phrase and backup blob"): the restored vault has every record and the
//! app's saved state (shares, relationships), a stale or tampered backup is refused.

mod common;

use carekey_client::backup::{backup_to_relay, prepare, restore_from_relay, upload};
use carekey_client::patient::{Patient, ShareOptions};
use carekey_client::progress::{Cancel, NoProgress};
use carekey_client::relay::Relay;
use carekey_core::grant::Policy;
use carekey_core::keys::{DeviceIdentity, Role, RootSecret};
use carekey_vault::{CreateOptions, RecoveryPhrase, Vault};
use common::{in_a_day, share_items, start_relay};
use rand_core::OsRng;

fn opts() -> CreateOptions {
    common::quick_vault_options()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_then_restore_on_a_fresh_device_from_the_phrase() {
    let relay = start_relay();
    let r = Relay::new(&relay.url).expect("URL");
    let phone = tempfile::tempdir().expect("dir");
    let (mut vault, phrase) =
        Vault::create(&phone.path().join("old.vault"), "old pass", &opts()).expect("vault");
    let phrase = phrase.expose_words().to_owned();
    // Records and a share with a paired doctor, all saved in the vault.
    let obs = serde_json::json!({"resourceType": "Observation", "id": "hba1c",
        "status": "final", "code": {"text": "HbA1c"}, "valueString": "6.1 %"});
    vault.add_record(obs).expect("record");
    let root = RecoveryPhrase::parse(&phrase)
        .expect("phrase")
        .root()
        .expect("root");
    let (pid, pcard) = {
        let id = DeviceIdentity::from_root(&root);
        let card = id
            .card("Pat Example", Role::Patient, None, 1)
            .expect("card");
        (id, card)
    };
    let mut patient = Patient::new(pid, pcard.clone(), r.clone());
    let share = patient
        .create_share(
            share_items(10_000),
            ShareOptions {
                expires_at: in_a_day(),
                policy: Policy::Ask,
                delegation_depth: 0,
            },
            &NoProgress,
            &Cancel::new(),
        )
        .await
        .expect("share");
    let (mut doctor, link, rel) = common::pair(&mut patient, &share, "Dr. Ada Quinn").await;
    patient.save_to(&mut vault).expect("saved");

    // The snapshot is taken at the call; the upload borrows no vault (an app's vault lock is
    // free while it runs).
    let cancel = Cancel::new();
    let first = backup_to_relay(&mut vault, &r, &NoProgress, &cancel);
    assert_eq!(vault.record_count().expect("vault free during upload"), 1);
    let v1 = first.await.expect("backup");
    vault
        .add_record(
            serde_json::json!({"resourceType": "Condition", "id": "later",
            "code": {"text": "Added after the first backup"}}),
        )
        .expect("record");
    // Snapshot first, upload after, with no vault: two snapshots, the newer one goes up first.
    let (older, older_key) = prepare(&mut vault).expect("snapshot");
    let (newer, newer_key) = prepare(&mut vault).expect("snapshot");
    assert_eq!((older.version, newer.version), (v1 + 1, v1 + 2));
    let cancelled = Cancel::new();
    cancelled.cancel();
    let e = upload(&r, newer.clone(), newer_key, &NoProgress, &cancelled)
        .await
        .expect_err("cancelled before the network");
    assert_eq!(e.code(), "cancelled");
    let newer_key = vault.backup_owner_key(0).expect("owner key");
    let v2 = upload(&r, newer, newer_key, &NoProgress, &Cancel::new())
        .await
        .expect("second backup");
    assert!(v2 > v1);
    // The relay keeps only the newest: the older snapshot is refused.
    let e = upload(&r, older, older_key, &NoProgress, &Cancel::new())
        .await
        .expect_err("an older backup version is refused");
    assert_eq!(e.code(), "conflict", "{e}");
    let n = vault.record_count().expect("count");
    drop(vault);
    drop(patient);

    // The phone is lost. A new one has only the phrase.
    let new_phone = tempfile::tempdir().expect("dir");
    let mut restored = restore_from_relay(
        &r,
        &phrase,
        &new_phone.path().join("new.vault"),
        "new pass",
        &opts(),
    )
    .await
    .expect("restores");
    assert_eq!(restored.record_count().expect("count"), n, "newest backup");
    let (pid, _) = {
        let id = DeviceIdentity::from_root(&root);
        (id, ())
    };
    let mut patient = Patient::load_from(&mut restored, pid, pcard, r.clone())
        .expect("state loads")
        .expect("state was in the backup");
    assert_eq!(
        patient
            .relationship(&rel)
            .expect("remembered")
            .card
            .body
            .name,
        "Dr. Ada Quinn"
    );
    // The restored patient still talks to the doctor, and, once reconciled with the relay
    // (nothing changed since this backup: no re-key needed), can revoke.
    assert!(patient.needs_reconcile());
    let done = patient
        .reconcile(&NoProgress, &Cancel::new())
        .await
        .expect("reconciles");
    assert_eq!((done[0].grants_marked_revoked, done[0].rekeyed), (0, false));
    doctor
        .send_note(
            &link,
            &serde_json::json!({"resourceType": "Observation", "status": "final",
                "code": {"text": "after restore"}}),
        )
        .await
        .expect("note");
    assert_eq!(patient.inbox(&rel, 5).await.expect("inbox").len(), 1);
    patient
        .revoke(&share, &rel, &NoProgress, &Cancel::new())
        .await
        .expect("revoke from the restored phone");
    assert_eq!(
        doctor
            .fetch(&link, &NoProgress, &Cancel::new())
            .await
            .expect_err("revoked")
            .code(),
        "access_ended"
    );

    // Another phrase finds nothing; a malformed one is refused before the network.
    let other = RecoveryPhrase::from_root(&RootSecret::random(&mut OsRng))
        .expose_words()
        .to_owned();
    let e = restore_from_relay(&r, &other, &new_phone.path().join("x.vault"), "p", &opts())
        .await
        .expect_err("nothing there");
    assert_eq!(e.code(), "not_found");
    let e = restore_from_relay(
        &r,
        "not a phrase",
        &new_phone.path().join("y.vault"),
        "p",
        &opts(),
    )
    .await
    .expect_err("junk");
    assert_eq!(e.code(), "invalid_phrase");

    // The relay operator tampers with the stored backup: restore refuses it.
    let c = rusqlite::Connection::open(relay.data.path().join("relay.sqlite3")).expect("db");
    let mut data: Vec<u8> = c
        .query_row("SELECT data FROM backups", [], |r| r.get(0))
        .expect("stored backup");
    let last = data.len() - 1;
    data[last] ^= 1;
    c.execute("UPDATE backups SET data = ?1", [data])
        .expect("tamper");
    let e = restore_from_relay(&r, &phrase, &new_phone.path().join("z.vault"), "p", &opts())
        .await
        .expect_err("tampered");
    // An AEAD failure cannot tell a wrong key from a changed byte: the vault says the phrase
    // does not match this backup, and nothing is written.
    assert!(
        matches!(e.code(), "tampered" | "backup_rejected" | "wrong_phrase"),
        "{e}"
    );
    assert!(!new_phone.path().join("z.vault").exists());
}
