//! `carekey clinic keygen` / `clinic attest` (docs/threat-model.md "Card trust"): the key file,
//! the `CAREKEY-CLINIC:` text, and an attestation the doctor app imports and a patient app that
//! trusts the clinic believes, through a real pairing against a relay process.

// The client's relay-process harness, shared rather than copied.
#[path = "../../client/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use carekey_app::events::NoEvents;
use carekey_app::ipc::{self, PolicyChoice, ShareCategory};
use carekey_app::session::{AppConfig, ClinicKey, DoctorApp, PatientApp, parse_card};
use carekey_vault::KdfParams;

const PASS: &str = "correct horse battery staple";

fn carekey(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_carekey"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("carekey runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn tagged<'a>(out: &'a str, tag: &str) -> Option<&'a str> {
    out.lines().find_map(|l| l.strip_prefix(tag))
}

fn config(dir: &Path, name: &str) -> AppConfig {
    AppConfig {
        vault_path: dir.join(name),
        // Cheap Argon2id: this test is about attestations, not the passphrase cost.
        kdf: KdfParams {
            m_kib: 8 * 1024,
            t: 1,
            p: 1,
        },
    }
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

fn keygen(path: &Path, name: &str) -> String {
    let out = path.to_str().expect("utf-8 path");
    let o = carekey(&["clinic", "keygen", "--out", out, "--name", name]);
    assert!(o.status.success(), "keygen: {}", text(&o.stderr));
    let stdout = text(&o.stdout);
    let clinic = tagged(&stdout, "CLINIC: ")
        .expect("CLINIC: line")
        .to_owned();
    // The secret stays in the file: nothing of it on either stream.
    let secret = std::fs::read_to_string(path).expect("key file");
    let body = secret.trim().trim_start_matches("CAREKEY-CLINIC-SECRET:");
    assert!(body.len() > 52, "the file holds seed and name");
    for s in [&stdout, &text(&o.stderr)] {
        assert!(!s.contains(&body[..52]), "the key is never printed: {s}");
    }
    clinic
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clinic_attestation_made_by_the_cli_is_imported_and_believed() {
    let relay = common::start_relay();
    let dir = tempfile::tempdir().expect("dir");
    let key_file = dir.path().join("clinic.key");
    let clinic_text = keygen(&key_file, "St. Mary's Clinic");
    let clinic = ClinicKey::parse(&clinic_text).expect("the apps' parser reads it");
    assert_eq!(clinic.name, "St. Mary's Clinic");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Never overwritten.
    let o = carekey(&[
        "clinic",
        "keygen",
        "--out",
        key_file.to_str().expect("utf-8"),
        "--name",
        "Other",
    ]);
    let err = assert_clean_failure(&o, "input", 8);
    assert!(err.contains("already exists"), "{err}");

    // A doctor's real card, from the doctor app's Profile.
    let patient = PatientApp::new(config(dir.path(), "p.vault"), Arc::new(NoEvents));
    let doctor = DoctorApp::new(config(dir.path(), "d.vault"), Arc::new(NoEvents));
    let create = |name: &str| ipc::CreateVault {
        passphrase: PASS.into(),
        name: name.into(),
        licence: Some("GMC-1234".into()),
        relay_url: relay.url.clone(),
    };
    drop(
        doctor
            .create_vault(create("Dr. Ada Quinn"))
            .await
            .expect("doctor"),
    );
    let mut p = create("Pat Example");
    p.licence = None;
    drop(patient.create_vault(p).await.expect("patient"));
    let profile = doctor.profile().await.expect("profile");

    let key = key_file.to_str().expect("utf-8");
    let o = carekey(&[
        "--json",
        "clinic",
        "attest",
        "--key",
        key,
        "--card",
        &profile.card_text,
    ]);
    let out = text(&o.stdout);
    assert!(o.status.success(), "attest: {}", text(&o.stderr));
    assert_eq!(tagged(&out, "CARD: "), Some("Dr. Ada Quinn"));
    assert_eq!(
        tagged(&out, "FINGERPRINT: "),
        Some(profile.fingerprint.as_str()),
        "the clinic compares the fingerprint the doctor's Profile shows"
    );
    assert!(
        text(&o.stderr).contains("GMC-1234"),
        "the stated licence is shown"
    );
    let attestation = tagged(&out, "ATTESTATION: ")
        .expect("ATTESTATION: line")
        .to_owned();
    let summary: serde_json::Value = serde_json::from_str(
        out.lines()
            .rfind(|l| l.starts_with('{'))
            .expect("JSON line"),
    )
    .expect("JSON");
    assert_eq!(summary["clinic_name"], "St. Mary's Clinic");

    // The doctor app accepts it; the card's hash (what patients pin) is unchanged.
    let after = doctor
        .import_attestation(ipc::ScanText { text: attestation })
        .await
        .expect("the doctor app imports the attestation");
    assert!(
        after.appears_as.contains("attested by St. Mary's Clinic"),
        "{}",
        after.appears_as
    );
    assert_eq!(after.fingerprint, profile.fingerprint);
    let card = doctor.card().await.expect("card");
    assert_eq!(
        card.attestation.as_ref().map(|a| a.clinic_key),
        Some(clinic.key),
        "signed by the key whose CLINIC: text was printed"
    );

    // A patient app that trusts the clinic's text sees the doctor as attested at the door.
    patient
        .add_record(ipc::ManualRecord::Allergy {
            text: "Penicillin".into(),
            reaction: None,
        })
        .await
        .expect("record");
    patient
        .trust_clinic(ipc::ScanText { text: clinic_text })
        .await
        .expect("trust the clinic");
    let started = patient
        .start_share(ipc::StartShare {
            categories: vec![ShareCategory::Allergies],
            records: Vec::new(),
            expires_in_secs: 3600,
            policy: PolicyChoice::Never,
            depth: 0,
        })
        .await
        .expect("share");
    doctor
        .scan_text(ipc::ScanText {
            text: started.qr_text.clone(),
        })
        .await
        .expect("scan");
    let door = patient
        .wait_for_doctor(ipc::Wait {
            id: started.pairing.clone(),
            wait_secs: 20,
        })
        .await
        .expect("the doctor answers");
    assert!(door.attested, "{}", door.trust);
    assert!(
        door.trust.contains("attested by St. Mary's Clinic"),
        "{}",
        door.trust
    );
}

#[test]
fn tampered_cards_and_wrong_key_files_are_refused_clearly() {
    let dir = tempfile::tempdir().expect("dir");
    let key_file = dir.path().join("clinic.key");
    keygen(&key_file, "St. Mary's Clinic");
    let key = key_file.to_str().expect("utf-8");

    // A real doctor card, made with the core types the apps use.
    let (_, card) = common::identity("Dr. Ada Quinn", carekey_core::keys::Role::Doctor);
    let card_text = carekey_app::session::card_text(&card);
    assert!(parse_card(&card_text).is_ok());
    let ok = carekey(&["clinic", "attest", "--key", key, "--card", &card_text]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));

    // One character of the card changed on the way: its self-signature fails.
    let mut tampered = card_text.clone().into_bytes();
    let at = tampered.len() / 2;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    let o = carekey(&["clinic", "attest", "--key", key, "--card", &tampered]);
    let err = assert_clean_failure(&o, "invalid_input", 2);
    assert!(err.contains("not a Carekey card"), "{err}");
    assert!(!text(&o.stdout).contains("ATTESTATION:"), "nothing signed");
    // Not a card at all.
    let o = carekey(&["clinic", "attest", "--key", key, "--card", "hello"]);
    assert_clean_failure(&o, "invalid_input", 2);
    // A patient's card is not a clinic's to attest.
    let (_, pcard) = common::identity("Pat Example", carekey_core::keys::Role::Patient);
    let o = carekey(&[
        "clinic",
        "attest",
        "--key",
        key,
        "--card",
        &carekey_app::session::card_text(&pcard),
    ]);
    let err = assert_clean_failure(&o, "invalid_input", 2);
    assert!(err.contains("patient's card"), "{err}");

    // Key files in the wrong format: the public text, an identity phrase, garbage.
    let clinic_text = ClinicKey {
        name: "St. Mary's Clinic".into(),
        key: card.body.signing_key,
    }
    .to_text();
    for (name, body) in [
        ("public.txt", clinic_text.as_str()),
        (
            "phrase.txt",
            "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon \
             abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon \
             abandon abandon abandon art",
        ),
        ("junk.txt", "SECRET-JUNK"),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, body).expect("written");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        let o = carekey(&[
            "clinic",
            "attest",
            "--key",
            p.to_str().expect("utf-8"),
            "--card",
            &card_text,
        ]);
        let err = assert_clean_failure(&o, "input", 8);
        assert!(
            err.contains("does not hold a Carekey clinic signing key"),
            "{err}"
        );
        assert!(
            !err.contains("SECRET-JUNK") && !err.contains("abandon"),
            "{err}"
        );
    }
    // A key file others can read is refused.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let o = carekey(&["clinic", "attest", "--key", key, "--card", &card_text]);
        let err = assert_clean_failure(&o, "input", 8);
        assert!(err.contains("chmod 600"), "{err}");
    }
    // A bad clinic name is a usage error before any file is made.
    let o = carekey(&[
        "clinic",
        "keygen",
        "--out",
        dir.path().join("x.key").to_str().expect("utf-8"),
        "--name",
        "",
    ]);
    assert_clean_failure(&o, "usage", 2);
    assert!(!dir.path().join("x.key").exists());
}

