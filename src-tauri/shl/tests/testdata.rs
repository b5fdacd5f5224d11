//! Refusal cases kept as files: `tests/testdata/fail_*`, each checked to give its own error.
//! `ok_*` files are the matching inputs that open (also fuzz seeds).
//!
//! The kind of input is the file's extension: `.shlink` (link text, checked usable at
//! [`NOW`]), `.jwe` (decrypted under [`test_key`]), `.shc` (`shc:/` QR text) and `.jws` (a
//! card), verified against `issuer.jwks.json` for [`ISSUER`] at [`NOW`], and `.manifest.json`
//! (the first entry's outcome under [`test_key`]).
//!
//! Regenerate (new random IVs and issuer key; the checks stay the same):
//! `CAREKEY_REGENERATE_TESTDATA=1 cargo test -p carekey-shl --test testdata -- --ignored`

use std::path::{Path, PathBuf};

use carekey_shl::limits::{MAX_LINK_TEXT_LEN, MAX_PLAINTEXT_LEN};
use carekey_shl::shc::{self, HEALTH_CARD_TYPE};
use carekey_shl::{
    EncryptOptions, Flags, IssuerKey, Jwks, Opened, ShlError, ShlKey, Shlink, TrustStore, jwe,
    open_manifest,
};
use serde_json::{Value, json};

/// The key every `.jwe` and `.manifest.json` case is decrypted under: bytes 0, 1, …, 31.
fn test_key() -> ShlKey {
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = i as u8;
    }
    ShlKey::from_bytes(k)
}
/// The time cases are checked at: 2025-06-15T16:26:40Z.
const NOW: u64 = 1_750_004_800;
const ISSUER: &str = "https://issuer.example.org";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata")
}

fn trust() -> TrustStore {
    let jwks =
        Jwks::parse(&std::fs::read(dir().join("issuer.jwks.json")).expect("jwks")).expect("parses");
    assert_eq!(jwks.keys().len(), 1);
    let mut t = TrustStore::new();
    t.add(ISSUER, jwks);
    t
}

/// What opening one file gives: `Ok(description)` or the error.
fn open(name: &str, text: &str) -> Result<String, ShlError> {
    let key = test_key();
    if name.ends_with(".shlink") {
        Shlink::parse_usable(text, NOW).map(|l| format!("link {:?}", l.flags()))
    } else if name.ends_with(".jwe") {
        jwe::decrypt(text, &key).map(|d| format!("{} bytes", d.plaintext.len()))
    } else if name.ends_with(".shc") {
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        shc::read_qr(&lines, &trust(), NOW).map(|c| format!("{:?}", c.verification))
    } else if name.ends_with(".jws") {
        shc::read_card(text, &trust(), NOW).map(|c| format!("{:?}", c.verification))
    } else if name.ends_with(".manifest.json") {
        let entries = open_manifest(text.as_bytes(), &key)?;
        match entries.into_iter().next().map(|e| e.outcome) {
            Some(Ok(Opened::File(f))) => Ok(format!("{:?}", f.content_type())),
            Some(Ok(Opened::Fetch(_))) => Ok("fetch".into()),
            Some(Err(e)) => Err(e),
            None => Ok("empty".into()),
        }
    } else {
        panic!("{name}: unknown kind")
    }
}

