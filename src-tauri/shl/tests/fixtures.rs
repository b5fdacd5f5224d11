//! The real SMART Health Link fixture: `shl/ips-bundle-01.jwe` (an HL7 IPS example Bundle,
//! encrypted by a third-party SHL producer) and `shl/ips-bundle-01.shl-details.json` (its
//! link: payload JSON, bare `shlink:/`, and a viewer URL).
//!
//! Fixtures come from `$CAREKEY_FIXTURES` (default `../shared/fixtures` beside the repository).
//! Without them each test prints "skipped" and passes, unless `CAREKEY_REQUIRE_FIXTURES` is set
//! (CI), where it fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use carekey_shl::{
    ContentType, EncryptOptions, Flags, Opened, ShlError, ShlKey, Shlink, jwe, open_direct_file,
    open_manifest,
};
use serde_json::Value;

fn fixtures(what: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("CAREKEY_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"));
    if dir.join(what).exists() {
        return Some(dir);
    }
    let required =
        std::env::var_os("CAREKEY_REQUIRE_FIXTURES").is_some_and(|v| !v.is_empty() && v != "0");
    assert!(
        !required,
        "CAREKEY_REQUIRE_FIXTURES is set but {} is missing",
        dir.join(what).display()
    );
    println!(
        "skipped: CAREKEY_FIXTURES not found ({} missing)",
        dir.join(what).display()
    );
    None
}

struct Fixture {
    details: Value,
    jwe: String,
    dir: PathBuf,
}

fn load() -> Option<Fixture> {
    let dir = fixtures("shl/ips-bundle-01.jwe")?;
    let details = std::fs::read(dir.join("shl/ips-bundle-01.shl-details.json")).expect("details");
    Some(Fixture {
        details: serde_json::from_slice(&details).expect("details JSON"),
        jwe: std::fs::read_to_string(dir.join("shl/ips-bundle-01.jwe")).expect("JWE"),
        dir,
    })
}

/// 2025-01-01T00:00:00Z.
const NOW: u64 = 1_735_689_600;

fn check_ips_bundle(bundle: &Value) {
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "document");
    assert_eq!(
        bundle["identifier"]["value"],
        "175bd032-8b00-4728-b2dc-748bb1501aed"
    );
    let entries = bundle["entry"].as_array().expect("entries");
    let mut counts = BTreeMap::new();
    for e in entries {
        let t = e["resource"]["resourceType"]
            .as_str()
            .expect("resourceType");
        *counts.entry(t).or_insert(0) += 1;
    }
    let want: BTreeMap<&str, i32> = [
        ("AllergyIntolerance", 2),
        ("Composition", 1),
        ("Condition", 2),
        ("Medication", 2),
        ("MedicationStatement", 2),
        ("Observation", 7),
        ("Organization", 2),
        ("Patient", 1),
        ("Practitioner", 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(counts, want);
    // A FHIR document starts with its Composition: an IPS (LOINC 60591-5).
    let comp = &entries[0]["resource"];
    assert_eq!(comp["resourceType"], "Composition");
    assert_eq!(comp["type"]["coding"][0]["code"], "60591-5");
    let patient = entries
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["resourceType"] == "Patient")
        .expect("patient");
    assert_eq!(patient["name"][0]["family"], "DeLarosa");
    assert_eq!(patient["birthDate"], "1972-05-01");
}

#[test]
fn parses_the_fixture_link() {
    let Some(f) = load() else { return };
    let payload = &f.details["shlinkJsonPayload"];
    let bare = f.details["shlink"].as_str().expect("shlink");
    let viewer = f.details["shlinkBare"].as_str().expect("viewer URL");
    assert!(viewer.starts_with("https://") && viewer.contains("#shlink:/"));

    let link = Shlink::parse(bare).expect("the bare link parses");
    assert_eq!(Shlink::parse(viewer).expect("the viewer URL parses"), link);
    assert_eq!(link.url(), payload["url"]);
    assert_eq!(link.key().to_base64url().as_str(), payload["key"]);
    assert_eq!(link.label(), Some("Demo SHL for IPS_IG-bundle-01"));
    assert_eq!(link.label(), payload["label"].as_str());
    assert_eq!(
        link.flags(),
        Flags {
            long_term: true,
            passcode: false,
            direct_file: true
        }
    );
    assert_eq!(link.flags().as_string(), "LU");
    assert_eq!(link.exp(), None);
    assert_eq!(link.version(), 1);
    // No exp: usable at any time.
    link.check_usable(NOW).expect("usable");
    link.check_usable(u64::MAX).expect("no exp, never stale");
    // Our own text for it reads back the same.
    assert_eq!(Shlink::parse(&link.to_text()).expect("own text"), link);

    // The same link with an exp: usable before, refused at and after.
    let dated = Shlink::new(
        link.url(),
        link.key().clone(),
        link.flags(),
        link.label(),
        Some(NOW),
    )
    .expect("dated link");
    let text = dated.to_text();
    assert!(Shlink::parse_usable(&text, NOW - 1).is_ok());
    assert_eq!(
        Shlink::parse_usable(&text, NOW + 3600).unwrap_err(),
        ShlError::Expired {
            exp: NOW,
            now: NOW + 3600
        }
    );
    // ... while its label can still be shown.
    assert_eq!(Shlink::parse(&text).expect("parses").label(), link.label());
}

