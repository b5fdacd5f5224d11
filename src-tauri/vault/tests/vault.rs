//! Lifecycle, records, blind index, tamper, schema, audit, backup and canary tests (no fixtures).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::time::Duration;

use carekey_core::keys::{DeviceIdentity, Role, RootSecret};
use carekey_vault::*;
use common::*;
use rusqlite::Connection;
use serde_json::json;

#[test]
fn create_lock_unlock_wrong_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.sqlite");
    let (mut v, _phrase) = Vault::create(&path, PASS, &opts()).unwrap();
    let id = v.add_record(observation("o1", 1)).unwrap();
    v.lock();
    assert!(matches!(v.get_record(&id), Err(VaultError::Locked)));
    let e = v.unlock("wrong").unwrap_err();
    assert!(matches!(e, VaultError::WrongPassphrase));
    assert_eq!(
        serde_json::to_value(&e).unwrap(),
        json!({"code": "wrong_passphrase", "message": "wrong passphrase"})
    );
    v.unlock(PASS).unwrap();
    assert_eq!(v.get_record(&id).unwrap().summary.fhir_id, "o1");
    drop(v);
    let mut v = Vault::open(&path).unwrap();
    assert!(!v.is_unlocked());
    assert!(matches!(v.unlock("nope"), Err(VaultError::WrongPassphrase)));
    v.unlock(PASS).unwrap();
    assert_eq!(v.list().unwrap().records.len(), 1);
    // creating over an existing file is refused
    assert!(Vault::create(&path, PASS, &opts()).is_err());
}

/// The card's hash (which grants and messages bind) survives a restart; a profile edit issues
/// a new one (docs/vault.md "Device identity and card").
#[test]
fn device_card_is_stable_across_restarts_and_changes_on_profile_edit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.sqlite");
    let (mut v, _) = Vault::create(&path, PASS, &opts()).unwrap();
    assert_eq!(v.card().unwrap(), None);
    let first = v
        .device_card("Dr. Ada Quinn", Role::Doctor, Some("GMC-7"))
        .unwrap();
    assert_eq!(v.card().unwrap().as_ref(), Some(&first));
    let identity = v.device_identity().unwrap();
    assert_eq!(first.body.signing_key, identity.signing_public());
    assert_eq!(first.body.dh_key, identity.dh_public());
    drop(v);
    // A second later (a fresh `now`), after close / reopen / unlock: the same card.
    std::thread::sleep(Duration::from_millis(1100));
    let mut v = Vault::open(&path).unwrap();
    assert!(matches!(v.card(), Err(VaultError::Locked)));
    assert!(matches!(v.device_identity(), Err(VaultError::Locked)));
    v.unlock(PASS).unwrap();
    let again = v
        .device_card("Dr. Ada Quinn", Role::Doctor, Some("GMC-7"))
        .unwrap();
    assert_eq!(again.hash(), first.hash());
    assert_eq!(
        v.device_identity().unwrap().signing_public(),
        identity.signing_public()
    );
    // A profile edit (name, licence or role) issues and stores a new card.
    let renamed = v
        .device_card("Dr. Ada Quinn-Smith", Role::Doctor, Some("GMC-7"))
        .unwrap();
    assert_ne!(renamed.hash(), first.hash());
    assert_eq!(v.card().unwrap().as_ref(), Some(&renamed));
    let relicensed = v
        .device_card("Dr. Ada Quinn-Smith", Role::Doctor, None)
        .unwrap();
    assert_ne!(relicensed.hash(), renamed.hash());
    assert_eq!(
        v.device_card("Dr. Ada Quinn-Smith", Role::Doctor, None)
            .unwrap()
            .hash(),
        relicensed.hash()
    );
    // The stored card is sealed app state: a value from elsewhere is refused, not used.
    let other = DeviceIdentity::from_root(&RootSecret::random(&mut rand_core::OsRng))
        .card("Mallory", Role::Doctor, None, 1)
        .unwrap();
    let mut forged = vec![1u8];
    forged.extend_from_slice(&carekey_core::wire::Wire::to_bytes(&other));
    v.put_state("carekey-vault/device-card", &forged).unwrap();
    assert!(matches!(v.card(), Err(VaultError::Tampered { .. })));
}

