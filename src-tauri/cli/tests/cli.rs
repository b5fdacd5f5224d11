//! The `carekey` command-line tool end to end, as child processes against a real relay:
//! patient share → `QR:` line → doctor scan → same `CHECK:` on both → records written →
//! note back; plus the failure cases (garbage QR, unreachable relay, expired QR, bad input).

// The client's relay-process harness, shared rather than copied.
#[path = "../../client/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use carekey_core::pairing::PatientPairing;
use common::{fixtures_dir, start_relay};
use rand_core::OsRng;

fn carekey() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_carekey"));
    c.env_remove("CAREKEY_RELAY");
    c
}

/// The IPS bundle fixture, or `None` (with a message) when it is missing and not required.
fn ips_bundle() -> Option<PathBuf> {
    let p = fixtures_dir().join("fhir/ips-bundle-01.json");
    if p.is_file() {
        return Some(p);
    }
    assert!(
        std::env::var_os("CAREKEY_REQUIRE_FIXTURES").is_none_or(|v| v != "1"),
        "fixture {} is missing and CAREKEY_REQUIRE_FIXTURES=1",
        p.display()
    );
    println!("skipping: fixture {} not found", p.display());
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Waits for a child with a deadline; kills it when the deadline passes.
fn wait_with_deadline(child: &mut Child, secs: u64) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child did not finish within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a command to completion (with a deadline); returns its output.
fn run(mut cmd: Command, secs: u64) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("carekey starts");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = wait_with_deadline(&mut child, secs);
    Output {
        status,
        stdout: t_out.join().expect("stdout thread"),
        stderr: t_err.join().expect("stderr thread"),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn tagged<'a>(out: &'a str, tag: &str) -> Option<&'a str> {
    out.lines().find_map(|l| l.strip_prefix(tag))
}

fn assert_clean_failure(o: &Output, code: &str, exit: i32) -> String {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(exit), "exit code; stderr: {err}");
    assert!(
        err.contains(&format!("error[{code}]: ")),
        "expected error[{code}] in: {err}"
    );
    assert!(!err.contains("panicked"), "no panic: {err}");
    err
}