/// The CLI's patient runs the patient session, so it words the doctor at the door as the app
/// does: a card attested by a clinic whose key this device does not trust reads "not verified"
/// (the tool used to print "card attested by <the name the card gives>").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_patient_believes_no_clinic_it_was_not_given() {
    use std::io::{BufRead, BufReader, Read};
    let relay = common::start_relay();
    let dir = tempfile::tempdir().expect("dir");
    let key_file = dir.path().join("clinic.key");
    keygen(&key_file, "St. Mary's Clinic");
    let doctor = DoctorApp::new(config(dir.path(), "d.vault"), Arc::new(NoEvents));
    drop(
        doctor
            .create_vault(ipc::CreateVault {
                passphrase: PASS.into(),
                name: "Dr. Ada Quinn".into(),
                licence: None,
                relay_url: relay.url.clone(),
            })
            .await
            .expect("doctor"),
    );
    let card = doctor.profile().await.expect("profile").card_text;
    let key = key_file.to_str().expect("utf-8");
    let o = carekey(&["clinic", "attest", "--key", key, "--card", &card]);
    let out = text(&o.stdout);
    let attestation = tagged(&out, "ATTESTATION: ")
        .expect("attestation")
        .to_owned();
    doctor
        .import_attestation(ipc::ScanText { text: attestation })
        .await
        .expect("import");

    let bundle = dir.path().join("b.json");
    std::fs::write(
        &bundle,
        br#"{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"AllergyIntolerance","id":"a1","code":{"text":"Penicillin"}}}]}"#,
    )
    .expect("written");
    let mut patient = Command::new(env!("CARGO_BIN_EXE_carekey"))
        .args([
            "--json",
            "patient",
            "share",
            "--no-qr-art",
            "--yes",
            "--wait",
            "60",
        ])
        .args(["--relay", &relay.url, "--bundle"])
        .arg(&bundle)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("patient starts");
    let stdout = patient.stdout.take().expect("stdout");
    let mut stderr = patient.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut lines = Vec::new();
    let qr = loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("a QR: line");
        lines.push(line.clone());
        if let Some(q) = line.strip_prefix("QR: ") {
            break q.to_owned();
        }
    };
    let scan = doctor
        .scan_text(ipc::ScanText { text: qr })
        .await
        .expect("scan");
    doctor
        .wait_for_grant(ipc::Wait {
            id: scan.scan,
            wait_secs: 30,
        })
        .await
        .expect("the CLI patient confirms");
    let status = tokio::task::spawn_blocking(move || patient.wait())
        .await
        .expect("join")
        .expect("wait");
    lines.extend(rx.try_iter());
    let err = err_thread.join().expect("stderr thread");
    assert!(status.success(), "{err}");
    assert!(
        err.contains("its card names St. Mary's Clinic; not verified"),
        "{err}"
    );
    assert!(!err.contains("attested by"), "{err}");
    let summary: serde_json::Value = serde_json::from_str(
        lines
            .iter()
            .rfind(|l| l.starts_with('{'))
            .expect("JSON line"),
    )
    .expect("JSON");
    assert_eq!(summary["attested"], false);
    assert_eq!(summary["doctor"], "Dr. Ada Quinn");
}
