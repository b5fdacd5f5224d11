//! Revocation proof (docs/protocol.md "Revocation and expiry"): after the patient revokes doctor
//! A, every key and token A ever held — its read token, its reader signing key, every epoch key
//! and every content key it saw in manifests, and its long-term identity — reads nothing:
//!
//! - (a) against the live relay, the manifest and every blob id (old and new epoch) answer 410;
//! - (b) against a full copy of the relay's data directory (SQLite file, WAL and shared memory)
//!   taken after the revoke, no stored row of any table opens under any of A's keys in any
//!   plausible AEAD context, while the remaining doctor B's keys open the new manifest and
//!   every new blob in the same copy (the scanner's positive control).
//!
//! A's secrets come from `Doctor::held_secrets_for_test` (feature `test-export`, test only).

mod common;

use std::path::Path;

use carekey_client::ClientError;
use carekey_client::doctor::Doctor;
use carekey_client::patient::{Patient, ShareOptions};
use carekey_client::progress::{Cancel, NoProgress};
use carekey_client::relay::{ReaderCap, Relay};
use carekey_client::test_export::HeldSecrets;
use carekey_core::envelope::{self, Context, Envelope, ObjectKind, SealingKey};
use carekey_core::grant::Policy;
use carekey_core::keys::{ContentKey, DeviceIdentity, Role, RootSecret, SectionSecret};
use carekey_core::manifest::Manifest;
use carekey_core::message::{self, ReplayGuard};
use carekey_core::section::{SealedSections, locator, section_id, section_key};
use carekey_core::wire::Wire;
use common::{identity, in_a_day, pair, share_items, start_relay};
use rand_core::{OsRng, RngCore};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Keys of one party, collected over time.
#[derive(Default)]
struct KeyRing {
    /// Element secrets of the holder's scope (what replaced the epoch key: they open the
    /// holder's manifest sections).
    section_secrets: Vec<SectionSecret>,
    content_keys: Vec<ContentKey>,
    relationship_ids: Vec<[u8; 16]>,
}

impl KeyRing {
    /// Adds what `h` holds plus every content key of the manifest it opens right now (fetched
    /// live with the holder's own token: exactly the manifest it saw).
    async fn collect(&mut self, relay: &Relay, h: &HeldSecrets) -> Manifest {
        let cap = ReaderCap {
            token: &h.read_token,
            reader: &h.reader,
            share_id: h.share_id,
        };
        let (_, sealed) = relay.get_manifest(&cap, now()).await.expect("manifest");
        let m = h
            .keys
            .open_manifest(&sealed, h.share_id.as_bytes(), h.epoch, &h.patient_key)
            .expect("holder opens its manifest");
        self.section_secrets.extend(
            h.keys
                .scoped()
                .expect("a scoped share")
                .keys()
                .iter()
                .map(|k| k.secret.clone()),
        );
        self.content_keys
            .extend(m.entries.iter().map(|e| e.content_key.clone()));
        self.relationship_ids.push(h.relationship_id);
        m
    }
}

/// Copies the relay's data directory (relay.sqlite3 and its -wal/-shm) as the operator could.
fn copy_data_dir(from: &Path, to: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(from).expect("data dir") {
        let p = e.expect("entry").path();
        if p.is_file() {
            std::fs::copy(&p, to.join(p.file_name().expect("name"))).expect("copy");
            n += 1;
        }
    }
    n
}

/// Every stored value of every row of every table of the copied database, with the 16-byte
/// ids and small integers (epoch candidates) found in the same row.
struct StoredValue {
    table: String,
    value: Vec<u8>,
    ids: Vec<Vec<u8>>,
    epochs: Vec<u32>,
}

