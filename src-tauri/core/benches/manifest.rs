//! Opening the manifest of a large share: the sectioned manifest (docs/protocol.md "Scoped
//! keys and the sectioned manifest") with every category's key, against the version-1 single
//! envelope of the same entries, same run, interleaved rounds (median of 21):
//! `RESULT manifest_open_sections_vs_v1 <time ratio>` (goal ≤ 1.1), plus both times.
//!
//! 4197 entries over every category: the size of the largest Synthea patient in the check-up
//! benchmark (src-tauri/client/benches/checkup.rs).

use std::hint::black_box;
use std::time::Instant;

use carekey_core::keys::{ContentKey, EpochKey, GroupSecret, SigningSecret};
use carekey_core::manifest::{BlobFormat, Manifest, ManifestEntry};
use carekey_core::scope::{Category, Scope};
use carekey_core::section::{GrantKeys, ScopeKeys, seal_sections};
use rand_core::{OsRng, RngCore};

const ENTRIES: usize = 4197;
const ROUNDS: usize = 21;
const PER_ROUND: usize = 8;

fn manifest() -> Manifest {
    let mut share_id = [0u8; 16];
    OsRng.fill_bytes(&mut share_id);
    let entries = (0..ENTRIES)
        .map(|i| {
            let mut blob_id = [0u8; 16];
            let mut record_id = [0u8; 16];
            let mut hash = [0u8; 32];
            OsRng.fill_bytes(&mut blob_id);
            OsRng.fill_bytes(&mut record_id);
            OsRng.fill_bytes(&mut hash);
            ManifestEntry {
                blob_id,
                record_id,
                format: BlobFormat::Envelope,
                hash,
                content_key: ContentKey::random(&mut OsRng),
                size: 1200,
                category: Category::ALL[i % Category::ALL.len()],
                title: format!("Observation {i}: Body mass index"),
            }
        })
        .collect();
    Manifest {
        share_id,
        version: 7,
        epoch: 3,
        issued_at: 1_700_000_000,
        entries,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let m = manifest();
    let patient = SigningSecret::random(&mut OsRng);
    let pk = patient.public();
    let epoch_key = EpochKey::random(&mut OsRng);
    let groups = GroupSecret::random(&mut OsRng);
    let v1 = m.seal(&patient, &epoch_key, &mut OsRng);
    let v2 = seal_sections(&m, &patient, &epoch_key, &[], &mut OsRng);
    let k1 = GrantKeys::Epoch(epoch_key.clone());
    let k2 = GrantKeys::Scoped(ScopeKeys::derive(
        &m.share_id,
        m.epoch,
        &epoch_key,
        &groups,
        &Scope::all(),
    ));
    let open = |keys: &GrantKeys, sealed: &[u8]| -> f64 {
        let t = Instant::now();
        for _ in 0..PER_ROUND {
            let got = keys
                .open_manifest(black_box(sealed), &m.share_id, m.epoch, &pk)
                .expect("opens");
            assert_eq!(got.entries.len(), ENTRIES);
            black_box(got);
        }
        t.elapsed().as_secs_f64() / PER_ROUND as f64
    };
    let (mut t1, mut t2) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        if round % 2 == 0 {
            t1.push(open(&k1, &v1));
            t2.push(open(&k2, &v2));
        } else {
            t2.push(open(&k2, &v2));
            t1.push(open(&k1, &v1));
        }
    }
    let (a, b) = (median(t1), median(t2));
    println!(
        "{ENTRIES} entries: version 1 {:.2} ms ({} bytes), sectioned {:.2} ms ({} bytes)",
        a * 1e3,
        v1.len(),
        b * 1e3,
        v2.len()
    );
    println!("RESULT manifest_open_v1_ms {:.2}", a * 1e3);
    println!("RESULT manifest_open_sections_ms {:.2}", b * 1e3);
    println!("RESULT manifest_open_sections_vs_v1 {:.2}", b / a);
}
