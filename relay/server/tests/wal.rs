//! The SQLite write-ahead log stays bounded under constant reads (issue 14, "Tests that must be
//! able to fail"; docs/relay.md "Storage": the writer has `wal_autocheckpoint=0` and the
//! `sqlite-checkpoint` thread runs `wal_checkpoint(PASSIVE)` every 250 ms).
//!
//! A PASSIVE checkpoint cannot copy frames that an open read transaction may still need, and
//! the WAL is only reused from its start once a checkpoint finished while no reader holds an
//! old snapshot; readers that never pause can starve it, and the file then grows with every
//! commit. Here four readers fetch blobs without a break (each GET a read transaction plus a
//! logged fetch) while one owner writes 256 KiB blobs and deletes epochs, through the real
//! router, until at least [`WRITTEN_AT_LEAST`] bytes went through the WAL: without working
//! checkpoints the file would hold all of them, [`WRITTEN_AT_LEAST`] / [`WAL_BOUND`] = 8 times
//! the bound.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::*;

/// Largest WAL file allowed at any sample (bytes).
const WAL_BOUND: u64 = 8 << 20;
/// Blob bytes the writer stores before the run ends (8 × the bound).
const WRITTEN_AT_LEAST: u64 = 64 << 20;
/// Each write: one blob of this size.
const BLOB: usize = 256 << 10;
/// The run stops after this long even if the bytes were not reached (then it fails).
const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wal_stays_bounded_under_constant_reads() {
    let h = Arc::new(Backend::Sqlite.harness().await.unwrap());
    let wal = h
        ._dir
        .as_ref()
        .unwrap()
        .path()
        .join(format!("{}-wal", carekey_relay::storage::sqlite::DB_FILE));
    let o = Arc::new(h.create_share().await);
    let (token, reader) = h
        .register_token(&o, &scope(0xffff_ffff, &[]), now() + 3600, 0)
        .await;
    let read_ids: Vec<[u8; 16]> = (0..4).map(|_| rand::<16>()).collect();
    for id in &read_ids {
        let r = h.put_blob(&o, id, 0, &vec![9u8; 4096]).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    }

    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for id in &read_ids {
        let (h, o, stop, reads) = (h.clone(), o.clone(), stop.clone(), reads.clone());
        let (id, reader) = (hex(id), reader.clone());
        readers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = h.read(&o, &id, &token, &reader).await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.text());
                reads.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let sampler = {
        let (stop, wal) = (stop.clone(), wal.clone());
        tokio::spawn(async move {
            let mut max = 0;
            while !stop.load(Ordering::Relaxed) {
                max = max.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            max
        })
    };

    // The writer: 256 KiB blobs into epochs of 8, each epoch deleted once the next is full.
    let start = Instant::now();
    let blob = vec![7u8; BLOB];
    let mut written = 0u64;
    let mut epoch = 1u32;
    while written < WRITTEN_AT_LEAST && start.elapsed() < LIMIT {
        for _ in 0..8 {
            let r = h.put_blob(&o, &rand::<16>(), epoch, &blob).await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
            written += BLOB as u64;
        }
        if epoch > 1 {
            let pq = format!("/v1/shares/{}/epochs/{}", o.share_hex, epoch - 1);
            let r = h.owner(&o, "DELETE", &pq, Vec::new()).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        }
        epoch += 1;
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    let max_wal = sampler.await.unwrap();
    let reads = reads.load(Ordering::Relaxed);
    println!(
        "wal: {written} blob bytes written and {reads} logged reads in {elapsed:.1?}; largest WAL {max_wal} bytes (bound {WAL_BOUND})"
    );
    assert!(
        written >= WRITTEN_AT_LEAST,
        "only {written} bytes written within {LIMIT:?}"
    );
    // The readers really overlapped the writes (at least a few reads per write).
    assert!(reads >= written / BLOB as u64, "{reads} reads only");
    assert!(max_wal > 0, "no WAL file seen at {}", wal.display());
    assert!(
        max_wal <= WAL_BOUND,
        "the WAL grew to {max_wal} bytes (bound {WAL_BOUND}) while {written} bytes were written"
    );
}