fn stored_values(db: &Path) -> Vec<StoredValue> {
    let c = rusqlite::Connection::open(db).expect("copied database opens");
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("tables");
    assert!(
        tables.iter().any(|t| t == "blobs"),
        "relay schema: {tables:?}"
    );
    let mut out = Vec::new();
    for t in tables {
        let mut st = c
            .prepare(&format!("SELECT * FROM \"{t}\""))
            .expect("select");
        let cols = st.column_count();
        let mut rows = st.query([]).expect("rows");
        while let Some(r) = rows.next().expect("row") {
            let mut blobs = Vec::new();
            let mut ids = Vec::new();
            // Every epoch this share ever had.
            let epochs = vec![1, 2, 3];
            for i in 0..cols {
                match r.get_ref(i).expect("column") {
                    rusqlite::types::ValueRef::Blob(b) => {
                        if b.len() == 16 {
                            ids.push(b.to_vec());
                        }
                        blobs.push(b.to_vec());
                    }
                    rusqlite::types::ValueRef::Text(s) => blobs.push(s.to_vec()),
                    _ => {}
                }
            }
            // Shorter than version + nonce + tag: cannot be any sealed object.
            for value in blobs.into_iter().filter(|b| b.len() >= 41) {
                out.push(StoredValue {
                    table: t.clone(),
                    value,
                    ids: ids.clone(),
                    epochs: epochs.clone(),
                });
            }
        }
    }
    out
}

const KINDS: [ObjectKind; 6] = [
    ObjectKind::RecordBlob,
    ObjectKind::Manifest,
    ObjectKind::Attachment,
    ObjectKind::PairingGrant,
    ObjectKind::PairingReply,
    ObjectKind::Message,
];

/// Tries to open `v` with `key` in every context built from the row's ids, the share id, the
/// ring's relationship ids and the candidate epochs, as an envelope and (content keys) as a
/// chunked stream. Returns whether anything opened, and counts attempts.
fn opens_with<K: SealingKey>(
    key: &K,
    chunked_key: Option<&ContentKey>,
    v: &StoredValue,
    extra_ids: &[Vec<u8>],
    attempts: &mut u64,
) -> bool {
    let env = Envelope::from_bytes(&v.value).ok();
    let mut ids: Vec<&Vec<u8>> = v.ids.iter().chain(extra_ids).collect();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        for kind in KINDS {
            // Share objects are bound to an epoch; pairing and relationship objects to 0.
            let epochs: &[u32] = match kind {
                ObjectKind::RecordBlob | ObjectKind::Manifest | ObjectKind::Attachment => &v.epochs,
                _ => &[0],
            };
            for &epoch in epochs {
                let ctx = Context::new(kind, id, epoch);
                if let Some(env) = &env {
                    *attempts += 1;
                    if envelope::open(key, &ctx, env).is_ok() {
                        return true;
                    }
                }
                if let Some(ck) = chunked_key
                    && kind == ObjectKind::Attachment
                {
                    *attempts += 1;
                    if envelope::open_chunked(ck, &ctx, &v.value).is_ok() {
                        return true;
                    }
                }
            }
        }
    }
    false
}

/// How many stored values open under any key of `ring`; (opened tables, attempts).
fn count_opened(
    values: &[StoredValue],
    ring: &KeyRing,
    share_id: &carekey_client::ShareId,
) -> (Vec<String>, u64) {
    let mut extra: Vec<Vec<u8>> = vec![share_id.as_bytes().to_vec()];
    extra.extend(ring.relationship_ids.iter().map(|r| r.to_vec()));
    let mut opened = Vec::new();
    let mut attempts = 0;
    for v in values {
        // A sectioned manifest: every section under every secret, in every epoch.
        let sections = SealedSections::from_bytes(&v.value).ok();
        let hit = ring.section_secrets.iter().any(|s| {
            let key = section_key(s);
            let l = locator(s);
            let id = section_id(share_id.as_bytes(), &l);
            sections
                .iter()
                .flat_map(|x| &x.sections)
                .any(|(_, sealed)| {
                    Envelope::from_bytes(sealed).is_ok_and(|env| {
                        v.epochs.iter().any(|&e| {
                            attempts += 1;
                            envelope::open(
                                &key,
                                &Context::new(ObjectKind::ManifestSection, &id, e),
                                &env,
                            )
                            .is_ok()
                        })
                    })
                })
                || opens_with(&key, None, v, &extra, &mut attempts)
        }) || ring
            .content_keys
            .iter()
            .any(|k| opens_with(k, Some(k), v, &extra, &mut attempts));
        if hit {
            opened.push(v.table.clone());
        }
    }
    (opened, attempts)
}