#[test]
fn change_passphrase_rewraps_root_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.sqlite");
    let (mut v, _) = Vault::create(&path, PASS, &opts()).unwrap();
    let id = v.add_record(observation("o1", 1)).unwrap();
    let body_before: Vec<u8> = Connection::open(&path)
        .unwrap()
        .query_row("SELECT body FROM records", [], |r| r.get(0))
        .unwrap();
    assert!(matches!(
        v.change_passphrase("bad", "new pass", None),
        Err(VaultError::WrongPassphrase)
    ));
    let raised = KdfParams {
        m_kib: 128,
        t: 2,
        p: 1,
    };
    v.change_passphrase(PASS, "new pass", Some(raised)).unwrap();
    drop(v);
    let body_after: Vec<u8> = Connection::open(&path)
        .unwrap()
        .query_row("SELECT body FROM records", [], |r| r.get(0))
        .unwrap();
    assert_eq!(body_before, body_after, "records are not re-encrypted");
    let mut v = Vault::open(&path).unwrap();
    assert_eq!(v.kdf_params(), raised);
    assert!(matches!(v.unlock(PASS), Err(VaultError::WrongPassphrase)));
    v.unlock("new pass").unwrap();
    v.get_record(&id).unwrap();
}

#[test]
fn idle_timeout_evicts_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (mut v, _) = new_vault(dir.path());
    v.set_idle_timeout(Some(Duration::from_millis(50)));
    v.add_record(observation("o1", 1)).unwrap();
    assert!(!v.tick());
    std::thread::sleep(Duration::from_millis(80));
    assert!(v.tick(), "keys evicted after idle");
    assert!(matches!(v.list(), Err(VaultError::Locked)));
    v.unlock(PASS).unwrap();
    assert_eq!(v.list().unwrap().records.len(), 1);
}

/// The borrowed summaries are the listing's, in its order, and follow writes; locked, none.
#[test]
fn summaries_are_the_listing_borrowed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut v, _) = new_vault(dir.path());
    for i in 0..5 {
        v.add_record(observation(&format!("o{i}"), i)).unwrap();
    }
    let listed = v.list().unwrap().records;
    let borrowed: Vec<RecordSummary> = v.summaries().unwrap().cloned().collect();
    assert_eq!(borrowed, listed);
    v.add_record(observation("o5", 5)).unwrap();
    assert_eq!(
        v.summaries().unwrap().len(),
        6,
        "a write rebuilds the index"
    );
    v.lock();
    assert!(matches!(v.summaries(), Err(VaultError::Locked)));
}

/// "Lock means locked" from an app timer: a thread calling `tick()` on the shared vault locks
/// it once idle, with no user call; the WAL is checkpointed as by `lock()`; activity defers it.
#[test]
fn idle_lock_from_a_timer_thread() {
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let (mut v, _) = new_vault(dir.path());
    v.add_record(observation("o1", 1)).unwrap();
    v.set_idle_timeout(Some(Duration::from_millis(300)));
    let wal = dir.path().join("v.sqlite-wal");
    assert!(
        std::fs::metadata(&wal).unwrap().len() > 0,
        "writes sit in the WAL"
    );
    let vault = Arc::new(Mutex::new(v));
    let timer = {
        let vault = Arc::clone(&vault);
        std::thread::spawn(move || {
            let start = std::time::Instant::now();
            loop {
                std::thread::sleep(Duration::from_millis(20));
                if vault.lock().unwrap().tick() {
                    return start.elapsed();
                }
                assert!(start.elapsed() < Duration::from_secs(10), "never locked");
            }
        })
    };
    // Activity within the timeout keeps it unlocked.
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(vault.lock().unwrap().list().unwrap().records.len(), 1);
    let locked_after = timer.join().unwrap();
    assert!(
        locked_after >= Duration::from_millis(400),
        "{locked_after:?}"
    );
    assert_eq!(
        std::fs::metadata(&wal).unwrap().len(),
        0,
        "WAL checkpointed"
    );
    let mut v = vault.lock().unwrap();
    assert!(matches!(v.list(), Err(VaultError::Locked)));
    assert!(matches!(v.device_identity(), Err(VaultError::Locked)));
    v.unlock(PASS).unwrap();
    assert!(!v.tick());
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.sqlite");
    drop(Vault::create(&path, PASS, &opts()).unwrap());
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let err = Vault::open(&path).unwrap_err();
    assert!(
        matches!(err, VaultError::NewerSchema { found, supported } if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err}"
    );
    // A plain SQLite file is not a vault.
    let other = dir.path().join("other.sqlite");
    Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE t(x)")
        .unwrap();
    assert!(matches!(Vault::open(&other), Err(VaultError::BadHeader(_))));
}

