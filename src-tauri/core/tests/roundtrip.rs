//! Property tests: seal→open and encode→decode round-trip; decoders never panic and re-encode
//! whatever they accept to the same bytes (one meaning per byte string).

use carekey_core::audit::Entry;
use carekey_core::capability::FetchReceipt;
use carekey_core::envelope::{self, Context, Envelope, ObjectKind};
use carekey_core::grant::{Category, DelegationLink, Grant, Policy, Scope, SignedGrant};
use carekey_core::keys::{
    Card, ContentKey, DeviceIdentity, EpochKey, ReadToken, Role, RootSecret, SigningSecret,
};
use carekey_core::manifest::{Manifest, ManifestEntry};
use carekey_core::pairing::QrPayload;
use carekey_core::wire::Wire;
use proptest::prelude::*;
use rand_core::OsRng;

fn kind(i: u8) -> ObjectKind {
    [
        ObjectKind::RecordBlob,
        ObjectKind::Manifest,
        ObjectKind::Attachment,
        ObjectKind::Message,
        ObjectKind::Backup,
        ObjectKind::VaultValue,
    ][usize::from(i) % 6]
}

fn scope_strategy() -> impl Strategy<Value = Scope> {
    (
        proptest::collection::vec(0u8..11, 0..5),
        proptest::collection::vec(any::<[u8; 16]>(), 0..6),
    )
        .prop_map(|(cats, recs)| {
            let cats: Vec<Category> = cats.into_iter().filter_map(Category::from_index).collect();
            Scope::new(&cats, recs).expect("small scope")
        })
}

