//! Tests on the real fixtures (`$CAREKEY_FIXTURES`); each prints a skip notice when absent.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::collections::BTreeMap;

use carekey_vault::*;
use common::*;
use serde_json::Value;

fn resources_of_bundle(b: &Value) -> Vec<Value> {
    b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].clone())
        .collect()
}

fn by_key(rs: Vec<Value>) -> BTreeMap<String, Value> {
    rs.into_iter()
        .map(|r| {
            (
                format!(
                    "{}/{}",
                    r["resourceType"].as_str().unwrap(),
                    r["id"].as_str().unwrap()
                ),
                r,
            )
        })
        .collect()
}

#[test]
fn ips_bundle_round_trips() {
    let Some(fx) = fixtures("ips_bundle_round_trips") else {
        return;
    };
    let json = std::fs::read(fx.join("fhir/ips-bundle-01.json")).unwrap();
    let original: Value = serde_json::from_slice(&json).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut v, _) = new_vault(dir.path());
    let opts = ImportOptions {
        source: Some("ips-bundle-01.json".into()),
        share: None,
    };
    let rep = v
        .import_bundle(&json, &opts, &mut ImportControl::default())
        .unwrap();
    println!("IPS import: {} records {:?}", rep.records, rep.by_type);
    assert_eq!(rep.records, 20);
    let exported = v.export_bundle(None).unwrap();
    // import → export → import gives the same resources
    let dir2 = tempfile::tempdir().unwrap();
    let (mut v2, _) = new_vault(dir2.path());
    v2.import_bundle(&exported, &opts, &mut ImportControl::default())
        .unwrap();
    let exported2: Value = serde_json::from_slice(&v2.export_bundle(None).unwrap()).unwrap();
    let a = by_key(resources_of_bundle(
        &serde_json::from_slice(&exported).unwrap(),
    ));
    let b = by_key(resources_of_bundle(&exported2));
    assert_eq!(a, b);
    // and the same resources as the original file
    assert_eq!(a, by_key(resources_of_bundle(&original)));
    // Summaries are typed.
    let l = v.list().unwrap();
    assert!(l.damaged.is_empty());
    let cats: std::collections::BTreeSet<_> = l.records.iter().map(|r| r.category).collect();
    println!("IPS categories: {cats:?}");
    assert!(cats.contains(&RecordGroup::Allergy) && cats.contains(&RecordGroup::Medication));
    // Choosing records: export of a subset.
    let some: Vec<RecordId> = l.records.iter().take(3).map(|r| r.id).collect();
    let sub: Value = serde_json::from_slice(&v.export_bundle(Some(&some)).unwrap()).unwrap();
    assert_eq!(sub["entry"].as_array().unwrap().len(), 3);
    v.verify_audit().unwrap();
}

#[test]
fn synthea_every_patient_imports() {
    let Some(fx) = fixtures("synthea_every_patient_imports") else {
        return;
    };
    let routed = route_by_patient(&synthea_files(&fx)).unwrap();
    println!(
        "Synthea: {} patients, {} resources without a patient reference (directory data, not routed)",
        routed.patients.len(),
        routed.unrouted
    );
    assert!(routed.patients.len() >= 10);
    let mut total = 0;
    for (i, (_pid, files)) in routed.patients.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let (mut v, _) = new_vault(dir.path());
        let rep = v
            .import_ndjson(
                files,
                &ImportOptions {
                    source: Some("synthea-10".into()),
                    share: None,
                },
                &mut ImportControl::default(),
            )
            .unwrap();
        let lines = files[0]
            .data
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
        assert_eq!(rep.records, lines);
        assert_eq!(v.record_count().unwrap(), lines);
        println!(
            "patient {i}: {} resources, {} attachments: {:?}",
            rep.records, rep.attachments, rep.by_type
        );
        assert_eq!(rep.by_type.get("Patient"), Some(&1));
        assert_eq!(
            rep.attachments,
            rep.by_type.get("DocumentReference").copied().unwrap_or(0)
        );
        // A DocumentReference comes back with its note intact.
        if let Some(d) = v.find_by_type("DocumentReference").unwrap().first() {
            let r = v.get_record(&d.id).unwrap();
            let data = r.resource["content"][0]["attachment"]["data"]
                .as_str()
                .unwrap();
            let text = data_encoding::BASE64.decode(data.as_bytes()).unwrap();
            assert_eq!(&v.attachment(&d.attachments[0].id).unwrap()[..], &text[..]);
        }
        total += rep.records;
    }
    println!("Synthea: {total} resources imported in total");
}

