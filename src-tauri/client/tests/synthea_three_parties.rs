//! Every flow with real data and three parties through a real relay process: the largest
//! Synthea patient (every resource a record, every DocumentReference attachment a chunked
//! blob) is shared under policy `allowed`; the doctor scans, fetches and stores it in its
//! vault; delegates to a colleague who reads it too; writes a note back; the patient sees the
//! delegation and both readers in the access log; revokes the doctor, and both the doctor's
//! and the colleague's copies end (the doctor's vault purges, logging why).
//!
//! Needs `$CAREKEY_FIXTURES/synthea-10`; skipped with a message when absent unless
//! `CAREKEY_REQUIRE_FIXTURES=1`.

mod common;

use carekey_client::ClientError;
use carekey_client::doctor::Doctor;
use carekey_client::patient::{Patient, ShareOptions, summarize};
use carekey_client::progress::{Cancel, NoProgress};
use carekey_client::relay::Relay;
use carekey_client::store::SyncOutcome;
use carekey_core::grant::Policy;
use carekey_core::keys::Role;
use carekey_vault::{PurgeReason, Vault};
use common::{identity, in_a_day, pair, start_relay, synthea_largest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn largest_synthea_patient_through_every_flow() {
    let dir = std::env::var_os("CAREKEY_FIXTURES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
        });
    if !dir.join("synthea-10").is_dir() {
        assert!(
            std::env::var("CAREKEY_REQUIRE_FIXTURES").as_deref() != Ok("1"),
            "fixtures required but not found at {}",
            dir.display()
        );
        println!("skipped: Synthea fixtures not found at {}", dir.display());
        return;
    }
    let (items, resources, attachments) = synthea_largest(&dir);
    assert!(resources > 3000 && attachments > 500, "the largest patient");
    let relay = start_relay();
    let cancel = Cancel::new();
    let (pid, pcard) = identity("Synthea Patient", Role::Patient);
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
        .expect("share uploads");

    // Doctor: scan → grant → fetch → store in its vault.
    let (mut doctor, link, rel) = pair(&mut patient, &share, "Dr. Ada Quinn").await;
    let vdir = tempfile::tempdir().expect("dir");
    let (mut vault, _) = Vault::create(
        &vdir.path().join("doctor.vault"),
        "doctor pass",
        &common::quick_vault_options(),
    )
    .expect("vault");
    match doctor
        .sync_to_vault(&link, &mut vault, &NoProgress, &cancel)
        .await
        .expect("fetch, verify, store")
    {
        SyncOutcome::Stored {
            records,
            attachments: a,
        } => {
            // Each attachment goes back into its DocumentReference's empty slot (the doctor's
            // vault keeps the link), so the stored records are the FHIR resources.
            assert_eq!(records, resources);
            assert_eq!(a, attachments);
        }
        other => panic!("stored expected, got {other:?}"),
    }

    // Colleague, by delegation: reads the same records byte for byte.
    let (cid, ccard) = identity("Dr. Cole Reyes", Role::Doctor);
    let mut cole = Doctor::new(cid, ccard);
    let carekey_client::doctor::Invitation { id: handle, invite } =
        cole.invite(&relay.url, 300).await.expect("invite");
    doctor
        .delegate(&link, &invite, None, None)
        .await
        .expect("delegates");
    let clink = cole
        .accept_introduction(&handle, 10, &cancel)
        .await
        .expect("introduced");
    let got = cole
        .fetch(&clink, &NoProgress, &cancel)
        .await
        .expect("colleague reads");
    assert_eq!(got.len(), items.len());
    for (g, it) in got.iter().zip(&items) {
        assert_eq!(g.data.as_slice(), it.data.as_slice());
    }

    // Note back, delegation notice, access log naming both readers.
    doctor
        .send_note(
            &link,
            &serde_json::json!({"resourceType": "Observation", "status": "final",
                "code": {"text": "Reviewed the record"}}),
        )
        .await
        .expect("note");
    assert_eq!(patient.inbox(&rel, 5).await.expect("inbox").len(), 1);
    let tree = patient.delegations(&share).await.expect("notices verify");
    assert_eq!(tree.len(), 1);
    assert_eq!(tree[0].colleague, "Dr. Cole Reyes");
    let per = summarize(&patient.access_log(&share).await.expect("log verifies"));
    for who in ["Dr. Ada Quinn", "Dr. Cole Reyes"] {
        let n = per.iter().find(|s| s.who == who).map_or(0, |s| s.fetched);
        assert!(
            n > items.len(),
            "{who} fetched the manifest and every blob ({n})"
        );
    }

    // Revoke the doctor: the doctor's vault purges, the colleague's access ends with it.
    patient
        .revoke(&share, &rel, &NoProgress, &cancel)
        .await
        .expect("revoke");
    assert_eq!(
        doctor
            .sync_to_vault(&link, &mut vault, &NoProgress, &cancel)
            .await
            .expect("purges"),
        SyncOutcome::Ended {
            purged: resources,
            reason: PurgeReason::Revoked
        }
    );
    assert_eq!(vault.record_count().expect("count"), 0);
    assert!(matches!(
        cole.fetch(&clink, &NoProgress, &cancel).await,
        Err(ClientError::AccessEnded)
    ));
}
