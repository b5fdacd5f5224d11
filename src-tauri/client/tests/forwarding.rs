//! Forwarding to a colleague end to end through a real relay process, three parties
//! (docs/protocol.md "Forwarding"): policy `ask` (request, approve, decline),
//! `allowed` (delegation with a notice the patient verifies, re-keys passed down the tree,
//! cascade on revoke) and `never` (refused before anything is sent).

mod common;

use carekey_client::ClientError;
use carekey_client::doctor::Doctor;
use carekey_client::patient::{Patient, ShareOptions, summarize};
use carekey_client::progress::{Cancel, NoProgress};
use carekey_client::relay::Relay;
use carekey_core::forward::ColleagueInvite;
use carekey_core::grant::{Category, Policy, Scope};
use carekey_core::keys::{Role, SigningSecret};
use common::{identity, in_a_day, pair, share_items, start_relay};
use rand_core::OsRng;

async fn patient_with_share(
    url: &str,
    policy: Policy,
    depth: u8,
) -> (
    Patient,
    carekey_client::ShareId,
    Vec<carekey_client::patient::ShareItem>,
) {
    let (pid, pcard) = identity("Pat Example", Role::Patient);
    let mut patient = Patient::new(pid, pcard, Relay::new(url).expect("relay URL"));
    let items = share_items(200_000);
    let share = patient
        .create_share(
            items.clone(),
            ShareOptions {
                expires_at: in_a_day(),
                policy,
                delegation_depth: depth,
            },
            &NoProgress,
            &Cancel::new(),
        )
        .await
        .expect("share uploads");
    (patient, share, items)
}

