//! Opening hostile ciphertexts: single envelopes, chunked streams, pairing replies and
//! relationship messages never panic and never open under a key that did not seal them.
#![no_main]

use carekey_core::envelope::{self, Context, ObjectKind};
use carekey_core::keys::{ContentKey, DeviceIdentity, Role, RootSecret};
use carekey_core::message::{self, ReplayGuard};
use carekey_core::pairing::PatientPairing;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static ME: LazyLock<(DeviceIdentity, carekey_core::keys::Card)> = LazyLock::new(|| {
    let me = DeviceIdentity::from_root(&RootSecret::from_bytes([1; 32]));
    let card = me.card("Fuzz", Role::Patient, None, 0).expect("card");
    (me, card)
});

fuzz_target!(|data: &[u8]| {
    let key = ContentKey::from_bytes([7; 32]);
    let ctx = Context::new(ObjectKind::RecordBlob, b"fuzz", 1);
    if let Ok(env) = <envelope::Envelope as carekey_core::wire::Wire>::from_bytes(data) {
        // A forgery under a fixed key would be a break of Poly1305; the fuzzer cannot find one.
        assert!(envelope::open(&key, &ctx, &env).is_err());
    }
    let _ = envelope::open_chunked(&key, &ctx, data);
    let mut p = PatientPairing::start("https://r.example", [0; 16], u32::MAX, &mut rand_core::OsRng)
        .expect("valid URL");
    assert!(p.accept_reply(data, 0).is_err());
    let (me, card) = &*ME;
    let mut g = ReplayGuard::default();
    assert!(message::open(me, card, card, &[0; 16], &mut g, data).is_err());
});
