//! A restore must not bring back what was revoked (issue 11 item 2; docs/protocol.md "Restore
//! and reconciliation"): backup → revoke A → restore that older backup, from an honest relay
//! whose newest backup predates the revoke, and from a hostile front end that serves the older
//! backup although the relay holds a newer one. Either way the restored patient refuses every
//! write until it reconciled with the relay's signed audit log; then A is revoked in its state
//! and receives nothing, neither in the repair re-key nor in the next revoke, while the others
//! follow every re-key.

mod common;
#[path = "common/proxy.rs"]
mod proxy;

use std::collections::BTreeSet;

use carekey_client::backup::{backup_to_relay, restore_from_relay};
use carekey_client::doctor::Doctor;
use carekey_client::patient::{Patient, ShareOptions};
use carekey_client::progress::{Cancel, NoProgress};
use carekey_client::relay::Relay;
use carekey_client::{LinkId, RelationshipId};
use carekey_core::grant::Policy;
use carekey_core::keys::{Card, DeviceIdentity, Role};
use carekey_vault::{RecoveryPhrase, Vault};
use common::{in_a_day, pair, share_items};
use proxy::{Rule, replay_of};

fn held_epoch(d: &Doctor, link: &LinkId) -> u32 {
    d.held_secrets_for_test(link).expect("link kept").epoch
}

fn active(p: &Patient, share: &carekey_client::ShareId) -> BTreeSet<RelationshipId> {
    p.active_grants(share)
        .into_iter()
        .map(|g| g.relationship)
        .collect()
}

/// Relationship messages the patient sent since `mark` (each is one POST to a mailbox).
fn messages_sent(proxy: &proxy::Proxy, mark: usize) -> usize {
    proxy
        .since(mark)
        .iter()
        .filter(|e| e.method == "POST" && e.path.contains("/messages"))
        .count()
}

/// A phone whose patient the 24 words of its vault bring back on a new phone.
struct Phone {
    _dir: tempfile::TempDir,
    vault: Vault,
    words: String,
    card: Card,
}

impl Phone {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let (vault, phrase) = Vault::create(
            &dir.path().join("old.vault"),
            "old pass",
            &common::quick_vault_options(),
        )
        .expect("vault");
        let words = phrase.expose_words().to_owned();
        let card = identity_of(&words)
            .card("Pat Restore", Role::Patient, None, 1)
            .expect("card");
        Self {
            _dir: dir,
            vault,
            words,
            card,
        }
    }

    /// The patient on this phone, new.
    fn patient(&self, r: &Relay) -> Patient {
        Patient::new(identity_of(&self.words), self.card.clone(), r.clone())
    }

    /// The phone is lost: a new one restores the backup the relay serves with the 24 words.
    /// Returns the new phone's directory and the patient loaded from the restored vault.
    async fn restore(self, r: &Relay) -> (tempfile::TempDir, Patient) {
        let words = self.words.clone();
        let card = self.card.clone();
        drop(self);
        let dir = tempfile::tempdir().expect("dir");
        let mut restored = restore_from_relay(
            r,
            &words,
            &dir.path().join("new.vault"),
            "new pass",
            &common::quick_vault_options(),
        )
        .await
        .expect("restores");
        let patient = Patient::load_from(&mut restored, identity_of(&words), card, r.clone())
            .expect("state loads")
            .expect("state in the backup");
        (dir, patient)
    }
}

fn identity_of(words: &str) -> DeviceIdentity {
    let root = RecoveryPhrase::parse(words)
        .expect("phrase")
        .root()
        .expect("root");
    DeviceIdentity::from_root(&root)
}

async fn backup(vault: &mut Vault, patient: &mut Patient, r: &Relay) -> u64 {
    patient.save_to(vault).expect("saved");
    backup_to_relay(vault, r, &NoProgress, &Cancel::new())
        .await
        .expect("backup")
}