#[test]
fn patient_share_and_doctor_scan_end_to_end() {
    let Some(bundle_path) = ips_bundle() else {
        return;
    };
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&bundle_path).expect("bundle reads"))
            .expect("bundle is JSON");
    let resources: Vec<&serde_json::Value> = bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| &e["resource"])
        .collect();
    // A datum of the record that must never appear on a terminal.
    let family = resources
        .iter()
        .find(|r| r["resourceType"] == "Patient")
        .and_then(|p| p["name"][0]["family"].as_str())
        .expect("the IPS example names its patient")
        .to_owned();

    let relay = start_relay();
    let tmp = tempfile::tempdir().expect("tmp");
    let out_dir = tmp.path().join("out");
    let note_path = tmp.path().join("note.json");
    std::fs::write(
        &note_path,
        br#"{"resourceType":"Observation","status":"final","code":{"text":"Blood pressure"},"valueString":"120/80 mmHg"}"#,
    )
    .expect("note written");

    let mut patient = carekey()
        .args(["--json", "patient", "share", "--relay", &relay.url])
        .args(["--records", "all", "--expires", "24h", "--policy", "ask"])
        .arg("--bundle")
        .arg(&bundle_path)
        .args(["--name", "Pat Example", "--yes", "--wait", "60"])
        .args(["--inbox-wait", "60"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("patient starts");
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = patient.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut stderr = patient.stderr.take().expect("stderr");
    let err_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });

    let mut patient_lines = Vec::new();
    let qr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the patient prints its QR: line");
        patient_lines.push(line.clone());
        if let Some(q) = line.strip_prefix("QR: ") {
            break q.to_owned();
        }
    };
    assert!(qr.starts_with("CAREKEY:"), "{qr}");

    let mut doctor = carekey();
    doctor
        .args(["--json", "doctor", "scan", &qr, "--name", "Dr. Ada Quinn"])
        .args(["--wait", "60", "--out"])
        .arg(&out_dir)
        .arg("--note")
        .arg(&note_path);
    let d = run(doctor, 120);
    let d_out = text(&d.stdout);
    let d_err = text(&d.stderr);
    assert!(d.status.success(), "doctor failed: {d_out}\n{d_err}");

    // The patient finishes after the note arrives.
    let status = wait_with_deadline(&mut patient, 90);
    patient_lines.extend(rx.try_iter());
    let p_out = patient_lines.join("\n");
    let p_err = text(&err_thread.join().expect("stderr thread"));
    assert!(status.success(), "patient failed: {p_out}\n{p_err}");

    // Both screens show the same code.
    let p_check = tagged(&p_out, "CHECK: ").expect("patient CHECK line");
    let d_check = tagged(&d_out, "CHECK: ").expect("doctor CHECK line");
    assert_eq!(p_check, d_check);
    assert_eq!(p_check.len(), 8, "ddd-dddd: {p_check}");
    assert_eq!(tagged(&p_out, "DOCTOR: "), Some("Dr. Ada Quinn"));
    assert_eq!(tagged(&d_out, "PATIENT: "), Some("Pat Example"));

    // The doctor wrote every record, byte-for-value the bundle's, mode 0600. The files follow
    // the vault's timeline order (newest first, as both apps list records; the share is built
    // from the patient's vault), so each is matched to the bundle entry of its type and id.
    let mut files: Vec<PathBuf> = std::fs::read_dir(&out_dir)
        .expect("out dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), resources.len());
    let mut unmatched = resources.clone();
    for f in &files {
        let got: serde_json::Value =
            serde_json::from_slice(&std::fs::read(f).expect("reads")).expect("JSON");
        let at = unmatched
            .iter()
            .position(|r| r["resourceType"] == got["resourceType"] && r["id"] == got["id"])
            .unwrap_or_else(|| panic!("{} is no bundle entry left unmatched", f.display()));
        assert_eq!(&got, unmatched.swap_remove(at), "{}", f.display());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(f).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", f.display());
        }
    }
    assert!(
        tagged(&d_out, "RECEIVED: ")
            .is_some_and(|l| l.starts_with(&format!("{} records, 0 attachments", resources.len())))
    );
    assert!(d_err.contains("PLAINTEXT"), "plaintext warning: {d_err}");
    assert_eq!(tagged(&d_out, "NOTE SENT: "), Some("Observation"));

    // The patient saw the note, by author and type only.
    assert_eq!(
        tagged(&p_out, "NOTE: "),
        Some("from Dr. Ada Quinn (signature valid): Observation")
    );
    assert!(!p_out.contains("120/80"), "note contents never printed");

    // The JSON summaries.
    let summary = |out: &str| -> serde_json::Value {
        let line = out
            .lines()
            .rfind(|l| l.starts_with('{'))
            .expect("JSON summary line");
        serde_json::from_str(line).expect("summary is JSON")
    };
    let ps = summary(&p_out);
    assert_eq!(ps["ok"], true);
    assert_eq!(ps["records"], resources.len());
    assert_eq!(ps["check"], p_check);
    assert_eq!(ps["notes"][0]["author"], "Dr. Ada Quinn");
    let ds = summary(&d_out);
    assert_eq!(ds["written"], resources.len());
    assert_eq!(ds["patient"], "Pat Example");

    // No record content on any terminal stream.
    for s in [&p_out, &p_err, &d_out, &d_err] {
        assert!(!s.contains(&family), "record data leaked to output: {s}");
        assert!(!s.contains("panicked"));
    }
}

#[test]
fn doctor_scan_garbage_is_a_clear_error() {
    for garbage in [
        "garbage",
        "CAREKEY:",
        "CAREKEY:!!!!",
        "HTTPS://example.org",
        "",
    ] {
        let mut c = carekey();
        c.args(["doctor", "scan", garbage, "--wait", "1"]);
        let o = run(c, 30);
        let err = assert_clean_failure(&o, "invalid_input", 2);
        assert!(err.contains("not a Carekey pairing QR"), "{err}");
        assert!(o.stdout.is_empty(), "nothing on stdout");
    }
}

fn qr_for(relay_url: &str, expires_at: u64) -> String {
    let p = PatientPairing::start(
        relay_url,
        [7; 16],
        u32::try_from(expires_at).expect("fits"),
        &mut OsRng,
    )
    .expect("pairing");
    p.qr().to_text()
}