#[test]
fn malformed_synthea_line_is_named() {
    let Some(fx) = fixtures("malformed_synthea_line_is_named") else {
        return;
    };
    let mut files = synthea_files(&fx);
    let f = files
        .iter_mut()
        .find(|f| f.name.starts_with("Condition"))
        .unwrap();
    // Cut line 7 in half.
    let text = String::from_utf8(f.data.clone()).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let l = lines[6].clone();
    lines[6] = l[..l.len() / 2].to_owned();
    f.data = lines.join("\n").into_bytes();
    let dir = tempfile::tempdir().unwrap();
    let (mut v, _) = new_vault(dir.path());
    let err = v
        .import_ndjson(
            &files,
            &ImportOptions::default(),
            &mut ImportControl::default(),
        )
        .unwrap_err();
    println!("{err}");
    assert!(
        matches!(&err, VaultError::Import { at: Position::Line { file, line: 7 }, .. } if file.starts_with("Condition"))
    );
    assert_eq!(v.record_count().unwrap(), 0);
}

fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}

#[test]
fn canary_scan_real_data() {
    let Some(fx) = fixtures("canary_scan_real_data") else {
        return;
    };
    let routed = route_by_patient(&synthea_files(&fx)).unwrap();
    let (_, files) = routed
        .patients
        .iter()
        .max_by_key(|(_, f)| f[0].data.len())
        .unwrap();
    let ips = std::fs::read(fx.join("fhir/ips-bundle-01.json")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut v, _) = new_vault(dir.path());
    v.import_ndjson(
        files,
        &ImportOptions::default(),
        &mut ImportControl::default(),
    )
    .unwrap();
    v.import_bundle(
        &ips,
        &ImportOptions::default(),
        &mut ImportControl::default(),
    )
    .unwrap();
    v.search("diabetes", 10).unwrap();
    let bundle = v.export_bundle(None).unwrap();
    drop(v);
    // Canaries: names, ids, codes, dates and note text from the imported data.
    let exported: Value = serde_json::from_slice(&bundle).unwrap();
    let mut strings = Vec::new();
    collect_strings(&exported, &mut strings);
    let patient = exported["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Patient")
        .unwrap()["resource"]
        .clone();
    let mut canaries: Vec<String> = vec![
        patient["name"][0]["family"].as_str().unwrap().to_owned(),
        patient["name"][0]["given"][0].as_str().unwrap().to_owned(),
        patient["id"].as_str().unwrap().to_owned(),
        patient["birthDate"].as_str().unwrap().to_owned(),
    ];
    // Decoded note text of a DocumentReference.
    let doc = exported["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["resourceType"] == "DocumentReference")
        .unwrap();
    let note = data_encoding::BASE64
        .decode(
            doc["resource"]["content"][0]["attachment"]["data"]
                .as_str()
                .unwrap()
                .as_bytes(),
        )
        .unwrap();
    let note = String::from_utf8_lossy(&note).into_owned();
    canaries.extend(
        note.lines()
            .filter(|l| l.len() > 20)
            .take(5)
            .map(str::to_owned),
    );
    // Every code, display and date string of length ≥ 8 that is not a common URL/keyword.
    canaries.extend(
        strings
            .into_iter()
            .filter(|s| s.len() >= 8 && !s.starts_with("http") && !s.contains(' ') && s.len() < 200)
            .take(600),
    );
    canaries.sort();
    canaries.dedup();
    let refs: Vec<&str> = canaries.iter().map(String::as_str).collect();
    println!("canary scan: {} canary strings", refs.len());
    scan(dir.path(), &refs);
}

fn scan(dir: &std::path::Path, canaries: &[&str]) {
    let mut hits = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        // Lossy UTF-8 keeps every ASCII byte in place; std's substring search is optimised.
        let text = String::from_utf8_lossy(&bytes);
        for c in canaries {
            if text.contains(c) {
                hits.push(format!("{} in {}", c.len(), p.display()));
            }
        }
    }
    assert!(hits.is_empty(), "canaries found: {hits:?}");
}