/// The whole scenario; `hostile`: the relay gets the newer backup, the front end serves the
/// older one in its place.
async fn restore_keeps_the_revoked_doctor_revoked(hostile: bool) {
    let (_relay, proxy) = proxy::start().await;
    let r = Relay::new(&proxy.url).expect("URL");
    let cancel = Cancel::new();
    let phone = tempfile::tempdir().expect("dir");
    let (mut vault, phrase) = Vault::create(
        &phone.path().join("old.vault"),
        "old pass",
        &common::quick_vault_options(),
    )
    .expect("vault");
    let phrase = phrase.expose_words().to_owned();
    let root = RecoveryPhrase::parse(&phrase)
        .expect("phrase")
        .root()
        .expect("root");
    let identity = || DeviceIdentity::from_root(&root);
    let pcard: Card = identity()
        .card("Pat Restore", Role::Patient, None, 1)
        .expect("card");
    let mut patient = Patient::new(identity(), pcard.clone(), r.clone());
    let share = patient
        .create_share(
            share_items(10_000),
            ShareOptions {
                expires_at: in_a_day(),
                policy: Policy::Never,
                delegation_depth: 0,
            },
            &NoProgress,
            &cancel,
        )
        .await
        .expect("share");
    let (mut a, link_a, rel_a) = pair(&mut patient, &share, "Dr. Revoked").await;
    let (mut b, link_b, rel_b) = pair(&mut patient, &share, "Dr. Next").await;
    let (mut c, link_c, rel_c) = pair(&mut patient, &share, "Dr. Stays").await;
    backup(&mut vault, &mut patient, &r).await;
    let scratch = tempfile::tempdir().expect("dir");
    if hostile {
        // The front end keeps a copy of the relay's answer with this (older) backup.
        restore_from_relay(
            &r,
            &phrase,
            &scratch.path().join("copy.vault"),
            "p",
            &common::quick_vault_options(),
        )
        .await
        .expect("restores");
    }
    let old_backup = proxy.find("GET", "/v1/backups/").pop();

    // A is revoked after that backup.
    patient
        .revoke(&share, &rel_a, &NoProgress, &cancel)
        .await
        .expect("revoke A");
    for (d, l) in [(&mut b, &link_b), (&mut c, &link_c)] {
        d.sync(l, 5).await.expect("epoch 2 arrives");
        d.fetch(l, &NoProgress, &cancel)
            .await
            .expect("reads epoch 2");
    }
    assert_eq!(held_epoch(&a, &link_a), 1);
    if hostile {
        // The relay now holds a backup with A revoked; the front end serves the older one.
        backup(&mut vault, &mut patient, &r).await;
        let old = old_backup.expect("older backup answer recorded");
        proxy.add(Rule::new("old backup", "GET", "/v1/backups/", replay_of(&old)).times(1));
    }
    drop(patient);
    drop(vault);

    // A new phone restores from the phrase: the state predates A's revoke.
    let new_phone = tempfile::tempdir().expect("dir");
    let mut restored = restore_from_relay(
        &r,
        &phrase,
        &new_phone.path().join("new.vault"),
        "new pass",
        &common::quick_vault_options(),
    )
    .await
    .expect("restores");
    if hostile {
        assert_eq!(proxy.fired("old backup"), 1, "the older backup was served");
    }
    let mut patient = Patient::load_from(&mut restored, identity(), pcard.clone(), r.clone())
        .expect("state loads")
        .expect("state in the backup");
    assert!(patient.needs_reconcile());
    assert!(
        active(&patient, &share).contains(&rel_a),
        "the backup predates the revoke"
    );
    // Before the reconciliation nothing is written: no revoke, nothing sent.
    let mark = proxy.mark();
    let e = patient
        .revoke(&share, &rel_b, &NoProgress, &cancel)
        .await
        .expect_err("refused before reconciling");
    assert_eq!(e.code(), "not_allowed", "{e}");
    assert!(proxy.since(mark).is_empty(), "nothing reached the relay");
    // Saved and loaded again, still not reconciled (the vault keeps the mark).
    patient.save_to(&mut restored).expect("saved");
    let mut patient = Patient::load_from(&mut restored, identity(), pcard.clone(), r.clone())
        .expect("state loads")
        .expect("state saved");
    assert!(patient.needs_reconcile());

    // Reconciled: A is revoked again in the state, and the share re-keyed to B and C only.
    let mark = proxy.mark();
    let done = patient
        .reconcile(&NoProgress, &cancel)
        .await
        .expect("reconciles");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].grants_marked_revoked, 1);
    assert!(done[0].rekeyed, "the state was behind the relay");
    assert!(!patient.needs_reconcile());
    assert_eq!(active(&patient, &share), BTreeSet::from([rel_b, rel_c]));
    assert_eq!(
        messages_sent(&proxy, mark),
        2,
        "one epoch update each for B and C, none for A"
    );
    a.sync(&link_a, 0).await.expect("A's mailbox reads");
    assert_eq!(held_epoch(&a, &link_a), 1, "A received no key");
    let mut repaired = 0;
    for (d, l) in [(&mut b, &link_b), (&mut c, &link_c)] {
        d.sync(l, 5).await.expect("the repair's epoch arrives");
        d.fetch(l, &NoProgress, &cancel).await.expect("reads");
        repaired = held_epoch(d, l);
        assert!(repaired > 2, "above the relay's live epoch");
    }
    // The mark goes with the next save: loaded again, writes are allowed.
    patient.save_to(&mut restored).expect("saved");
    let mut patient = Patient::load_from(&mut restored, identity(), pcard, r.clone())
        .expect("state loads")
        .expect("state saved");
    assert!(!patient.needs_reconcile());

    // The next revoke (of B) sends C the new keys, and A still nothing.
    let mark = proxy.mark();
    patient
        .revoke(&share, &rel_b, &NoProgress, &cancel)
        .await
        .expect("revoke B");
    assert_eq!(messages_sent(&proxy, mark), 1, "only C gets the update");
    a.sync(&link_a, 0).await.expect("A's mailbox reads");
    assert_eq!(held_epoch(&a, &link_a), 1, "A received no key");
    c.sync(&link_c, 5).await.expect("update arrives");
    c.fetch(&link_c, &NoProgress, &cancel)
        .await
        .expect("C reads the new epoch");
    assert_eq!(held_epoch(&c, &link_c), repaired + 1);
    for (d, l) in [(&mut a, &link_a), (&mut b, &link_b)] {
        let e = d.fetch(l, &NoProgress, &cancel).await.expect_err("revoked");
        assert_eq!(e.code(), "access_ended", "{e}");
    }
    assert_eq!(active(&patient, &share), BTreeSet::from([rel_c]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_backup_older_than_a_revoke_keeps_the_doctor_revoked() {
    restore_keeps_the_revoked_doctor_revoked(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_backup_served_by_a_hostile_front_end_keeps_the_doctor_revoked() {
    restore_keeps_the_revoked_doctor_revoked(true).await;
}

/// The hostile front end replays the older backup *and* the relay's audit-log answers
/// recorded back then, to hide the revoke made since. The log's head is signed over a
/// challenge the client picks for each read, so the recorded answers do not pass: the
/// reconciliation fails as tampered and the state keeps refusing writes. Once the front end
/// forwards honestly, the reconciliation finds the revoke (docs/protocol.md "Restore and
/// reconciliation"; threat-model T31).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_backup_and_replayed_audit_log_are_refused() {
    let (_relay, proxy) = proxy::start().await;
    let r = Relay::new(&proxy.url).expect("URL");
    let cancel = Cancel::new();
    let phone = tempfile::tempdir().expect("dir");
    let (mut vault, phrase) = Vault::create(
        &phone.path().join("old.vault"),
        "old pass",
        &common::quick_vault_options(),
    )
    .expect("vault");
    let phrase = phrase.expose_words().to_owned();
    let root = RecoveryPhrase::parse(&phrase)
        .expect("phrase")
        .root()
        .expect("root");
    let identity = || DeviceIdentity::from_root(&root);
    let pcard: Card = identity()
        .card("Pat Restore", Role::Patient, None, 1)
        .expect("card");
    let mut patient = Patient::new(identity(), pcard.clone(), r.clone());
    let share = patient
        .create_share(
            share_items(2_000),
            ShareOptions {
                expires_at: in_a_day(),
                policy: Policy::Never,
                delegation_depth: 0,
            },
            &NoProgress,
            &cancel,
        )
        .await
        .expect("share");
    let (mut a, link_a, rel_a) = pair(&mut patient, &share, "Dr. Revoked").await;
    let (_b, _link_b, rel_b) = pair(&mut patient, &share, "Dr. Stays").await;
    backup(&mut vault, &mut patient, &r).await;

    drop(patient);
    drop(vault);

    // The phone is restored (lost and replaced): the front end records the backup answer
    // and the audit-log answers of the reconciliation that follows.
    let phone = tempfile::tempdir().expect("dir");
    let mut vault = restore_from_relay(
        &r,
        &phrase,
        &phone.path().join("second.vault"),
        "p",
        &common::quick_vault_options(),
    )
    .await
    .expect("restores");
    let old_backup = proxy
        .find("GET", "/v1/backups/")
        .pop()
        .expect("backup answer");
    let mut patient = Patient::load_from(&mut vault, identity(), pcard.clone(), r.clone())
        .expect("state loads")
        .expect("state in the backup");
    let mark = proxy.mark();
    patient
        .reconcile(&NoProgress, &cancel)
        .await
        .expect("reconciles then");
    let old_logs: Vec<_> = proxy
        .since(mark)
        .into_iter()
        .filter(|e| e.method == "GET" && e.path.contains("/audit") && e.status == 200)
        .collect();
    assert!(!old_logs.is_empty(), "the audit log was read");

    // A is revoked after that backup; the relay gets a newer backup.
    patient
        .revoke(&share, &rel_a, &NoProgress, &cancel)
        .await
        .expect("revoke A");
    backup(&mut vault, &mut patient, &r).await;
    drop(patient);
    drop(vault);
    proxy.add(Rule::new("old backup", "GET", "/v1/backups/", replay_of(&old_backup)).times(1));
    proxy.add(Rule::new(
        "old audit log",
        "GET",
        "/audit",
        replay_of(&old_logs[0]),
    ));

    let new_phone = tempfile::tempdir().expect("dir");
    let mut restored = restore_from_relay(
        &r,
        &phrase,
        &new_phone.path().join("new.vault"),
        "new pass",
        &common::quick_vault_options(),
    )
    .await
    .expect("restores");
    assert_eq!(proxy.fired("old backup"), 1, "the older backup was served");
    let mut patient = Patient::load_from(&mut restored, identity(), pcard.clone(), r.clone())
        .expect("state loads")
        .expect("state in the backup");
    let mark = proxy.mark();
    let e = patient
        .reconcile(&NoProgress, &cancel)
        .await
        .expect_err("a replayed log does not pass");
    assert_eq!(e.code(), "tampered", "{e}");
    assert!(
        proxy.fired("old audit log") >= 1,
        "the recorded log was served"
    );
    assert!(patient.needs_reconcile(), "still refusing writes");
    assert!(
        proxy
            .since(mark)
            .iter()
            .all(|e| e.method == "GET" || e.path.contains("/audit")),
        "nothing was written"
    );
    let e = patient
        .revoke(&share, &rel_b, &NoProgress, &cancel)
        .await
        .expect_err("refused before reconciling");
    assert_eq!(e.code(), "not_allowed", "{e}");

    // An honest front end again: the revoke is found, A stays revoked and gets nothing.
    proxy.clear();
    let done = patient
        .reconcile(&NoProgress, &cancel)
        .await
        .expect("reconciles");
    assert_eq!(done[0].grants_marked_revoked, 1);
    assert_eq!(active(&patient, &share), BTreeSet::from([rel_b]));
    a.sync(&link_a, 0).await.expect("A's mailbox reads");
    assert_eq!(held_epoch(&a, &link_a), 1, "A received no key");
}

/// A doctor paired after the backup is unknown to the restored state: nobody could see or
/// revoke it there, so the reconciliation revokes its token, and it receives no key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_made_after_the_backup_is_revoked_by_the_reconciliation() {
    let relay = common::start_relay();
    let r = Relay::new(&relay.url).expect("URL");
    let cancel = Cancel::new();
    let mut phone = Phone::new();
    let mut patient = phone.patient(&r);
    let share = patient
        .create_share(
            share_items(2_000),
            ShareOptions {
                expires_at: in_a_day(),
                policy: Policy::Never,
                delegation_depth: 0,
            },
            &NoProgress,
            &cancel,
        )
        .await
        .expect("share");
    let (mut known, link_known, rel_known) = pair(&mut patient, &share, "Dr. Known").await;
    backup(&mut phone.vault, &mut patient, &r).await;
    let (mut later, link_later, _) = pair(&mut patient, &share, "Dr. Later").await;
    later
        .fetch(&link_later, &NoProgress, &cancel)
        .await
        .expect("reads while granted");
    drop(patient);
    let (_new_phone, mut patient) = phone.restore(&r).await;
    let done = patient
        .reconcile(&NoProgress, &cancel)
        .await
        .expect("reconciles");
    assert_eq!(done[0].unknown_tokens_revoked, 1);
    assert_eq!(done[0].grants_marked_revoked, 0);
    assert_eq!(active(&patient, &share), BTreeSet::from([rel_known]));
    let e = later
        .fetch(&link_later, &NoProgress, &cancel)
        .await
        .expect_err("its token is revoked");
    assert_eq!(e.code(), "access_ended", "{e}");
    known
        .fetch(&link_known, &NoProgress, &cancel)
        .await
        .expect("the known doctor keeps reading");
}

/// A share that expired at the relay since the backup does not keep the restored state from
/// being reconciled: its grants end in the state, and writes are allowed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_gone_from_the_relay_ends_its_grants_and_does_not_block_the_restore() {
    let relay = common::start_relay();
    let r = Relay::new(&relay.url).expect("URL");
    let cancel = Cancel::new();
    let phone = tempfile::tempdir().expect("dir");
    let (mut vault, phrase) = Vault::create(
        &phone.path().join("old.vault"),
        "old pass",
        &common::quick_vault_options(),
    )
    .expect("vault");
    let phrase = phrase.expose_words().to_owned();
    let root = RecoveryPhrase::parse(&phrase)
        .expect("phrase")
        .root()
        .expect("root");
    let identity = || DeviceIdentity::from_root(&root);
    let pcard: Card = identity()
        .card("Pat Restore", Role::Patient, None, 1)
        .expect("card");
    let mut patient = Patient::new(identity(), pcard.clone(), r.clone());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let share = patient
        .create_share(
            share_items(2_000),
            ShareOptions {
                expires_at: now + 3,
                policy: Policy::Never,
                delegation_depth: 0,
            },
            &NoProgress,
            &cancel,
        )
        .await
        .expect("share");
    let (_doctor, _, rel) = pair(&mut patient, &share, "Dr. Brief").await;
    backup(&mut vault, &mut patient, &r).await;
    drop(patient);
    drop(vault);
    // The relay sweeps the share once it expired (one-second sweeps in these tests).
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;

    let new_phone = tempfile::tempdir().expect("dir");
    let mut restored = restore_from_relay(
        &r,
        &phrase,
        &new_phone.path().join("new.vault"),
        "new pass",
        &common::quick_vault_options(),
    )
    .await
    .expect("restores");
    let mut patient = Patient::load_from(&mut restored, identity(), pcard, r.clone())
        .expect("state loads")
        .expect("state in the backup");
    assert!(active(&patient, &share).contains(&rel));
    let done = patient
        .reconcile(&NoProgress, &cancel)
        .await
        .expect("reconciles");
    assert!(done[0].gone, "{done:?}");
    assert_eq!(done[0].grants_marked_revoked, 1);
    assert!(active(&patient, &share).is_empty());
    assert!(!patient.needs_reconcile());
}

/// Forward requests restored from a backup are reconciled too (docs/protocol.md "Restore and
/// reconciliation"): one approved after the backup does not come back to be approved twice
/// (its colleague's token, unknown to the restored state, is revoked), one from a doctor
/// revoked after the backup is dropped, and one still undecided stays and can be approved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_requests_answered_after_the_backup_do_not_come_back() {
    let relay = common::start_relay();
    let r = Relay::new(&relay.url).expect("URL");
    let cancel = Cancel::new();
    let mut phone = Phone::new();
    let mut patient = phone.patient(&r);
    let share = patient
        .create_share(
            share_items(2_000),
            ShareOptions {
                expires_at: in_a_day(),
                policy: Policy::Ask,
                delegation_depth: 0,
            },
            &NoProgress,
            &cancel,
        )
        .await
        .expect("share");
    let (mut ada, link_ada, rel_ada) = pair(&mut patient, &share, "Dr. Ada").await;
    let (mut bob, link_bob, rel_bob) = pair(&mut patient, &share, "Dr. Bob").await;
    // Ada asks for Cole and for Dana, Bob for Eve; all three wait in the backup.
    let invite = |name: &str| {
        let (id, card) = common::identity(name, Role::Doctor);
        Doctor::new(id, card)
    };
    let (mut cole, mut dana, mut eve) = (invite("Dr. Cole"), invite("Dr. Dana"), invite("Dr. Eve"));
    let url = ada.relay_url(&link_ada).expect("link").to_owned();
    let cole_inv = cole.invite(&url, 600).await.expect("invite");
    let dana_inv = dana.invite(&url, 600).await.expect("invite");
    let eve_inv = eve.invite(&url, 600).await.expect("invite");
    for inv in [&cole_inv, &dana_inv] {
        ada.request_forward(&link_ada, &inv.invite, None, "second opinion")
            .await
            .expect("request sent");
    }
    bob.request_forward(&link_bob, &eve_inv.invite, None, "referral")
        .await
        .expect("request sent");
    patient.inbox(&rel_ada, 5).await.expect("inbox");
    patient.inbox(&rel_bob, 5).await.expect("inbox");
    assert_eq!(patient.forward_requests().len(), 3);
    backup(&mut phone.vault, &mut patient, &r).await;

    // After the backup: Cole's request approved, Bob revoked.
    let cole_req = patient
        .forward_requests()
        .into_iter()
        .find(|q| q.colleague.body.name == "Dr. Cole")
        .expect("Cole's request")
        .id;
    patient
        .answer_forward(&cole_req, true)
        .await
        .expect("approve");
    let cole_link = cole
        .accept_introduction(&cole_inv.id, 10, &cancel)
        .await
        .expect("Cole is introduced");
    cole.fetch(&cole_link, &NoProgress, &cancel)
        .await
        .expect("Cole reads while granted");
    patient
        .revoke(&share, &rel_bob, &NoProgress, &cancel)
        .await
        .expect("revoke Bob");
    drop(patient);
    let (_new_phone, mut patient) = phone.restore(&r).await;
    assert_eq!(patient.forward_requests().len(), 3, "the backup's requests");
    let done = patient
        .reconcile(&NoProgress, &cancel)
        .await
        .expect("reconciles");
    assert_eq!(done[0].forward_requests_dropped, 2, "{done:?}");
    assert_eq!(done[0].unknown_tokens_revoked, 1, "Cole's grant ends");
    assert_eq!(done[0].grants_marked_revoked, 1, "Bob stays revoked");
    let left = patient.forward_requests();
    let names: Vec<&str> = left
        .iter()
        .map(|q| q.colleague.body.name.as_str())
        .collect();
    assert_eq!(names, ["Dr. Dana"], "only the undecided request stays");
    let e = cole
        .fetch(&cole_link, &NoProgress, &cancel)
        .await
        .expect_err("Cole's token is revoked");
    assert_eq!(e.code(), "access_ended", "{e}");

    // The undecided one is answered as any other: Dana reads.
    patient
        .answer_forward(&left[0].id, true)
        .await
        .expect("approve Dana");
    let dana_link = dana
        .accept_introduction(&dana_inv.id, 10, &cancel)
        .await
        .expect("Dana is introduced");
    dana.fetch(&dana_link, &NoProgress, &cancel)
        .await
        .expect("Dana reads");
    assert!(active(&patient, &share).contains(&rel_ada));
    assert!(!active(&patient, &share).contains(&rel_bob));
}