#[test]
fn tampered_row_is_named_and_others_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.sqlite");
    let (mut v, _) = Vault::create(&path, PASS, &opts()).unwrap();
    let ids: Vec<RecordId> = (0..5)
        .map(|i| v.add_record(observation(&format!("o{i}"), i)).unwrap())
        .collect();
    let victim = ids[2];
    {
        let c = Connection::open(&path).unwrap();
        let mut body: Vec<u8> = c
            .query_row(
                "SELECT body FROM records WHERE id = ?1",
                [&victim.0[..]],
                |r| r.get(0),
            )
            .unwrap();
        let n = body.len();
        body[n / 2] ^= 0x01;
        c.execute(
            "UPDATE records SET body = ?1 WHERE id = ?2",
            rusqlite::params![body, &victim.0[..]],
        )
        .unwrap();
        // Swap another row's summary into a third row: AAD binds the row id.
        let s: Vec<u8> = c
            .query_row(
                "SELECT summary FROM records WHERE id = ?1",
                [&ids[0].0[..]],
                |r| r.get(0),
            )
            .unwrap();
        c.execute(
            "UPDATE records SET summary = ?1 WHERE id = ?2",
            rusqlite::params![s, &ids[4].0[..]],
        )
        .unwrap();
    }
    let err = v.get_record(&victim).unwrap_err();
    assert!(matches!(err, VaultError::Tampered { what: "record", .. }));
    let msg = err.to_string();
    println!("tampered row error: {msg}");
    assert!(msg.contains(&victim.to_string()));
    assert!(matches!(
        v.get_record(&ids[4]),
        Err(VaultError::Tampered { .. })
    ));
    for i in [0, 1, 3] {
        assert_eq!(
            v.get_record(&ids[i]).unwrap().summary.fhir_id,
            format!("o{i}")
        );
    }
    let listing = v.list().unwrap();
    assert_eq!(listing.records.len(), 4, "summary of the victim is intact");
    assert_eq!(listing.damaged, vec![ids[4]]);
}

#[test]
fn blind_index_search_and_summaries() {
    let dir = tempfile::tempdir().unwrap();
    let (mut v, _) = new_vault(dir.path());
    let rep = v
        .import_ndjson(
            &[synthetic_ndjson("obs", 300)],
            &ImportOptions::default(),
            &mut ImportControl::default(),
        )
        .unwrap();
    assert_eq!(rep.records, 300);
    assert_eq!(v.find_by_type("Observation").unwrap().len(), 300);
    assert_eq!(v.find_by_type("Condition").unwrap().len(), 0);
    let one = v.find_by_code("http://loinc.org", "1005-5").unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].fhir_id, "obs-5");
    assert_eq!(one[0].category, RecordGroup::Observation);
    assert!(one[0].key_values.iter().any(|kv| kv.value == "0.5 mmol/L"));
    assert!(matches!(one[0].origin, Origin::Imported { .. }));
    let hits = v.search("GLUCOSE level", 1000).unwrap();
    assert_eq!(hits.len(), 300 / WORDS.len() + 1);
    assert!(v.search("nonexistent-term", 10).unwrap().is_empty());
    // Unknown resource types are kept and shown generically.
    let id = v
        .add_record(
            json!({"resourceType": "FamilyMemberHistory", "id": "f1", "status": "completed"}),
        )
        .unwrap();
    let r = v.get_record(&id).unwrap();
    assert_eq!(r.summary.category, RecordGroup::Other);
    assert_eq!(r.summary.title, "FamilyMemberHistory");
    v.delete_record(&id).unwrap();
    assert!(matches!(
        v.get_record(&id),
        Err(VaultError::NotFound { .. })
    ));
}

#[test]
fn malformed_import_names_line_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut v, _) = new_vault(dir.path());
    let mut f = synthetic_ndjson("obs", 10);
    f.data
        .extend_from_slice(b"{\"resourceType\": \"Observation\", \"id\": \"x\"\n");
    let err = v
        .import_ndjson(
            &[f],
            &ImportOptions::default(),
            &mut ImportControl::default(),
        )
        .unwrap_err();
    println!("{err}");
    assert!(matches!(
        &err,
        VaultError::Import {
            at: Position::Line { line: 11, .. },
            ..
        }
    ));
    assert_eq!(v.record_count().unwrap(), 0);
    // Bundle entry without resourceType, after good entries.
    let b = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": observation("a", 1)},
        {"resource": {"id": "nope"}},
    ]});
    let err = v
        .import_bundle(
            &serde_json::to_vec(&b).unwrap(),
            &ImportOptions::default(),
            &mut ImportControl::default(),
        )
        .unwrap_err();
    println!("{err}");
    assert!(matches!(
        &err,
        VaultError::Import {
            at: Position::Entry(1),
            ..
        }
    ));
    assert_eq!(v.record_count().unwrap(), 0);
    // Bad base64 in an attachment fails the whole import at its entry.
    let b = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": observation("a", 1)},
        {"resource": {"resourceType": "Binary", "id": "b", "contentType": "text/plain", "data": "!!!"}},
    ]});
    let err = v
        .import_bundle(
            &serde_json::to_vec(&b).unwrap(),
            &ImportOptions::default(),
            &mut ImportControl::default(),
        )
        .unwrap_err();
    assert!(matches!(
        &err,
        VaultError::Import {
            at: Position::Entry(1),
            ..
        }
    ));
    assert_eq!(v.record_count().unwrap(), 0);
    // Cancellation rolls back.
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let mut seen = 0;
    let mut cb = |p: ImportProgress| {
        seen = p.done;
        if p.done >= 64 {
            cancel.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    };
    let err = v
        .import_ndjson(
            &[synthetic_ndjson("obs", 500)],
            &ImportOptions::default(),
            &mut ImportControl {
                progress: Some(&mut cb),
                cancel: Some(&cancel),
            },
        )
        .unwrap_err();
    assert!(matches!(err, VaultError::Cancelled));
    assert_eq!(v.record_count().unwrap(), 0);
}

