//! Crash safety: a child process (this test binary re-invoked with an env var) imports batches
//! in a loop and is killed with SIGKILL at a random moment; the vault must open, verify, and
//! hold only whole imports. `CAREKEY_CRASH_LOOPS` sets the loop count (default 20; the soak
//! script `scripts/vault-crash-soak.sh` runs more).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use carekey_vault::*;
use common::*;
use rand_core::RngCore;

const CHILD_ENV: &str = "CAREKEY_VAULT_CRASH_CHILD";
const BATCH: usize = 300;

/// The child side: does nothing unless re-invoked by the parent test.
#[test]
fn crash_child() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let mut v = Vault::open(std::path::Path::new(&path)).unwrap();
    v.unlock(PASS).unwrap();
    for k in 0.. {
        let prefix = format!("p{}-{k}", std::process::id());
        // Half the batches carry attachments, so chunk rows are in flight too.
        let mut f = synthetic_ndjson(&prefix, BATCH);
        if k % 2 == 1 {
            let doc = serde_json::json!({"resourceType": "DocumentReference", "id": format!("{prefix}-doc"),
                "status": "current", "content": [{"attachment": {"contentType": "application/octet-stream",
                "data": data_encoding::BASE64.encode(&vec![7u8; 300_000])}}]});
            f.data.extend_from_slice(&serde_json::to_vec(&doc).unwrap());
            f.data.push(b'\n');
        }
        v.import_ndjson(
            &[f],
            &ImportOptions::default(),
            &mut ImportControl::default(),
        )
        .unwrap();
    }
}

#[test]
fn sigkill_during_import_leaves_whole_imports_only() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let loops: usize = std::env::var("CAREKEY_CRASH_LOOPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.sqlite");
    drop(Vault::create(&path, PASS, &opts()).unwrap());
    let exe = std::env::current_exe().unwrap();
    let mut prev_imports = 0;
    let mut changed = 0;
    for i in 0..loops {
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let delay = 80 + rand_core::OsRng.next_u32() % 700;
        std::thread::sleep(Duration::from_millis(u64::from(delay)));
        child.kill().unwrap(); // SIGKILL on Unix
        let status = child.wait().unwrap();
        assert!(!status.success(), "loop {i}: child must have been killed");

        let mut v = Vault::open(&path).unwrap();
        v.unlock(PASS).unwrap();
        v.verify_audit().unwrap();
        let listing = v.list().unwrap();
        assert!(listing.damaged.is_empty(), "loop {i}: damaged rows");
        let imports = v
            .audit_log()
            .unwrap()
            .iter()
            .filter(|e| matches!(e.event, AuditEvent::Imported { .. }))
            .count();
        let docs = listing
            .records
            .iter()
            .filter(|r| r.fhir_type == "DocumentReference")
            .count();
        let obs = listing.records.len() - docs;
        assert_eq!(
            obs,
            imports * BATCH,
            "loop {i}: a partial import is visible"
        );
        for d in listing
            .records
            .iter()
            .filter(|r| r.fhir_type == "DocumentReference")
        {
            assert_eq!(v.attachment(&d.attachments[0].id).unwrap().len(), 300_000);
        }
        if imports != prev_imports {
            changed += 1;
        }
        prev_imports = imports;
    }
    println!(
        "crash loop: {loops} SIGKILLs, {changed} loops committed at least one import, {prev_imports} imports in total; vault verified after each"
    );
}
