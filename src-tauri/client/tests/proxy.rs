//! A hostile network (or relay front end) between the clients and a real relay process: an
//! HTTP proxy (`common/proxy.rs`) records every exchange and replays, reorders, drops,
//! duplicates and substitutes answers. Every attack is checked to have been applied (its rule
//! fired), is detected with a clear [`ClientError`], and nothing wrong is stored: the doctor's
//! vault keeps the previous good copy, the patient's vault and forward requests do not grow,
//! the access-log pin does not move (a later honest read still verifies).

mod common;
#[path = "common/proxy.rs"]
mod proxy;

use std::sync::Arc;
use std::time::Duration;

use carekey_client::ClientError;
use carekey_client::doctor::Doctor;
use carekey_client::note;
use carekey_client::patient::{AccessKind, Patient, ShareOptions};
use carekey_client::progress::{Cancel, NoProgress};
use carekey_client::relay::{Relay, hex_id};
use carekey_client::store::SyncOutcome;
use carekey_core::grant::Policy;
use carekey_core::keys::Role;
use carekey_core::pairing::QrPayload;
use carekey_relay_api as api;
use carekey_vault::Vault;
use common::{identity, in_a_day, pair, share_items};
use proxy::{Action, Proxy, Rule, ok_body, replay_of};

/// A vault with a cheap KDF: these tests are about what is stored, not the passphrase.
fn vault(dir: &tempfile::TempDir, name: &str) -> Vault {
    common::test_vault(dir, name)
}

fn options(policy: Policy, depth: u8) -> ShareOptions {
    ShareOptions {
        expires_at: in_a_day(),
        policy,
        delegation_depth: depth,
    }
}

/// Relay behind a proxy, and a patient (talking to the proxy) with one share.
async fn setup(
    policy: Policy,
    depth: u8,
) -> (
    common::RelayProcess,
    Proxy,
    Patient,
    carekey_client::ShareId,
) {
    let (relay, proxy) = proxy::start().await;
    let (pid, pcard) = identity("Pat Proxy", Role::Patient);
    let mut patient = Patient::new(pid, pcard, Relay::new(&proxy.url).expect("URL"));
    let share = patient
        .create_share(
            share_items(300_000),
            options(policy, depth),
            &NoProgress,
            &Cancel::new(),
        )
        .await
        .expect("share");
    (relay, proxy, patient, share)
}

fn share_path(share: &carekey_client::ShareId) -> String {
    format!("/v1/shares/{}", share)
}

/// `/v1/mailboxes/{id}/messages` of a recorded mailbox request.
fn mailbox_of(path: &str) -> String {
    let end = path.find("/messages").expect("a mailbox path") + "/messages".len();
    path[..end].to_owned()
}

/// The single recorded exchange in `since` that fetched a non-empty list of messages.
fn delivery(since: &[proxy::Exchange]) -> proxy::Exchange {
    let got: Vec<_> = since
        .iter()
        .filter(|e| {
            e.method == "GET"
                && e.path.contains("/messages?")
                && e.status == 200
                && serde_json::from_slice::<api::MailboxMessages>(&e.body)
                    .is_ok_and(|m| !m.messages.is_empty())
        })
        .cloned()
        .collect();
    assert_eq!(got.len(), 1, "exactly one delivery recorded");
    got[0].clone()
}

fn is_replay(e: &ClientError) -> bool {
    matches!(e, ClientError::Tampered(carekey_core::Error::Replay { .. }))
}

/// Sealed blobs the patient uploaded to `share` in `epoch`, in upload (= manifest) order:
/// (blob path as doctors GET it, sealed bytes).
fn uploaded_blobs(
    proxy: &Proxy,
    share: &carekey_client::ShareId,
    epoch: u32,
) -> Vec<(String, Vec<u8>)> {
    proxy
        .find("PUT", &format!("{}/blobs/", share_path(share)))
        .into_iter()
        .filter(|e| e.path.ends_with(&format!("?epoch={epoch}")))
        .map(|e| {
            let path = e.path.split('?').next().expect("path").to_owned();
            (path, e.req_body)
        })
        .collect()
}

/// Rewrites a batch answer (relay-formats.md "Batch fetch": `u32 length || bytes` per blob):
/// every frame found in `swap` is replaced by its pair, so the swap also reaches blobs the
/// doctor fetches in batches, not only those fetched alone with a GET.
fn swap_frames(swap: Vec<(Vec<u8>, Vec<u8>)>) -> Action {
    Action::Rewrite(Arc::new(move |body: &[u8]| {
        let mut frames = Vec::new();
        let mut rest = body;
        while let Some((len, tail)) = rest.split_first_chunk::<4>() {
            let (f, tail) = tail.split_at((u32::from_be_bytes(*len) as usize).min(tail.len()));
            frames.push(f.to_vec());
            rest = tail;
        }
        let mut out = Vec::with_capacity(body.len());
        for f in frames {
            let f = swap
                .iter()
                .find(|(from, _)| *from == f)
                .map_or(f, |(_, to)| to.clone());
            out.extend_from_slice(&(f.len() as u32).to_be_bytes());
            out.extend_from_slice(&f);
        }
        out
    }))
}

async fn rekey(
    patient: &mut Patient,
    share: &carekey_client::ShareId,
    rel: &carekey_client::RelationshipId,
) {
    patient
        .revoke(share, rel, &NoProgress, &Cancel::new())
        .await
        .expect("revoke");
}