/// A doctor whose identity the test keeps a copy of (to try its long-term keys on messages).
fn doctor_with_copy(name: &str) -> (Doctor, DeviceIdentity, carekey_core::keys::Card) {
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    let id = DeviceIdentity::from_root(&RootSecret::from_bytes(seed));
    let card = id
        .card(name, Role::Doctor, Some("GMC-7"), 1_800_000_000)
        .expect("card");
    let copy = DeviceIdentity::from_root(&RootSecret::from_bytes(seed));
    (Doctor::new(id, card.clone()), copy, card)
}

/// Pairs an existing doctor (scan, codes, confirm, grant); returns (link, relationship).
async fn pair_doctor(
    patient: &mut Patient,
    share: &carekey_client::ShareId,
    doctor: &mut Doctor,
) -> (carekey_client::LinkId, carekey_client::RelationshipId) {
    let cancel = Cancel::new();
    let mut session = patient.start_pairing(share).await.expect("pairing");
    let scan = doctor.scan(&session.qr_text()).await.expect("scan");
    let door = patient
        .wait_for_doctor(&mut session, 10, &cancel)
        .await
        .expect("reply");
    assert_eq!(door.check_code, scan.check_code());
    let rel = patient.confirm(session).await.expect("confirm");
    let link = doctor
        .wait_for_grant(scan, 10, &cancel)
        .await
        .expect("grant");
    (link, rel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_doctor_keys_open_nothing_of_the_new_epoch() {
    let relay = start_relay();
    let client = Relay::new(&relay.url).expect("url");
    let (pid, pcard) = identity("Pat Revoke", Role::Patient);
    let mut patient = Patient::new(pid, pcard.clone(), client.clone());
    // A small attachment (still a chunked blob): the scan below tries thousands of contexts
    // per stored value, and each failed AEAD attempt copies and wipes the whole value.
    let items = share_items(4 * 1024);
    let n = items.len();
    let cancel = Cancel::new();
    let share = patient
        .create_share(
            items.clone(),
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

    let (mut a, a_identity, a_card) = doctor_with_copy("Dr. Ada Revoked");
    let (link_a, rel_a) = pair_doctor(&mut patient, &share, &mut a).await;
    let (mut b, link_b, _) = pair(&mut patient, &share, "Dr. Ben Stays").await;
    let (_, _, rel_c) = pair(&mut patient, &share, "Dr. Cy Leaves First").await;

    // Epoch 1: A fetches; collect everything A holds.
    let mut a_ring = KeyRing::default();
    assert_eq!(
        a.fetch(&link_a, &NoProgress, &cancel)
            .await
            .expect("A fetches")
            .len(),
        n
    );
    let a1 = a.held_secrets_for_test(&link_a).expect("link");
    a_ring.collect(&client, &a1).await;

    // Epoch 2 (C revoked): A follows the re-key; collect again.
    patient
        .revoke(&share, &rel_c, &NoProgress, &cancel)
        .await
        .expect("revoke C");
    assert_eq!(
        a.fetch(&link_a, &NoProgress, &cancel)
            .await
            .expect("A follows")
            .len(),
        n
    );
    let a2 = a.held_secrets_for_test(&link_a).expect("link");
    assert_eq!(a2.epoch, 2);
    a_ring.collect(&client, &a2).await;
    // Two epochs of the whole scope: every category's secret, twice.
    assert_eq!(a_ring.section_secrets.len(), 2 * 11);
    assert_eq!(a_ring.content_keys.len(), 2 * n);
    let old_blob_ids: Vec<carekey_client::BlobId> = {
        let cap = ReaderCap {
            token: &a2.read_token,
            reader: &a2.reader,
            share_id: share,
        };
        let (_, sealed) = client.get_manifest(&cap, now()).await.expect("manifest");
        a2.keys
            .open_manifest(&sealed, share.as_bytes(), 2, &a2.patient_key)
            .expect("opens")
            .entries
            .iter()
            .map(|e| carekey_client::BlobId(e.blob_id))
            .collect()
    };

    // Revoke A: epoch 3.
    patient
        .revoke(&share, &rel_a, &NoProgress, &cancel)
        .await
        .expect("revoke A");

    // B, remaining, follows into epoch 3 and reads everything.
    let got = b
        .fetch(&link_b, &NoProgress, &cancel)
        .await
        .expect("B follows");
    assert_eq!(got.len(), n);
    for (r, it) in got.iter().zip(&items) {
        assert_eq!(r.data.as_slice(), it.data.as_slice());
    }
    let b3 = b.held_secrets_for_test(&link_b).expect("link");
    assert_eq!(b3.epoch, 3);
    let mut b_ring = KeyRing::default();
    let m3 = b_ring.collect(&client, &b3).await;
    assert_eq!(m3.entries.len(), n);

    // (a) Live relay: A's app sees the end; A's token and reader key get 410 for the
    // manifest and every blob id, new epoch and old.
    match a.fetch(&link_a, &NoProgress, &cancel).await {
        Err(ClientError::AccessEnded) => {}
        other => panic!(
            "revoked doctor must get AccessEnded, got {:?}",
            other.map(|v| v.len())
        ),
    }
    for h in [&a1, &a2] {
        let cap = ReaderCap {
            token: &h.read_token,
            reader: &h.reader,
            share_id: share,
        };
        match client.get_manifest(&cap, now()).await {
            Err(ClientError::AccessEnded) => {}
            other => panic!(
                "manifest with A's token: want 410, got {:?}",
                other.map(|v| v.0)
            ),
        }
        for id in m3
            .entries
            .iter()
            .map(|e| carekey_client::BlobId(e.blob_id))
            .chain(old_blob_ids.iter().copied())
        {
            match client.get_blob(&cap, &id, now()).await {
                Err(ClientError::AccessEnded) => {}
                other => panic!(
                    "blob with A's token: want 410, got {:?}",
                    other.map(|v| v.len())
                ),
            }
        }
    }
    // The old epoch is gone for everyone (B gets 404, not data).
    let b_cap = ReaderCap {
        token: &b3.read_token,
        reader: &b3.reader,
        share_id: share,
    };
    for id in &old_blob_ids {
        assert!(matches!(
            client.get_blob(&b_cap, id, now()).await,
            Err(ClientError::NotFound)
        ));
    }

    // (b) A full copy of the relay's data directory after the revoke.
    let copy = tempfile::tempdir().expect("temp dir");
    let files = copy_data_dir(relay.data.path(), copy.path());
    assert!(files >= 2, "database and WAL copied ({files} files)");
    let values = stored_values(&copy.path().join("relay.sqlite3"));
    assert!(
        values.iter().filter(|v| v.table == "blobs").count() == n,
        "only the new epoch's blobs remain"
    );

    // Positive control: B's keys open the new manifest and every new blob in the copy.
    let (b_opened, _) = count_opened(&values, &b_ring, &share);
    assert_eq!(
        b_opened.iter().filter(|t| *t == "blobs").count(),
        n,
        "B's content keys open every new blob: {b_opened:?}"
    );
    assert!(
        b_opened.iter().any(|t| t == "shares"),
        "B's element secrets open the new manifest's sections: {b_opened:?}"
    );

    // A's keys: nothing opens.
    let t = std::time::Instant::now();
    let (a_opened, attempts) = count_opened(&values, &a_ring, &share);
    println!(
        "scanned {} stored values with {} keys of A: {attempts} attempts in {:.1} s",
        values.len(),
        a_ring.section_secrets.len() + a_ring.content_keys.len(),
        t.elapsed().as_secs_f64()
    );
    assert!(
        attempts > 10_000,
        "the scan really tried ({attempts} attempts)"
    );
    assert!(
        a_opened.is_empty(),
        "A's old keys opened stored rows after the revoke: {a_opened:?}"
    );

    // A's long-term identity opens no stored message (mailboxes, pairings) either.
    for v in &values {
        for rid in &a_ring.relationship_ids {
            let mut guard = ReplayGuard::default();
            assert!(
                message::open(&a_identity, &a_card, &pcard, rid, &mut guard, &v.value).is_err(),
                "A's identity opened a stored {} row",
                v.table
            );
        }
    }
}

/// The delegated colleague under a revoked doctor: policy `allowed`, A delegates to C; the
/// patient revokes A. C's token was revoked with A's subtree, and every key C held (its
/// token, reader key, epoch and content keys) reads nothing, live or from a copy of the
/// relay's storage; the remaining doctor B still reads the new epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegated_colleague_of_a_revoked_doctor_opens_nothing() {
    let relay = start_relay();
    let client = Relay::new(&relay.url).expect("url");
    let (pid, pcard) = identity("Pat Revoke", Role::Patient);
    let mut patient = Patient::new(pid, pcard, client.clone());
    let items = share_items(4 * 1024);
    let n = items.len();
    let cancel = Cancel::new();
    let share = patient
        .create_share(
            items,
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
    let (mut a, link_a, rel_a) = pair(&mut patient, &share, "Dr. Ada Revoked").await;
    let (mut b, link_b, _) = pair(&mut patient, &share, "Dr. Ben Stays").await;
    let (cid, ccard) = identity("Dr. Cole Delegated", Role::Doctor);
    let mut c = Doctor::new(cid, ccard);
    let carekey_client::doctor::Invitation { id: handle, invite } =
        c.invite(&relay.url, 300).await.expect("invite");
    a.delegate(&link_a, &invite, None, None)
        .await
        .expect("A delegates to C");
    let link_c = c
        .accept_introduction(&handle, 10, &cancel)
        .await
        .expect("C accepts");
    assert_eq!(
        c.fetch(&link_c, &NoProgress, &cancel)
            .await
            .expect("C reads")
            .len(),
        n
    );
    let held_c = c.held_secrets_for_test(&link_c).expect("link");
    let mut c_ring = KeyRing::default();
    c_ring.collect(&client, &held_c).await;

    patient
        .revoke(&share, &rel_a, &NoProgress, &cancel)
        .await
        .expect("revoke A (and C below)");
    assert_eq!(
        b.fetch(&link_b, &NoProgress, &cancel)
            .await
            .expect("B follows")
            .len(),
        n
    );
    let held_b = b.held_secrets_for_test(&link_b).expect("link");
    let mut b_ring = KeyRing::default();
    let m2 = b_ring.collect(&client, &held_b).await;

    // (a) Live: C's app ends, C's token gets 410 for the manifest and every new blob.
    assert!(matches!(
        c.fetch(&link_c, &NoProgress, &cancel).await,
        Err(ClientError::AccessEnded)
    ));
    let cap = ReaderCap {
        token: &held_c.read_token,
        reader: &held_c.reader,
        share_id: share,
    };
    assert!(matches!(
        client.get_manifest(&cap, now()).await,
        Err(ClientError::AccessEnded)
    ));
    for e in &m2.entries {
        assert!(matches!(
            client
                .get_blob(&cap, &carekey_client::BlobId(e.blob_id), now())
                .await,
            Err(ClientError::AccessEnded)
        ));
    }

    // (b) A copy of the relay's storage: B's keys open the new epoch, C's keys nothing.
    let copy = tempfile::tempdir().expect("temp dir");
    copy_data_dir(relay.data.path(), copy.path());
    let values = stored_values(&copy.path().join("relay.sqlite3"));
    let (b_opened, _) = count_opened(&values, &b_ring, &share);
    assert_eq!(b_opened.iter().filter(|t| *t == "blobs").count(), n);
    let (c_opened, attempts) = count_opened(&values, &c_ring, &share);
    assert!(attempts > 1_000, "the scan really tried ({attempts})");
    assert!(
        c_opened.is_empty(),
        "the delegated colleague's keys opened stored rows: {c_opened:?}"
    );
}
