//! The core produces, the relay verifies: every structure of docs/relay-formats.md, built with
//! `carekey-core` and checked with `carekey-relay`'s own parsers and verifiers (and back).

use carekey_core::audit::{Chain, ChainKind, Head};
use carekey_core::capability::{FetchReceipt, owner_write_body};
use carekey_core::grant::{Category, DelegationLink, Scope};
use carekey_core::keys::{ReadToken, SigningSecret};
use carekey_core::label;
use carekey_core::wire::Wire;
use carekey_relay::delegation::Link;
use carekey_relay::scope::Scope as RelayScope;
use proptest::prelude::*;
use rand_core::OsRng;

#[test]
fn read_token_hash_matches() {
    for _ in 0..32 {
        let t = ReadToken::random(&mut OsRng);
        assert_eq!(
            t.relay_hash(),
            carekey_relay::token::token_hash(t.expose_secret())
        );
    }
}

#[test]
fn delegation_links_signed_by_core_verify_at_the_relay() {
    let parent = SigningSecret::random(&mut OsRng);
    let child = SigningSecret::random(&mut OsRng);
    let scope = Scope::new(
        &[Category::Conditions, Category::Notes],
        vec![[4; 16], [2; 16]],
    )
    .expect("scope");
    let token = ReadToken::random(&mut OsRng);
    // Version 1 (no relay groups) and version 2 (the child's groups, signed).
    for groups in [None, Some(vec![[7; 16], [1; 16], [7; 16]])] {
        let l = DelegationLink::sign(
            &parent,
            [9; 16],
            child.public(),
            &token,
            scope.clone(),
            groups.clone(),
            1234,
            1,
        );
        let bytes = l.to_bytes();
        let parsed = Link::parse(bytes.clone()).expect("relay parses a core link");
        parsed.verify().expect("relay verifies a core signature");
        assert_eq!(parsed.share_id, [9; 16]);
        assert_eq!(&parsed.parent_key, parent.public().as_bytes());
        assert_eq!(&parsed.child_key, child.public().as_bytes());
        assert_eq!(parsed.child_token_hash, token.relay_hash());
        assert_eq!((parsed.expires_at, parsed.depth), (1234, 1));
        assert_eq!(parsed.scope_bytes, scope.to_bytes());
        // The core sorts and de-duplicates the groups it signs; the relay reads the same.
        assert_eq!(parsed.groups, groups.map(|_| vec![[1; 16], [7; 16]]));
        assert_eq!(parsed.groups, l.groups);
        // Every single-bit change breaks either the parse or the signature at the relay.
        for i in 0..bytes.len() {
            let mut t = bytes.clone();
            t[i] ^= 0x01;
            let ok = Link::parse(t).map(|p| p.verify().is_ok()).unwrap_or(false);
            assert!(!ok, "relay accepted a link with bit flipped at {i}");
        }
    }
}

#[test]
fn relay_group_tags_and_scoped_registrations_agree() {
    // The relay takes group tags as opaque 16-byte values in registrations; the core derives
    // them. The relay's parser keeps the core's sorted, de-duplicated set.
    let secret = carekey_core::keys::GroupSecret::random(&mut OsRng);
    let scope = Scope::new(&[Category::Documents, Category::Notes], vec![[5; 16]]).expect("s");
    let tags = secret.tags(&[2; 16], &scope);
    assert_eq!(tags.len(), 3);
    let wire: Vec<String> = tags
        .iter()
        .rev()
        .map(|t| carekey_relay::encoding::b64(t))
        .collect();
    assert_eq!(
        carekey_relay::token::parse_groups(&wire).expect("relay parses"),
        tags
    );
}

#[test]
fn fetch_receipts_parse_at_the_relay() {
    let reader = SigningSecret::random(&mut OsRng);
    let r = FetchReceipt::sign(&reader, [3; 16], "manifest", 77, &mut OsRng);
    let parsed = carekey_relay::token::Receipt::parse(r.to_bytes()).expect("relay parses");
    assert_eq!(parsed.bytes, r.to_bytes());
}

#[test]
fn owner_write_message_matches() {
    let body = b"{\"owner_key\":\"x\"}";
    let core = label::signed_message(
        label::OWNER_WRITE_SIG,
        &owner_write_body("POST", "/v1/shares?x=1", "http://127.0.0.1:8080", body, 42),
    );
    let relay = carekey_relay::owner::owner_message(
        "POST",
        "/v1/shares?x=1",
        "http://127.0.0.1:8080",
        body,
        42,
    )
    .expect("relay builds the message");
    assert_eq!(core, relay);
}

#[test]
fn relay_audit_chain_verifies_in_the_core() {
    let share = [5; 16];
    let relay_key = SigningSecret::random(&mut OsRng);
    let mut chain = Chain::resume(ChainKind::Relay, share, Head::EMPTY);
    let mut prev = [0u8; 32];
    for i in 0..5u64 {
        let e = chain.append(100 + i, (i % 8) as u8 + 1, vec![i as u8; i as usize]);
        let relay_hash =
            carekey_relay::audit::entry_hash(&share, e.seq, &prev, e.time, e.kind, &e.body)
                .expect("hash");
        assert_eq!(relay_hash, chain.head().hash, "entry {}", e.seq);
        prev = relay_hash;
    }
    // A head message signed the relay's way verifies with the core's check.
    let head = chain.head();
    let msg = carekey_relay::audit::head_message(&share, head.seq, &head.hash);
    let prefix = label::signed_message(label::RELAY_AUDIT_HEAD_SIG, &[]);
    let body = msg
        .strip_prefix(prefix.as_slice())
        .expect("the relay's head message starts with the shared label");
    let sig = relay_key.sign(label::RELAY_AUDIT_HEAD_SIG, body);
    head.verify(ChainKind::Relay, &share, &relay_key.public(), &sig)
        .expect("core verifies the relay's head signature");
}

proptest! {
    #[test]
    fn scope_subset_agrees(a in 0u32..2048, b in 0u32..2048,
                           ra in proptest::collection::btree_set(0u8..6, 0..4),
                           rb in proptest::collection::btree_set(0u8..6, 0..4)) {
        let cats = |m: u32| Category::ALL.iter().copied().filter(|c| m & c.bit() != 0).collect::<Vec<_>>();
        let sa = Scope::new(&cats(a), ra.iter().map(|x| [*x; 16]).collect()).expect("scope");
        let sb = Scope::new(&cats(b), rb.iter().map(|x| [*x; 16]).collect()).expect("scope");
        let pa = RelayScope::parse(&sa.to_bytes()).expect("relay parses");
        let pb = RelayScope::parse(&sb.to_bytes()).expect("relay parses");
        prop_assert_eq!(sa.is_within(&sb), pa.within(&pb));
    }
}