/// Every `fail_*` file and the error it must give.
fn expected() -> Vec<(&'static str, ShlError)> {
    vec![
        // --- links
        (
            "fail_bad_base64.shlink",
            ShlError::Base64 {
                what: "link payload",
            },
        ),
        (
            "fail_not_json.shlink",
            ShlError::Json {
                what: "link payload",
                reason: "syntax error",
            },
        ),
        ("fail_short_key.shlink", ShlError::InvalidKey),
        ("fail_label_too_long.shlink", ShlError::LabelTooLong),
        (
            "fail_expired.shlink",
            ShlError::Expired {
                exp: 1_700_000_000,
                now: NOW,
            },
        ),
        (
            "fail_passcode_and_direct.shlink",
            ShlError::PasscodeWithDirectFile,
        ),
        (
            "fail_http_url.shlink",
            ShlError::InvalidUrl {
                what: "link url",
                reason: "plain http is only allowed to a loopback host",
            },
        ),
        (
            "fail_version_2.shlink",
            ShlError::UnsupportedVersion { v: 2 },
        ),
        (
            "fail_oversized.shlink",
            ShlError::TooLarge {
                what: "link text",
                max: MAX_LINK_TEXT_LEN,
            },
        ),
        ("fail_not_a_link.shlink", ShlError::NotShlink),
        // --- JWE
        (
            "fail_bad_base64.jwe",
            ShlError::Base64 {
                what: "JWE ciphertext",
            },
        ),
        (
            "fail_bad_header_base64.jwe",
            ShlError::Base64 { what: "JWE header" },
        ),
        (
            "fail_wrong_alg.jwe",
            ShlError::UnsupportedAlgorithm {
                what: "JWE alg",
                alg: "RSA-OAEP-256".into(),
            },
        ),
        (
            "fail_wrong_enc.jwe",
            ShlError::UnsupportedEncryption {
                enc: "A128CBC-HS256".into(),
            },
        ),
        (
            "fail_unsupported_zip.jwe",
            ShlError::UnsupportedCompression { zip: "GZIP".into() },
        ),
        ("fail_crit.jwe", ShlError::CriticalHeader { what: "JWE" }),
        ("fail_wrong_key.jwe", ShlError::WrongKey),
        (
            "fail_truncated.jwe",
            ShlError::Malformed {
                what: "JWE",
                reason: "a compact JWE has five dot-separated parts",
            },
        ),
        ("fail_truncated_tag.jwe", ShlError::TagLength { len: 8 }),
        ("fail_short_iv.jwe", ShlError::IvLength { len: 8 }),
        ("fail_bad_tag.jwe", ShlError::DecryptionFailed),
        (
            "fail_oversized_zip_bomb.jwe",
            ShlError::DecompressedTooLarge {
                max: MAX_PLAINTEXT_LEN,
            },
        ),
        ("fail_corrupt_deflate.jwe", ShlError::Inflate),
        // --- manifests
        (
            "fail_api_access.manifest.json",
            ShlError::ApiAccessNotSupported,
        ),
        (
            "fail_unknown_type.manifest.json",
            ShlError::UnsupportedContentType {
                content_type: "application/pdf".into(),
            },
        ),
        // --- SMART Health Cards
        (
            "fail_odd_digits.shc",
            ShlError::ShcNumeric {
                reason: "an odd number of digits",
            },
        ),
        (
            "fail_pair_out_of_range.shc",
            ShlError::ShcNumeric {
                reason: "a digit pair above 77",
            },
        ),
        (
            "fail_missing_chunk.shc",
            ShlError::ShcChunks {
                reason: "chunks are missing",
            },
        ),
        ("fail_tampered.shc", ShlError::BadSignature),
        ("fail_tampered.jws", ShlError::BadSignature),
        (
            "fail_wrong_alg.jws",
            ShlError::UnsupportedAlgorithm {
                what: "JWS alg",
                alg: "RS256".into(),
            },
        ),
        (
            "fail_expired.jws",
            ShlError::CardExpired {
                exp: 1_700_000_000,
                now: NOW,
            },
        ),
        (
            "fail_not_a_card.jws",
            ShlError::NotHealthCard {
                reason: "vc.type has no https://smarthealth.cards#health-card",
            },
        ),
    ]
}

#[test]
fn every_fail_case_gives_its_error() {
    let want = expected();
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(dir()).expect("testdata") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name")
            .to_owned();
        if !name.starts_with("fail_") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("text");
        let (_, err) = want
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{name} has no expected error in this test"));
        assert_eq!(&open(&name, &text).expect_err(&name), err, "{name}");
        seen.push(name);
    }
    for (n, _) in &want {
        assert!(
            seen.iter().any(|s| s == n),
            "{n} is missing from tests/testdata"
        );
    }
    println!("testdata: ran {} fail cases", seen.len());
}

