//! Scope enforcement end to end through a real relay process (docs/protocol.md "Scoped keys
//! and the sectioned manifest"; docs/threat-model.md T29).
//!
//! A grantee narrower than the share — a colleague the patient approved under `ask`, a
//! colleague delegated a narrower scope under `allowed` (and that colleague's own delegate),
//! or a doctor the patient paired with a narrow scope — runs a *modified client*: no scope
//! filter, every key and token it holds (`Doctor::held_secrets_for_test`), and every blob id
//! it can learn (here, the whole view of a full-scope doctor). It fetches, by single GET and
//! by batch, every blob outside its scope, and tries every key it holds on every manifest
//! section and on the ciphertext of every blob outside its scope. The test counts the bytes it
//! obtains and decrypts outside its scope: 0, before and after a re-key (the revoke of someone
//! else), while its own scope keeps reading.

mod common;

use carekey_client::doctor::{Doctor, Invitation};
use carekey_client::patient::{Patient, ShareItem, ShareOptions};
use carekey_client::progress::{Cancel, NoProgress};
use carekey_client::relay::{ReaderCap, Relay};
use carekey_client::test_export::HeldSecrets;
use carekey_client::{BlobId, ClientError, LinkId, ShareId};
use carekey_core::envelope::{self, Context, Envelope, ObjectKind};
use carekey_core::grant::{Category, DelegationLink, Policy, Scope};
use carekey_core::keys::{ReadToken, Role, SigningSecret};
use carekey_core::manifest::{Manifest, ManifestEntry};
use carekey_core::section::{SealedSections, locator, section_id, section_key};
use carekey_core::wire::Wire;
use common::{identity, in_a_day, pair, share_items, start_relay};
use rand_core::OsRng;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn cap(h: &HeldSecrets) -> ReaderCap<'_> {
    ReaderCap {
        token: &h.read_token,
        reader: &h.reader,
        share_id: h.share_id,
    }
}

/// The manifest `h` opens right now with its own token and keys.
async fn view(relay: &Relay, h: &HeldSecrets) -> (Vec<u8>, Manifest) {
    let (_, sealed) = relay.get_manifest(&cap(h), now()).await.expect("manifest");
    let m = h
        .keys
        .open_manifest(&sealed, h.share_id.as_bytes(), h.epoch, &h.patient_key)
        .expect("holder opens its own sections");
    (sealed, m)
}