#[test]
fn attachments_are_chunked_and_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.sqlite");
    let (mut v, _) = Vault::create(&path, PASS, &opts()).unwrap();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let b64 = data_encoding::BASE64.encode(&data);
    let doc = json!({"resourceType": "DocumentReference", "id": "d1", "status": "current",
        "description": "scan", "content": [{"attachment": {"contentType": "application/pdf", "title": "scan.pdf", "data": b64}}]});
    let id = v.add_record(doc.clone()).unwrap();
    let n_chunks: i64 = Connection::open(&path)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM chunks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n_chunks, 4, "200 kB in 64 KiB chunks");
    let r = v.get_record(&id).unwrap();
    assert_eq!(r.resource, doc);
    assert_eq!(r.summary.attachments.len(), 1);
    assert_eq!(r.summary.attachments[0].size, 200_000);
    assert!(matches!(r.summary.signature, SignatureStatus::Valid { .. }));
    let att = v.attachment(&r.summary.attachments[0].id).unwrap();
    assert_eq!(&att[..], &data[..]);
    // Dropping the last chunk (truncation) is detected.
    Connection::open(&path)
        .unwrap()
        .execute("DELETE FROM chunks WHERE idx = 3", [])
        .unwrap();
    assert!(matches!(
        v.attachment(&r.summary.attachments[0].id),
        Err(VaultError::Tampered {
            what: "attachment",
            ..
        })
    ));
}

#[test]
fn provenance_signed_notes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut v, _) = new_vault(dir.path());
    let doctor = DeviceIdentity::from_root(&RootSecret::random(&mut rand_core::OsRng));
    let card = doctor
        .card("Dr. Test", Role::Doctor, Some("L-1"), 1)
        .unwrap();
    let note = json!({"resourceType": "Observation", "id": "note1", "status": "final",
        "code": {"text": "Follow-up note"}, "valueString": "Looks fine"});
    let sig = doctor.signing().sign(
        carekey_core::label::RECORD_SIG,
        &record_signing_bytes(&note),
    );
    let mut forged = note.clone();
    forged["valueString"] = json!("Looks terrible");
    assert!(matches!(
        v.accept_signed_record(forged, &card, &sig),
        Err(VaultError::BadSignature)
    ));
    let id = v.accept_signed_record(note, &card, &sig).unwrap();
    let r = v.get_record(&id).unwrap();
    assert_eq!(r.summary.author.as_deref(), Some("Dr. Test"));
    assert!(
        matches!(&r.summary.signature, SignatureStatus::Valid { signer, .. } if signer == "Dr. Test")
    );
    assert_eq!(r.summary.origin, Origin::Received);
    let own = v.add_record(observation("mine", 3)).unwrap();
    assert!(matches!(
        v.verify_record(&own).unwrap(),
        SignatureStatus::Valid { .. }
    ));
    let log = v.audit_log().unwrap();
    assert!(log.iter().any(
        |e| matches!(&e.event, AuditEvent::NoteAccepted { author, .. } if author == "Dr. Test")
    ));
}

#[test]
fn audit_chain_tamper_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.sqlite");
    let (mut v, _) = Vault::create(&path, PASS, &opts()).unwrap();
    for i in 0..4 {
        v.add_record(observation(&format!("o{i}"), i)).unwrap();
    }
    v.log_event(&AuditEvent::Shared {
        share_id: "00".repeat(16),
        grantee: "Dr. X".into(),
        records: 4,
    })
    .unwrap();
    v.export_bundle(None).unwrap();
    let head = v.verify_audit().unwrap();
    assert_eq!(head.seq, 7); // created, 4 adds, share, export
    let c = Connection::open(&path).unwrap();
    // 1. Alter entry 3's sealed body.
    let orig: Vec<u8> = c
        .query_row("SELECT entry FROM audit WHERE seq = 3", [], |r| r.get(0))
        .unwrap();
    let mut bad = orig.clone();
    let n = bad.len();
    bad[n - 5] ^= 0x80;
    c.execute("UPDATE audit SET entry = ?1 WHERE seq = 3", [&bad])
        .unwrap();
    let err = v.verify_audit().unwrap_err();
    println!("{err}");
    assert!(matches!(err, VaultError::AuditBroken { seq: 3, .. }));
    c.execute("UPDATE audit SET entry = ?1 WHERE seq = 3", [&orig])
        .unwrap();
    v.verify_audit().unwrap();
    // 2. Remove the last entry (truncation) and the middle one.
    c.execute("DELETE FROM audit WHERE seq = 7", []).unwrap();
    assert!(matches!(
        v.verify_audit(),
        Err(VaultError::AuditBroken { .. })
    ));
    c.execute("DELETE FROM audit WHERE seq = 5", []).unwrap();
    let err = v.verify_audit().unwrap_err();
    println!("{err}");
    assert!(matches!(err, VaultError::AuditBroken { seq: 6, .. }));
}

