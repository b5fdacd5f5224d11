//! Every wire decoder: never panics; anything accepted re-encodes to exactly the input bytes
//! (one meaning per byte string, trailing bytes rejected). The first byte picks the type.
#![no_main]

use carekey_core::audit::Entry;
use carekey_core::capability::FetchReceipt;
use carekey_core::envelope::{ChunkHeader, Envelope};
use carekey_core::epoch::EpochUpdate;
use carekey_core::grant::{DelegationLink, Scope, SignedGrant};
use carekey_core::keys::Card;
use carekey_core::manifest::Manifest;
use carekey_core::pairing::QrPayload;
use carekey_core::section::{ScopeKeys, SealedSections};
use carekey_core::wire::Wire;
use libfuzzer_sys::fuzz_target;

fn roundtrip<T: Wire>(bytes: &[u8]) {
    if let Ok(v) = T::from_bytes(bytes) {
        assert_eq!(v.to_bytes(), bytes, "{} re-encodes differently", T::WHAT);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&tag, rest)) = data.split_first() else {
        return;
    };
    match tag % 13 {
        0 => roundtrip::<Scope>(rest),
        1 => roundtrip::<SignedGrant>(rest),
        2 => roundtrip::<DelegationLink>(rest),
        3 => roundtrip::<FetchReceipt>(rest),
        4 => roundtrip::<Entry>(rest),
        5 => roundtrip::<Manifest>(rest),
        6 => roundtrip::<Card>(rest),
        7 => roundtrip::<QrPayload>(rest),
        8 => roundtrip::<Envelope>(rest),
        9 => roundtrip::<ChunkHeader>(rest),
        10 => roundtrip::<EpochUpdate>(rest),
        11 => roundtrip::<ScopeKeys>(rest),
        _ => roundtrip::<SealedSections>(rest),
    }
});