#[test]
fn unreachable_relay_and_expired_qr_are_clear_errors() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    // Doctor: a QR naming a relay nobody runs.
    let mut c = carekey();
    c.args(["doctor", "scan", &qr_for(&dead, now() + 600)]);
    let o = run(c, 60);
    let err = assert_clean_failure(&o, "relay_unreachable", 3);
    assert!(err.contains("hint:"), "{err}");

    // Doctor: an expired QR (checked before any network use).
    let mut c = carekey();
    c.args(["doctor", "scan", &qr_for(&dead, now() - 60)]);
    let o = run(c, 60);
    let err = assert_clean_failure(&o, "expired", 5);
    assert!(err.contains("ask the patient for a new one"), "{err}");

    // Patient: a relay nobody runs (a hand-made bundle: no fixture needed).
    let tmp = tempfile::tempdir().expect("tmp");
    let bundle = tmp.path().join("b.json");
    std::fs::write(
        &bundle,
        br#"{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Condition","id":"c1"}}]}"#,
    )
    .expect("written");
    let mut c = carekey();
    c.args(["--json", "patient", "share", "--yes", "--relay", &dead])
        .arg("--bundle")
        .arg(&bundle);
    let o = run(c, 60);
    assert_clean_failure(&o, "relay_unreachable", 3);
    let line = text(&o.stdout);
    let v: serde_json::Value = serde_json::from_str(line.trim()).expect("JSON error summary");
    assert_eq!(v["ok"], false);
    assert_eq!(v["code"], "relay_unreachable");
}

#[test]
fn bad_input_files_and_arguments_are_clear_errors() {
    let relay_url = format!("http://127.0.0.1:{}", free_port());
    let tmp = tempfile::tempdir().expect("tmp");
    let share = |args: &[&str], bundle: &Path| {
        let mut c = carekey();
        c.args(["patient", "share", "--yes", "--relay", &relay_url])
            .args(args)
            .arg("--bundle")
            .arg(bundle);
        run(c, 30)
    };
    // Not JSON: the position is given, never the text.
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, b"{\"resourceType\": \"Bundle\", SECRET-DIAGNOSIS").expect("written");
    let err = assert_clean_failure(&share(&[], &bad), "input", 8);
    assert!(err.contains("line 1"), "{err}");
    assert!(!err.contains("SECRET"), "{err}");
    // Missing file.
    assert_clean_failure(&share(&[], &tmp.path().join("nope.json")), "input", 8);
    // Bad argument values.
    let ok = tmp.path().join("ok.json");
    std::fs::write(&ok, br#"{"resourceType":"Bundle","entry":[]}"#).expect("written");
    assert_clean_failure(&share(&["--expires", "forever"], &ok), "usage", 2);
    assert_clean_failure(&share(&["--records", "secrets"], &ok), "usage", 2);
    assert_clean_failure(&share(&["--policy", "maybe"], &ok), "usage", 2);
    // An empty bundle shares nothing.
    let err = assert_clean_failure(&share(&[], &ok), "usage", 2);
    assert!(err.contains("nothing to share"), "{err}");
    // A note that is not a resource is refused before anything is sent.
    let note = tmp.path().join("note.json");
    std::fs::write(&note, b"[1,2,3]").expect("written");
    let mut c = carekey();
    c.args(["doctor", "scan", &qr_for(&relay_url, now() + 600), "--note"])
        .arg(&note);
    assert_clean_failure(&run(c, 30), "input", 8);
    // --help documents the exit codes and identities.
    let mut c = carekey();
    c.args(["patient", "share", "--help"]);
    let o = run(c, 30);
    assert!(o.status.success());
    let help = text(&o.stdout);
    assert!(
        help.contains("Exit codes:") && help.contains("--identity FILE"),
        "{help}"
    );
}

#[test]
fn identity_file_is_created_private_and_reused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let id = tmp.path().join("id.phrase");
    let dead = format!("http://127.0.0.1:{}", free_port());
    let scan = || {
        let mut c = carekey();
        c.args(["doctor", "scan", &qr_for(&dead, now() + 600), "--identity"])
            .arg(&id);
        run(c, 60)
    };
    // The identity is made before the network fails.
    assert_clean_failure(&scan(), "relay_unreachable", 3);
    let words = std::fs::read_to_string(&id).expect("identity written");
    assert_eq!(words.split_whitespace().count(), 24);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&id).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        // Loaded again as is; refused once others can read it.
        assert_clean_failure(&scan(), "relay_unreachable", 3);
        assert_eq!(std::fs::read_to_string(&id).expect("reads"), words);
        std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = assert_clean_failure(&scan(), "input", 8);
        assert!(err.contains("chmod 600"), "{err}");
    }
    // A damaged file is refused without echoing it.
    std::fs::write(&id, "not a phrase at all").expect("written");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let err = assert_clean_failure(&scan(), "input", 8);
    assert!(!err.contains("not a phrase at all"), "{err}");
}