#[test]
fn recovery_phrase_backup_restore() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.sqlite");
    let (mut v, phrase) = Vault::create(&path, PASS, &opts()).unwrap();
    assert_eq!(phrase.expose_words().split(' ').count(), 24);
    assert_eq!(
        v.recovery_phrase().unwrap().expose_words(),
        phrase.expose_words()
    );
    let doc = json!({"resourceType": "Binary", "id": "bin", "contentType": "text/plain",
        "data": data_encoding::BASE64.encode(b"attached words")});
    let id = v.add_record(doc.clone()).unwrap();
    let pk = v.signing_public().unwrap();
    let owner = v.backup_owner_key(0).unwrap().public();
    let b1 = v.backup().unwrap();
    v.add_record(observation("later", 2)).unwrap();
    let b2 = v.backup().unwrap();
    assert_eq!((b1.version, b2.version), (1, 2));
    assert_eq!(b1.id, b2.id);
    assert_eq!(inspect_version(&b2.blob), 2);

    // Wrong phrase (valid words, other root) and invalid phrase.
    let other = RecoveryPhrase::from_root(&RootSecret::random(&mut rand_core::OsRng));
    let dest = dir.path().join("restored.sqlite");
    assert!(matches!(
        Vault::restore_backup(&dest, other.expose_words(), &b2.blob, 0, "p2", &opts()),
        Err(VaultError::WrongPhrase)
    ));
    let mut words: Vec<&str> = phrase.expose_words().split(' ').collect();
    words.swap(0, 1);
    let swapped = words.join(" ");
    assert!(matches!(
        Vault::restore_backup(&dest, &swapped, &b2.blob, 0, "p2", &opts()),
        Err(VaultError::InvalidPhrase) | Err(VaultError::WrongPhrase)
    ));
    assert!(matches!(
        Vault::restore_backup(&dest, "not a phrase", &b2.blob, 0, "p2", &opts()),
        Err(VaultError::InvalidPhrase)
    ));
    // Rollback refused.
    assert!(matches!(
        Vault::restore_backup(&dest, phrase.expose_words(), &b1.blob, 2, "p2", &opts()),
        Err(VaultError::Backup(_))
    ));
    // Unknown blob version.
    let mut t = b2.blob.clone();
    t[0] = 2;
    assert!(matches!(
        Vault::restore_backup(&dest, phrase.expose_words(), &t, 0, "p2", &opts()),
        Err(VaultError::Backup(_))
    ));
    // Tampered blob.
    let mut t = b2.blob.clone();
    let n = t.len();
    t[n - 1] ^= 1;
    assert!(Vault::restore_backup(&dest, phrase.expose_words(), &t, 0, "p2", &opts()).is_err());
    assert!(!dest.exists());

    let mut r = Vault::restore_backup(
        &dest,
        &phrase.expose_words().to_uppercase(),
        &b2.blob,
        2,
        "p2",
        &opts(),
    )
    .unwrap();
    assert_eq!(r.signing_public().unwrap(), pk, "identity re-created");
    assert_eq!(r.backup_owner_key(0).unwrap().public(), owner);
    assert_ne!(r.backup_owner_key(1).unwrap().public(), owner);
    assert_eq!(r.get_record(&id).unwrap().resource, doc);
    assert_eq!(r.list().unwrap().records.len(), 2);
    r.verify_audit().unwrap();
    drop(r);
    let mut r = Vault::open(&dest).unwrap();
    assert!(matches!(r.unlock(PASS), Err(VaultError::WrongPassphrase)));
    r.unlock("p2").unwrap();
    // The next backup of the restored vault continues the version counter.
    assert_eq!(r.backup().unwrap().version, 3);
    // Forgotten passphrase: unlock with the phrase and set a new one.
    drop(r);
    let mut r = Vault::open(&dest).unwrap();
    assert!(matches!(
        r.unlock_with_phrase(other.expose_words(), "p3"),
        Err(VaultError::WrongPhrase)
    ));
    r.unlock_with_phrase(phrase.expose_words(), "p3").unwrap();
    r.lock();
    r.unlock("p3").unwrap();
}