// 1. Substituted blobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_of_another_share_or_an_old_epoch_is_rejected() {
    let (_relay, proxy, mut patient, a) = setup(Policy::Never, 0).await;
    let cancel = Cancel::new();
    // A second share of the same patient with the same records, under other keys.
    let b = patient
        .create_share(
            share_items(300_000),
            options(Policy::Never, 0),
            &NoProgress,
            &cancel,
        )
        .await
        .expect("share b");
    let (mut doctor, link, _) = pair(&mut patient, &a, "Dr. Careful").await;
    let (_, _, leaves) = pair(&mut patient, &a, "Dr. Leaves").await;
    let dir = tempfile::tempdir().expect("dir");
    let mut v = vault(&dir, "doctor.vault");
    let first = doctor
        .sync_to_vault(&link, &mut v, &NoProgress, &cancel)
        .await
        .expect("honest copy");
    assert!(matches!(first, SyncOutcome::Stored { .. }));
    let stored = v.record_count().expect("count");
    assert!(stored > 0);

    // Every blob of share A is answered with the same record's blob of share B.
    let (in_a, in_b) = (uploaded_blobs(&proxy, &a, 1), uploaded_blobs(&proxy, &b, 1));
    assert_eq!(in_a.len(), in_b.len());
    for ((path, _), (_, other)) in in_a.iter().zip(&in_b) {
        proxy.add(Rule::exact(
            "other share",
            "GET",
            path,
            ok_body(other.clone()),
        ));
    }
    let pairs = in_a
        .iter()
        .zip(&in_b)
        .map(|((_, a), (_, b))| (a.clone(), b.clone()))
        .collect();
    proxy.add(Rule::new(
        "other share",
        "POST",
        &format!("{}/fetch", share_path(&a)),
        swap_frames(pairs),
    ));
    let err = doctor
        .sync_to_vault(&link, &mut v, &NoProgress, &cancel)
        .await
        .expect_err("a blob of another share is refused");
    assert_eq!(err.code(), "tampered", "{err:?}");
    assert!(
        matches!(
            err,
            ClientError::Tampered(carekey_core::Error::HashMismatch)
        ),
        "{err:?}"
    );
    assert!(proxy.fired("other share") >= 1);
    assert_eq!(v.record_count().expect("count"), stored, "old copy kept");
    proxy.clear();

    // A re-key: epoch 2 under fresh ids and keys; the old epoch is deleted at the relay, but
    // the network kept a copy and serves epoch 1's blob of the same record.
    rekey(&mut patient, &a, &leaves).await;
    assert!(matches!(
        doctor
            .sync_to_vault(&link, &mut v, &NoProgress, &cancel)
            .await
            .expect("follows the re-key"),
        SyncOutcome::Stored { .. }
    ));
    let (old, new) = (uploaded_blobs(&proxy, &a, 1), uploaded_blobs(&proxy, &a, 2));
    assert_eq!(old.len(), new.len());
    for ((path, _), (_, stale)) in new.iter().zip(&old) {
        proxy.add(Rule::exact(
            "old epoch",
            "GET",
            path,
            ok_body(stale.clone()),
        ));
    }
    let pairs = new
        .iter()
        .zip(&old)
        .map(|((_, n), (_, o))| (n.clone(), o.clone()))
        .collect();
    proxy.add(Rule::new(
        "old epoch",
        "POST",
        &format!("{}/fetch", share_path(&a)),
        swap_frames(pairs),
    ));
    let err = doctor
        .sync_to_vault(&link, &mut v, &NoProgress, &cancel)
        .await
        .expect_err("an old epoch's blob is refused");
    assert_eq!(err.code(), "tampered", "{err:?}");
    assert!(
        matches!(
            err,
            ClientError::Tampered(carekey_core::Error::HashMismatch)
        ),
        "{err:?}"
    );
    assert!(proxy.fired("old epoch") >= 1);
    assert_eq!(v.record_count().expect("count"), stored, "old copy kept");
    proxy.clear();
    doctor
        .sync_to_vault(&link, &mut v, &NoProgress, &cancel)
        .await
        .expect("honest again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_answers_are_rejected() {
    let (_relay, proxy, mut patient, a) = setup(Policy::Never, 0).await;
    let cancel = Cancel::new();
    let (mut doctor, link, rel) = pair(&mut patient, &a, "Dr. Cut").await;
    let dir = tempfile::tempdir().expect("dir");
    let mut v = vault(&dir, "doctor.vault");
    doctor
        .sync_to_vault(&link, &mut v, &NoProgress, &cancel)
        .await
        .expect("honest copy");
    let stored = v.record_count().expect("count");
    let half: proxy::BodyEdit = Arc::new(|b: &[u8]| b[..b.len() / 2].to_vec());
    let s = share_path(&a);
    // Every batch answer, every blob fetched alone (the large attachment), then the
    // manifest, cut in half: a cut batch no longer splits into its frames (bad answer), a cut
    // blob or manifest fails its signed hash (tampered).
    for (name, method, fragment, code) in [
        ("half batches", "POST", format!("{s}/fetch"), "bad_response"),
        ("half blobs", "GET", format!("{s}/blobs/"), "tampered"),
        ("half manifest", "GET", format!("{s}/manifest"), "tampered"),
    ] {
        proxy.add(Rule::new(
            name,
            method,
            &fragment,
            Action::Rewrite(half.clone()),
        ));
        let err = doctor
            .sync_to_vault(&link, &mut v, &NoProgress, &cancel)
            .await
            .expect_err(name);
        assert_eq!(err.code(), code, "{name}: {err:?}");
        assert!(proxy.fired(name) >= 1, "{name}");
        assert_eq!(v.record_count().expect("count"), stored, "{name}");
        proxy.clear();
    }
    // A cut audit log or mailbox answer is not even JSON.
    proxy.add(
        Rule::new(
            "half log",
            "GET",
            &format!("{s}/audit"),
            Action::Rewrite(half.clone()),
        )
        .times(1),
    );
    let err = patient.access_log(&a).await.expect_err("half log");
    assert_eq!(err.code(), "bad_response", "{err:?}");
    assert_eq!(proxy.fired("half log"), 1);
    patient
        .access_log(&a)
        .await
        .expect("the honest log verifies");
    doctor
        .send_note(
            &link,
            &serde_json::json!({"resourceType": "Observation", "id": "x"}),
        )
        .await
        .expect("note");
    proxy.add(Rule::new("half messages", "GET", "/messages?", Action::Rewrite(half)).times(1));
    let err = patient.inbox(&rel, 5).await.expect_err("half messages");
    assert_eq!(err.code(), "bad_response", "{err:?}");
    assert_eq!(proxy.fired("half messages"), 1);
    assert_eq!(
        patient.inbox(&rel, 5).await.expect("inbox").len(),
        1,
        "the note still arrives once"
    );
}