/// Spawns `patient share` on a hand-made bundle and returns it with the receiver of its stdout
/// lines, once its `QR:` line is out.
fn patient_until_qr(relay_url: &str, bundle: &Path, extra: &[&str]) -> (Child, String) {
    let mut child = carekey()
        .args(["patient", "share", "--no-qr-art", "--relay", relay_url])
        .arg("--bundle")
        .arg(bundle)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("patient starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let qr = loop {
        let line = lines
            .next()
            .expect("a QR: line before end of output")
            .expect("stdout reads");
        if let Some(q) = line.strip_prefix("QR: ") {
            break q.to_owned();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    (child, qr)
}

fn small_bundle(dir: &Path) -> PathBuf {
    let p = dir.join("small.json");
    std::fs::write(
        &p,
        br#"{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Condition","id":"c1"}},{"resource":{"resourceType":"DocumentReference","id":"d1","content":[{"attachment":{"contentType":"application/pdf","title":"letter","data":"JVBERi0xLjQK"}}]}}]}"#,
    )
    .expect("written");
    p
}

fn child_stderr(child: &mut Child) -> String {
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s
}

#[test]
fn mismatching_codes_grant_nothing() {
    let relay = start_relay();
    let tmp = tempfile::tempdir().expect("tmp");
    let (mut patient, qr) = patient_until_qr(&relay.url, &small_bundle(tmp.path()), &[]);
    // The patient answers "n" once the doctor has scanned.
    let mut doctor = carekey();
    doctor.args(["doctor", "scan", &qr, "--wait", "4"]);
    let d = std::thread::spawn(move || run(doctor, 60));
    {
        use std::io::Write;
        let mut stdin = patient.stdin.take().expect("stdin");
        stdin.write_all(b"n\n").expect("answer");
    }
    let status = wait_with_deadline(&mut patient, 60);
    let p_err = child_stderr(&mut patient);
    assert_eq!(status.code(), Some(7), "{p_err}");
    assert!(p_err.contains("Do the codes match? [y/N]"), "{p_err}");
    assert!(p_err.contains("error[declined]"), "{p_err}");
    // The doctor never gets a grant, and learns of the decline at once (not by timing out).
    let d = d.join().expect("doctor thread");
    assert!(tagged(&text(&d.stdout), "CHECK: ").is_some());
    let err = assert_clean_failure(&d, "declined", 7);
    assert!(err.contains("the patient declined"), "{err}");
}

#[cfg(unix)]
#[test]
fn ctrl_c_cancels_cleanly() {
    let relay = start_relay();
    let tmp = tempfile::tempdir().expect("tmp");
    let (mut patient, _qr) = patient_until_qr(&relay.url, &small_bundle(tmp.path()), &["--yes"]);
    // Waiting for the doctor (a long poll in flight): SIGINT, as Ctrl-C sends.
    std::thread::sleep(Duration::from_millis(300));
    let killed = Command::new("kill")
        .args(["-INT", &patient.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = wait_with_deadline(&mut patient, 20);
    let err = child_stderr(&mut patient);
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("error[cancelled]: cancelled"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_url_that_is_not_a_relay_is_a_clear_error() {
    // Something answers HTTP, but it is not a Carekey relay.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "http://127.0.0.1:{}",
        listener.local_addr().expect("addr").port()
    );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut s, &mut buf);
            let _ = std::io::Write::write_all(
                &mut s,
                b"HTTP/1.1 404 Not Found\r\ncontent-type: text/html\r\ncontent-length: 9\r\nconnection: close\r\n\r\n<p>no</p>",
            );
        }
    });
    let tmp = tempfile::tempdir().expect("tmp");
    let mut c = carekey();
    c.args(["patient", "share", "--yes", "--relay", &url])
        .arg("--bundle")
        .arg(small_bundle(tmp.path()));
    let err = assert_clean_failure(&run(c, 60), "not_a_relay", 3);
    assert!(err.contains("does not answer as a Carekey relay"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    // The doctor checks the QR's relay the same way.
    let mut c = carekey();
    c.args(["doctor", "scan", &qr_for(&url, now() + 600)]);
    assert_clean_failure(&run(c, 60), "not_a_relay", 3);
}

#[test]
fn synthea_export_documents_travel_as_attachments() {
    let dir = fixtures_dir().join("synthea-10");
    let docs_file = dir.join("DocumentReference.000.ndjson");
    if !docs_file.is_file() {
        assert!(
            std::env::var_os("CAREKEY_REQUIRE_FIXTURES").is_none_or(|v| v != "1"),
            "fixture {} is missing and CAREKEY_REQUIRE_FIXTURES=1",
            docs_file.display()
        );
        println!("skipping: fixture {} not found", docs_file.display());
        return;
    }
    // Every inline attachment of the export, decoded.
    let mut known = std::collections::HashSet::new();
    for line in std::fs::read_to_string(&docs_file).expect("reads").lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("NDJSON line");
        for c in v["content"].as_array().into_iter().flatten() {
            if let Some(d) = c["attachment"]["data"].as_str() {
                known.insert(data_encoding::BASE64.decode(d.as_bytes()).expect("base64"));
            }
        }
    }
    let relay = start_relay();
    let tmp = tempfile::tempdir().expect("tmp");
    let out_dir = tmp.path().join("out");
    let mut patient = carekey()
        .args([
            "patient",
            "share",
            "--no-qr-art",
            "--yes",
            "--relay",
            &relay.url,
        ])
        .arg("--ndjson-dir")
        .arg(&dir)
        .args(["--patient-index", "1", "--records", "documents"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("patient starts");
    let mut lines = BufReader::new(patient.stdout.take().expect("stdout")).lines();
    let qr = loop {
        let line = lines.next().expect("QR: line").expect("reads");
        if let Some(q) = line.strip_prefix("QR: ") {
            break q.to_owned();
        }
    };
    let mut doctor = carekey();
    doctor
        .args(["doctor", "scan", &qr, "--wait", "60", "--out"])
        .arg(&out_dir);
    let d = run(doctor, 120);
    let d_out = text(&d.stdout);
    assert!(d.status.success(), "{d_out}\n{}", text(&d.stderr));
    let status = wait_with_deadline(&mut patient, 60);
    let p_err = child_stderr(&mut patient);
    assert!(status.success(), "{p_err}");
    assert!(
        p_err.contains("export holds 13 patient(s); sharing patient 1"),
        "{p_err}"
    );

    let received = tagged(&d_out, "RECEIVED: ").expect("RECEIVED line");
    let records = std::fs::read_dir(&out_dir)
        .expect("out")
        .filter(|e| {
            e.as_ref()
                .expect("entry")
                .path()
                .extension()
                .is_some_and(|x| x == "json")
        })
        .count();
    let attachments: Vec<PathBuf> = std::fs::read_dir(out_dir.join("attachments"))
        .expect("attachments dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert!(records > 0 && !attachments.is_empty());
    assert!(
        received.starts_with(&format!(
            "{records} records, {} attachments",
            attachments.len()
        )),
        "{received}"
    );
    assert!(p_err.contains(&format!(
        "sharing {records} record(s) and {} attachment(s)",
        attachments.len()
    )));
    for a in &attachments {
        let bytes = std::fs::read(a).expect("reads");
        assert!(
            known.contains(&bytes),
            "{} is an attachment of the export",
            a.display()
        );
    }
    // The records themselves no longer carry the inline data.
    for e in std::fs::read_dir(&out_dir).expect("out") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "json") {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&p).expect("reads")).expect("JSON");
            assert_eq!(v["resourceType"], "DocumentReference");
            assert!(v["content"][0]["attachment"].get("data").is_none());
        }
    }
}

/// `patient share --shl` publishes a SMART Health Link (issue 15): `SHLINK:` and `PASSCODE:`
/// on stdout; `doctor open` (the doctor session's `open_smart_link_files`) with a wrong
/// passcode is refused with the attempts left (`passcode_rejected`, exit 6), with the right
/// one it writes each record; `--wait` then sees the download by name.
#[test]
fn share_as_smart_health_link_and_open_it() {
    let relay = start_relay();
    let dir = tempfile::tempdir().expect("dir");
    let bundle = small_bundle(dir.path());
    let mut c = carekey();
    c.args(["patient", "share", "--relay", &relay.url, "--bundle"])
        .arg(&bundle)
        .args([
            "--shl",
            "--wait",
            "0",
            "--no-qr-art",
            "--label",
            "For the clinic",
        ]);
    let o = run(c, 60);
    let out = text(&o.stdout);
    assert!(o.status.success(), "stderr: {}", text(&o.stderr));
    let link = tagged(&out, "SHLINK: ").expect("SHLINK: line").to_owned();
    let passcode = tagged(&out, "PASSCODE: ")
        .expect("PASSCODE: line")
        .to_owned();
    assert!(link.starts_with("shlink:/"));
    assert_eq!(passcode.len(), 8);
    assert!(text(&o.stderr).contains("We cannot tell who opened it."));

    let mut c = carekey();
    c.args(["doctor", "open", &link, "--passcode", "not-it"]);
    let o = run(c, 30);
    let err = assert_clean_failure(&o, "passcode_rejected", 6);
    assert!(err.contains("4 attempts left"), "{err}");
    assert!(!err.contains("not-it"), "the passcode is never echoed");

    let got = dir.path().join("got");
    let mut c = carekey();
    c.args([
        "doctor",
        "open",
        &link,
        "--passcode",
        &passcode,
        "--name",
        "Dr. CLI",
        "--out",
    ])
    .arg(&got);
    let o = run(c, 30);
    let out = text(&o.stdout);
    assert!(o.status.success(), "stderr: {}", text(&o.stderr));
    assert_eq!(tagged(&out, "LINK: "), Some("For the clinic"));
    assert_eq!(
        tagged(&out, "OPENED: "),
        Some("2 files"),
        "the PDF attachment is not published: {out}"
    );
    let written = std::fs::read(got.join("0000-Condition.json")).expect("written");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&written).expect("JSON")["id"],
        "c1"
    );

    // Without --passcode a P link is a usage error before any request.
    let mut c = carekey();
    c.args(["doctor", "open", &link]);
    assert_clean_failure(&run(c, 30), "usage", 2);
}

