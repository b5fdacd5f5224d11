//! Property tests: hostile import input never panics and never half-imports; phrases round-trip.
#![allow(clippy::unwrap_used)]

mod common;

use carekey_core::keys::RootSecret;
use carekey_vault::*;
use common::*;
use proptest::prelude::*;

fn _vault_is_send() {
    fn send<T: Send>() {}
    send::<Vault>();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn phrase_round_trips(bytes in any::<[u8; 32]>()) {
        let root = RootSecret::from_bytes(bytes);
        let p = RecoveryPhrase::from_root(&root);
        prop_assert_eq!(p.expose_words().split(' ').count(), 24);
        let back = RecoveryPhrase::parse(&format!("  {}  ", p.expose_words().to_uppercase())).unwrap();
        let got = back.root().unwrap();
        prop_assert_eq!(got.expose_secret(), &bytes);
    }

    #[test]
    fn hostile_input_is_all_or_nothing(
        lines in proptest::collection::vec(
            prop_oneof![
                Just(r#"{"resourceType":"Observation","id":"a","status":"final"}"#.to_owned()),
                Just(r#"{"resourceType":"Binary","id":"b","data":"aGVsbG8="}"#.to_owned()),
                Just(r#"{"resourceType":"Binary","id":"c","data":"***"}"#.to_owned()),
                Just(r#"{"id":"x"}"#.to_owned()),
                Just(r#"[1,2]"#.to_owned()),
                Just(r#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient"}}]}"#.to_owned()),
                "\\PC{0,40}",
            ],
            0..12,
        )
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (mut v, _) = new_vault(dir.path());
        let data = lines.join("\n").into_bytes();
        let as_bundle = data.clone();
        let r = v.import_ndjson(
            &[NdjsonFile { name: "x.ndjson".into(), data }],
            &ImportOptions::default(),
            &mut ImportControl::default(),
        );
        match r {
            Ok(rep) => prop_assert_eq!(v.record_count().unwrap(), rep.records - rep.replaced),
            Err(VaultError::Import { .. }) => prop_assert_eq!(v.record_count().unwrap(), 0),
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
        let before = v.record_count().unwrap();
        let r = v.import_bundle(&as_bundle, &ImportOptions::default(), &mut ImportControl::default());
        if r.is_err() {
            prop_assert_eq!(v.record_count().unwrap(), before);
        }
        v.verify_audit().unwrap();
    }
}
