//! SMART Health Links and Cards input (carekey-shl): every parser returns, never panics, on any
//! input; a parsed `shlink:/` re-serialises to text that parses to the same link (bare and as a
//! viewer URL) and stays within the text bound; a decoded `shc:/` chunk re-encodes to digits
//! that decode to the same JWS text; the input as a plaintext survives encrypt → decrypt.
#![no_main]

use carekey_shl::limits::MAX_LINK_TEXT_LEN;
use carekey_shl::shc::{self, ChunkSet};
use carekey_shl::{EncryptOptions, Jwk, Jwks, Manifest, ShlKey, Shlink, TrustStore, jwe, zip};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The key of src-tauri/shl/tests/testdata (bytes 0..32): the seed JWEs open under it.
    let key = ShlKey::from_bytes(core::array::from_fn(|i| i as u8));

    // Binary inputs: manifests, JWK sets, card files, raw DEFLATE (bounded at 1 MiB here).
    let _ = Manifest::parse(data).map(|m| m.open(&key));
    let _ = Jwks::parse(data);
    let _ = Jwk::parse(data);
    let _ = shc::parse_card_file(data);
    if let Ok(out) = zip::inflate_raw(data, 1 << 20) {
        assert!(out.len() <= 1 << 20);
    }
    if data.len() <= 4096 {
        for zip in [false, true] {
            let opts = EncryptOptions {
                cty: Some("application/fhir+json"),
                zip,
            };
            let sealed = jwe::encrypt(data, &key, &opts).expect("small plaintexts encrypt");
            let opened = jwe::decrypt(&sealed, &key).expect("own JWE decrypts");
            assert_eq!(opened.plaintext.as_slice(), data);
        }
    }

    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };

    if let Ok(link) = Shlink::parse(text) {
        let again_text = link.to_text();
        assert!(again_text.len() <= MAX_LINK_TEXT_LEN);
        let again = Shlink::parse(&again_text).expect("own text parses");
        assert_eq!(again, link);
        let viewer = link.to_viewer_url("https://viewer.example.org/v");
        assert_eq!(Shlink::parse(&viewer).expect("own viewer URL parses"), link);
        let _ = link.check_usable(0);
        let _ = link.check_usable(u64::MAX);
    }

    // Mutated JWEs fail authentication (a forgery would be a break of AES-GCM); what is
    // exercised is the header and shape checks before it.
    let _ = jwe::parse_header(text);
    let _ = jwe::decrypt(text, &key);
    let _ = carekey_shl::open_direct_file(text, &key);

    if let Ok(chunk) = shc::decode_qr(text) {
        let digits = shc::encode_qr(&chunk.jws_part).expect("decoded JWS text re-encodes");
        assert_eq!(
            shc::decode_qr(&digits).expect("own digits decode").jws_part,
            chunk.jws_part
        );
    }
    let mut set = ChunkSet::default();
    for line in text.lines().take(20) {
        if set.add(line).is_err() {
            break;
        }
    }
    let trust = TrustStore::new();
    let _ = shc::read_card(text, &trust, 0);
});