/// Re-encoding whatever a decoder accepts gives back the input bytes.
fn canonical<T: Wire>(bytes: &[u8]) {
    if let Ok(v) = T::from_bytes(bytes) {
        assert_eq!(v.to_bytes(), bytes, "{} is not canonical", T::WHAT);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn envelope_seal_open(pt in proptest::collection::vec(any::<u8>(), 0..4096),
                          id in proptest::collection::vec(any::<u8>(), 0..64),
                          k in any::<u8>(), epoch in any::<u32>()) {
        let key = ContentKey::random(&mut OsRng);
        let ctx = Context::new(kind(k), &id, epoch);
        let env = envelope::seal(&key, &ctx, &pt, &mut OsRng);
        let bytes = env.to_bytes();
        let back = Envelope::from_bytes(&bytes).expect("decodes");
        let opened = envelope::open(&key, &ctx, &back).expect("opens");
        prop_assert_eq!(opened.as_slice(), &pt[..]);
        let other = Context::new(kind(k), &id, epoch.wrapping_add(1));
        prop_assert!(envelope::open(&key, &other, &back).is_err());
    }

    #[test]
    fn chunked_seal_open(len in 0usize..20_000, chunk in 1u32..5000) {
        let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let key = ContentKey::random(&mut OsRng);
        let ctx = Context::new(ObjectKind::Attachment, b"a", 1);
        let (blob, root) = envelope::seal_chunked(&key, &ctx, &data, chunk, &mut OsRng).expect("seals");
        let (opened, root2) = envelope::open_chunked(&key, &ctx, &blob).expect("opens");
        prop_assert_eq!(opened.as_slice(), &data[..]);
        prop_assert_eq!(root, root2);
        if blob.len() > 30 {
            prop_assert!(envelope::open_chunked(&key, &ctx, &blob[..blob.len() - 1]).is_err());
        }
    }

    #[test]
    fn scope_and_grant_roundtrip(scope in scope_strategy(), epoch in any::<u32>(),
                                 exp in any::<u64>(), url in "https://[a-z]{1,30}\\.[a-z]{2,5}") {
        prop_assert_eq!(Scope::from_bytes(&scope.to_bytes()).expect("decodes"), scope.clone());
        let patient = SigningSecret::random(&mut OsRng);
        let g = Grant {
            share_id: [1; 16], relay_url: url, epoch,
            keys: carekey_core::section::GrantKeys::Epoch(EpochKey::random(&mut OsRng)), read_token: ReadToken::random(&mut OsRng),
            policy: Policy::Allowed, scope, expires_at: exp, grantee: [2; 32],
            reader_key: SigningSecret::random(&mut OsRng).public(), delegation_depth: 1, issued_at: 5,
        }.sign(&patient);
        let back = SignedGrant::from_bytes(&g.to_bytes()).expect("decodes");
        back.verify(&patient.public()).expect("verifies");
        prop_assert_eq!(back, g.clone());
        // Version 2: the scope's element keys instead of the epoch key; both versions
        // re-encode exactly (the signature covers the bytes as they came).
        let groups = carekey_core::keys::GroupSecret::random(&mut OsRng);
        let keys = carekey_core::section::ScopeKeys::derive(
            &[1; 16], epoch, &EpochKey::random(&mut OsRng), &groups, &g.grant.scope);
        let v2 = Grant { keys: carekey_core::section::GrantKeys::Scoped(keys.clone()), ..g.grant.clone() }
            .sign(&patient);
        prop_assert_eq!(v2.to_bytes()[0], 2);
        prop_assert_eq!(g.to_bytes()[0], 1);
        let back = SignedGrant::from_bytes(&v2.to_bytes()).expect("v2 decodes");
        back.verify(&patient.public()).expect("v2 verifies");
        prop_assert_eq!(back, v2.clone());
        // Keys that are not exactly the scope's are malformed.
        let wrong = carekey_core::section::ScopeKeys::derive(
            &[1; 16], epoch, &EpochKey::random(&mut OsRng), &groups,
            &Scope::new(&[Category::Other], vec![[0xab; 16]]).expect("scope"));
        if wrong.elements() != keys.elements() {
            let bad = Grant { keys: carekey_core::section::GrantKeys::Scoped(wrong), ..g.grant.clone() }
                .sign(&patient);
            prop_assert!(SignedGrant::from_bytes(&bad.to_bytes()).is_err());
        }
        let u = carekey_core::epoch::EpochUpdate {
            share_id: [1; 16], epoch, keys: carekey_core::section::GrantKeys::Scoped(keys),
            manifest_version: exp,
            revoked_tokens: vec![[1; 32], [2; 32]],
        };
        prop_assert_eq!(u.to_bytes()[0], 2);
        prop_assert_eq!(carekey_core::epoch::EpochUpdate::from_bytes(&u.to_bytes()).expect("decodes"), u);
    }

    #[test]
    fn link_receipt_entry_roundtrip(scope in scope_strategy(), exp in any::<u64>(), depth in 0u8..5,
                                    obj in "[a-z0-9]{0,40}", body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let parent = SigningSecret::random(&mut OsRng);
        let l = DelegationLink::sign(&parent, [3; 16], SigningSecret::random(&mut OsRng).public(),
            &ReadToken::random(&mut OsRng), scope, None, exp, depth);
        prop_assert_eq!(DelegationLink::from_bytes(&l.to_bytes()).expect("decodes"), l);
        let r = FetchReceipt::sign(&parent, [4; 16], &obj, exp, &mut OsRng);
        let back = FetchReceipt::from_bytes(&r.to_bytes()).expect("decodes");
        back.verify().expect("verifies");
        prop_assert_eq!(back, r);
        let e = Entry { seq: exp, prev_hash: [5; 32], time: 7, kind: depth, body };
        prop_assert_eq!(Entry::from_bytes(&e.to_bytes()).expect("decodes"), e);
    }

    #[test]
    fn manifest_roundtrip(n in 0usize..8, version in any::<u64>()) {
        let entries: Vec<ManifestEntry> = (0..n).map(|i| {
            ManifestEntry::seal_record([i as u8; 16], Category::Notes, &format!("note {i}"), 2, b"x", &mut OsRng).0
        }).collect();
        let m = Manifest { share_id: [6; 16], version, epoch: 2, issued_at: 9, entries };
        prop_assert_eq!(Manifest::from_bytes(&m.to_bytes()).expect("decodes"), m);
    }

    #[test]
    fn qr_text_roundtrip(host in "[a-z0-9.-]{1,40}", https in any::<bool>(), exp in any::<u32>()) {
        let url = format!("{}{}", if https { "https://" } else { "http://" }, host);
        let p = carekey_core::pairing::PatientPairing::start(&url, [3; 16], exp, &mut OsRng).expect("valid url");
        let text = p.qr().to_text();
        prop_assert_eq!(&QrPayload::parse(&text).expect("parses"), p.qr());
        prop_assert!(text.len() <= 8 + 192);
    }

    #[test]
    fn decoders_never_panic_and_are_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        canonical::<Scope>(&bytes);
        canonical::<SignedGrant>(&bytes);
        canonical::<DelegationLink>(&bytes);
        canonical::<FetchReceipt>(&bytes);
        canonical::<Entry>(&bytes);
        canonical::<Manifest>(&bytes);
        canonical::<Card>(&bytes);
        canonical::<QrPayload>(&bytes);
        canonical::<Envelope>(&bytes);
        canonical::<carekey_core::epoch::EpochUpdate>(&bytes);
        canonical::<carekey_core::section::ScopeKeys>(&bytes);
        canonical::<carekey_core::section::SealedSections>(&bytes);
        canonical::<carekey_core::forward::Introduction>(&bytes);
        let _ = QrPayload::parse(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn card_roundtrip() {
    let id = DeviceIdentity::from_root(&RootSecret::random(&mut OsRng));
    let card = id.card("Pat", Role::Patient, None, 3).expect("card");
    assert_eq!(Card::verified(&card.to_bytes()).expect("decodes"), card);
}