fn colleague(name: &str) -> Doctor {
    let (id, card) = identity(name, Role::Doctor);
    Doctor::new(id, card)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_policy_request_approve_and_decline() {
    let relay = start_relay();
    let cancel = Cancel::new();
    let (mut patient, share, items) = patient_with_share(&relay.url, Policy::Ask, 0).await;
    let (mut ada, link, rel) = pair(&mut patient, &share, "Dr. Ada Quinn").await;
    assert_eq!(ada.forward_rights(&link).expect("link").policy, Policy::Ask);

    // The colleague hands Ada a signed invite; Ada asks for documents only.
    let mut cole = colleague("Dr. Cole Reyes");
    let carekey_client::doctor::Invitation { id: handle, invite } = cole
        .invite(ada.relay_url(&link).expect("link"), 300)
        .await
        .expect("invite");
    // A borrowed card: Cole's name with a reader key of Ada's choosing is refused by Ada's
    // own client before anything is sent.
    let borrowed = ColleagueInvite {
        reader_key: SigningSecret::random(&mut OsRng).public(),
        ..invite.clone()
    };
    let err = ada
        .request_forward(&link, &borrowed, None, "second opinion")
        .await
        .expect_err("borrowed card refused");
    assert_eq!(err.code(), "tampered");
    let docs = Scope::new(&[Category::Documents], vec![]).expect("scope");
    let hash = ada
        .request_forward(
            &link,
            &invite,
            Some(docs.clone()),
            "Second opinion on the letter",
        )
        .await
        .expect("request sent");

    // The patient sees who asks, for whom, what and why.
    patient.inbox(&rel, 5).await.expect("inbox");
    let reqs = patient.forward_requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].from_name, "Dr. Ada Quinn");
    assert_eq!(reqs[0].colleague.body.name, "Dr. Cole Reyes");
    assert_eq!(reqs[0].scope, docs);
    assert_eq!(reqs[0].reason, "Second opinion on the letter");
    let crel = patient
        .answer_forward(&reqs[0].id, true)
        .await
        .expect("approve")
        .expect("new relationship");
    assert!(patient.forward_requests().is_empty());

    // Cole receives the patient's own grant and reads exactly the documents.
    let clink = cole
        .accept_introduction(&handle, 10, &cancel)
        .await
        .expect("introduction verifies");
    assert_eq!(
        cole.patient(&clink).expect("linked").body.name,
        "Pat Example"
    );
    let got = cole
        .fetch(&clink, &NoProgress, &cancel)
        .await
        .expect("colleague fetches");
    let want: Vec<_> = items
        .iter()
        .filter(|i| i.category == Category::Documents)
        .collect();
    assert_eq!(got.len(), want.len());
    assert_eq!(got[0].data.as_slice(), want[0].data.as_slice());
    // Ada learns the answer.
    ada.sync(&link, 5).await.expect("sync");
    assert_eq!(ada.forward_answer(&link, &hash), Some(true));

    // The colleague is a relationship of the patient's own: notes flow, the log names him.
    let note = serde_json::json!({"resourceType": "Observation", "status": "final",
        "code": {"text": "Second opinion"}, "valueString": "agree"});
    cole.send_note(&clink, &note).await.expect("note");
    let notes = patient.inbox(&crel, 5).await.expect("colleague's note");
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].author.body.name, "Dr. Cole Reyes");
    let log = patient.access_log(&share).await.expect("log verifies");
    assert!(
        summarize(&log)
            .iter()
            .any(|s| s.who == "Dr. Cole Reyes" && s.fetched >= 2)
    );

    // Declined: the asking doctor hears "no", the colleague gets nothing.
    let mut dana = colleague("Dr. Dana Voss");
    let carekey_client::doctor::Invitation {
        id: dh,
        invite: dinv,
    } = dana
        .invite(ada.relay_url(&link).expect("link"), 300)
        .await
        .expect("invite");
    let hash2 = ada
        .request_forward(&link, &dinv, None, "referral")
        .await
        .expect("request sent");
    patient.inbox(&rel, 5).await.expect("inbox");
    let id = patient.forward_requests()[0].id;
    assert_eq!(
        patient.answer_forward(&id, false).await.expect("decline"),
        None
    );
    ada.sync(&link, 5).await.expect("sync");
    assert_eq!(ada.forward_answer(&link, &hash2), Some(false));
    let err = dana
        .accept_introduction(&dh, 1, &cancel)
        .await
        .expect_err("nothing arrives");
    assert_eq!(err.code(), "no_answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_policy_delegates_with_notice_rekey_and_cascade() {
    let relay = start_relay();
    let cancel = Cancel::new();
    let (mut patient, share, items) = patient_with_share(&relay.url, Policy::Allowed, 1).await;
    let (mut ada, link, rel_a) = pair(&mut patient, &share, "Dr. Ada Quinn").await;
    let (mut ben, blink, rel_b) = pair(&mut patient, &share, "Dr. Ben Stone").await;

    let mut cole = colleague("Dr. Cole Reyes");
    let carekey_client::doctor::Invitation { id: handle, invite } = cole
        .invite(ada.relay_url(&link).expect("link"), 300)
        .await
        .expect("invite");
    ada.delegate(&link, &invite, None, None)
        .await
        .expect("delegation registers");
    let clink = cole
        .accept_introduction(&handle, 10, &cancel)
        .await
        .expect("delegated introduction verifies");
    assert_eq!(
        cole.fetch(&clink, &NoProgress, &cancel)
            .await
            .expect("colleague fetches")
            .len(),
        items.len()
    );
    // Depth 1 was used up: Cole cannot delegate further, and has no channel to the patient.
    let mut eve = colleague("Dr. Eve Marsh");
    let carekey_client::doctor::Invitation {
        id: _,
        invite: einv,
    } = eve
        .invite(cole.relay_url(&clink).expect("link"), 300)
        .await
        .expect("invite");
    assert_eq!(
        cole.delegate(&clink, &einv, None, None)
            .await
            .expect_err("depth exhausted")
            .code(),
        "not_allowed"
    );
    assert_eq!(
        cole.send_note(&clink, &serde_json::json!({"resourceType": "Observation"}))
            .await
            .expect_err("no patient channel")
            .code(),
        "not_allowed"
    );

    // The patient sees the chain (verified against her own grant) and Cole in the log.
    let tree = patient.delegations(&share).await.expect("notices verify");
    assert_eq!(tree.len(), 1);
    assert_eq!(tree[0].by, "Dr. Ada Quinn");
    assert_eq!(tree[0].colleague, "Dr. Cole Reyes");
    assert_eq!(tree[0].root_relationship, rel_a);
    let log = patient.access_log(&share).await.expect("log verifies");
    assert!(summarize(&log).iter().any(|s| s.who == "Dr. Cole Reyes"));

    // Revoking Ben re-keys: Ada gets the new key and passes it down to Cole.
    patient
        .revoke(&share, &rel_b, &NoProgress, &cancel)
        .await
        .expect("revoke Ben");
    assert!(matches!(
        ben.fetch(&blink, &NoProgress, &cancel).await,
        Err(ClientError::AccessEnded)
    ));
    ada.fetch(&link, &NoProgress, &cancel)
        .await
        .expect("Ada follows the re-key");
    cole.fetch(&clink, &NoProgress, &cancel)
        .await
        .expect("Cole follows the re-key passed down by Ada");

    // Revoking Ada revokes everything below her.
    patient
        .revoke(&share, &rel_a, &NoProgress, &cancel)
        .await
        .expect("revoke Ada");
    assert!(matches!(
        ada.fetch(&link, &NoProgress, &cancel).await,
        Err(ClientError::AccessEnded)
    ));
    assert!(matches!(
        cole.fetch(&clink, &NoProgress, &cancel).await,
        Err(ClientError::AccessEnded)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_policy_is_refused_before_anything_is_sent() {
    let relay = start_relay();
    let (mut patient, share, _) = patient_with_share(&relay.url, Policy::Never, 0).await;
    let (mut ada, link, rel) = pair(&mut patient, &share, "Dr. Ada Quinn").await;
    let mut cole = colleague("Dr. Cole Reyes");
    let carekey_client::doctor::Invitation { id: _, invite } = cole
        .invite(ada.relay_url(&link).expect("link"), 300)
        .await
        .expect("invite");
    for r in [
        ada.request_forward(&link, &invite, None, "please")
            .await
            .map(|_| ()),
        ada.delegate(&link, &invite, None, None).await,
    ] {
        assert_eq!(r.expect_err("refused").code(), "not_allowed");
    }
    // Nothing reached the patient, nothing was registered.
    assert!(patient.inbox(&rel, 0).await.expect("inbox").is_empty());
    assert!(patient.forward_requests().is_empty());
    assert!(
        patient
            .delegations(&share)
            .await
            .expect("no notices")
            .is_empty()
    );
}