fn inspect_version(blob: &[u8]) -> u64 {
    carekey_vault::backup::inspect(blob).unwrap().version
}

#[test]
fn doctor_share_purge_by_source_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let (mut v, _) = new_vault(dir.path());
    let share = |id: u8, exp: u64| ImportOptions {
        source: Some("share".into()),
        share: Some(ShareSource {
            share_id: [id; 16],
            expires_at: exp,
            label: format!("patient {id}"),
        }),
    };
    v.import_ndjson(
        &[synthetic_ndjson("a", 20)],
        &share(1, 1000),
        &mut ImportControl::default(),
    )
    .unwrap();
    v.import_ndjson(
        &[synthetic_ndjson("b", 30)],
        &share(2, 5000),
        &mut ImportControl::default(),
    )
    .unwrap();
    v.add_record(observation("own", 1)).unwrap();
    let l = v.list().unwrap();
    assert_eq!(l.records.len(), 51);
    assert!(l.records.iter().any(|r| matches!(
        &r.origin,
        Origin::Shared {
            expires_at: 1000,
            ..
        }
    )));
    // Same Type/id from two shares (and own data) never collide.
    v.import_ndjson(
        &[synthetic_ndjson("same", 2)],
        &share(1, 1000),
        &mut ImportControl::default(),
    )
    .unwrap();
    v.import_ndjson(
        &[synthetic_ndjson("same", 2)],
        &share(2, 5000),
        &mut ImportControl::default(),
    )
    .unwrap();
    assert_eq!(v.record_count().unwrap(), 55);
    assert_eq!(v.purge_expired(2000).unwrap(), 22);
    assert_eq!(v.record_count().unwrap(), 33);
    assert_eq!(v.purge_source(&[2; 16], PurgeReason::Revoked).unwrap(), 32);
    assert_eq!(v.record_count().unwrap(), 1);
    let terms: i64 = Connection::open(v.path())
        .unwrap()
        .query_row("SELECT COUNT(DISTINCT record) FROM terms", [], |r| r.get(0))
        .unwrap();
    assert_eq!(terms, 1, "index rows cascade");
    v.verify_audit().unwrap();
}