/// What a modified client holding `h` obtains outside `scope`, given every entry of a
/// full-scope doctor's view (`full`, with that doctor's capability to download the
/// ciphertexts as a colluder could). Returns (bytes fetched, bytes decrypted) outside the
/// scope, and asserts the grantee still reads its own scope.
async fn outside_scope(
    relay: &Relay,
    h: &HeldSecrets,
    scope: &Scope,
    full: &HeldSecrets,
) -> (usize, usize) {
    let (sealed, mine) = view(relay, h).await;
    let (_, all) = view(relay, full).await;
    let inside = |e: &ManifestEntry| scope.covers(e.category, &e.record_id);
    let foreign: Vec<&ManifestEntry> = all.entries.iter().filter(|e| !inside(e)).collect();
    let own: Vec<&ManifestEntry> = all.entries.iter().filter(|e| inside(e)).collect();
    assert!(
        !foreign.is_empty() && !own.is_empty(),
        "the test needs both"
    );
    let (mut fetched, mut decrypted) = (0usize, 0usize);

    // Its own manifest view: exactly its scope, nothing else.
    assert_eq!(
        mine.entries.len(),
        own.len(),
        "the grantee's view is its scope"
    );
    for e in &mine.entries {
        if !inside(e) {
            decrypted += e.size as usize;
        }
    }

    // Fetch: every foreign blob id alone, all of them in batches, and each mixed into a batch
    // with a blob of its own scope.
    let c = cap(h);
    for e in &foreign {
        match relay.get_blob(&c, &BlobId(e.blob_id), now()).await {
            Err(ClientError::NotFound) => {}
            Ok(b) => fetched += b.len(),
            Err(other) => panic!("single GET outside the scope: want 404, got {other:?}"),
        }
        let mixed = [BlobId(own[0].blob_id), BlobId(e.blob_id)];
        match relay.get_blobs(&c, &mixed, now()).await {
            Err(ClientError::NotFound) => {}
            Ok(b) => fetched += b.iter().map(Vec::len).sum::<usize>(),
            Err(other) => panic!("mixed batch: want 404, got {other:?}"),
        }
    }
    let ids: Vec<BlobId> = foreign.iter().map(|e| BlobId(e.blob_id)).collect();
    for chunk in ids.chunks(carekey_relay_api::MAX_BATCH_BLOBS) {
        match relay.get_blobs(&c, chunk, now()).await {
            Err(ClientError::NotFound) => {}
            Ok(b) => fetched += b.iter().map(Vec::len).sum::<usize>(),
            Err(other) => panic!("batch outside the scope: want 404, got {other:?}"),
        }
    }
    // Its own scope still reads, by GET and by batch.
    let own_ids: Vec<BlobId> = own.iter().map(|e| BlobId(e.blob_id)).collect();
    for chunk in own_ids.chunks(carekey_relay_api::MAX_BATCH_BLOBS) {
        relay
            .get_blobs(&c, chunk, now())
            .await
            .expect("own scope reads");
    }

    // Decrypt: every key it holds on every manifest section (only its own open), and every
    // content key it learnt on the ciphertext of every foreign blob (downloaded by the
    // full-scope doctor, as a colluder or a copy of the relay's disk would have it).
    let keys = h.keys.scoped().expect("a scoped grant");
    let sections = SealedSections::from_bytes(&sealed).expect("a sectioned manifest");
    let mut opened_sections = 0;
    for k in keys.keys() {
        let key = section_key(&k.secret);
        let id = section_id(h.share_id.as_bytes(), &locator(&k.secret));
        for (_, s) in &sections.sections {
            let env = Envelope::from_bytes(s).expect("envelope");
            let ctx = Context::new(ObjectKind::ManifestSection, &id, h.epoch);
            if envelope::open(&key, &ctx, &env).is_ok() {
                opened_sections += 1;
            }
        }
    }
    assert_eq!(
        opened_sections,
        keys.keys().len(),
        "each key opens its own section and no other"
    );
    let fc = cap(full);
    for e in &foreign {
        let blob = relay
            .get_blob(&fc, &BlobId(e.blob_id), now())
            .await
            .expect("the full-scope doctor downloads it");
        for k in &mine.entries {
            let as_mine = ManifestEntry {
                content_key: k.content_key.clone(),
                ..(*e).clone()
            };
            if let Ok(pt) = as_mine.open_blob(h.epoch, &blob) {
                decrypted += pt.len();
            }
        }
    }
    (fetched, decrypted)
}

