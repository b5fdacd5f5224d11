//! A hostile relay operator edits the relay's own database while it runs: swapped blobs, a
//! rolled-back manifest, a truncated audit log. Every attack is detected by the clients with a
//! clear error, and nothing wrong is returned to be stored.

mod common;

use carekey_client::ClientError;
use carekey_client::patient::{Patient, ShareOptions};
use carekey_client::progress::{Cancel, NoProgress};
use carekey_client::relay::Relay;
use carekey_core::grant::Policy;
use carekey_core::keys::Role;
use common::{identity, in_a_day, pair, share_items, start_relay};

fn db(relay: &common::RelayProcess) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(relay.data.path().join("relay.sqlite3"))
        .expect("the relay's SQLite file opens");
    c.busy_timeout(std::time::Duration::from_secs(5))
        .expect("busy timeout");
    c
}

async fn setup() -> (
    common::RelayProcess,
    Patient,
    carekey_client::ShareId,
    usize,
) {
    let relay = start_relay();
    let (pid, pcard) = identity("Pat Hostile", Role::Patient);
    let mut patient = Patient::new(pid, pcard, Relay::new(&relay.url).expect("url"));
    let share = patient
        .create_share(
            share_items(200_000),
            ShareOptions {
                expires_at: in_a_day(),
                policy: Policy::Never,
                delegation_depth: 0,
            },
            &NoProgress,
            &Cancel::new(),
        )
        .await
        .expect("share");
    let n = share_items(0).len();
    (relay, patient, share, n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_blobs_are_rejected() {
    let (relay, mut patient, share, n) = setup().await;
    let (mut doctor, link, _) = pair(&mut patient, &share, "Dr. Careful").await;
    assert_eq!(
        doctor
            .fetch(&link, &NoProgress, &Cancel::new())
            .await
            .expect("clean fetch")
            .len(),
        n
    );
    // The operator swaps the contents of two blobs of the share.
    let c = db(&relay);
    let rows: Vec<(Vec<u8>, Vec<u8>)> = c
        .prepare("SELECT blob_id, data FROM blobs WHERE share_id = ?1 ORDER BY blob_id LIMIT 2")
        .expect("prepare")
        .query_map([share.as_bytes().to_vec()], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(rows.len(), 2);
    for (i, (id, _)) in rows.iter().enumerate() {
        c.execute(
            "UPDATE blobs SET data = ?1 WHERE share_id = ?2 AND blob_id = ?3",
            rusqlite::params![rows[1 - i].1, share.as_bytes().to_vec(), id],
        )
        .expect("swap");
    }
    match doctor.fetch(&link, &NoProgress, &Cancel::new()).await {
        Err(ClientError::Tampered(_)) => {}
        other => panic!(
            "swapped blobs must be detected, got {:?}",
            other.map(|v| v.len())
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_manifest_is_rejected() {
    let (relay, mut patient, share, _) = setup().await;
    let (mut stays, link, _) = pair(&mut patient, &share, "Dr. Stays").await;
    let (_, _, gone_rel) = pair(&mut patient, &share, "Dr. Leaves").await;
    stays
        .fetch(&link, &NoProgress, &Cancel::new())
        .await
        .expect("clean fetch");
    let c = db(&relay);
    let (old_manifest, old_version): (Vec<u8>, i64) = c
        .query_row(
            "SELECT manifest, manifest_version FROM shares WHERE share_id = ?1",
            [share.as_bytes().to_vec()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("manifest row");
    patient
        .revoke(&share, &gone_rel, &NoProgress, &Cancel::new())
        .await
        .expect("revoke");
    stays
        .fetch(&link, &NoProgress, &Cancel::new())
        .await
        .expect("follows the re-key");
    // The operator serves the old manifest again (and could keep the old blobs around).
    c.execute(
        "UPDATE shares SET manifest = ?1, manifest_version = ?2 WHERE share_id = ?3",
        rusqlite::params![old_manifest, old_version, share.as_bytes().to_vec()],
    )
    .expect("roll back");
    match stays.fetch(&link, &NoProgress, &Cancel::new()).await {
        Err(ClientError::Tampered(_)) => {}
        other => panic!(
            "a rolled-back manifest must be rejected, got {:?}",
            other.map(|v| v.len())
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_or_rewritten_audit_log_raises_an_alert() {
    let (relay, mut patient, share, _) = setup().await;
    let (mut doctor, link, _) = pair(&mut patient, &share, "Dr. Watched").await;
    doctor
        .fetch(&link, &NoProgress, &Cancel::new())
        .await
        .expect("fetch");
    let events = patient.access_log(&share).await.expect("log verifies");
    assert!(!events.is_empty());
    // Hide the doctor's fetches: drop the last entries and point the head back.
    let c = db(&relay);
    let (seq, head): (i64, Vec<u8>) = c
        .query_row(
            "SELECT seq, entry_hash FROM audit WHERE share_id = ?1 ORDER BY seq DESC LIMIT 1 OFFSET 3",
            [share.as_bytes().to_vec()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("an older entry");
    c.execute(
        "DELETE FROM audit WHERE share_id = ?1 AND seq > ?2",
        rusqlite::params![share.as_bytes().to_vec(), seq],
    )
    .expect("truncate");
    c.execute(
        "UPDATE shares SET audit_seq = ?1, audit_head = ?2 WHERE share_id = ?3",
        rusqlite::params![seq, head, share.as_bytes().to_vec()],
    )
    .expect("rewind head");
    match patient.access_log(&share).await {
        Err(ClientError::Tampered(carekey_core::Error::AuditChain { .. })) => {}
        other => panic!("truncation must be caught, got {other:?}"),
    }
    // Rewriting an entry's body (a fetch turned into something else) breaks the chain too.
    c.execute(
        "UPDATE audit SET body = X'00' WHERE share_id = ?1 AND seq = 2",
        [share.as_bytes().to_vec()],
    )
    .expect("rewrite");
    assert!(patient.access_log(&share).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_pairing_reply_does_not_lock_out_the_doctor() {
    let (relay, mut patient, share, _) = setup().await;
    let mut session = patient.start_pairing(&share).await.expect("pairing opens");
    let qr = carekey_core::pairing::QrPayload::parse(&session.qr_text()).expect("parses");
    // Whoever saw the mailbox id answers first with junk.
    Relay::new(&relay.url)
        .expect("url")
        .reply_pairing(&carekey_client::PairingId(qr.pairing_id), vec![1; 200])
        .await
        .expect("the relay takes any bytes");
    let cancel = Cancel::new();
    match patient.wait_for_doctor(&mut session, 2, &cancel).await {
        Err(ClientError::Tampered(_)) => {}
        other => panic!("junk must be reported, got {other:?}"),
    }
    // The real doctor still gets through on the same QR.
    let (did, dcard) = identity("Dr. Late", Role::Doctor);
    let doctor = carekey_client::doctor::Doctor::new(did, dcard.clone());
    let scan = doctor.scan(&session.qr_text()).await.expect("scan");
    let door = patient
        .wait_for_doctor(&mut session, 10, &cancel)
        .await
        .expect("valid reply accepted");
    assert_eq!(door.card, dcard);
    assert_eq!(door.check_code, scan.check_code());
}