#[test]
fn ok_cases_open() {
    let cases = [
        (
            "ok_link.shlink",
            "link Flags { long_term: true, passcode: true, direct_file: false }",
        ),
        (
            "ok_direct.shlink",
            "link Flags { long_term: false, passcode: false, direct_file: true }",
        ),
        ("ok_fhir.jwe", "41 bytes"),
        (
            "ok_card.shc",
            "Verified { issuer: \"https://issuer.example.org\" }",
        ),
        (
            "ok_chunked.shc",
            "Verified { issuer: \"https://issuer.example.org\" }",
        ),
        (
            "ok_card.jws",
            "Verified { issuer: \"https://issuer.example.org\" }",
        ),
        ("ok_unknown_issuer.jws", "IssuerNotVerified"),
        ("ok.manifest.json", "FhirJson"),
    ];
    for (name, want) in cases {
        let text = std::fs::read_to_string(dir().join(name)).expect(name);
        assert_eq!(open(name, &text).expect(name), want, "{name}");
    }
}

// ------------------------------------------------------------------ generator

fn link_text(json: &str) -> String {
    format!(
        "shlink:/{}",
        data_encoding::BASE64URL_NOPAD.encode(json.as_bytes())
    )
}

fn b64(b: &[u8]) -> String {
    data_encoding::BASE64URL_NOPAD.encode(b)
}