async fn patient_with_share(
    url: &str,
    policy: Policy,
    depth: u8,
) -> (Patient, ShareId, Vec<ShareItem>) {
    let (pid, pcard) = identity("Pat Scope", Role::Patient);
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

/// Pairs `doctor` with `patient` on `share` for `scope` only (`Patient::confirm_with_scope`).
async fn pair_scoped(
    patient: &mut Patient,
    share: &ShareId,
    doctor: &mut Doctor,
    scope: Scope,
) -> (LinkId, carekey_client::RelationshipId) {
    let cancel = Cancel::new();
    let mut session = patient.start_pairing(share).await.expect("pairing");
    let scan = doctor.scan(&session.qr_text()).await.expect("scan");
    let door = patient
        .wait_for_doctor(&mut session, 10, &cancel)
        .await
        .expect("reply");
    assert_eq!(door.check_code, scan.check_code());
    let rel = patient
        .confirm_with_scope(session, scope)
        .await
        .expect("confirm");
    let link = doctor
        .wait_for_grant(scan, 10, &cancel)
        .await
        .expect("grant");
    (link, rel)
}

fn colleague(name: &str) -> Doctor {
    let (id, card) = identity(name, Role::Doctor);
    Doctor::new(id, card)
}

/// The categories of `items` except `keep`: a record of one of those, to list by id.
fn a_record_outside(items: &[ShareItem], keep: Category) -> [u8; 16] {
    items
        .iter()
        .find(|i| i.category != keep)
        .expect("a record of another category")
        .record_id
}

async fn fetch_ids(d: &mut Doctor, link: &LinkId) -> Vec<[u8; 16]> {
    let mut v: Vec<[u8; 16]> = d
        .fetch(link, &NoProgress, &Cancel::new())
        .await
        .expect("fetches")
        .iter()
        .map(|r| r.record_id)
        .collect();
    v.sort_unstable();
    v
}

fn want_ids(items: &[ShareItem], scope: &Scope) -> Vec<[u8; 16]> {
    let mut v: Vec<[u8; 16]> = items
        .iter()
        .filter(|i| scope.covers(i.category, &i.record_id))
        .map(|i| i.record_id)
        .collect();
    v.sort_unstable();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_colleague_gets_only_its_scope_before_and_after_a_rekey() {
    let relay = start_relay();
    let client = Relay::new(&relay.url).expect("url");
    let cancel = Cancel::new();
    let (mut patient, share, items) = patient_with_share(&relay.url, Policy::Ask, 0).await;
    // Ada has every category and one record listed by id (a scope may list a record only if
    // the asking doctor's lists it: relay-formats.md "Scope").
    let listed = a_record_outside(&items, Category::Documents);
    let (ada_id, ada_card) = identity("Dr. Ada Full", Role::Doctor);
    let mut ada = Doctor::new(ada_id, ada_card);
    let ada_scope = Scope::new(&Category::ALL, vec![listed]).expect("scope");
    let (link, rel) = pair_scoped(&mut patient, &share, &mut ada, ada_scope).await;
    let (_ben, _, rel_b) = pair(&mut patient, &share, "Dr. Ben Leaves").await;

    // Ada asks for Cole: the documents plus the listed record (a category and a record
    // element).
    let scope = Scope::new(&[Category::Documents], vec![listed]).expect("scope");
    let mut cole = colleague("Dr. Cole Narrow");
    let Invitation { id: handle, invite } = cole
        .invite(ada.relay_url(&link).expect("link"), 300)
        .await
        .expect("invite");
    ada.request_forward(&link, &invite, Some(scope.clone()), "letter")
        .await
        .expect("request");
    patient.inbox(&rel, 5).await.expect("inbox");
    let req = patient.forward_requests()[0].id;
    patient
        .answer_forward(&req, true)
        .await
        .expect("approve")
        .expect("colleague");
    let clink = cole
        .accept_introduction(&handle, 10, &cancel)
        .await
        .expect("introduction");
    assert_eq!(fetch_ids(&mut cole, &clink).await, want_ids(&items, &scope));

    for round in ["epoch 1", "epoch 2 (after Ben's revoke)"] {
        let hc = cole.held_secrets_for_test(&clink).expect("link");
        let ha = ada.held_secrets_for_test(&link).expect("link");
        assert_eq!(
            hc.keys.scoped().expect("scoped").keys().len(),
            2,
            "Cole holds the keys of two elements, never the epoch key"
        );
        let (fetched, decrypted) = outside_scope(&client, &hc, &scope, &ha).await;
        assert_eq!(
            (fetched, decrypted),
            (0, 0),
            "{round}: bytes outside Cole's scope"
        );
        if round == "epoch 1" {
            patient
                .revoke(&share, &rel_b, &NoProgress, &cancel)
                .await
                .expect("revoke Ben: re-key");
            // Both follow the re-key with their own keys.
            assert_eq!(fetch_ids(&mut ada, &link).await.len(), items.len());
            assert_eq!(fetch_ids(&mut cole, &clink).await, want_ids(&items, &scope));
            assert_eq!(cole.held_secrets_for_test(&clink).expect("link").epoch, 2);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegates_two_levels_down_get_only_their_scope_before_and_after_a_rekey() {
    let relay = start_relay();
    let client = Relay::new(&relay.url).expect("url");
    let cancel = Cancel::new();
    let (mut patient, share, items) = patient_with_share(&relay.url, Policy::Allowed, 2).await;
    let (mut ada, link, _) = pair(&mut patient, &share, "Dr. Ada Full").await;
    let (_ben, _, rel_b) = pair(&mut patient, &share, "Dr. Ben Leaves").await;

    // Ada delegates documents and observations to Cole, offline from the patient; Cole
    // delegates documents only to Dan.
    let cole_scope =
        Scope::new(&[Category::Documents, Category::Observations], vec![]).expect("scope");
    let dan_scope = Scope::new(&[Category::Documents], vec![]).expect("scope");
    let mut cole = colleague("Dr. Cole Level One");
    let Invitation { id: ch, invite: ci } = cole.invite(&relay.url, 300).await.expect("invite");
    ada.delegate(&link, &ci, Some(cole_scope.clone()), None)
        .await
        .expect("Ada delegates");
    let clink = cole
        .accept_introduction(&ch, 10, &cancel)
        .await
        .expect("Cole accepts");
    let mut dan = colleague("Dr. Dan Level Two");
    let Invitation { id: dh, invite: di } = dan.invite(&relay.url, 300).await.expect("invite");
    cole.delegate(&clink, &di, Some(dan_scope.clone()), None)
        .await
        .expect("Cole delegates");
    let dlink = dan
        .accept_introduction(&dh, 10, &cancel)
        .await
        .expect("Dan accepts");
    assert_eq!(
        fetch_ids(&mut cole, &clink).await,
        want_ids(&items, &cole_scope)
    );
    assert_eq!(
        fetch_ids(&mut dan, &dlink).await,
        want_ids(&items, &dan_scope)
    );
    // A wider delegation is refused by Cole's own client before anything is sent.
    let mut eve = colleague("Dr. Eve Wider");
    let Invitation { invite: ei, .. } = eve.invite(&relay.url, 300).await.expect("invite");
    assert_eq!(
        cole.delegate(&clink, &ei, Some(Scope::all()), None)
            .await
            .expect_err("wider than Cole's")
            .code(),
        "invalid_input"
    );

    // The patient verifies both notices (chains, and relay groups matching each scope).
    let tree = patient.delegations(&share).await.expect("notices verify");
    assert_eq!(tree.len(), 2);

    for round in ["epoch 1", "epoch 2 (after Ben's revoke)"] {
        let ha = ada.held_secrets_for_test(&link).expect("link");
        let hc = cole.held_secrets_for_test(&clink).expect("link");
        let hd = dan.held_secrets_for_test(&dlink).expect("link");
        for (who, h, scope) in [("Cole", &hc, &cole_scope), ("Dan", &hd, &dan_scope)] {
            let (fetched, decrypted) = outside_scope(&client, h, scope, &ha).await;
            assert_eq!(
                (fetched, decrypted),
                (0, 0),
                "{round}: bytes outside {who}'s scope"
            );
        }
        // Cole's modified client registers a delegation for Eve with every relay group it
        // can learn (Ada's): the relay refuses, the groups are not within Cole's.
        let token = ReadToken::random(&mut OsRng);
        let mut chain = hc.chain.clone();
        chain.push(DelegationLink::sign(
            &hc.reader,
            hc.share_id.to_bytes(),
            SigningSecret::random(&mut OsRng).public(),
            &token,
            dan_scope.clone(),
            ha.keys.groups(),
            hc.chain.last().expect("Cole's own link").expires_at,
            0,
        ));
        match client
            .register_delegation(&hc.share_id, &hc.root_token_hash, &chain, b"notice")
            .await
        {
            Err(ClientError::Refused { status: 403, code }) => {
                assert_eq!(code, "delegation_widens_groups");
            }
            other => panic!("widened groups must be refused, got {other:?}"),
        }
        if round == "epoch 1" {
            patient
                .revoke(&share, &rel_b, &NoProgress, &cancel)
                .await
                .expect("revoke Ben: re-key");
            // The keys go down the tree, each level passing on only its child's elements.
            assert_eq!(fetch_ids(&mut ada, &link).await.len(), items.len());
            cole.sync(&clink, 5).await.expect("Cole gets Ada's update");
            assert_eq!(
                fetch_ids(&mut cole, &clink).await,
                want_ids(&items, &cole_scope)
            );
            assert_eq!(
                fetch_ids(&mut dan, &dlink).await,
                want_ids(&items, &dan_scope)
            );
            let hd = dan.held_secrets_for_test(&dlink).expect("link");
            assert_eq!(hd.epoch, 2);
            assert_eq!(hd.keys.scoped().expect("scoped").keys().len(), 1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_doctor_paired_with_a_narrow_scope_gets_only_that_scope() {
    let relay = start_relay();
    let client = Relay::new(&relay.url).expect("url");
    let cancel = Cancel::new();
    let (mut patient, share, items) = patient_with_share(&relay.url, Policy::Never, 0).await;
    let (_ada, _, rel_a) = pair(&mut patient, &share, "Dr. Ada Leaves").await;
    let (mut ben, blink, _) = pair(&mut patient, &share, "Dr. Ben Full").await;

    // Nora is paired for the observations and one listed record only.
    let listed = a_record_outside(&items, Category::Observations);
    let scope = Scope::new(&[Category::Observations], vec![listed]).expect("scope");
    let (nid, ncard) = identity("Dr. Nora Narrow", Role::Doctor);
    let mut nora = Doctor::new(nid, ncard);
    let (nlink, rel_n) = pair_scoped(&mut patient, &share, &mut nora, scope.clone()).await;
    assert_eq!(fetch_ids(&mut nora, &nlink).await, want_ids(&items, &scope));
    // The patient's own view of the grant says what was signed, for the Access screen.
    let signed = |patient: &Patient| {
        patient
            .active_grants(&share)
            .into_iter()
            .find(|g| g.relationship == rel_n)
            .map(|g| (g.scope, g.depth))
    };
    assert_eq!(signed(&patient), Some((scope.clone(), 0)));

    for round in ["epoch 1", "epoch 2 (after Ada's revoke)"] {
        let hn = nora.held_secrets_for_test(&nlink).expect("link");
        let hb = ben.held_secrets_for_test(&blink).expect("link");
        let (fetched, decrypted) = outside_scope(&client, &hn, &scope, &hb).await;
        assert_eq!(
            (fetched, decrypted),
            (0, 0),
            "{round}: bytes outside Nora's scope"
        );
        if round == "epoch 1" {
            patient
                .revoke(&share, &rel_a, &NoProgress, &cancel)
                .await
                .expect("revoke Ada: re-key");
            assert_eq!(fetch_ids(&mut ben, &blink).await.len(), items.len());
            assert_eq!(fetch_ids(&mut nora, &nlink).await, want_ids(&items, &scope));
            assert_eq!(
                signed(&patient),
                Some((scope.clone(), 0)),
                "a re-key keeps each grant's scope"
            );
        }
    }
}

/// One node of the delegation tree of [`every_node_revoked_alone_gets_nothing_new`].
struct Node {
    name: &'static str,
    doctor: Doctor,
    link: LinkId,
    scope: Scope,
}

/// Issue 11 item 4: the patient revokes any node of the tree — a root grantee or a delegate at
/// any level — and its subtree; every revoked node reads 0 bytes of the new epoch (its token
/// answers 410 for every new blob, and no key of the new epoch reaches it: its parent drops it
/// from the re-key), while every other node keeps reading its scope. Tree: the patient grants
/// Ada and Ben (everything, depth 2); Ada delegates documents and observations to Cole and
/// observations to Eve; Cole delegates documents to Dan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_revoked_alone_gets_nothing_new() {
    let relay = start_relay();
    let client = Relay::new(&relay.url).expect("url");
    let cancel = Cancel::new();
    let docs = Scope::new(&[Category::Documents], vec![]).expect("scope");
    let obs = Scope::new(&[Category::Observations], vec![]).expect("scope");
    let docs_obs =
        Scope::new(&[Category::Documents, Category::Observations], vec![]).expect("scope");
    // (revoked node, the nodes its revoke takes with it)
    let cases: [(&str, &[&str]); 5] = [
        ("Ben", &["Ben"]),
        ("Dan", &["Dan"]),
        ("Eve", &["Eve"]),
        ("Cole", &["Cole", "Dan"]),
        ("Ada", &["Ada", "Cole", "Dan", "Eve"]),
    ];
    for (target, gone) in cases {
        let (mut patient, share, items) = patient_with_share(&relay.url, Policy::Allowed, 2).await;
        let (ada, ada_link, rel_a) = pair(&mut patient, &share, "Ada").await;
        let (ben, ben_link, rel_b) = pair(&mut patient, &share, "Ben").await;
        let mut nodes = vec![
            Node {
                name: "Ada",
                doctor: ada,
                link: ada_link,
                scope: Scope::all(),
            },
            Node {
                name: "Ben",
                doctor: ben,
                link: ben_link,
                scope: Scope::all(),
            },
        ];
        for (name, parent, scope) in [
            ("Cole", "Ada", &docs_obs),
            ("Eve", "Ada", &obs),
            ("Dan", "Cole", &docs),
        ] {
            let mut d = colleague(name);
            let Invitation { id, invite } = d.invite(&relay.url, 300).await.expect("invite");
            let p = nodes.iter_mut().find(|n| n.name == parent).expect("parent");
            p.doctor
                .delegate(&p.link, &invite, Some(scope.clone()), None)
                .await
                .expect("delegates");
            let link = d
                .accept_introduction(&id, 10, &cancel)
                .await
                .expect("accepts");
            nodes.push(Node {
                name,
                doctor: d,
                link,
                scope: scope.clone(),
            });
        }
        for n in &mut nodes {
            assert_eq!(
                fetch_ids(&mut n.doctor, &n.link).await,
                want_ids(&items, &n.scope),
                "{}: epoch 1",
                n.name
            );
        }
        let tree = patient.delegations(&share).await.expect("notices verify");
        assert_eq!(tree.len(), 3);

        match target {
            "Ada" => patient.revoke(&share, &rel_a, &NoProgress, &cancel).await,
            "Ben" => patient.revoke(&share, &rel_b, &NoProgress, &cancel).await,
            name => {
                let id = tree
                    .iter()
                    .find(|d| d.colleague == name)
                    .and_then(|d| d.id)
                    .expect("a delegation of the tree");
                patient
                    .revoke_delegation(&share, &id, &NoProgress, &cancel)
                    .await
            }
        }
        .unwrap_or_else(|e| panic!("revoke {target}: {e:?}"));
        let tree = patient.delegations(&share).await.expect("tree");
        for d in &tree {
            assert_eq!(
                d.revoked,
                gone.contains(&d.colleague.as_str()),
                "revoking {target}: {} shown revoked",
                d.colleague
            );
        }

        // The re-key travels down the tree: every node syncs, parents first.
        for n in &mut nodes {
            let _ = n.doctor.sync(&n.link, 0).await;
        }
        // A remaining full-scope root's view: every blob id of the new epoch.
        let full = nodes
            .iter_mut()
            .find(|n| !gone.contains(&n.name) && n.scope == Scope::all())
            .expect("a remaining root");
        assert_eq!(
            fetch_ids(&mut full.doctor, &full.link).await.len(),
            items.len()
        );
        let hf = full.doctor.held_secrets_for_test(&full.link).expect("link");
        assert_eq!(hf.epoch, 2);
        let (_, new) = view(&client, &hf).await;
        for n in &mut nodes {
            if gone.contains(&n.name) {
                let h = n.doctor.held_secrets_for_test(&n.link).expect("link");
                assert_eq!(h.epoch, 1, "revoking {target}: {} got new keys", n.name);
                // Its modified client asks for every new blob, alone and in batches.
                let mut got = 0usize;
                for e in &new.entries {
                    match client.get_blob(&cap(&h), &BlobId(e.blob_id), now()).await {
                        Err(ClientError::AccessEnded) => {}
                        Ok(b) => got += b.len(),
                        Err(other) => panic!("{}: want 410, got {other:?}", n.name),
                    }
                }
                let ids: Vec<BlobId> = new.entries.iter().map(|e| BlobId(e.blob_id)).collect();
                for chunk in ids.chunks(carekey_relay_api::MAX_BATCH_BLOBS) {
                    if let Ok(b) = client.get_blobs(&cap(&h), chunk, now()).await {
                        got += b.iter().map(Vec::len).sum::<usize>();
                    }
                }
                assert_eq!(got, 0, "revoking {target}: new bytes {} read", n.name);
                assert!(matches!(
                    n.doctor.fetch(&n.link, &NoProgress, &cancel).await,
                    Err(ClientError::AccessEnded)
                ));
            } else {
                assert_eq!(
                    fetch_ids(&mut n.doctor, &n.link).await,
                    want_ids(&items, &n.scope),
                    "revoking {target}: {} keeps reading",
                    n.name
                );
                let h = n.doctor.held_secrets_for_test(&n.link).expect("link");
                assert_eq!(h.epoch, 2, "revoking {target}: {} follows", n.name);
            }
        }
    }
}