/// A delegation made after the backup, and ended since with its root, is listed after the
/// restore, and listed ended: the reconciliation reads the share's delegation notices before
/// it applies the relay's token status (docs/protocol.md "Restore and reconciliation").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegation_made_and_ended_after_the_backup_is_listed_ended() {
    let relay = common::start_relay();
    let r = Relay::new(&relay.url).expect("URL");
    let cancel = Cancel::new();
    let mut phone = Phone::new();
    let mut patient = phone.patient(&r);
    let share = patient
        .create_share(
            share_items(2_000),
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
    let (mut ada, link_ada, rel_ada) = pair(&mut patient, &share, "Dr. Ada").await;
    let (_ben, _, rel_ben) = pair(&mut patient, &share, "Dr. Ben").await;
    backup(&mut phone.vault, &mut patient, &r).await;

    // After the backup: Ada delegates to Cole, then the patient revokes Ada (and so Cole).
    let (cid, ccard) = common::identity("Dr. Cole", Role::Doctor);
    let mut cole = Doctor::new(cid, ccard);
    let url = ada.relay_url(&link_ada).expect("link").to_owned();
    let inv = cole.invite(&url, 600).await.expect("invite");
    ada.delegate(&link_ada, &inv.invite, None, None)
        .await
        .expect("delegation registers");
    let cole_link = cole
        .accept_introduction(&inv.id, 10, &cancel)
        .await
        .expect("Cole is introduced");
    patient
        .revoke(&share, &rel_ada, &NoProgress, &cancel)
        .await
        .expect("revoke Ada");
    drop(patient);
    let (_new_phone, mut patient) = phone.restore(&r).await;
    let done = patient
        .reconcile(&NoProgress, &cancel)
        .await
        .expect("reconciles");
    assert_eq!(done[0].grants_marked_revoked, 1, "Ada stays revoked");
    assert_eq!(done[0].delegations_marked_revoked, 1, "{done:?}");
    let tree = patient.delegations(&share).await.expect("notices verify");
    assert_eq!(tree.len(), 1, "Cole is listed");
    assert_eq!(tree[0].colleague, "Dr. Cole");
    assert!(tree[0].revoked, "and listed ended");
    assert_eq!(active(&patient, &share), BTreeSet::from([rel_ben]));
    let e = cole
        .fetch(&cole_link, &NoProgress, &cancel)
        .await
        .expect_err("Cole reads nothing");
    assert_eq!(e.code(), "access_ended", "{e}");
}