// 2. An older manifest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_manifest_is_rejected() {
    let (_relay, proxy, mut patient, a) = setup(Policy::Never, 0).await;
    let cancel = Cancel::new();
    let (mut stays, link, _) = pair(&mut patient, &a, "Dr. Stays").await;
    let (_, _, leaves) = pair(&mut patient, &a, "Dr. Leaves").await;
    let dir = tempfile::tempdir().expect("dir");
    let mut v = vault(&dir, "doctor.vault");
    stays
        .sync_to_vault(&link, &mut v, &NoProgress, &cancel)
        .await
        .expect("v1");
    let manifest = format!("{}/manifest", share_path(&a));
    let v1 = proxy.find("GET", &manifest).pop().expect("v1 recorded");
    assert_eq!(v1.header(api::HEADER_MANIFEST_VERSION), Some("1"));
    rekey(&mut patient, &a, &leaves).await;
    stays
        .sync_to_vault(&link, &mut v, &NoProgress, &cancel)
        .await
        .expect("v2");
    let stored = v.record_count().expect("count");
    let v2 = proxy.find("GET", &manifest).pop().expect("v2 recorded");
    assert_eq!(v2.header(api::HEADER_MANIFEST_VERSION), Some("2"));

    // The network serves the version-1 manifest again, verbatim (signed by the patient). Every
    // version bump is a re-key, so the old manifest does not even open under the epoch-2 keys:
    // its sections sit under epoch-1 locators, so none of the doctor's epoch-2 sections is
    // found (the no-rollback guard behind it is never reached).
    proxy.add(Rule::exact(
        "old manifest",
        "GET",
        &manifest,
        replay_of(&v1),
    ));
    let err = stays
        .sync_to_vault(&link, &mut v, &NoProgress, &cancel)
        .await
        .expect_err("rollback refused");
    assert_eq!(err.code(), "tampered", "{err:?}");
    assert!(
        matches!(
            err,
            ClientError::Tampered(carekey_core::Error::Malformed {
                what: "sectioned manifest",
                ..
            })
        ),
        "{err:?}"
    );
    assert!(proxy.fired("old manifest") >= 1);
    assert_eq!(v.record_count().expect("count"), stored);
    // Also with its version header claiming to be new.
    proxy.clear();
    let mut headers = v1.headers.clone();
    for (k, val) in &mut headers {
        if k.eq_ignore_ascii_case(api::HEADER_MANIFEST_VERSION) {
            *val = "9".into();
        }
    }
    proxy.add(Rule::exact(
        "old manifest, new header",
        "GET",
        &manifest,
        Action::Respond {
            status: 200,
            headers,
            body: v1.body.clone(),
        },
    ));
    let err = stays
        .fetch(&link, &NoProgress, &cancel)
        .await
        .expect_err("the header is not what counts");
    assert_eq!(err.code(), "tampered", "{err:?}");
    assert!(
        matches!(
            err,
            ClientError::Tampered(carekey_core::Error::Malformed {
                what: "sectioned manifest",
                ..
            })
        ),
        "{err:?}"
    );
    assert!(proxy.fired("old manifest, new header") >= 1);
    proxy.clear();
    stays
        .sync_to_vault(&link, &mut v, &NoProgress, &cancel)
        .await
        .expect("honest again");
    assert_eq!(v.record_count().expect("count"), stored);
}

