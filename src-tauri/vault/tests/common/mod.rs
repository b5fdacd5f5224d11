#![allow(dead_code, clippy::print_stdout, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use carekey_vault::{CreateOptions, KdfParams, NdjsonFile, Vault};
use serde_json::{Value, json};

pub const PASS: &str = "correct horse battery staple";

pub fn opts() -> CreateOptions {
    CreateOptions {
        kdf: KdfParams::INSECURE_TEST,
    }
}

pub fn new_vault(dir: &Path) -> (Vault, carekey_vault::RecoveryPhrase) {
    Vault::create(&dir.join("v.sqlite"), PASS, &opts()).unwrap()
}

/// `$CAREKEY_FIXTURES`, default `../shared/fixtures` from the repo root; `None` (and a printed
/// skip notice) when absent.
pub fn fixtures(test: &str) -> Option<PathBuf> {
    let p = std::env::var_os("CAREKEY_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"));
    if p.join("fhir/ips-bundle-01.json").is_file() {
        Some(p)
    } else {
        println!("{test}: skipped: fixtures not found at {}", p.display());
        None
    }
}

pub fn synthea_files(fx: &Path) -> Vec<NdjsonFile> {
    let mut v: Vec<NdjsonFile> = std::fs::read_dir(fx.join("synthea-10"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "ndjson")
                && !p.file_name().unwrap().to_string_lossy().starts_with("log")
        })
        .map(|p| NdjsonFile {
            name: p.file_name().unwrap().to_string_lossy().into_owned(),
            data: std::fs::read(&p).unwrap(),
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// `n` synthetic observations with distinctive text, as NDJSON.
pub fn synthetic_ndjson(prefix: &str, n: usize) -> NdjsonFile {
    let mut data = Vec::new();
    for i in 0..n {
        let r = observation(&format!("{prefix}-{i}"), i);
        data.extend_from_slice(&serde_json::to_vec(&r).unwrap());
        data.push(b'\n');
    }
    NdjsonFile {
        name: format!("{prefix}.ndjson"),
        data,
    }
}

pub const WORDS: &[&str] = &[
    "glucose",
    "hemoglobin",
    "cholesterol",
    "sodium",
    "potassium",
    "creatinine",
    "albumin",
    "ferritin",
    "thyroid",
    "vitamin",
    "platelets",
    "leukocytes",
    "bilirubin",
    "calcium",
];

pub fn observation(id: &str, i: usize) -> Value {
    let w = WORDS[i % WORDS.len()];
    json!({
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": format!("{}-{}", 1000 + i % 997, i % 10), "display": format!("{w} measurement {}", i % 101)}], "text": format!("{w} level {}", i % 101)},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": format!("20{:02}-0{}-1{}", i % 25, 1 + i % 9, i % 10),
        "valueQuantity": {"value": (i % 200) as f64 / 10.0, "unit": "mmol/L"}
    })
}