#[test]
fn decrypts_the_fixture_file() {
    let Some(f) = load() else { return };
    let link = Shlink::parse(f.details["shlink"].as_str().expect("shlink")).expect("link");

    let header = jwe::parse_header(&f.jwe).expect("header");
    // This producer writes the key's RFC 7638 thumbprint as kid, and no cty or zip.
    assert_eq!(
        header.kid.as_deref(),
        Some(link.key().thumbprint().as_str())
    );
    assert_eq!(header.cty, None);
    assert!(!header.zip);

    let d = jwe::decrypt(&f.jwe, link.key()).expect("decrypts");
    let bundle: Value = serde_json::from_slice(&d.plaintext).expect("JSON");
    check_ips_bundle(&bundle);

    // The U-flag path: the type is told from the content (no cty).
    let file = open_direct_file(&f.jwe, link.key()).expect("opens");
    assert_eq!(file.content_type(), ContentType::FhirJson);
    assert_eq!(file.cty(), None);
    check_ips_bundle(&file.fhir_resource().expect("a FHIR resource"));
    assert!(!format!("{file:?}").contains("DeLarosa"));

    // The same bundle, unencrypted, in fixtures/fhir.
    let plain = f.dir.join("fhir/ips-bundle-01.json");
    if plain.exists() {
        let want: Value =
            serde_json::from_slice(&std::fs::read(plain).expect("read")).expect("JSON");
        assert_eq!(bundle, want);
    }
}

#[test]
fn fixture_refused_under_other_keys_and_when_altered() {
    let Some(f) = load() else { return };
    let link = Shlink::parse(f.details["shlink"].as_str().expect("shlink")).expect("link");
    // Another key: the kid says the file is for another link.
    assert_eq!(
        jwe::decrypt(&f.jwe, &ShlKey::generate()).unwrap_err(),
        ShlError::WrongKey
    );
    // One ciphertext character changed: the tag no longer matches.
    let mut parts: Vec<String> = f.jwe.trim().split('.').map(str::to_owned).collect();
    let mut ct = parts[3].clone().into_bytes();
    ct[100] = if ct[100] == b'A' { b'B' } else { b'A' };
    parts[3] = String::from_utf8(ct).expect("ascii");
    assert_eq!(
        jwe::decrypt(&parts.join("."), link.key()).unwrap_err(),
        ShlError::DecryptionFailed
    );
    // Cut short.
    let cut = &f.jwe[..f.jwe.len() / 2];
    assert!(matches!(
        jwe::decrypt(cut, link.key()),
        Err(ShlError::Malformed { .. })
    ));
}

#[test]
fn fixture_bundle_through_our_encryption_and_a_manifest() {
    let Some(f) = load() else { return };
    let link = Shlink::parse(f.details["shlink"].as_str().expect("shlink")).expect("link");
    let plain = jwe::decrypt(&f.jwe, link.key())
        .expect("decrypts")
        .plaintext;
    let opts = EncryptOptions {
        cty: Some("application/fhir+json"),
        zip: true,
    };
    let ours = jwe::encrypt(&plain, link.key(), &opts).expect("encrypts");
    assert!(ours.len() < f.jwe.len() / 3, "DEFLATE shrinks FHIR JSON");
    let manifest = serde_json::json!({"files": [
        {"contentType": "application/fhir+json", "embedded": ours},
        {"contentType": "application/fhir+json", "embedded": f.jwe.trim()},
        {"contentType": "application/fhir+json", "location": "https://files.example.org/ips?sig=x"},
    ]});
    let entries = open_manifest(manifest.to_string().as_bytes(), link.key()).expect("manifest");
    for e in &entries[..2] {
        let Ok(Opened::File(file)) = &e.outcome else {
            panic!("entry {}: {:?}", e.index, e.outcome)
        };
        check_ips_bundle(&file.fhir_resource().expect("FHIR"));
    }
    // The location is handed back to fetch; the fixture's JWE stands in for what it returns.
    let Ok(Opened::Fetch(pending)) = &entries[2].outcome else {
        panic!("{:?}", entries[2].outcome)
    };
    assert_eq!(pending.url(), "https://files.example.org/ips?sig=x");
    let file = pending.open(&f.jwe, link.key()).expect("opens");
    check_ips_bundle(&file.fhir_resource().expect("FHIR"));
}