/// Doctor-side provenance: a shared record names its share (id, expiry, label); the records of
/// one share are listed through the blind index; a copy is replaced in one transaction (a bad
/// new copy leaves the old one in place); summaries stored before `share_id` existed still read.
#[test]
fn shared_records_name_their_share_and_are_replaced_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let (mut v, _) = new_vault(dir.path());
    let source = |id: u8, exp: u64| ShareSource {
        share_id: [id; 16],
        expires_at: exp,
        label: format!("patient {id}"),
    };
    let opts = |id: u8, exp: u64| ImportOptions {
        source: Some("shared by patient".into()),
        share: Some(source(id, exp)),
    };
    let bundle = |prefix: &str, n: usize| {
        let entries: Vec<_> = (0..n)
            .map(|i| json!({"resource": observation(&format!("{prefix}-{i}"), i)}))
            .collect();
        serde_json::to_vec(&json!({"resourceType": "Bundle", "type": "collection",
            "entry": entries}))
        .unwrap()
    };
    let ctl = &mut ImportControl::default();
    v.import_bundle(&bundle("a", 3), &opts(1, 1000), ctl)
        .unwrap();
    v.import_bundle(&bundle("b", 2), &opts(2, 5000), ctl)
        .unwrap();
    v.add_record(observation("own", 1)).unwrap();

    let one = v.list_source(&[1; 16]).unwrap();
    assert_eq!(one.len(), 3);
    for r in &one {
        assert_eq!(
            r.origin,
            Origin::Shared {
                share_id: "01".repeat(16),
                label: "patient 1".into(),
                expires_at: 1000,
            }
        );
    }
    assert_eq!(v.list_source(&[2; 16]).unwrap().len(), 2);
    assert!(v.list_source(&[3; 16]).unwrap().is_empty());
    let mut sources = v.sources().unwrap();
    sources.sort_by_key(|s| s.share_id);
    assert_eq!(sources, vec![source(1, 1000), source(2, 5000)]);

    // A new copy of share 1 replaces the old one (with a new expiry), one transaction.
    let r = v
        .replace_share(&bundle("a2", 4), &opts(1, 2000), ctl)
        .unwrap();
    assert_eq!(r.records, 4);
    let one = v.list_source(&[1; 16]).unwrap();
    assert_eq!(one.len(), 4);
    assert!(one.iter().all(|r| r.fhir_id.starts_with("a2-")
        && matches!(
            r.origin,
            Origin::Shared {
                expires_at: 2000,
                ..
            }
        )));
    assert_eq!(v.record_count().unwrap(), 4 + 2 + 1);
    let log = v.audit_log().unwrap();
    let n = log.len();
    assert!(matches!(
        &log[n - 2].event,
        AuditEvent::Purged {
            records: 3,
            reason: PurgeReason::Replaced,
            ..
        }
    ));
    assert!(matches!(
        &log[n - 1].event,
        AuditEvent::Imported { records: 4, .. }
    ));

    // A malformed new copy fails as a whole and leaves the previous copy in place.
    let mut bad: serde_json::Value = serde_json::from_slice(&bundle("a3", 2)).unwrap();
    bad["entry"][1]["resource"] = json!({"no": "resourceType"});
    let e = v
        .replace_share(&serde_json::to_vec(&bad).unwrap(), &opts(1, 3000), ctl)
        .unwrap_err();
    assert!(matches!(e, VaultError::Import { .. }), "{e}");
    assert_eq!(v.list_source(&[1; 16]).unwrap().len(), 4);
    assert!(v.sources().unwrap().contains(&source(1, 2000)));
    // The same through parsed resources (the doctor's client): a malformed one fails the
    // whole copy, naming its entry; a good set replaces the copy like a Bundle does.
    let resources = |b: &serde_json::Value| -> Vec<serde_json::Value> {
        b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"].clone())
            .collect()
    };
    let e = v
        .replace_share_resources(resources(&bad), &opts(1, 3000), ctl)
        .unwrap_err();
    assert!(
        matches!(
            &e,
            VaultError::Import {
                at: Position::Entry(1),
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(v.list_source(&[1; 16]).unwrap().len(), 4);
    let good: serde_json::Value = serde_json::from_slice(&bundle("a4", 5)).unwrap();
    let r = v
        .replace_share_resources(resources(&good), &opts(1, 2500), ctl)
        .unwrap();
    assert_eq!(r.records, 5);
    let one = v.list_source(&[1; 16]).unwrap();
    assert_eq!(one.len(), 5);
    assert!(one.iter().all(|r| r.fhir_id.starts_with("a4-")));
    assert!(v.sources().unwrap().contains(&source(1, 2500)));
    assert!(matches!(
        v.replace_share_resources(resources(&good), &ImportOptions::default(), ctl),
        Err(VaultError::InvalidArgument(_))
    ));
    // Replacing needs the share it replaces.
    assert!(matches!(
        v.replace_share(&bundle("x", 1), &ImportOptions::default(), ctl),
        Err(VaultError::InvalidArgument(_))
    ));
    v.verify_audit().unwrap();

    // Summaries written before the share id was kept read with an empty one.
    let old: Origin =
        serde_json::from_value(json!({"kind": "shared", "label": "patient 1", "expires_at": 1000}))
            .unwrap();
    assert_eq!(
        old,
        Origin::Shared {
            share_id: String::new(),
            label: "patient 1".into(),
            expires_at: 1000,
        }
    );
}

/// Copying the files off the device reveals nothing: no canary string in any byte.
#[test]
fn canary_scan_synthetic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.sqlite");
    let (mut v, _) = Vault::create(&path, PASS, &opts()).unwrap();
    let canaries = [
        "Zanzibarovich",
        "Quetzalcoatl-Hospital",
        "9988776655",
        "2013-07-14",
        "urn-canary-record-id",
        "Secret note about the knee",
    ];
    let pat = json!({"resourceType": "Patient", "id": "urn-canary-record-id",
        "name": [{"family": "Zanzibarovich", "given": ["Ilse"]}], "birthDate": "2013-07-14",
        "managingOrganization": {"display": "Quetzalcoatl-Hospital"}});
    let note = json!({"resourceType": "DocumentReference", "id": "n1", "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "9988776655"}]},
        "content": [{"attachment": {"contentType": "text/plain",
            "data": data_encoding::BASE64.encode(b"Secret note about the knee")}}]});
    v.add_record(pat).unwrap();
    let del = v.add_record(note.clone()).unwrap();
    v.delete_record(&del).unwrap();
    v.add_record(note).unwrap();
    v.search("knee", 10).unwrap();
    // While open (WAL and shm present) and after close (checkpointed).
    assert_no_canaries(dir.path(), &canaries);
    drop(v);
    assert_no_canaries(dir.path(), &canaries);
}

pub fn assert_no_canaries(dir: &std::path::Path, canaries: &[&str]) {
    let mut scanned = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        scanned += bytes.len();
        for c in canaries {
            for needle in [c.as_bytes().to_vec(), c.to_lowercase().into_bytes()] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                    "canary found in {}",
                    p.display()
                );
            }
        }
    }
    assert!(scanned > 0);
}

