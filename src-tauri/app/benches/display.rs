//! Display-row benchmarks (plain `main`, median of N runs). Final lines:
//! `RESULT app_rows_largest_synthea_ms <ms>`: `Vault::summaries` (index warm) plus
//! `display::timeline_rows` for the largest Synthea patient (≈ 3,489 records; goal ≤ 50), the
//! timeline command's path; the `rows:` lines give `Vault::list`'s copying path beside it;
//! `RESULT app_search_10k_ms <ms>`: `Vault::search` over a vault of ≥ 10,000 records (every
//! Synthea resource, imported twice under different ids), the slowest of three queries
//! (goal ≤ 20); the import and the first index build are not timed.
//!
//! Run: `cargo bench -p carekey-app --bench display` (`CAREKEY_FIXTURES`, default
//! `../shared/fixtures`); prints "skipped" and exits 0 without the Synthea fixtures.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use carekey_app::display;
use carekey_vault::{
    CreateOptions, ImportControl, ImportOptions, KdfParams, NdjsonFile, Vault, route_by_patient,
};

const RUNS: usize = 21;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn fixtures() -> Option<PathBuf> {
    let p = std::env::var_os("CAREKEY_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"));
    p.join("synthea-10").is_dir().then_some(p)
}

fn synthea_files(fx: &Path) -> Vec<NdjsonFile> {
    let mut files: Vec<NdjsonFile> = std::fs::read_dir(fx.join("synthea-10"))
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
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files
}

/// The same files with every resource id suffixed, so a second import adds new records.
fn renamed(files: &[NdjsonFile], suffix: &str) -> Vec<NdjsonFile> {
    files
        .iter()
        .map(|f| {
            let mut data = Vec::with_capacity(f.data.len() + 4096);
            for line in f.data.split(|b| *b == b'\n') {
                if line.trim_ascii().is_empty() {
                    continue;
                }
                let mut v: serde_json::Value = serde_json::from_slice(line).unwrap();
                let id = v["id"].as_str().unwrap_or("x").to_owned();
                v["id"] = serde_json::Value::String(format!("{id}{suffix}"));
                data.extend_from_slice(&serde_json::to_vec(&v).unwrap());
                data.push(b'\n');
            }
            NdjsonFile {
                name: format!("{suffix}-{}", f.name),
                data,
            }
        })
        .collect()
}

fn vault(dir: &Path, name: &str) -> Vault {
    Vault::create(
        &dir.join(name),
        "bench passphrase",
        &CreateOptions {
            kdf: KdfParams::INSECURE_TEST,
        },
    )
    .unwrap()
    .0
}

fn main() {
    let Some(fx) = fixtures() else {
        println!("skipped: CAREKEY_FIXTURES not found (no synthea-10)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let files = synthea_files(&fx);

    // ---- timeline rows of the largest patient
    let routed = route_by_patient(&files).unwrap();
    let largest = routed
        .patients
        .into_values()
        .max_by_key(|f| f[0].data.len())
        .unwrap();
    let mut v = vault(dir.path(), "largest.sqlite");
    let rep = v
        .import_ndjson(
            &largest,
            &ImportOptions::default(),
            &mut ImportControl::default(),
        )
        .unwrap();
    let n = v.list().unwrap().records.len(); // builds the index (not timed)
    assert_eq!(n, rep.records);
    let mut list_and_rows = Vec::new();
    let mut rows_only = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let listing = v.list().unwrap();
        let t_rows = Instant::now();
        let rows = display::timeline_rows(&listing.records);
        let counts = display::category_counts(&listing.records);
        rows_only.push(t_rows.elapsed().as_secs_f64() * 1e3);
        list_and_rows.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(rows.len(), n);
        assert_eq!(counts.iter().map(|c| c.count).sum::<usize>(), n);
        std::hint::black_box((rows, counts));
    }
    let list_ms = median(list_and_rows);
    println!(
        "rows: largest Synthea patient, {n} records: list + timeline_rows + category_counts {list_ms:.2} ms, rows alone {:.2} ms (median of {RUNS})",
        median(rows_only)
    );
    // What the timeline command does: rows from the index's summaries, borrowed (no copy of
    // every summary as `list` makes), then the JSON the shell sends.
    let mut borrowed = Vec::new();
    let mut json = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let rows = display::timeline_rows(v.summaries().unwrap());
        borrowed.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let text = serde_json::to_string(&rows).unwrap();
        json.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(rows.len(), n);
        std::hint::black_box(text);
    }
    let rows_ms = median(borrowed);
    println!(
        "rows: the timeline command's path, summaries + timeline_rows {rows_ms:.2} ms (list's copy: {list_ms:.2} ms above), its JSON {:.2} ms (median of {RUNS})",
        median(json)
    );
    // The doctor's screens over full records (one run; get_record decrypts each record).
    let t = Instant::now();
    let listing = v.list().unwrap();
    let records: Vec<_> = listing
        .records
        .iter()
        .map(|s| v.get_record(&s.id).unwrap())
        .collect();
    let t_open = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let chart = display::chart_summary(&records);
    let docs = display::documents(&records);
    let labs = display::lab_table(&records);
    let series = display::vitals_series(&records);
    println!(
        "info: get_record x{} {t_open:.0} ms; chart + documents + labs + vitals {:.2} ms ({} problems, {} medications, {} documents, {} labs, {} charts)",
        records.len(),
        t.elapsed().as_secs_f64() * 1e3,
        chart.problems.len(),
        chart.medications.len(),
        docs.len(),
        labs.len(),
        series.len()
    );
    drop(v);

    // ---- search over ≥ 10k records
    let mut big = vault(dir.path(), "all.sqlite");
    let t = Instant::now();
    let mut total = 0;
    for batch in [files.clone(), renamed(&files, "-copy")] {
        total += big
            .import_ndjson(
                &batch,
                &ImportOptions::default(),
                &mut ImportControl::default(),
            )
            .unwrap()
            .records;
    }
    let records = big.record_count().unwrap();
    assert_eq!(records, total);
    assert!(records >= 10_000, "{records} records");
    println!(
        "info: search vault: {records} records imported in {:.1} s (not timed)",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    big.search("warm", 1).unwrap(); // first call builds the in-memory index
    println!(
        "info: first search (index build) {:.0} ms (not in the figure)",
        t.elapsed().as_secs_f64() * 1e3
    );
    let queries = [
        ("hypertension", 50),
        ("dr. encounter", 50),
        ("no-such-term-anywhere", 50),
    ];
    let mut worst: f64 = 0.0;
    for (q, limit) in queries {
        let mut times = Vec::new();
        let mut hits = 0;
        for _ in 0..RUNS {
            let t = Instant::now();
            let r = big.search(q, limit).unwrap();
            times.push(t.elapsed().as_secs_f64() * 1e3);
            hits = r.len();
            std::hint::black_box(r);
        }
        let m = median(times);
        println!("search: {q:?} limit {limit}: {hits} hits, {m:.2} ms (median of {RUNS})");
        worst = worst.max(m);
    }
    println!("RESULT app_rows_largest_synthea_ms {rows_ms:.2}");
    println!("RESULT app_search_10k_ms {worst:.2}");
}