/// A closed relay (docs/relay.md "Enrollment"): without `--enrollment-key` the patient's share
/// fails in words (exit 6, `enrollment_required`); with the key (here from the environment,
/// never echoed) both sides of the check-up run.
#[test]
fn a_closed_relay_needs_the_enrollment_key_on_both_sides() {
    const KEY: &str = "clinic-network-cli-5b2e";
    let relay = common::start_relay_with(&common::RelayOptions {
        env: vec![("CAREKEY_RELAY_ENROLLMENT_KEY".into(), KEY.into())],
        ..common::RelayOptions::default()
    });
    let tmp = tempfile::tempdir().expect("tmp");
    let bundle = small_bundle(tmp.path());
    let mut refused = carekey();
    refused
        .args([
            "patient",
            "share",
            "--no-qr-art",
            "--yes",
            "--relay",
            &relay.url,
        ])
        .arg("--bundle")
        .arg(&bundle);
    let o = run(refused, 60);
    let err = assert_clean_failure(&o, "enrollment_required", 6);
    assert!(err.contains("enrollment key"), "{err}");

    let mut patient = carekey()
        .args([
            "patient",
            "share",
            "--no-qr-art",
            "--yes",
            "--relay",
            &relay.url,
        ])
        .arg("--bundle")
        .arg(&bundle)
        .env("CAREKEY_ENROLLMENT_KEY", KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("patient starts");
    let mut lines = BufReader::new(patient.stdout.take().expect("stdout")).lines();
    let qr = loop {
        let line = lines.next().expect("a QR: line").expect("stdout reads");
        if let Some(q) = line.strip_prefix("QR: ") {
            break q.to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines.by_ref() {});
    // The doctor opens a reply mailbox on the patient's relay: refused without the key...
    let mut doctor = carekey();
    doctor.args(["doctor", "scan", &qr, "--wait", "20"]);
    let o = run(doctor, 60);
    assert_clean_failure(&o, "enrollment_required", 6);
    // ...and the check-up runs with it.
    let mut doctor = carekey();
    doctor.args([
        "doctor",
        "scan",
        &qr,
        "--wait",
        "20",
        "--enrollment-key",
        KEY,
    ]);
    let d = run(doctor, 60);
    let status = wait_with_deadline(&mut patient, 60);
    let p_err = child_stderr(&mut patient);
    let d_out = text(&d.stdout);
    assert!(d.status.success(), "doctor: {}", text(&d.stderr));
    assert!(status.success(), "patient: {p_err}");
    assert!(tagged(&d_out, "CHECK: ").is_some(), "{d_out}");
    for out in [d_out.as_str(), &text(&d.stderr), &p_err] {
        assert!(!out.contains(KEY), "the key is never printed: {out}");
    }
}