#[test]
fn app_state_is_sealed_bound_to_its_name_and_migrates_from_schema_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.sqlite");
    let (mut v, _) = Vault::create(&path, PASS, &opts()).unwrap();
    assert!(v.get_state("patient").unwrap().is_none());
    v.put_state("patient", b"canary-state-7731 shares and grants")
        .unwrap();
    v.put_state("doctor", b"other").unwrap();
    v.put_state("patient", b"canary-state-7731 v2").unwrap();
    assert_eq!(
        v.get_state("patient").unwrap().unwrap().as_slice(),
        b"canary-state-7731 v2"
    );
    v.lock();
    assert!(matches!(v.get_state("patient"), Err(VaultError::Locked)));
    v.unlock(PASS).unwrap();
    drop(v);
    // Nothing of it in clear on disk.
    let raw = std::fs::read(&path).unwrap();
    assert!(!raw.windows(17).any(|w| w == b"canary-state-7731"));
    // Moving one sealed value under another name is caught.
    let c = Connection::open(&path).unwrap();
    let rows: Vec<(Vec<u8>, Vec<u8>)> = c
        .prepare("SELECT tag, value FROM app_state")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(rows.len(), 2);
    c.execute(
        "UPDATE app_state SET value = ?1 WHERE tag = ?2",
        rusqlite::params![rows[1].1, rows[0].0],
    )
    .unwrap();
    let mut v = Vault::open(&path).unwrap();
    v.unlock(PASS).unwrap();
    let moved = ["patient", "doctor"]
        .iter()
        .filter(|n| matches!(v.get_state(n), Err(VaultError::Tampered { .. })))
        .count();
    assert_eq!(moved, 1);
    v.delete_state("patient").unwrap();
    v.delete_state("doctor").unwrap();
    drop(v);
    // A schema-1 file (no app_state table) is migrated on open.
    let c = Connection::open(&path).unwrap();
    c.execute_batch("DROP TABLE app_state; PRAGMA user_version = 1;")
        .unwrap();
    drop(c);
    let mut v = Vault::open(&path).unwrap();
    v.unlock(PASS).unwrap();
    v.put_state("patient", b"x").unwrap();
    assert_eq!(v.get_state("patient").unwrap().unwrap().as_slice(), b"x");
}

/// Imports and share copies update the search index in place, without decrypting every
/// summary again: after each write the listing (its order too, with equal dates) and a search
/// are what a fresh build gives after unlocking again, whether the index was built before the
/// write or not.
#[test]
fn the_index_a_write_updates_equals_a_fresh_build() {
    let dir = tempfile::tempdir().unwrap();
    let (mut v, _) = new_vault(dir.path());
    let ctl = &mut ImportControl::default();
    // `i % 4` in the date: several records share each date, so the tie order is checked.
    let bundle = |prefix: &str, n: usize| {
        let entries: Vec<_> = (0..n)
            .map(|i| json!({"resource": observation(&format!("{prefix}-{i}"), i % 4)}))
            .collect();
        serde_json::to_vec(&json!({"resourceType": "Bundle", "type": "collection",
            "entry": entries}))
        .unwrap()
    };
    let shared = || ImportOptions {
        source: Some("shared by patient".into()),
        share: Some(ShareSource {
            share_id: [1; 16],
            expires_at: 5000,
            label: "patient 1".into(),
        }),
    };
    let seen = |v: &mut Vault| (v.list().unwrap(), v.search("level", 1000).unwrap());
    let check = |v: &mut Vault, step: &str| {
        let (listed, found) = seen(v);
        v.lock();
        v.unlock(PASS).unwrap();
        let (fresh, fresh_found) = seen(v);
        assert_eq!(listed.records, fresh.records, "{step}: listing");
        assert_eq!(listed.damaged, fresh.damaged, "{step}: damaged rows");
        assert_eq!(found, fresh_found, "{step}: search");
        assert!(!found.is_empty(), "{step}: the search finds something");
    };

    // Index not built yet (a new vault).
    v.import_bundle(&bundle("a", 6), &ImportOptions::default(), ctl)
        .unwrap();
    check(&mut v, "first import");
    // Index built (`check` listed after unlocking): a share, then the same file again
    // (its records replaced), then a smaller copy of the share replacing the first.
    v.add_record(observation("own", 2)).unwrap();
    v.list().unwrap();
    v.import_bundle(&bundle("s", 5), &shared(), ctl).unwrap();
    check(&mut v, "a share");
    v.list().unwrap();
    v.import_bundle(&bundle("a", 6), &ImportOptions::default(), ctl)
        .unwrap();
    check(&mut v, "the same file again");
    v.list().unwrap();
    v.replace_share(&bundle("t", 3), &shared(), ctl).unwrap();
    check(&mut v, "a copy replaced");
    // Index not built (just unlocked), then a copy replaced.
    v.lock();
    v.unlock(PASS).unwrap();
    v.replace_share(&bundle("u", 4), &shared(), ctl).unwrap();
    check(&mut v, "a copy replaced after unlock");
    assert_eq!(v.record_count().unwrap(), 6 + 1 + 4);
}
