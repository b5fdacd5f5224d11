//! The patient's access log tells only the truth (issue 11, items 3 and 6; docs/protocol.md
//! "Audit chains"), against a real relay process whose operator edits its own database or
//! whose delegating doctor runs a modified client: every delegation is matched with its
//! notice (a hidden or decoy notice raises a tamper alert), every node of a delegation tree
//! is named, a receipt appended again later is flagged and not counted, and a receipt of
//! another share is refused.

mod common;

use carekey_client::ClientError;
use carekey_client::doctor::{Doctor, Invitation};
use carekey_client::patient::{
    AccessEvent, AccessKind, AccessWarning, Patient, ShareOptions, UNACCOUNTED_READER, summarize,
};
use carekey_client::progress::{Cancel, NoProgress};
use carekey_client::relay::{ReaderCap, Relay};
use carekey_core::audit::{ChainKind, Entry};
use carekey_core::forward::DelegationNotice;
use carekey_core::grant::{Category, DelegationLink, Policy, Scope};
use carekey_core::keys::{Card, DeviceIdentity, ReadToken, Role, RootSecret, SigningSecret};
use carekey_core::message::{self, MessageKind};
use carekey_core::section::GrantKeys;
use carekey_core::wire::Wire;
use common::{identity, in_a_day, pair, share_items, start_relay};
use rand_core::{OsRng, RngCore};

/// Relay audit entry kind of a delegation registration (relay-formats.md "Relay audit chain").
const KIND_DELEGATION_REGISTERED: u8 = 4;
/// Relay audit entry kind of a fetch.
const KIND_FETCH: i64 = 1;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn db(relay: &common::RelayProcess) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(relay.data.path().join("relay.sqlite3"))
        .expect("the relay's SQLite file opens");
    c.busy_timeout(std::time::Duration::from_secs(5))
        .expect("busy timeout");
    c
}

async fn patient_with_share(
    url: &str,
    policy: Policy,
    depth: u8,
) -> (Patient, carekey_client::ShareId) {
    let (pid, pcard) = identity("Pat Example", Role::Patient);
    let mut patient = Patient::new(pid, pcard, Relay::new(url).expect("relay URL"));
    let share = patient
        .create_share(
            share_items(50_000),
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
    (patient, share)
}

fn colleague(name: &str) -> Doctor {
    let (id, card) = identity(name, Role::Doctor);
    Doctor::new(id, card)
}

/// Pairs a doctor and keeps a copy of its device identity: what a modified doctor client has.
async fn pair_keeping_identity(
    patient: &mut Patient,
    share: &carekey_client::ShareId,
    name: &str,
) -> (Doctor, carekey_client::LinkId, DeviceIdentity, Card) {
    let cancel = Cancel::new();
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    let id = DeviceIdentity::from_root(&RootSecret::from_bytes(seed));
    let card = id
        .card(name, Role::Doctor, Some("GMC-7"), 1_800_000_000)
        .expect("card");
    let mut doctor = Doctor::new(
        DeviceIdentity::from_root(&RootSecret::from_bytes(seed)),
        card.clone(),
    );
    let mut session = patient.start_pairing(share).await.expect("pairing opens");
    let scan = doctor.scan(&session.qr_text()).await.expect("doctor scans");
    patient
        .wait_for_doctor(&mut session, 10, &cancel)
        .await
        .expect("reply arrives");
    patient.confirm(session).await.expect("confirm");
    let link = doctor
        .wait_for_grant(scan, 10, &cancel)
        .await
        .expect("grant arrives");
    (doctor, link, id, card)
}

fn is_tamper_alert(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Tampered(carekey_core::Error::AuditChain { .. })
    )
}