fn card_payload(iss: &str, exp: Option<u64>) -> Value {
    let mut v = json!({
        "iss": iss,
        "nbf": 1_690_000_000u64,
        "vc": {
            "type": [HEALTH_CARD_TYPE, "https://smarthealth.cards#immunization"],
            "credentialSubject": {
                "fhirVersion": "4.0.1",
                "fhirBundle": {"resourceType": "Bundle", "type": "collection", "entry": [
                    {"fullUrl": "resource:0", "resource": {"resourceType": "Patient", "name": [{"family": "Testperson", "given": ["Ana"]}], "birthDate": "1980-01-01"}},
                    {"fullUrl": "resource:1", "resource": {"resourceType": "Immunization", "status": "completed", "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "207"}]}, "patient": {"reference": "resource:0"}, "occurrenceDateTime": "2021-01-01"}}
                ]}
            }
        }
    });
    if let Some(e) = exp {
        v["exp"] = e.into();
    }
    v
}

/// A compact JWE under the test key with this header and these (already compressed) bytes.
fn seal_raw(header: &Value, mut body: Vec<u8>) -> String {
    use aes_gcm::aead::{AeadInPlace, KeyInit};
    use rand_core::RngCore;
    let h = b64(header.to_string().as_bytes());
    let mut iv = [0u8; 12];
    rand_core::OsRng.fill_bytes(&mut iv);
    let k: [u8; 32] = std::array::from_fn(|i| i as u8);
    let c = aes_gcm::Aes256Gcm::new(aes_gcm::Key::<aes_gcm::Aes256Gcm>::from_slice(&k));
    let t = c
        .encrypt_in_place_detached(aes_gcm::Nonce::from_slice(&iv), h.as_bytes(), &mut body)
        .expect("seal");
    format!("{h}..{}.{}.{}", b64(&iv), b64(&body), b64(&t))
}

/// Replaces part `i` of a compact serialization.
fn with_part(compact: &str, i: usize, part: &str) -> String {
    let mut p: Vec<&str> = compact.split('.').collect();
    p[i] = part;
    p.join(".")
}

/// A JWE under the test key whose header is `header` (the tag then fails, but the header checks
/// come first).
fn with_header(compact: &str, header: &Value) -> String {
    with_part(compact, 0, &b64(header.to_string().as_bytes()))
}

#[test]
#[ignore = "writes tests/testdata; run with CAREKEY_REGENERATE_TESTDATA=1"]
fn regenerate_testdata() {
    if std::env::var_os("CAREKEY_REGENERATE_TESTDATA").is_none() {
        println!("skipped: set CAREKEY_REGENERATE_TESTDATA=1 to rewrite tests/testdata");
        return;
    }
    let d = dir();
    std::fs::create_dir_all(&d).expect("dir");
    let write = |name: &str, text: &str| std::fs::write(d.join(name), text).expect(name);
    let key = test_key();
    let url = "https://shl.example.org/manifests/I91rhba3VsuGXGchcnr6VHlQFKxfE28kuZ0ssbEuxno/manifest.json";
    let k = key.to_base64url();
    let k = k.as_str();

    // --- links
    let ok = Shlink::new(
        url,
        key.clone(),
        Flags {
            long_term: true,
            passcode: true,
            direct_file: false,
        },
        Some("Test summary for Ana"),
        Some(NOW + 365 * 86400),
    )
    .expect("link");
    write("ok_link.shlink", &ok.to_text());
    let direct = Shlink::new(
        "https://files.example.org/ips.jwe",
        key.clone(),
        Flags {
            direct_file: true,
            ..Flags::default()
        },
        Some("Direct file"),
        None,
    )
    .expect("link");
    write(
        "ok_direct.shlink",
        &direct.to_viewer_url("https://viewer.example.org/shlink.html"),
    );
    write(
        "fail_bad_base64.shlink",
        "shlink:/eyJ1cmwiOi*JodHRwczovL2V4YW1wbGUub3JnIn0",
    );
    write("fail_not_json.shlink", &link_text("{\"url\": nope}"));
    write(
        "fail_short_key.shlink",
        &link_text(&format!(r#"{{"url":"{url}","key":"{}"}}"#, &k[..40])),
    );
    write(
        "fail_label_too_long.shlink",
        &link_text(&format!(
            r#"{{"url":"{url}","key":"{k}","label":"{}"}}"#,
            "x".repeat(81)
        )),
    );
    write(
        "fail_expired.shlink",
        &link_text(&format!(
            r#"{{"url":"{url}","key":"{k}","exp":1700000000,"label":"Old link"}}"#
        )),
    );
    write(
        "fail_passcode_and_direct.shlink",
        &link_text(&format!(r#"{{"url":"{url}","key":"{k}","flag":"PU"}}"#)),
    );
    write(
        "fail_http_url.shlink",
        &link_text(&format!(
            r#"{{"url":"http://shl.example.org/m","key":"{k}"}}"#
        )),
    );
    write(
        "fail_version_2.shlink",
        &link_text(&format!(r#"{{"url":"{url}","key":"{k}","v":2}}"#)),
    );
    write(
        "fail_oversized.shlink",
        &link_text(&format!(
            r#"{{"url":"{url}","key":"{k}","_pad":"{}"}}"#,
            "a".repeat(MAX_LINK_TEXT_LEN)
        )),
    );
    write(
        "fail_not_a_link.shlink",
        "https://viewer.example.org/#not-a-link",
    );

    // --- JWE
    let fhir = br#"{"resourceType":"Patient","id":"example"}"#;
    let opts = EncryptOptions {
        cty: Some("application/fhir+json"),
        zip: false,
    };
    let good = jwe::encrypt(fhir, &key, &opts).expect("encrypt");
    write("ok_fhir.jwe", &good);
    let parts: Vec<&str> = good.split('.').collect();
    let mut ct = parts[3].to_owned();
    ct.replace_range(4..5, "*");
    write("fail_bad_base64.jwe", &with_part(&good, 3, &ct));
    write(
        "fail_bad_header_base64.jwe",
        &with_part(&good, 0, "eyJhbGciOiJkaXIi+"),
    );
    write(
        "fail_wrong_alg.jwe",
        &with_header(&good, &json!({"alg": "RSA-OAEP-256", "enc": "A256GCM"})),
    );
    write(
        "fail_wrong_enc.jwe",
        &with_header(&good, &json!({"alg": "dir", "enc": "A128CBC-HS256"})),
    );
    write(
        "fail_unsupported_zip.jwe",
        &with_header(
            &good,
            &json!({"alg": "dir", "enc": "A256GCM", "zip": "GZIP"}),
        ),
    );
    write(
        "fail_crit.jwe",
        &with_header(
            &good,
            &json!({"alg": "dir", "enc": "A256GCM", "crit": ["exp"], "exp": 1}),
        ),
    );
    write(
        "fail_wrong_key.jwe",
        &jwe::encrypt(fhir, &ShlKey::generate(), &opts).expect("encrypt"),
    );
    write("fail_truncated.jwe", &good[..good.len() * 2 / 3]);
    let dec = |p: &str| {
        data_encoding::BASE64URL_NOPAD
            .decode(p.as_bytes())
            .expect("part")
    };
    write(
        "fail_truncated_tag.jwe",
        &with_part(&good, 4, &b64(&dec(parts[4])[..8])),
    );
    write(
        "fail_short_iv.jwe",
        &with_part(&good, 2, &b64(&dec(parts[2])[..8])),
    );
    let mut tag = data_encoding::BASE64URL_NOPAD
        .decode(parts[4].as_bytes())
        .expect("tag");
    tag[15] ^= 0x80;
    write("fail_bad_tag.jwe", &with_part(&good, 4, &b64(&tag)));
    // zip: DEF bodies built by hand: `encrypt` refuses plaintexts over the bound, and only
    // compresses real DEFLATE.
    let zip_header = json!({"alg": "dir", "enc": "A256GCM", "cty": "application/fhir+json", "zip": "DEF", "kid": key.thumbprint()});
    let bomb = seal_raw(
        &zip_header,
        carekey_shl::zip::deflate_raw(&vec![b' '; MAX_PLAINTEXT_LEN + 1]),
    );
    assert!(bomb.len() < 64 * 1024, "the bomb is small: {}", bomb.len());
    write("fail_oversized_zip_bomb.jwe", &bomb);
    let corrupt = seal_raw(&zip_header, vec![0xff; 64]);
    write("fail_corrupt_deflate.jwe", &corrupt);

    // --- manifests
    write(
        "ok.manifest.json",
        &json!({"files": [{"contentType": "application/fhir+json", "embedded": good}]}).to_string(),
    );
    let token = jwe::encrypt(
        br#"{"access_token":"x","aud":"https://fhir.example.org"}"#,
        &key,
        &EncryptOptions {
            cty: Some("application/smart-api-access"),
            zip: false,
        },
    )
    .expect("encrypt");
    write(
        "fail_api_access.manifest.json",
        &json!({"files": [{"contentType": "application/smart-api-access", "embedded": token}]})
            .to_string(),
    );
    write("fail_unknown_type.manifest.json", &json!({"files": [{"contentType": "application/pdf", "location": "https://files.example.org/x.pdf"}]}).to_string());

    // --- cards
    let issuer = IssuerKey::generate();
    write(
        "issuer.jwks.json",
        &Jwks::from_keys([issuer.public_jwk().clone()])
            .to_json()
            .to_string(),
    );
    let card = shc::sign_card(&card_payload(ISSUER, None), &issuer).expect("sign");
    write("ok_card.jws", &card);
    let qr = shc::encode_qr(&card).expect("qr");
    write("ok_card.shc", &qr);
    let digits = &qr[5..];
    let half = digits.len() / 4 * 2;
    write(
        "ok_chunked.shc",
        &format!(
            "shc:/2/2/{}\nshc:/1/2/{}\n",
            &digits[half..],
            &digits[..half]
        ),
    );
    write(
        "fail_missing_chunk.shc",
        &format!("shc:/1/2/{}\n", &digits[..half]),
    );
    write("fail_odd_digits.shc", &qr[..qr.len() - 1]);
    write(
        "fail_pair_out_of_range.shc",
        &format!("{}99", &qr[..qr.len() - 2]),
    );
    let stranger = IssuerKey::generate();
    write(
        "ok_unknown_issuer.jws",
        &shc::sign_card(
            &card_payload("https://unknown.example.org", None),
            &stranger,
        )
        .expect("sign"),
    );
    let mut other = card_payload(ISSUER, None);
    other["vc"]["credentialSubject"]["fhirBundle"]["entry"][1]["resource"]["occurrenceDateTime"] =
        "2021-02-02".into();
    let forged = shc::sign_card(&other, &stranger).expect("sign");
    let tampered = with_part(&card, 1, forged.split('.').nth(1).expect("payload"));
    write("fail_tampered.jws", &tampered);
    write("fail_tampered.shc", &shc::encode_qr(&tampered).expect("qr"));
    let h = b64(
        json!({"alg": "RS256", "zip": "DEF", "kid": issuer.public_jwk().kid()})
            .to_string()
            .as_bytes(),
    );
    write("fail_wrong_alg.jws", &with_part(&card, 0, &h));
    write(
        "fail_expired.jws",
        &shc::sign_card(&card_payload(ISSUER, Some(1_700_000_000)), &issuer).expect("sign"),
    );
    let mut not_card = card_payload(ISSUER, None);
    not_card["vc"]["type"] = json!(["VerifiableCredential"]);
    write(
        "fail_not_a_card.jws",
        &shc::sign_card(&not_card, &issuer).expect("sign"),
    );
    println!("testdata written to {}", d.display());
}
