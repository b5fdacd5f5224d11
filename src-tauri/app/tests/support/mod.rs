//! Test data shared by the app layer's and the patient shell's end-to-end tests (the shell
//! includes this file by path).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `$CAREKEY_FIXTURES` (default `../shared/fixtures` beside the repository) when it holds the
/// Synthea export.
pub fn fixtures() -> Option<PathBuf> {
    let p = std::env::var_os("CAREKEY_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"));
    p.join("synthea-10").is_dir().then_some(p)
}

/// The largest Synthea patient's resources as one NDJSON file at `out` (what a patient's
/// export download would be); returns its resource count.
pub fn largest_synthea_patient(fixtures: &Path, out: &Path) -> usize {
    let dir = fixtures.join("synthea-10");
    let mut files = Vec::new();
    for e in std::fs::read_dir(&dir).expect("synthea dir") {
        let p = e.expect("entry").path();
        let name = p.file_name().expect("name").to_string_lossy().into_owned();
        if name.ends_with(".ndjson") && !name.starts_with("log") {
            files.push(carekey_vault::NdjsonFile {
                name,
                data: std::fs::read(&p).expect("read"),
            });
        }
    }
    let routed = carekey_vault::route_by_patient(&files).expect("routes");
    let (_, biggest) = routed
        .patients
        .into_iter()
        .max_by_key(|(_, fs)| fs.iter().map(|f| f.data.len()).sum::<usize>())
        .expect("a patient");
    let mut all = Vec::new();
    let mut n = 0;
    for f in biggest {
        for line in f
            .data
            .split(|b| *b == b'\n')
            .filter(|l| !l.trim_ascii().is_empty())
        {
            all.extend_from_slice(line);
            all.push(b'\n');
            n += 1;
        }
    }
    std::fs::write(out, all).expect("write ndjson");
    n
}