// 3. Pairing replies swapped for an attacker's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_pairing_reply_is_rejected_and_the_real_doctor_still_pairs() {
    let (_relay, proxy, mut patient, a) = setup(Policy::Never, 0).await;
    let cancel = Cancel::new();
    // An earlier, genuine pairing: its reply as the patient read it.
    let _ = pair(&mut patient, &a, "Dr. Earlier").await;
    let earlier = proxy
        .find("GET", "/v1/pairing/")
        .pop()
        .expect("earlier reply recorded");
    // Mallory scanned another QR of this patient: its reply as it was PUT.
    let other = patient.start_pairing(&a).await.expect("other QR");
    let (mid, mcard) = identity("Dr. Mallory", Role::Doctor);
    let mut mallory = Doctor::new(mid, mcard);
    let mscan = mallory.scan(&other.qr_text()).await.expect("mallory scans");
    let mallory_reply = proxy
        .find("PUT", "/v1/pairing/")
        .pop()
        .expect("mallory's reply recorded")
        .req_body;

    let mut session = patient.start_pairing(&a).await.expect("QR");
    let qr = QrPayload::parse(&session.qr_text()).expect("QR parses");
    let mailbox = format!("/v1/pairing/{}?", hex_id(&qr.pairing_id));
    proxy.add(Rule::new("mallory", "GET", &mailbox, ok_body(mallory_reply.clone())).times(1));
    proxy.add(Rule::new("earlier", "GET", &mailbox, replay_of(&earlier)).times(1));
    let err = patient
        .wait_for_doctor(&mut session, 2, &cancel)
        .await
        .expect_err("only attackers answered");
    assert_eq!(err.code(), "tampered", "{err:?}");
    assert!(
        matches!(
            err,
            ClientError::Tampered(carekey_core::Error::Decrypt { .. })
        ),
        "{err:?}"
    );
    assert_eq!(proxy.fired("mallory"), 1);
    assert_eq!(proxy.fired("earlier"), 1);

    // The real doctor answers the same QR; the attacker's reply comes first again.
    let (did, dcard) = identity("Dr. Real", Role::Doctor);
    let mut real = Doctor::new(did, dcard.clone());
    let scan = real.scan(&session.qr_text()).await.expect("real scan");
    proxy.add(Rule::new("mallory again", "GET", &mailbox, ok_body(mallory_reply)).times(1));
    let door = patient
        .wait_for_doctor(&mut session, 10, &cancel)
        .await
        .expect("the real doctor gets through");
    assert_eq!(proxy.fired("mallory again"), 1);
    assert_eq!(door.card, dcard);
    assert_eq!(door.check_code, scan.check_code());
    patient.confirm(session).await.expect("confirm");
    let link = real.wait_for_grant(scan, 10, &cancel).await.expect("grant");
    real.fetch(&link, &NoProgress, &cancel)
        .await
        .expect("the real doctor reads");
    // Mallory got nothing.
    assert_eq!(
        mallory
            .wait_for_grant(mscan, 1, &cancel)
            .await
            .expect_err("no grant for mallory")
            .code(),
        "no_answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_grant_is_rejected_and_the_real_grant_still_arrives() {
    let (_relay, proxy, mut patient, a) = setup(Policy::Never, 0).await;
    let cancel = Cancel::new();
    // An earlier doctor's genuine confirmation (patient card + grant), as it was delivered.
    let mark = proxy.mark();
    let _ = pair(&mut patient, &a, "Dr. Earlier").await;
    let earlier = delivery(&proxy.since(mark));
    let earlier_append = proxy
        .since(mark)
        .into_iter()
        .find(|e| e.method == "POST" && e.path.ends_with("/messages"))
        .expect("the confirmation's append recorded")
        .req_body;

    // A doctor whose pairing the patient never confirms gets only the other doctor's grant.
    let (sid, scard) = identity("Dr. Stranded", Role::Doctor);
    let mut stranded = Doctor::new(sid, scard);
    let sscan = stranded
        .scan(&patient.start_pairing(&a).await.expect("QR").qr_text())
        .await
        .expect("scan");
    proxy.add(Rule::new("other grant", "GET", "/messages?", replay_of(&earlier)).times(1));
    let err = stranded
        .wait_for_grant(sscan, 2, &cancel)
        .await
        .expect_err("another doctor's grant is refused");
    assert_eq!(err.code(), "tampered", "{err:?}");
    assert_eq!(proxy.fired("other grant"), 1);
    assert!(stranded.links().is_empty(), "nothing linked");

    // The real doctor: the network writes the other grant into its mailbox (with the write
    // capability it saw go by) just ahead of the patient's own.
    let (did, dcard) = identity("Dr. Real", Role::Doctor);
    let mut real = Doctor::new(did, dcard);
    let mut session = patient.start_pairing(&a).await.expect("QR");
    let scan = real.scan(&session.qr_text()).await.expect("scan");
    patient
        .wait_for_doctor(&mut session, 10, &cancel)
        .await
        .expect("reply");
    proxy.add(
        Rule::new(
            "other grant again",
            "POST",
            "/messages",
            Action::InjectBefore(earlier_append),
        )
        .times(1),
    );
    patient.confirm(session).await.expect("confirm");
    let injected = proxy.duplicates("other grant again");
    assert_eq!(injected.len(), 1);
    assert_eq!(
        injected[0].status, 201,
        "the relay stored the injection first"
    );
    let link = real
        .wait_for_grant(scan, 10, &cancel)
        .await
        .expect("the patient's grant still arrives");
    assert_eq!(proxy.fired("other grant again"), 1);
    assert_eq!(real.patient(&link).expect("linked").body.name, "Pat Proxy");
    assert_eq!(real.links().len(), 1, "one link only");
    real.fetch(&link, &NoProgress, &cancel)
        .await
        .expect("the real doctor reads");
}