fn delegation_entries(log: &[AccessEvent]) -> Vec<&AccessEvent> {
    log.iter()
        .filter(|e| e.what == AccessKind::Relay(KIND_DELEGATION_REGISTERED))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegation_without_notice_is_refused_and_a_hidden_notice_raises_an_alert() {
    let relay = start_relay();
    let cancel = Cancel::new();
    let (mut patient, share) = patient_with_share(&relay.url, Policy::Allowed, 1).await;
    let (mut ada, link, _) = pair(&mut patient, &share, "Dr. Ada Quinn").await;

    // Ada's modified client registers a valid chain for Eve without telling the patient: the
    // relay refuses it and registers nothing.
    let ha = ada.held_secrets_for_test(&link).expect("link");
    let eve_token = ReadToken::random(&mut OsRng);
    let eve_reader = SigningSecret::random(&mut OsRng);
    let docs = Scope::new(&[Category::Documents], vec![]).expect("scope");
    let groups = match &ha.keys {
        GrantKeys::Scoped(k) => GrantKeys::Scoped(k.subset(&docs).expect("subset")).groups(),
        GrantKeys::Epoch(_) => None,
    };
    let to_eve = DelegationLink::sign(
        &ha.reader,
        share.to_bytes(),
        eve_reader.public(),
        &eve_token,
        docs,
        groups,
        now() + 3600,
        0,
    );
    let client = Relay::new(&relay.url).expect("relay URL");
    match client
        .register_delegation(&share, &ha.root_token_hash, &[to_eve], b"")
        .await
    {
        Err(ClientError::Refused { status: 400, code }) => assert_eq!(code, "notice_required"),
        other => panic!("a delegation without a notice must be refused, got {other:?}"),
    }
    let cap = ReaderCap {
        token: &eve_token,
        reader: &eve_reader,
        share_id: share,
    };
    assert!(
        client.get_manifest(&cap, now()).await.is_err(),
        "nothing was registered for Eve"
    );

    // A genuine delegation whose notice the relay operator then deletes: the patient's log
    // flags the registration, raises a tamper alert, and the colleague's fetches show as an
    // unaccounted-for reader, never as a neutral "unknown reader".
    let mut cole = colleague("Dr. Cole Reyes");
    let Invitation { id: handle, invite } = cole
        .invite(ada.relay_url(&link).expect("link"), 300)
        .await
        .expect("invite");
    ada.delegate(&link, &invite, None, None)
        .await
        .expect("delegation registers");
    let clink = cole
        .accept_introduction(&handle, 10, &cancel)
        .await
        .expect("introduction");
    cole.fetch(&clink, &NoProgress, &cancel)
        .await
        .expect("Cole fetches");
    db(&relay)
        .execute(
            "DELETE FROM notices WHERE share_id = ?1",
            [share.as_bytes().to_vec()],
        )
        .expect("the operator hides the notice");
    let log = patient
        .access_log(&share)
        .await
        .expect("the chain verifies");
    let regs = delegation_entries(&log);
    assert_eq!(regs.len(), 1);
    assert_eq!(regs[0].warnings, vec![AccessWarning::UnnoticedDelegation]);
    assert!(patient.take_alerts().iter().any(is_tamper_alert));
    let cole_lines: Vec<_> = log
        .iter()
        .filter(|e| matches!(e.what, AccessKind::Fetched { .. }) && e.who != "Dr. Ada Quinn")
        .collect();
    assert!(!cole_lines.is_empty());
    for e in cole_lines {
        assert_eq!(e.who, UNACCOUNTED_READER);
        assert!(e.warnings.contains(&AccessWarning::UnaccountedReader));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decoy_notice_is_detected() {
    let relay = start_relay();
    let cancel = Cancel::new();
    let (mut patient, share) = patient_with_share(&relay.url, Policy::Allowed, 1).await;
    let (mut ada, link, ada_id, ada_card) =
        pair_keeping_identity(&mut patient, &share, "Dr. Ada Quinn").await;

    // A genuine delegation to Dana first: its entry must check out.
    let mut dana = colleague("Dr. Dana Voss");
    let Invitation {
        id: dh,
        invite: dinv,
    } = dana
        .invite(ada.relay_url(&link).expect("link"), 300)
        .await
        .expect("invite");
    ada.delegate(&link, &dinv, None, None)
        .await
        .expect("genuine delegation");
    let dlink = dana
        .accept_introduction(&dh, 10, &cancel)
        .await
        .expect("introduction");
    dana.fetch(&dlink, &NoProgress, &cancel)
        .await
        .expect("Dana fetches");

    // Ada's modified client registers a chain to Mallory's key, with a notice that shows a
    // decoy chain to Cole (a genuine invite of Cole's, a link Ada signed too).
    let mut cole = colleague("Dr. Cole Reyes");
    let Invitation { id: _, invite } = cole
        .invite(ada.relay_url(&link).expect("link"), 300)
        .await
        .expect("invite");
    let ha = ada.held_secrets_for_test(&link).expect("link");
    let docs = Scope::new(&[Category::Documents], vec![]).expect("scope");
    let groups = match &ha.keys {
        GrantKeys::Scoped(k) => GrantKeys::Scoped(k.subset(&docs).expect("subset")).groups(),
        GrantKeys::Epoch(_) => None,
    };
    let sign = |child, token: &ReadToken| {
        DelegationLink::sign(
            &ha.reader,
            share.to_bytes(),
            child,
            token,
            docs.clone(),
            groups.clone(),
            now() + 3600,
            0,
        )
    };
    let mallory = SigningSecret::random(&mut OsRng);
    let mallory_token = ReadToken::random(&mut OsRng);
    let registered = sign(mallory.public(), &mallory_token);
    let decoy = sign(invite.reader_key, &ReadToken::random(&mut OsRng));
    let notice = DelegationNotice {
        sender: ada_card.clone(),
        invite: invite.clone(),
        root_token_hash: ha.root_token_hash,
        chain: vec![decoy],
    };
    let sealed = message::seal(
        &ada_id,
        &ada_card,
        patient.card(),
        share.as_bytes(),
        1,
        MessageKind::Notice,
        &notice.to_bytes(),
        &mut OsRng,
    )
    .expect("seal");
    let client = Relay::new(&relay.url).expect("relay URL");
    client
        .register_delegation(&share, &ha.root_token_hash, &[registered], &sealed)
        .await
        .expect("the relay cannot tell a decoy notice");
    let cap = ReaderCap {
        token: &mallory_token,
        reader: &mallory,
        share_id: share,
    };
    client
        .get_manifest(&cap, now())
        .await
        .expect("Mallory reads");

    // The decoy notice verifies on its own: the tree shows Cole ...
    let tree = patient.delegations(&share).await.expect("notices verify");
    assert!(tree.iter().any(|d| d.colleague == "Dr. Cole Reyes"));
    // ... but the log's registration does not match it: flagged, with a tamper alert; the
    // genuine one is clean; Mallory's read is unaccounted for.
    let log = patient
        .access_log(&share)
        .await
        .expect("the chain verifies");
    let regs = delegation_entries(&log);
    assert_eq!(regs.len(), 2);
    assert!(regs[0].warnings.is_empty(), "{:?}", regs[0].warnings);
    assert_eq!(regs[1].warnings, vec![AccessWarning::UnnoticedDelegation]);
    assert!(patient.take_alerts().iter().any(is_tamper_alert));
    assert!(summarize(&log).iter().any(|s| s.who == "Dr. Dana Voss"));
    let last = log.last().expect("Mallory's fetch");
    assert_eq!(last.who, UNACCOUNTED_READER);
    assert_eq!(last.warnings, vec![AccessWarning::UnaccountedReader]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_patient_lists_every_node() {
    let relay = start_relay();
    let cancel = Cancel::new();
    let (mut patient, share) = patient_with_share(&relay.url, Policy::Allowed, 2).await;
    let (mut ada, link, rel_a) = pair(&mut patient, &share, "Dr. Ada Quinn").await;
    let mut cole = colleague("Dr. Cole Reyes");
    let Invitation {
        id: ch,
        invite: cinv,
    } = cole
        .invite(ada.relay_url(&link).expect("link"), 300)
        .await
        .expect("invite");
    ada.delegate(&link, &cinv, None, None)
        .await
        .expect("Ada delegates to Cole");
    let clink = cole
        .accept_introduction(&ch, 10, &cancel)
        .await
        .expect("introduction");
    let mut dan = colleague("Dr. Dan Okafor");
    let Invitation {
        id: dh,
        invite: dinv,
    } = dan
        .invite(cole.relay_url(&clink).expect("link"), 300)
        .await
        .expect("invite");
    cole.delegate(&clink, &dinv, None, None)
        .await
        .expect("Cole delegates to Dan");
    let dlink = dan
        .accept_introduction(&dh, 10, &cancel)
        .await
        .expect("introduction");
    for (d, l) in [(&mut ada, link), (&mut cole, clink), (&mut dan, dlink)] {
        d.fetch(&l, &NoProgress, &cancel).await.expect("fetch");
    }

    // The log is read before the tree: it reads the notices itself, so every node is named
    // and every registration matched, with nothing flagged.
    let log = patient.access_log(&share).await.expect("log verifies");
    assert_eq!(delegation_entries(&log).len(), 2);
    for e in &log {
        assert!(e.warnings.is_empty(), "{e:?}");
        assert_ne!(e.who, UNACCOUNTED_READER);
    }
    let names: Vec<String> = summarize(&log).into_iter().map(|s| s.who).collect();
    assert_eq!(names, ["Dr. Ada Quinn", "Dr. Cole Reyes", "Dr. Dan Okafor"]);
    assert!(patient.take_alerts().is_empty());
    let tree = patient.delegations(&share).await.expect("tree");
    let nodes: Vec<(&str, &str, usize)> = tree
        .iter()
        .map(|d| (d.by.as_str(), d.colleague.as_str(), d.level))
        .collect();
    assert_eq!(
        nodes,
        [
            ("Dr. Ada Quinn", "Dr. Cole Reyes", 1),
            ("Dr. Cole Reyes", "Dr. Dan Okafor", 2)
        ]
    );
    assert!(tree.iter().all(|d| d.root_relationship == rel_a));
}

/// Appends `body` as the next entry of `share`'s relay log at relay time `time`, as a hostile
/// operator would (the relay signs whatever head it holds when the log is read).
fn append_entry(c: &rusqlite::Connection, share: &[u8; 16], time: u64, kind: i64, body: &[u8]) {
    let (seq, head): (i64, Vec<u8>) = c
        .query_row(
            "SELECT audit_seq, audit_head FROM shares WHERE share_id = ?1",
            [share.to_vec()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("head");
    let seq = seq + 1;
    let entry = Entry {
        seq: u64::try_from(seq).expect("positive"),
        prev_hash: head.clone().try_into().expect("32-byte head"),
        time,
        kind: u8::try_from(kind).expect("kind"),
        body: body.to_vec(),
    };
    let hash = entry.hash(ChainKind::Relay, share);
    c.execute(
        "INSERT INTO audit (share_id, seq, prev_hash, time, kind, body, entry_hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        rusqlite::params![
            share.to_vec(),
            seq,
            head,
            i64::try_from(time).expect("time"),
            kind,
            body.to_vec(),
            hash.to_vec()
        ],
    )
    .expect("append");
    c.execute(
        "UPDATE shares SET audit_seq = ?1, audit_head = ?2 WHERE share_id = ?3",
        rusqlite::params![seq, hash.to_vec(), share.to_vec()],
    )
    .expect("move the head");
}

fn last_receipt(c: &rusqlite::Connection, share: &[u8; 16]) -> (i64, Vec<u8>) {
    c.query_row(
        "SELECT time, body FROM audit WHERE share_id = ?1 AND kind = ?2 ORDER BY seq DESC LIMIT 1",
        rusqlite::params![share.to_vec(), KIND_FETCH],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .expect("a fetch entry")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_re_appends_a_genuine_receipt_later_is_detected() {
    let relay = start_relay();
    let cancel = Cancel::new();
    let (mut patient, share) = patient_with_share(&relay.url, Policy::Never, 0).await;
    let (mut doctor, link, _) = pair(&mut patient, &share, "Dr. Watched").await;
    doctor
        .fetch(&link, &NoProgress, &cancel)
        .await
        .expect("fetch");
    let before = patient.access_log(&share).await.expect("log verifies");
    assert!(before.iter().all(|e| e.warnings.is_empty()));
    let fetched = summarize(&before);

    // The operator appends the doctor's last genuine receipt again, a day later.
    let c = db(&relay);
    let (time, body) = last_receipt(&c, share.as_bytes());
    let time = u64::try_from(time).expect("time");
    append_entry(&c, share.as_bytes(), time + 86_400, KIND_FETCH, &body);
    let log = patient
        .access_log(&share)
        .await
        .expect("the chain verifies");
    let last = log.last().expect("the re-appended line");
    assert_eq!(last.who, "Dr. Watched");
    // The time shown is the doctor-signed one, not the relay's.
    assert_eq!(last.time, time);
    assert!(
        matches!(
            last.warnings.as_slice(),
            [
                AccessWarning::RepeatedReceipt { .. },
                AccessWarning::ClockSkew { relay_time }
            ] if *relay_time == time + 86_400
        ),
        "{:?}",
        last.warnings
    );
    assert!(patient.take_alerts().iter().any(is_tamper_alert));
    // Not counted as a fetch.
    assert_eq!(summarize(&log), fetched);

    // A genuine receipt of another share of the patient's, moved into this share's log: the
    // log is refused and nothing of it kept.
    let other = patient
        .create_share(
            share_items(1_000),
            ShareOptions {
                expires_at: in_a_day(),
                policy: Policy::Never,
                delegation_depth: 0,
            },
            &NoProgress,
            &cancel,
        )
        .await
        .expect("second share");
    let (mut d2, l2, _) = pair(&mut patient, &other, "Dr. Other").await;
    d2.fetch(&l2, &NoProgress, &cancel).await.expect("fetch");
    let (_, foreign) = last_receipt(&c, other.as_bytes());
    append_entry(&c, share.as_bytes(), now(), KIND_FETCH, &foreign);
    match patient.access_log(&share).await {
        Err(ClientError::Tampered(carekey_core::Error::AuditChain { reason, .. })) => {
            assert_eq!(reason, "a fetch receipt names another share");
        }
        other => panic!("a receipt of another share must be refused, got {other:?}"),
    }
}
