//! Test harness shared by the end-to-end tests: a real relay process, identities, share items.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use carekey_client::patient::ShareItem;
use carekey_core::grant::Category;
use carekey_core::keys::{DeviceIdentity, Role, RootSecret};
use rand_core::OsRng;
use zeroize::Zeroizing;

/// Vault options with a cheap Argon2id (8 MiB, t = 1): these tests are about what is stored,
/// not about the passphrase.
pub fn quick_vault_options() -> carekey_vault::CreateOptions {
    carekey_vault::CreateOptions {
        kdf: carekey_vault::KdfParams {
            m_kib: 8 * 1024,
            t: 1,
            p: 1,
        },
    }
}

/// A fresh vault `name` in `dir` (passphrase "pass phrase", [`quick_vault_options`]).
pub fn test_vault(dir: &tempfile::TempDir, name: &str) -> carekey_vault::Vault {
    carekey_vault::Vault::create(
        &dir.path().join(name),
        "pass phrase",
        &quick_vault_options(),
    )
    .expect("vault")
    .0
}

/// A relay process on a free loopback port; killed on drop.
pub struct RelayProcess {
    child: Child,
    /// Base URL (also the origin the relay was started with).
    pub url: String,
    /// The relay's data directory (its SQLite file), for the tests that play its operator.
    pub data: tempfile::TempDir,
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn relay_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CAREKEY_RELAY_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let p = target.join("debug/carekey-relay");
    assert!(
        p.is_file(),
        "relay binary not found at {} (run `cargo build -p carekey-relay` or set CAREKEY_RELAY_BIN)",
        p.display()
    );
    p
}

pub fn start_relay() -> RelayProcess {
    start_relay_with(&RelayOptions::default())
}

/// A relay that signs owner writes over `origin` rather than its own address: the origin the
/// clients use when they talk to it through a proxy (`tests/common/proxy.rs`). `url` is still
/// the relay's own address.
pub fn start_relay_with_origin(origin: &str) -> RelayProcess {
    start_relay_with(&RelayOptions {
        origin: Some(origin.to_owned()),
        ..RelayOptions::default()
    })
}

/// How to start a relay beyond the defaults.
#[derive(Debug, Default, Clone)]
pub struct RelayOptions {
    /// Extra environment of the relay process (its flags are also environment variables,
    /// e.g. `CAREKEY_RELAY_TOKEN_RATE`).
    pub env: Vec<(String, String)>,
    /// Capture the relay's stdout and stderr to `relay.stdout` / `relay.stderr` in this
    /// directory (else they go to /dev/null).
    pub log_dir: Option<PathBuf>,
    /// The relay binary (else [`relay_bin`]).
    pub bin: Option<PathBuf>,
    /// The origin owner writes are signed over (else the relay's own URL).
    pub origin: Option<String>,
}

pub fn start_relay_with(opts: &RelayOptions) -> RelayProcess {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let origin = opts.origin.clone().unwrap_or_else(|| url.clone());
    let data = tempfile::tempdir().expect("temp dir");
    let (stdout, stderr) = match &opts.log_dir {
        Some(d) => (
            Stdio::from(std::fs::File::create(d.join("relay.stdout")).expect("stdout file")),
            Stdio::from(std::fs::File::create(d.join("relay.stderr")).expect("stderr file")),
        ),
        None => (Stdio::null(), Stdio::null()),
    };
    let child = Command::new(opts.bin.clone().unwrap_or_else(relay_bin))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--origin",
            &origin,
            // Expiry tests watch the relay sweep; a one-second sweep costs nothing here.
            "--sweep-secs",
            "1",
            "--data",
        ])
        .arg(data.path())
        .envs(opts.env.iter().map(|(k, v)| (k, v)))
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("relay starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "relay did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    RelayProcess { child, url, data }
}

pub fn in_a_day() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
        + 86_400
}

pub fn identity(name: &str, role: Role) -> (DeviceIdentity, carekey_core::keys::Card) {
    let id = DeviceIdentity::from_root(&RootSecret::random(&mut OsRng));
    let card = id
        .card(
            name,
            role,
            (role == Role::Doctor).then_some("GMC-7"),
            1_800_000_000,
        )
        .expect("card");
    (id, card)
}

pub fn category_of(resource_type: &str) -> Category {
    match resource_type {
        "AllergyIntolerance" => Category::Allergies,
        "Condition" => Category::Conditions,
        "MedicationStatement" | "MedicationRequest" | "Medication" => Category::Medications,
        "Immunization" => Category::Immunizations,
        "Procedure" => Category::Procedures,
        "Observation" | "DiagnosticReport" => Category::Observations,
        "Patient" => Category::Demographics,
        _ => Category::Other,
    }
}

/// The HL7 IPS example's resources when the fixtures are there, else a few hand-made ones;
/// plus one attachment of `attachment_bytes` (above 1 MiB it takes the chunked upload path).
pub fn share_items(attachment_bytes: usize) -> Vec<ShareItem> {
    let dir = std::env::var_os("CAREKEY_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"));
    let mut items = Vec::new();
    match std::fs::read(dir.join("fhir/ips-bundle-01.json")) {
        Ok(b) => {
            let bundle: serde_json::Value = serde_json::from_slice(&b).expect("IPS bundle is JSON");
            for (i, e) in bundle["entry"]
                .as_array()
                .expect("entries")
                .iter()
                .enumerate()
            {
                let r = &e["resource"];
                let t = r["resourceType"].as_str().unwrap_or("Unknown");
                items.push(ShareItem {
                    record_id: [i as u8 + 1; 16],
                    category: category_of(t),
                    title: t.to_owned(),
                    data: Zeroizing::new(serde_json::to_vec(r).expect("re-encodes")),
                    attachment: false,
                });
            }
        }
        Err(_) => {
            println!(
                "fixtures not found at {}: using hand-made resources",
                dir.display()
            );
            for i in 0..5u8 {
                items.push(ShareItem {
                    record_id: [i + 1; 16],
                    category: Category::Conditions,
                    title: format!("Condition {i}"),
                    data: Zeroizing::new(
                        format!(r#"{{"resourceType":"Condition","id":"c{i}"}}"#).into_bytes(),
                    ),
                    attachment: false,
                });
            }
        }
    }
    let pdf: Vec<u8> = (0..attachment_bytes).map(|i| (i % 251) as u8).collect();
    items.push(ShareItem {
        record_id: [0xee; 16],
        category: Category::Documents,
        title: "discharge-letter.pdf".into(),
        data: Zeroizing::new(pdf),
        attachment: true,
    });
    items
}