// 4. Truncated and forked audit logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_or_forked_audit_log_is_rejected_and_the_pin_holds() {
    let (_relay, proxy, mut patient, a) = setup(Policy::Never, 0).await;
    let cancel = Cancel::new();
    let b = patient
        .create_share(
            share_items(0),
            options(Policy::Never, 0),
            &NoProgress,
            &cancel,
        )
        .await
        .expect("share b");
    patient.access_log(&b).await.expect("b's log");
    let audit_a = format!("{}/audit", share_path(&a));
    let log_b = proxy
        .find("GET", &format!("{}/audit", share_path(&b)))
        .pop()
        .expect("b's log recorded");
    let (mut doctor, link, _) = pair(&mut patient, &a, "Dr. Watched").await;
    doctor
        .fetch(&link, &NoProgress, &cancel)
        .await
        .expect("fetch");
    patient.access_log(&a).await.expect("first log");
    let older = proxy.find("GET", &audit_a).pop().expect("recorded");
    doctor
        .fetch(&link, &NoProgress, &cancel)
        .await
        .expect("fetch");
    let pinned = patient.access_log(&a).await.expect("pinned log");
    doctor
        .fetch(&link, &NoProgress, &cancel)
        .await
        .expect("fetch");

    let tampered = |name: &'static str, action: Action| {
        proxy.add(Rule::new(name, "GET", &audit_a, action).times(1));
        name
    };
    // (a) An older, genuinely signed log (the relay rolled back before the pin).
    let n = tampered("older log", replay_of(&older));
    let err = patient.access_log(&a).await.expect_err(n);
    assert!(
        matches!(
            err,
            ClientError::Tampered(carekey_core::Error::AuditChain { .. })
        ),
        "{err:?}"
    );
    // (b) Today's log with its last entries dropped, head kept. The client reads on from the
    // last entry it got (the relay pages its log), so the relay must keep hiding them: the
    // follow-up page is cut too, and the entries never reach the signed head.
    let n = "truncated";
    proxy.add(
        Rule::new(
            n,
            "GET",
            &audit_a,
            Action::Rewrite(Arc::new(|b: &[u8]| {
                let mut l: api::AuditLog = serde_json::from_slice(b).expect("log");
                let keep = l.entries.len().saturating_sub(2);
                l.entries.truncate(keep);
                serde_json::to_vec(&l).expect("json")
            })),
        )
        .times(2),
    );
    let err = patient.access_log(&a).await.expect_err(n);
    assert_eq!(err.code(), "tampered", "{err:?}");
    assert!(
        matches!(
            err,
            ClientError::Tampered(carekey_core::Error::AuditChain { .. })
        ),
        "{err:?}"
    );
    // (c) Truncated below the pin, head rewritten to an older genuinely signed one.
    let old_log: api::AuditLog = serde_json::from_slice(&older.body).expect("log");
    let n = tampered(
        "truncated, head rewritten",
        Action::Rewrite(Arc::new(move |b: &[u8]| {
            let mut l: api::AuditLog = serde_json::from_slice(b).expect("log");
            l.entries.retain(|e| e.seq <= old_log.head.seq);
            l.head = old_log.head.clone();
            serde_json::to_vec(&l).expect("json")
        })),
    );
    let err = patient.access_log(&a).await.expect_err(n);
    assert!(
        matches!(
            err,
            ClientError::Tampered(carekey_core::Error::AuditChain { .. })
        ),
        "{err:?}"
    );
    // (d) A fork: another share's log, signed by the same relay.
    let n = tampered("forked", replay_of(&log_b));
    let err = patient.access_log(&a).await.expect_err(n);
    assert_eq!(err.code(), "tampered", "{err:?}");
    assert!(
        matches!(
            err,
            ClientError::Tampered(carekey_core::Error::AuditChain { .. })
        ),
        "{err:?}"
    );
    for n in ["older log", "truncated, head rewritten", "forked"] {
        assert_eq!(proxy.fired(n), 1, "{n}");
    }
    assert_eq!(
        proxy.fired("truncated"),
        2,
        "first page and the follow-up page"
    );
    // The pin did not move: the honest log still extends it, with every fetch in it.
    let honest = patient.access_log(&a).await.expect("honest log verifies");
    let fetches = |ev: &[carekey_client::patient::AccessEvent]| {
        ev.iter()
            .filter(|e| e.who == "Dr. Watched")
            .map(|e| match &e.what {
                AccessKind::Fetched { objects } => objects.len(),
                AccessKind::Relay(_) | AccessKind::LinkDownloaded { .. } => 0,
            })
            .sum::<usize>()
    };
    let per_fetch = share_items(0).len() + 1;
    assert_eq!(fetches(&pinned), 2 * per_fetch);
    assert_eq!(fetches(&honest), 3 * per_fetch, "every fetch, none hidden");
    // Reads after the first fetch only what was appended, starting at the pinned entry.
    let pin_seq = proxy
        .find("GET", &audit_a)
        .iter()
        .filter_map(|e| {
            e.path
                .split("from=")
                .nth(1)?
                .split('&')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .max()
        .expect("audit reads recorded");
    assert!(pin_seq > 1, "incremental reads start at the pin, not at 1");
    let again = patient.access_log(&a).await.expect("nothing new verifies");
    assert_eq!(again, honest, "the same events, kept from earlier reads");
    let last = proxy.find("GET", &audit_a).pop().expect("recorded");
    let read_from: u64 = last
        .path
        .split("from=")
        .nth(1)
        .and_then(|f| f.split('&').next()?.parse().ok())
        .expect("from");
    let body: api::AuditLog = serde_json::from_slice(&last.body).expect("log");
    assert_eq!(
        read_from, body.head.seq,
        "only the pinned entry was read again"
    );
    assert_eq!(body.entries.len(), 1);
}

// 5. Replayed relationship messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_note_is_rejected_and_not_stored_twice() {
    let (_relay, proxy, mut patient, a) = setup(Policy::Ask, 0).await;
    let (mut doctor, link, rel) = pair(&mut patient, &a, "Dr. Ada Quinn").await;
    let resource = serde_json::json!({"resourceType": "Observation", "id": "bp-1",
        "status": "final", "code": {"text": "Blood pressure"}, "valueString": "120/80"});
    doctor.send_note(&link, &resource).await.expect("note");
    let dir = tempfile::tempdir().expect("dir");
    let mut v = vault(&dir, "patient.vault");
    let mark = proxy.mark();
    let notes = patient.inbox(&rel, 5).await.expect("inbox");
    assert_eq!(notes.len(), 1);
    note::accept(&mut v, &notes[0]).expect("accepted");
    assert_eq!(v.record_count().expect("count"), 1);
    let delivered = delivery(&proxy.since(mark));

    proxy.add(
        Rule::new(
            "old note",
            "GET",
            &mailbox_of(&delivered.path),
            replay_of(&delivered),
        )
        .times(1),
    );
    let err = patient.inbox(&rel, 0).await.expect_err("replay refused");
    assert!(is_replay(&err), "{err:?}");
    assert_eq!(err.code(), "tampered");
    assert_eq!(proxy.fired("old note"), 1);
    assert_eq!(v.record_count().expect("count"), 1, "not stored twice");
    // The channel still works for the next genuine note.
    doctor.send_note(&link, &resource).await.expect("note 2");
    assert_eq!(patient.inbox(&rel, 5).await.expect("inbox").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_grant_introduction_is_rejected() {
    let (_relay, proxy, mut patient, a) = setup(Policy::Allowed, 1).await;
    let cancel = Cancel::new();
    let (mut ada, link, _) = pair(&mut patient, &a, "Dr. Ada Quinn").await;
    let (cid, ccard) = identity("Dr. Cole Reyes", Role::Doctor);
    let mut cole = Doctor::new(cid, ccard);
    let carekey_client::doctor::Invitation { id: handle, invite } =
        cole.invite(&proxy.url, 300).await.expect("invite");
    ada.delegate(&link, &invite, None, None)
        .await
        .expect("delegates");
    let mark = proxy.mark();
    let clink = cole
        .accept_introduction(&handle, 10, &cancel)
        .await
        .expect("accepted");
    let delivered = delivery(&proxy.since(mark));
    proxy.add(
        Rule::new(
            "old grant",
            "GET",
            &mailbox_of(&delivered.path),
            replay_of(&delivered),
        )
        .times(1),
    );
    let err = cole.sync(&clink, 0).await.expect_err("replay refused");
    assert!(is_replay(&err), "{err:?}");
    assert_eq!(proxy.fired("old grant"), 1);
    assert_eq!(cole.links().len(), 1, "no second link");
    cole.fetch(&clink, &NoProgress, &cancel)
        .await
        .expect("the link still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_epoch_update_is_rejected() {
    let (_relay, proxy, mut patient, a) = setup(Policy::Never, 0).await;
    let cancel = Cancel::new();
    let (mut stays, link, _) = pair(&mut patient, &a, "Dr. Stays").await;
    let (_, _, leaves) = pair(&mut patient, &a, "Dr. Leaves").await;
    rekey(&mut patient, &a, &leaves).await;
    let mark = proxy.mark();
    stays.sync(&link, 5).await.expect("epoch 2 arrives");
    let delivered = delivery(&proxy.since(mark));
    stays
        .fetch(&link, &NoProgress, &cancel)
        .await
        .expect("epoch 2 reads");
    proxy.add(
        Rule::new(
            "old update",
            "GET",
            &mailbox_of(&delivered.path),
            replay_of(&delivered),
        )
        .times(1),
    );
    let err = stays.sync(&link, 0).await.expect_err("replay refused");
    assert!(is_replay(&err), "{err:?}");
    assert_eq!(proxy.fired("old update"), 1);
    stays
        .fetch(&link, &NoProgress, &cancel)
        .await
        .expect("still on epoch 2");
}

// 6. Duplicated requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_owner_writes_are_refused_by_the_counter() {
    let (_relay, proxy) = proxy::start().await;
    let cancel = Cancel::new();
    let dup = Action::Duplicate(Duration::ZERO);
    proxy.add(Rule::new(
        "manifest twice",
        "PUT",
        "/manifest?",
        dup.clone(),
    ));
    proxy.add(Rule::new("token twice", "POST", "/tokens", dup));
    let (pid, pcard) = identity("Pat Proxy", Role::Patient);
    let mut patient = Patient::new(pid, pcard, Relay::new(&proxy.url).expect("URL"));
    let a = patient
        .create_share(
            share_items(300_000),
            options(Policy::Never, 0),
            &NoProgress,
            &cancel,
        )
        .await
        .expect("share");
    let (mut doctor, link, _) = pair(&mut patient, &a, "Dr. Once").await;
    doctor
        .fetch(&link, &NoProgress, &cancel)
        .await
        .expect("reads");
    for name in ["manifest twice", "token twice"] {
        assert_eq!(proxy.fired(name), 1, "{name}");
        let d = proxy.duplicates(name);
        assert_eq!(d.len(), 1, "{name}");
        assert_eq!(d[0].status, 409, "{name}");
        let body: api::ErrorBody = serde_json::from_slice(&d[0].body).expect("error body");
        assert_eq!(body.error, "counter_replayed", "{name}");
    }
    proxy.clear();
    // The relay acted once: one token registration (2), one manifest swap (6).
    let log = patient.access_log(&a).await.expect("log");
    let count = |k: u8| {
        log.iter()
            .filter(|e| e.what == AccessKind::Relay(k))
            .count()
    };
    assert_eq!(count(2), 1);
    assert_eq!(count(6), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_message_is_dropped_by_the_replay_guard() {
    let (_relay, proxy, mut patient, a) = setup(Policy::Ask, 0).await;
    let (mut doctor, link, rel) = pair(&mut patient, &a, "Dr. Ada Quinn").await;
    // The copy reaches the relay after the patient read the original.
    proxy.add(
        Rule::new(
            "note twice",
            "POST",
            "/messages",
            Action::Duplicate(Duration::from_millis(700)),
        )
        .times(1),
    );
    let resource = serde_json::json!({"resourceType": "Observation", "id": "t-1",
        "status": "final", "code": {"text": "Temperature"}, "valueString": "37.1 C"});
    doctor.send_note(&link, &resource).await.expect("note");
    let dir = tempfile::tempdir().expect("dir");
    let mut v = vault(&dir, "patient.vault");
    let notes = patient.inbox(&rel, 5).await.expect("inbox");
    assert_eq!(notes.len(), 1);
    note::accept(&mut v, &notes[0]).expect("accepted");
    let err = patient
        .inbox(&rel, 5)
        .await
        .expect_err("the copy is refused");
    assert!(is_replay(&err), "{err:?}");
    assert_eq!(proxy.fired("note twice"), 1);
    let d = proxy.duplicates("note twice");
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].status, 201, "the relay stored the copy");
    assert_eq!(v.record_count().expect("count"), 1);
}

// 7. Dropped requests and answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_reads_are_retried() {
    let (_relay, proxy, mut patient, a) = setup(Policy::Never, 0).await;
    let (mut doctor, link, _) = pair(&mut patient, &a, "Dr. Patient").await;
    let n = share_items(0).len();
    let s = share_path(&a);
    proxy.add(
        Rule::new(
            "drop manifest",
            "GET",
            &format!("{s}/manifest"),
            Action::Drop,
        )
        .times(1),
    );
    proxy.add(Rule::new("502 blob", "POST", &format!("{s}/fetch"), Action::Fail(502)).times(1));
    proxy.add(
        Rule::new(
            "lose blob answer",
            "POST",
            &format!("{s}/fetch"),
            Action::DropResponse,
        )
        .times(1),
    );
    let got = doctor
        .fetch(&link, &NoProgress, &Cancel::new())
        .await
        .expect("retries succeed");
    assert_eq!(got.len(), n);
    for name in ["drop manifest", "502 blob", "lose blob answer"] {
        assert_eq!(proxy.fired(name), 1, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_writes_fail_clearly_and_leave_no_partial_state() {
    let (relay, proxy) = proxy::start().await;
    let cancel = Cancel::new();
    let (pid, pcard) = identity("Pat Proxy", Role::Patient);
    let mut patient = Patient::new(pid, pcard, Relay::new(&proxy.url).expect("URL"));
    // The request never reaches the relay.
    proxy.add(Rule::exact("drop create", "POST", "/v1/shares", Action::Drop).times(1));
    let err = create(&mut patient).await.expect_err("dropped");
    assert_eq!(err.code(), "relay_unreachable", "{err:?}");
    // The relay creates the share, the answer is lost.
    proxy.add(
        Rule::exact(
            "lose create answer",
            "POST",
            "/v1/shares",
            Action::DropResponse,
        )
        .times(1),
    );
    let err = create(&mut patient).await.expect_err("answer lost");
    assert_eq!(err.code(), "relay_unreachable", "{err:?}");
    // The manifest upload fails with a 502 (after the blobs went up).
    proxy.add(Rule::new("502 manifest", "PUT", "/manifest?", Action::Fail(502)).times(1));
    let mark = proxy.mark();
    let err = create(&mut patient).await.expect_err("manifest failed");
    assert!(
        matches!(err, ClientError::RelayFailure { status: 502 }),
        "{err:?}"
    );
    assert_eq!(err.code(), "relay_failure");
    for n in ["drop create", "lose create answer", "502 manifest"] {
        assert_eq!(proxy.fired(n), 1, "{n}");
    }
    // The patient kept nothing of the half-made share.
    let created: api::CreateShareResponse = serde_json::from_slice(
        &proxy
            .since(mark)
            .iter()
            .find(|e| e.path == "/v1/shares")
            .expect("create recorded")
            .body,
    )
    .expect("create answer");
    let half = carekey_client::ShareId(
        carekey_client::relay::parse_id(&created.share_id, "id").expect("id"),
    );
    assert_eq!(
        patient
            .start_pairing(&half)
            .await
            .expect_err("unknown share")
            .code(),
        "invalid_input"
    );
    let c = rusqlite::Connection::open(relay.data.path().join("relay.sqlite3")).expect("db");
    let shares: i64 = c
        .query_row("SELECT count(*) FROM shares", [], |r| r.get(0))
        .expect("count");
    assert_eq!(shares, 2, "the dropped request created nothing");
    // The same share can be made again, and works.
    let a = create(&mut patient).await.expect("share");
    let (mut doctor, link, rel) = pair(&mut patient, &a, "Dr. Ada Quinn").await;
    doctor
        .fetch(&link, &NoProgress, &cancel)
        .await
        .expect("reads");
    // A dropped note: a clear error, nothing arrives, sending again works once.
    proxy.add(Rule::new("drop note", "POST", "/messages", Action::Drop).times(1));
    let resource = serde_json::json!({"resourceType": "Observation", "id": "n-1",
        "status": "final", "code": {"text": "Pulse"}, "valueString": "60"});
    let err = doctor
        .send_note(&link, &resource)
        .await
        .expect_err("dropped");
    assert_eq!(err.code(), "relay_unreachable", "{err:?}");
    assert_eq!(proxy.fired("drop note"), 1);
    assert!(patient.inbox(&rel, 0).await.expect("inbox").is_empty());
    doctor.send_note(&link, &resource).await.expect("again");
    assert_eq!(patient.inbox(&rel, 5).await.expect("inbox").len(), 1);
}

async fn create(p: &mut Patient) -> Result<carekey_client::ShareId, ClientError> {
    p.create_share(
        share_items(300_000),
        options(Policy::Ask, 0),
        &NoProgress,
        &Cancel::new(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_revoke_leaves_a_consistent_share_and_can_be_finished() {
    let (relay, proxy, mut patient, a) = setup(Policy::Never, 0).await;
    let cancel = Cancel::new();
    let (mut stays, link, _) = pair(&mut patient, &a, "Dr. Stays").await;
    let (mut leaves, gone, rel) = pair(&mut patient, &a, "Dr. Leaves").await;
    // The token is revoked, then an upload of the new epoch is dropped.
    proxy.add(Rule::new("drop re-key upload", "PUT", "/blobs/", Action::Drop).times(1));
    let err = patient
        .revoke(&a, &rel, &NoProgress, &cancel)
        .await
        .expect_err("interrupted");
    assert_eq!(err.code(), "relay_unreachable", "{err:?}");
    assert_eq!(proxy.fired("drop re-key upload"), 1);
    assert_eq!(
        leaves
            .fetch(&gone, &NoProgress, &cancel)
            .await
            .expect_err("revoked at once")
            .code(),
        "access_ended"
    );
    // Meanwhile the share stays whole: the remaining doctor reads, a new doctor pairs and
    // reads (its grant carries the published epoch's key, not the unfinished one).
    stays
        .fetch(&link, &NoProgress, &cancel)
        .await
        .expect("still reads");
    let (mut late, late_link, _) = pair(&mut patient, &a, "Dr. Late").await;
    late.fetch(&late_link, &NoProgress, &cancel)
        .await
        .expect("a grant made meanwhile reads");
    // Calling revoke again finishes the re-key; everyone remaining follows it.
    patient
        .revoke(&a, &rel, &NoProgress, &cancel)
        .await
        .expect("finished");
    for (d, l) in [(&mut stays, link), (&mut late, late_link)] {
        d.fetch(&l, &NoProgress, &cancel)
            .await
            .expect("follows the re-key");
    }
    assert_eq!(
        leaves
            .fetch(&gone, &NoProgress, &cancel)
            .await
            .expect_err("still revoked")
            .code(),
        "access_ended"
    );
    // Later in the re-key: the new epoch's key already went to the remaining doctors when
    // the manifest swap fails. Revoking again finishes it under yet another epoch.
    let (_, _, second) = pair(&mut patient, &a, "Dr. Second").await;
    proxy.add(
        Rule::new(
            "502 re-key manifest",
            "PUT",
            "/manifest?",
            Action::Fail(502),
        )
        .times(1),
    );
    let err = patient
        .revoke(&a, &second, &NoProgress, &cancel)
        .await
        .expect_err("interrupted");
    assert_eq!(err.code(), "relay_failure", "{err:?}");
    assert_eq!(proxy.fired("502 re-key manifest"), 1);
    // The remaining doctors got the new epoch's key, but the live manifest is still the
    // previous epoch's: they read on with the previous key until the re-key is finished.
    stays
        .sync(&link, 0)
        .await
        .expect("the epoch update arrives");
    stays
        .fetch(&link, &NoProgress, &cancel)
        .await
        .expect("reads the still-live previous epoch");
    patient
        .revoke(&a, &second, &NoProgress, &cancel)
        .await
        .expect("finished");
    for (d, l) in [(&mut stays, link), (&mut late, late_link)] {
        d.fetch(&l, &NoProgress, &cancel)
            .await
            .expect("follows the finished re-key");
    }
    // The finishing revoke deleted every epoch below its own, also the one that was live
    // when the interrupted revoke started: nothing is left that Dr. Second's keys open.
    let c = rusqlite::Connection::open(relay.data.path().join("relay.sqlite3")).expect("db");
    let epochs: Vec<i64> = c
        .prepare("SELECT DISTINCT epoch FROM blobs WHERE share_id = ?1 ORDER BY epoch")
        .expect("query")
        .query_map([a.as_bytes().to_vec()], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("epochs");
    assert_eq!(epochs.len(), 1, "only the live epoch is stored: {epochs:?}");
}

// 8. Reordered epoch updates. Relationship messages carry the sender's sequence number under
// its signature, so the receiver's replay guard refuses the older update before its epoch is
// even compared (`EpochUpdate::check_after` is the second line, for updates that pass it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_epoch_updates_keep_the_newer() {
    let (_relay, proxy, mut patient, a) = setup(Policy::Never, 0).await;
    let cancel = Cancel::new();
    let (mut stays, link, _) = pair(&mut patient, &a, "Dr. Stays").await;
    let (_, _, one) = pair(&mut patient, &a, "Dr. One").await;
    let (_, _, two) = pair(&mut patient, &a, "Dr. Two").await;
    rekey(&mut patient, &a, &one).await;
    rekey(&mut patient, &a, &two).await;
    // Epoch 2's and epoch 3's updates wait in Stays' mailbox; they arrive newest first.
    proxy.add(
        Rule::new(
            "reversed",
            "GET",
            "/messages?",
            Action::Rewrite(Arc::new(|b: &[u8]| {
                let mut m: api::MailboxMessages = serde_json::from_slice(b).expect("messages");
                assert_eq!(m.messages.len(), 2, "both updates waiting");
                m.messages.reverse();
                serde_json::to_vec(&m).expect("json")
            })),
        )
        .times(1),
    );
    let err = stays
        .sync(&link, 0)
        .await
        .expect_err("the older is refused");
    assert_eq!(err.code(), "tampered", "{err:?}");
    assert!(
        matches!(
            err,
            ClientError::Tampered(carekey_core::Error::Replay { highest: 2, got: 1 })
        ),
        "{err:?}"
    );
    assert_eq!(proxy.fired("reversed"), 1);
    // The newer won: with no further message getting through, epoch 3 reads.
    proxy.add(Rule::new(
        "no more messages",
        "GET",
        "/messages?",
        ok_body(br#"{"messages":[],"cursor":0}"#.to_vec()),
    ));
    let got = stays
        .fetch(&link, &NoProgress, &cancel)
        .await
        .expect("epoch 3 reads");
    assert_eq!(got.len(), share_items(0).len());
    proxy.clear();
    // Nothing is left over to be re-delivered.
    stays.sync(&link, 0).await.expect("clean mailbox");
}

// 9. An approval that cannot reach the relay loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_forward_approval_keeps_the_request() {
    let (_relay, proxy, mut patient, share) = setup(Policy::Ask, 0).await;
    let cancel = Cancel::new();
    let (mut ada, link, rel) = pair(&mut patient, &share, "Dr. Ada Quinn").await;
    let (cid, ccard) = identity("Dr. Cole Reyes", Role::Doctor);
    let mut cole = Doctor::new(cid, ccard);
    let carekey_client::doctor::Invitation { id: handle, invite } =
        cole.invite(&proxy.url, 300).await.expect("invite");
    let hash = ada
        .request_forward(&link, &invite, None, "referral")
        .await
        .expect("request");
    patient.inbox(&rel, 5).await.expect("inbox");
    let id = patient.forward_requests()[0].id;
    // The relay refuses the colleague's token registration once: nothing is granted, the
    // request stays on the patient's screen.
    proxy.add(Rule::new("token refused", "POST", "/tokens", Action::Fail(503)).times(1));
    let err = patient
        .answer_forward(&id, true)
        .await
        .expect_err("relay failed");
    assert_eq!(err.code(), "relay_failure");
    assert_eq!(proxy.fired("token refused"), 1);
    assert_eq!(patient.forward_requests().len(), 1, "the request is kept");
    // Answered again once the relay is back: the colleague is granted exactly once.
    let crel = patient
        .answer_forward(&id, true)
        .await
        .expect("approved")
        .expect("relationship");
    assert!(patient.forward_requests().is_empty());
    let clink = cole
        .accept_introduction(&handle, 10, &cancel)
        .await
        .expect("introduced");
    assert!(
        !cole
            .fetch(&clink, &NoProgress, &cancel)
            .await
            .expect("reads")
            .is_empty()
    );
    ada.sync(&link, 5).await.expect("sync");
    assert_eq!(ada.forward_answer(&link, &hash), Some(true));
    assert!(patient.relationship(&crel).is_some());
}
