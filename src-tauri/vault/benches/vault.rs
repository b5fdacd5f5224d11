//! Vault benchmarks. Final lines:
//! `RESULT vault_import_largest_synthea_s <s>`, `RESULT vault_search_10k_ms <ms>`,
//! `RESULT vault_unlock_ms <ms>` (default Argon2id parameters).
//! Run: `cargo bench -p carekey-vault --bench vault` (CAREKEY_FIXTURES for the Synthea figure).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use carekey_vault::*;
use criterion::Criterion;
use serde_json::json;

const PASS: &str = "bench passphrase";

fn fast() -> CreateOptions {
    CreateOptions {
        kdf: KdfParams::INSECURE_TEST,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn fixtures() -> Option<PathBuf> {
    let p = std::env::var_os("CAREKEY_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"));
    p.join("synthea-10").is_dir().then_some(p)
}

fn synthea_largest(fx: &Path) -> Vec<NdjsonFile> {
    let files: Vec<NdjsonFile> = std::fs::read_dir(fx.join("synthea-10"))
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
    let routed = route_by_patient(&files).unwrap();
    routed
        .patients
        .into_values()
        .max_by_key(|f| f[0].data.len())
        .unwrap()
}

fn ten_k() -> NdjsonFile {
    const WORDS: &[&str] = &[
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
    let mut data = Vec::new();
    for i in 0..10_000usize {
        let w = WORDS[i % WORDS.len()];
        let r = json!({
            "resourceType": "Observation", "id": format!("o{i}"), "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": format!("{}-{}", 1000 + i % 997, i % 10), "display": format!("{w} measurement {}", i % 101)}], "text": format!("{w} level {}", i % 101)},
            "effectiveDateTime": format!("20{:02}-0{}-1{}", i % 25, 1 + i % 9, i % 10),
            "valueQuantity": {"value": (i % 200) as f64 / 10.0, "unit": "mmol/L"}
        });
        data.extend_from_slice(&serde_json::to_vec(&r).unwrap());
        data.push(b'\n');
    }
    NdjsonFile {
        name: "10k.ndjson".into(),
        data,
    }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut results = Vec::new();

    // Unlock with the default (production) Argon2id parameters.
    let params = KdfParams::default();
    let p = dir.path().join("unlock.sqlite");
    drop(Vault::create(&p, PASS, &CreateOptions { kdf: params }).unwrap());
    let mut times = Vec::new();
    for _ in 0..5 {
        let mut v = Vault::open(&p).unwrap();
        let t = Instant::now();
        v.unlock(PASS).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let unlock_ms = median(times);
    println!(
        "unlock: Argon2id m={} KiB t={} p={} -> {unlock_ms:.1} ms (median of 5)",
        params.m_kib, params.t, params.p
    );

    // Import of the largest Synthea patient (one transaction), fresh vault each run.
    let import_s = fixtures().map(|fx| {
        let files = synthea_largest(&fx);
        let lines = files[0]
            .data
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
        let mut times = Vec::new();
        for i in 0..3 {
            let (mut v, _) =
                Vault::create(&dir.path().join(format!("imp{i}.sqlite")), PASS, &fast()).unwrap();
            let t = Instant::now();
            let rep = v
                .import_ndjson(
                    &files,
                    &ImportOptions::default(),
                    &mut ImportControl::default(),
                )
                .unwrap();
            times.push(t.elapsed().as_secs_f64());
            assert_eq!(rep.records, lines);
            let t = Instant::now();
            v.checkpoint().unwrap();
            println!(
                "import: run {i}: {:.3} s, then WAL checkpoint {:.3} s (deferred, not in the figure)",
                times[i],
                t.elapsed().as_secs_f64()
            );
        }
        let s = median(times);
        println!("import: largest Synthea patient, {lines} resources -> {s:.3} s (median of 3)");
        s
    });
    if import_s.is_none() {
        println!("import: skipped: fixtures not found (set CAREKEY_FIXTURES)");
    }

    // Search over 10k records.
    let (mut v, _) = Vault::create(&dir.path().join("10k.sqlite"), PASS, &fast()).unwrap();
    let t = Instant::now();
    v.import_ndjson(
        &[ten_k()],
        &ImportOptions::default(),
        &mut ImportControl::default(),
    )
    .unwrap();
    println!("search: 10k import took {:.2} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let n = v.search("glucose level 42", 100).unwrap().len();
    println!(
        "search: first query (decrypts 10k summaries into the index) {:.1} ms, {n} hits",
        t.elapsed().as_secs_f64() * 1e3
    );
    let queries = [
        "glucose",
        "thyroid level 7",
        "1500-3",
        "mmol",
        "nonexistent",
    ];
    let mut times = Vec::new();
    for _ in 0..20 {
        for q in queries {
            let t = Instant::now();
            std::hint::black_box(v.search(q, 50).unwrap());
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let search_ms = median(times);
    let t = Instant::now();
    let by_code = v.find_by_code("http://loinc.org", "1500-3").unwrap().len();
    println!(
        "search: blind-index lookup by code {:.2} ms ({by_code} hits)",
        t.elapsed().as_secs_f64() * 1e3
    );

    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(20)
        .measurement_time(std::time::Duration::from_secs(2));
    c.bench_function("vault_search_10k", |b| {
        b.iter(|| {
            v.search(std::hint::black_box("thyroid level 7"), 50)
                .unwrap()
        })
    });
    c.final_summary();

    if let Some(s) = import_s {
        results.push(format!("RESULT vault_import_largest_synthea_s {s:.3}"));
    }
    results.push(format!("RESULT vault_search_10k_ms {search_ms:.3}"));
    results.push(format!("RESULT vault_unlock_ms {unlock_ms:.1}"));
    for r in results {
        println!("{r}");
    }
}
