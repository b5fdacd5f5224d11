//! The doctor's vault copy of a share (docs/protocol.md "Revocation and expiry": expiry is
//! enforced twice, the revoked doctor's app gets 410 and purges): stored tagged with the grant's expiry, purged on 410
//! with the reason logged, purged on expiry on the device's clock, and swept by the relay;
//! fetched with no vault held, then stored in one transaction, each record naming its share
//! and each attachment staying with its DocumentReference.

mod common;

use std::time::Duration;

use carekey_client::doctor::Doctor;
use carekey_client::patient::{Patient, ShareItem, ShareOptions};
use carekey_client::progress::{Cancel, NoProgress};
use carekey_client::relay::Relay;
use carekey_client::store::{FetchedShare, SyncOutcome};
use carekey_core::grant::Policy;
use carekey_core::keys::Role;
use carekey_vault::{AuditEvent, Origin, PurgeReason, Vault};
use common::{identity, in_a_day, pair, share_items, start_relay};

fn doctor_vault(dir: &tempfile::TempDir) -> Vault {
    common::test_vault(dir, "doctor.vault")
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

async fn share(relay: &str, expires_at: u64) -> (Patient, carekey_client::ShareId, usize) {
    let (pid, pcard) = identity("Pat Example", Role::Patient);
    let mut patient = Patient::new(pid, pcard, Relay::new(relay).expect("URL"));
    let items = share_items(300_000);
    let n = items.len();
    let id = patient
        .create_share(
            items,
            ShareOptions {
                expires_at,
                policy: Policy::Ask,
                delegation_depth: 0,
            },
            &NoProgress,
            &Cancel::new(),
        )
        .await
        .expect("share");
    (patient, id, n)
}

fn purges(v: &mut Vault) -> Vec<PurgeReason> {
    v.audit_log()
        .expect("audit verifies")
        .into_iter()
        .filter_map(|r| match r.event {
            AuditEvent::Purged { reason, .. } => Some(reason),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_then_purged_on_revoke_with_reason() {
    let relay = start_relay();
    let dir = tempfile::tempdir().expect("dir");
    let mut vault = doctor_vault(&dir);
    let cancel = Cancel::new();
    let (mut patient, sid, n) = share(&relay.url, in_a_day()).await;
    let (mut doctor, link, rel) = pair(&mut patient, &sid, "Dr. Ada Quinn").await;

    let out = doctor
        .sync_to_vault(&link, &mut vault, &NoProgress, &cancel)
        .await
        .expect("stored");
    assert_eq!(
        out,
        SyncOutcome::Stored {
            records: n,
            attachments: 1
        }
    );
    assert_eq!(vault.record_count().expect("count"), n);
    // A second sync replaces the copy rather than doubling it.
    doctor
        .sync_to_vault(&link, &mut vault, &NoProgress, &cancel)
        .await
        .expect("stored again");
    assert_eq!(vault.record_count().expect("count"), n);
    let hits = vault.find_by_type("Binary").expect("search");
    assert_eq!(hits.len(), 1, "the attachment is stored as a Binary");

    patient
        .revoke(&sid, &rel, &NoProgress, &cancel)
        .await
        .expect("revoke");
    let out = doctor
        .sync_to_vault(&link, &mut vault, &NoProgress, &cancel)
        .await
        .expect("purges");
    assert_eq!(
        out,
        SyncOutcome::Ended {
            purged: n,
            reason: PurgeReason::Revoked
        }
    );
    assert_eq!(vault.record_count().expect("count"), 0);
    assert_eq!(purges(&mut vault).last(), Some(&PurgeReason::Revoked));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_purges_on_the_device_and_the_relay_sweeps() {
    let relay = start_relay();
    let dir = tempfile::tempdir().expect("dir");
    let mut vault = doctor_vault(&dir);
    let cancel = Cancel::new();
    let expires = unix_now() + 4;
    let (mut patient, sid, n) = share(&relay.url, expires).await;
    let (mut doctor, link, _) = pair(&mut patient, &sid, "Dr. Ada Quinn").await;
    doctor
        .sync_to_vault(&link, &mut vault, &NoProgress, &cancel)
        .await
        .expect("stored");
    assert_eq!(vault.record_count().expect("count"), n);
    // Nothing is purged early.
    assert_eq!(doctor.purge_expired(&mut vault).expect("purge"), 0);

    while unix_now() <= expires + 1 {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Offline purge on the device's clock.
    assert_eq!(doctor.purge_expired(&mut vault).expect("purge"), n);
    assert_eq!(vault.record_count().expect("count"), 0);
    assert_eq!(purges(&mut vault).last(), Some(&PurgeReason::Expired));
    let _ = Doctor::patient(&doctor, &link).expect("link is remembered");
    assert_eq!(
        doctor
            .fetch(&link, &NoProgress, &cancel)
            .await
            .expect_err("ended")
            .code(),
        "access_ended"
    );

    // The relay sweeps the share (one-second sweeper in the harness).
    let db = relay.data.path().join("relay.sqlite3");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let c = rusqlite::Connection::open(&db).expect("relay db");
        let shares: i64 = c
            .query_row("SELECT count(*) FROM shares", [], |r| r.get(0))
            .expect("count");
        let blobs: i64 = c
            .query_row("SELECT count(*) FROM blobs", [], |r| r.get(0))
            .expect("count");
        if shares == 0 && blobs == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "relay kept an expired share ({shares} shares, {blobs} blobs)"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The doctor fetches with no vault, then stores in one short transaction; stored records name
/// their share (id, expiry, label) and are listed per share; an attachment stays with the
/// DocumentReference it belongs to (one without a slot is kept as a Binary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_without_vault_then_store_keeps_share_and_attachment_links() {
    let relay = start_relay();
    let dir = tempfile::tempdir().expect("dir");
    let cancel = Cancel::new();
    let (pid, pcard) = identity("Pat Example", Role::Patient);
    let mut patient = Patient::new(pid, pcard, Relay::new(&relay.url).expect("URL"));
    let letter: Vec<u8> = (0..70_000u32).map(|i| (i % 241) as u8).collect();
    let scan = b"a scan without a slot".to_vec();
    let doc_ref = serde_json::json!({"resourceType": "DocumentReference", "id": "letter",
        "status": "current", "type": {"text": "Discharge letter"},
        "content": [{"attachment": {"url": "https://example.org/elsewhere"}},
                    {"attachment": {"contentType": "application/pdf", "title": "letter.pdf"}}]});
    let cond = serde_json::json!({"resourceType": "Condition", "id": "c1",
        "code": {"text": "Asthma"}});
    let item = |id: u8, data: Vec<u8>, title: &str, attachment: bool| ShareItem {
        record_id: [id; 16],
        category: common::category_of("DocumentReference"),
        title: title.to_owned(),
        data: zeroize::Zeroizing::new(data),
        attachment,
    };
    let items = vec![
        item(
            1,
            serde_json::to_vec(&doc_ref).expect("json"),
            "DocumentReference",
            false,
        ),
        item(2, letter.clone(), "letter.pdf", true),
        item(
            3,
            serde_json::to_vec(&cond).expect("json"),
            "Condition",
            false,
        ),
        item(4, scan.clone(), "scan.png", true),
    ];
    let expires_at = in_a_day();
    let sid = patient
        .create_share(
            items,
            ShareOptions {
                expires_at,
                policy: Policy::Ask,
                delegation_depth: 0,
            },
            &NoProgress,
            &cancel,
        )
        .await
        .expect("share");
    let (mut doctor, link, rel) = pair(&mut patient, &sid, "Dr. Ada Quinn").await;

    // Network first, no vault in sight; then one short vault transaction.
    let fetched = doctor
        .fetch_share(&link, &NoProgress, &cancel)
        .await
        .expect("fetched");
    assert!(matches!(&fetched, FetchedShare::Records { records, .. } if records.len() == 4));
    let mut vault = doctor_vault(&dir);
    let out = fetched.store(&mut vault).expect("stored");
    assert_eq!(
        out,
        SyncOutcome::Stored {
            records: 3,
            attachments: 2
        }
    );
    let share_hex = sid.to_string();
    let listed = vault
        .list_source(sid.as_bytes())
        .expect("records of the share");
    assert_eq!(listed.len(), 3);
    for r in &listed {
        assert_eq!(
            r.origin,
            Origin::Shared {
                share_id: share_hex.clone(),
                label: "Pat Example".into(),
                expires_at,
            }
        );
    }
    // The letter is the DocumentReference's own attachment, in the slot it came from.
    let dr = vault
        .find_by_type("DocumentReference")
        .expect("lookup")
        .pop()
        .expect("stored");
    assert_eq!(dr.attachments.len(), 1);
    assert_eq!(dr.attachments[0].title.as_deref(), Some("letter.pdf"));
    assert_eq!(
        vault
            .attachment(&dr.attachments[0].id)
            .expect("opens")
            .as_slice(),
        &letter[..]
    );
    let full = vault.get_record(&dr.id).expect("record");
    assert!(
        full.resource["content"][0]["attachment"]
            .get("data")
            .is_none()
    );
    assert_eq!(
        full.resource["content"][1]["attachment"]["data"],
        data_encoding::BASE64.encode(&letter)
    );
    // The scan had no slot to go back to: it is a Binary of its own.
    let bin = vault.find_by_type("Binary").expect("lookup");
    assert_eq!(bin.len(), 1);
    assert_eq!(
        vault
            .attachment(&bin[0].attachments[0].id)
            .expect("opens")
            .as_slice(),
        &scan[..]
    );

    // A second copy replaces the first in one transaction (logged as replaced).
    doctor
        .fetch_share(&link, &NoProgress, &cancel)
        .await
        .expect("fetched again")
        .store(&mut vault)
        .expect("stored again");
    assert_eq!(vault.list_source(sid.as_bytes()).expect("list").len(), 3);
    assert_eq!(vault.record_count().expect("count"), 3);
    assert_eq!(purges(&mut vault).last(), Some(&PurgeReason::Replaced));

    // Revoked: the fetch says so without a vault, the store purges.
    patient
        .revoke(&sid, &rel, &NoProgress, &cancel)
        .await
        .expect("revoke");
    let ended = doctor
        .fetch_share(&link, &NoProgress, &cancel)
        .await
        .expect("ended is an outcome");
    assert!(matches!(
        ended,
        FetchedShare::Ended {
            reason: PurgeReason::Revoked,
            ..
        }
    ));
    assert_eq!(
        ended.store(&mut vault).expect("purged"),
        SyncOutcome::Ended {
            purged: 3,
            reason: PurgeReason::Revoked
        }
    );
    assert!(vault.list_source(sid.as_bytes()).expect("list").is_empty());
    assert_eq!(purges(&mut vault).last(), Some(&PurgeReason::Revoked));
}
