//! The doctor's vault copy of a share (DESIGN.md "Expiry is enforced twice", "the revoked
//! doctor's app gets 410 and purges"): stored tagged with the grant's expiry, purged on 410
//! with the reason logged, purged on expiry on the device's clock, and swept by the relay.

mod common;

use std::time::Duration;

use carekey_client::doctor::Doctor;
use carekey_client::patient::{Patient, ShareOptions};
use carekey_client::progress::{Cancel, NoProgress};
use carekey_client::relay::Relay;
use carekey_client::store::SyncOutcome;
use carekey_core::grant::Policy;
use carekey_core::keys::Role;
use carekey_vault::{AuditEvent, PurgeReason, Vault};
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

async fn share(relay: &str, expires_at: u64) -> (Patient, [u8; 16], usize) {
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
        .sync_to_vault(link, &mut vault, &NoProgress, &cancel)
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
        .sync_to_vault(link, &mut vault, &NoProgress, &cancel)
        .await
        .expect("stored again");
    assert_eq!(vault.record_count().expect("count"), n);
    let hits = vault.find_by_type("Binary").expect("search");
    assert_eq!(hits.len(), 1, "the attachment is stored as a Binary");

    patient
        .revoke(&sid, rel, &NoProgress, &cancel)
        .await
        .expect("revoke");
    let out = doctor
        .sync_to_vault(link, &mut vault, &NoProgress, &cancel)
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
        .sync_to_vault(link, &mut vault, &NoProgress, &cancel)
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
    let _ = Doctor::patient(&doctor, link).expect("link is remembered");
    assert_eq!(
        doctor
            .fetch(link, &NoProgress, &cancel)
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