/// Pairs a new doctor with `patient` on `share`: scan, codes compared, confirm, grant.
/// Returns (doctor, link id at the doctor, relationship id at the patient).
pub async fn pair(
    patient: &mut carekey_client::patient::Patient,
    share: &carekey_client::ShareId,
    name: &str,
) -> (
    carekey_client::doctor::Doctor,
    carekey_client::LinkId,
    carekey_client::RelationshipId,
) {
    let (did, dcard) = identity(name, Role::Doctor);
    pair_as(patient, share, did, dcard).await
}

/// [`pair`] with a given doctor identity (a test that also plays a modified doctor client
/// keeps a second copy of it, derived from the same root).
pub async fn pair_as(
    patient: &mut carekey_client::patient::Patient,
    share: &carekey_client::ShareId,
    did: DeviceIdentity,
    dcard: carekey_core::keys::Card,
) -> (
    carekey_client::doctor::Doctor,
    carekey_client::LinkId,
    carekey_client::RelationshipId,
) {
    let cancel = carekey_client::progress::Cancel::new();
    let mut doctor = carekey_client::doctor::Doctor::new(did, dcard);
    let mut session = patient.start_pairing(share).await.expect("pairing opens");
    let scan = doctor.scan(&session.qr_text()).await.expect("doctor scans");
    let door = patient
        .wait_for_doctor(&mut session, 10, &cancel)
        .await
        .expect("reply arrives");
    assert_eq!(door.check_code, scan.check_code());
    let rel = patient.confirm(session).await.expect("confirm");
    let link = doctor
        .wait_for_grant(scan, 10, &cancel)
        .await
        .expect("grant arrives");
    (doctor, link, rel)
}

/// `$CAREKEY_FIXTURES`, else `/work/shared/fixtures` as seen from this crate.
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("CAREKEY_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"))
}

fn patient_of(r: &serde_json::Value) -> Option<String> {
    if r["resourceType"] == "Patient" {
        return r["id"].as_str().map(str::to_owned);
    }
    let reference = r["subject"]["reference"]
        .as_str()
        .or_else(|| r["patient"]["reference"].as_str())?;
    Some(
        reference
            .trim_start_matches("Patient/")
            .trim_start_matches("urn:uuid:")
            .to_owned(),
    )
}

/// The largest Synthea patient (most resources) as share items: every resource a record (inline
/// attachment data removed), every `content[].attachment.data` of its DocumentReferences
/// decoded as an attachment.
pub fn synthea_largest(fx: &Path) -> (Vec<ShareItem>, usize, usize) {
    let mut per: std::collections::HashMap<String, Vec<serde_json::Value>> =
        std::collections::HashMap::new();
    for e in std::fs::read_dir(fx.join("synthea-10")).expect("synthea dir") {
        let p = e.expect("dir entry").path();
        let name = p
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        if !name.ends_with(".ndjson") || name.starts_with("log") {
            continue;
        }
        for line in std::fs::read_to_string(&p).expect("ndjson reads").lines() {
            if line.trim().is_empty() {
                continue;
            }
            let r: serde_json::Value = serde_json::from_str(line).expect("ndjson line is JSON");
            if let Some(pid) = patient_of(&r) {
                per.entry(pid).or_default().push(r);
            }
        }
    }
    let resources = per.into_values().max_by_key(Vec::len).expect("a patient");
    let mut items = Vec::new();
    let mut n = 0u64;
    let mut id = || {
        n += 1;
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&n.to_be_bytes());
        b
    };
    let mut attachments = 0;
    for r in &resources {
        let t = r["resourceType"].as_str().unwrap_or("Unknown");
        // As the vault keeps them: the attachment bytes travel as their own chunked blob, the
        // record without its inline base64.
        let mut record = r.clone();
        for c in record["content"].as_array_mut().into_iter().flatten() {
            if let Some(a) = c["attachment"].as_object_mut() {
                a.remove("data");
            }
        }
        items.push(ShareItem {
            record_id: id(),
            category: category_of(t),
            title: t.to_owned(),
            data: Zeroizing::new(serde_json::to_vec(&record).expect("re-encodes")),
            attachment: false,
        });
        if t == "DocumentReference" {
            for c in r["content"].as_array().into_iter().flatten() {
                let a = &c["attachment"];
                if let Some(d) = a["data"].as_str() {
                    let bytes = data_encoding::BASE64
                        .decode(d.as_bytes())
                        .expect("attachment base64");
                    items.push(ShareItem {
                        record_id: id(),
                        category: Category::Documents,
                        title: a["contentType"].as_str().unwrap_or("attachment").to_owned(),
                        data: Zeroizing::new(bytes),
                        attachment: true,
                    });
                    attachments += 1;
                }
            }
        }
    }
    (items, resources.len(), attachments)
}
