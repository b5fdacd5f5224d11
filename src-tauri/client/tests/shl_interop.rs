//! Interop with an independent SMART Health Links / Cards implementation (issue 15):
//! `kill-the-clipboard` (TypeScript, npm, pinned in `src-tauri/shl/tests/interop/package.json`)
//! run by Node on 127.0.0.1 through `src-tauri/shl/tests/interop/interop.mjs`:
//!
//! - (a) SHLs it creates and serves (with passcode and embedded file; without passcode and a
//!   `location` file) open in Carekey's reader (`carekey-shl`, the doctor app's) to the Bundle;
//!   its 401 `remainingAttempts` is read;
//! - (b) an SHL Carekey publishes through a real relay process is resolved and decrypted by
//!   its `SHLViewer` to the same Bundle and a letter with its PDF inline (and the share's log
//!   names its recipient);
//! - (c) a SMART Health Card it issues verifies in Carekey against its JWK set, and the same
//!   card with one bit flipped in the signature does not.
//!
//! Skipped, saying so, when `node` or the npm packages are missing; a failure instead when
//! `CAREKEY_REQUIRE_SHL_INTEROP=1` (CI: `npm ci --prefix src-tauri/shl/tests/interop`).

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use carekey_client::patient::{
    AccessKind, LinkOptions, LinkPasscode, Patient, ShareItem, ShareOptions,
};
use carekey_client::progress::{Cancel, NoProgress};
use carekey_client::relay::Relay;
use carekey_core::grant::{Category, Policy};
use carekey_core::keys::Role;
use carekey_shl::fetch::ShlClient;
use carekey_shl::shc::{self, Verification};
use carekey_shl::{Jwks, Opened, ShlError, Shlink, TrustStore};
use common::{fixtures_dir, identity, in_a_day, start_relay};
use zeroize::Zeroizing;

const REQUIRE: &str = "CAREKEY_REQUIRE_SHL_INTEROP";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// The interop directory, when Node and the pinned packages are there.
fn interop_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shl/tests/interop");
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let pkg_ok = dir
        .join("node_modules/kill-the-clipboard/package.json")
        .is_file();
    let bundle_ok = fixtures_dir().join("fhir/ips-bundle-01.json").is_file();
    if node_ok && pkg_ok && bundle_ok {
        return Some(dir);
    }
    let why = format!(
        "SHL interop skipped: node {}, kill-the-clipboard {} (run `npm ci --prefix src-tauri/shl/tests/interop`), IPS fixture {}",
        if node_ok { "found" } else { "missing" },
        if pkg_ok { "installed" } else { "not installed" },
        if bundle_ok { "found" } else { "missing" },
    );
    assert!(
        std::env::var(REQUIRE).as_deref() != Ok("1"),
        "{why} but {REQUIRE}=1"
    );
    println!("{why}");
    None
}

fn bundle_path() -> PathBuf {
    fixtures_dir().join("fhir/ips-bundle-01.json")
}

fn bundle_value() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(bundle_path()).expect("bundle")).expect("JSON")
}

/// Runs `node interop.mjs <args>` and parses its one JSON line.
fn node(dir: &PathBuf, args: &[&str]) -> serde_json::Value {
    let o = Command::new("node")
        .current_dir(dir)
        .arg("interop.mjs")
        .args(args)
        .output()
        .expect("node runs");
    assert!(
        o.status.success(),
        "node {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("one JSON line")
}

async fn open(link: &str, passcode: Option<&str>) -> Result<Vec<serde_json::Value>, ShlError> {
    let link = Shlink::parse(link)?;
    link.check_usable(now())?;
    let entries = ShlClient::new("Carekey interop test")?
        .open(&link, passcode, now())
        .await?;
    entries
        .into_iter()
        .map(|e| match e.outcome? {
            Opened::File(f) => f.fhir_resource(),
            Opened::Fetch(_) => panic!("open fetches every location"),
        })
        .collect()
}

/// (a) Links kill-the-clipboard creates and serves open in Carekey.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_it_serves_open_in_carekey() {
    let Some(dir) = interop_dir() else { return };
    let mut child = Command::new("node")
        .current_dir(&dir)
        .arg("interop.mjs")
        .arg("serve")
        .arg(bundle_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node serves");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("first line");
    let links: serde_json::Value = serde_json::from_str(&line).expect("links JSON");
    let with_pass = links["passcodeLink"].as_str().expect("link");
    let passcode = links["passcode"].as_str().expect("passcode");
    let open_link = links["openLink"].as_str().expect("link");
    assert!(Shlink::parse(with_pass).expect("parses").flags().passcode);

    let want = vec![bundle_value()];
    // Passcode, embedded file.
    assert_eq!(open(with_pass, Some(passcode)).await.expect("opens"), want);
    // Its 401 with remainingAttempts.
    match open(with_pass, Some("wrong")).await {
        Err(ShlError::PasscodeRejected { remaining_attempts }) => {
            assert_eq!(remaining_attempts, Some(2))
        }
        other => panic!("expected a refused passcode, got {other:?}"),
    }
    // No passcode, a `location` file.
    assert_eq!(open(open_link, None).await.expect("opens"), want);
    drop(child.stdin.take());
    let _ = child.wait();
}

/// (b) A link Carekey publishes through its relay resolves in kill-the-clipboard's viewer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_carekey_publishes_resolves_in_its_viewer() {
    let Some(dir) = interop_dir() else { return };
    let relay = start_relay();
    let (pid, pcard) = identity("Pat Example", Role::Patient);
    let mut p = Patient::new(pid, pcard, Relay::new(&relay.url).expect("relay URL"));
    // A letter as the patient app shares it: the DocumentReference without its inline data,
    // then the file as an attachment item (docs/shl.md "Publishing").
    let pdf = b"%PDF-1.4\n% interop letter\n%%EOF\n".to_vec();
    let letter = serde_json::json!({"resourceType": "DocumentReference", "id": "letter-1",
        "status": "current", "content": [{"attachment": {"contentType": "application/pdf",
        "title": "Letter.pdf"}}]});
    let share = p
        .create_share(
            vec![
                ShareItem {
                    record_id: [1; 16],
                    category: Category::Conditions,
                    title: "IPS".into(),
                    data: Zeroizing::new(std::fs::read(bundle_path()).expect("bundle")),
                    attachment: false,
                },
                ShareItem {
                    record_id: [2; 16],
                    category: Category::Documents,
                    title: "DocumentReference".into(),
                    data: Zeroizing::new(serde_json::to_vec(&letter).expect("letter")),
                    attachment: false,
                },
                ShareItem {
                    record_id: [3; 16],
                    category: Category::Documents,
                    title: "Letter.pdf".into(),
                    data: Zeroizing::new(pdf.clone()),
                    attachment: true,
                },
            ],
            ShareOptions {
                expires_at: in_a_day(),
                policy: Policy::Never,
                delegation_depth: 0,
            },
            &NoProgress,
            &Cancel::new(),
        )
        .await
        .expect("share");
    let link = p
        .publish_link(
            &share,
            LinkOptions {
                passcode: LinkPasscode::Generated,
                expires_at: now() + 3600,
                max_attempts: 5,
                label: Some("Carekey interop".into()),
                records: Vec::new(),
            },
        )
        .await
        .expect("published");
    let passcode = link.passcode.clone().expect("passcode");
    // Its viewer asks for embeddedLengthMax 100: the relay answers a `location`.
    assert_eq!((link.files, link.attachments, link.left_out), (2, 1, 0));
    let got = node(&dir, &["view", &link.shlink, &passcode]);
    let resources = got["resources"].as_array().expect("resources");
    assert_eq!(resources.len(), 2);
    assert_eq!(resources[0], bundle_value());
    // Its viewer reads the letter with the PDF inline (FHIR R4 Attachment data, size, hash).
    let att = &resources[1]["content"][0]["attachment"];
    let b64 = att["data"].as_str().expect("data inline");
    assert_eq!(
        data_encoding::BASE64
            .decode(b64.as_bytes())
            .expect("base64"),
        pdf
    );
    assert_eq!(att["size"], pdf.len());
    assert_eq!(att["hash"], carekey_shl::fhir::attachment_hash(&pdf));
    assert_eq!(att["contentType"], "application/pdf");
    let log = p.access_log(&share).await.expect("log");
    assert!(
        log.iter()
            .any(|e| e.what == AccessKind::LinkDownloaded { served: true }
                && e.who == "kill-the-clipboard viewer")
    );
}

/// (c) A card it issues verifies in Carekey against its JWK set; one flipped bit fails.
#[tokio::test]
async fn card_it_issues_verifies_and_a_flipped_bit_fails() {
    let Some(dir) = interop_dir() else { return };
    let issued = node(&dir, &["issue", bundle_path().to_str().expect("path")]);
    let jws = issued["jws"].as_str().expect("jws");
    let iss = issued["iss"].as_str().expect("iss");
    let jwks = Jwks::parse(issued["jwks"].to_string().as_bytes()).expect("its JWK set");
    let mut trust = TrustStore::new();
    trust.add(iss, jwks);
    let card = shc::read_card(jws, &trust, now()).expect("verifies");
    assert_eq!(
        card.verification,
        Verification::Verified {
            issuer: iss.to_owned()
        }
    );
    assert_eq!(card.fhir_bundle["resourceType"], "Bundle");
    // Flip one bit of the signature (R || S, RFC 7518 §3.4) and re-encode it.
    let (head, sig) = jws.rsplit_once('.').expect("three parts");
    let b64 = data_encoding::BASE64URL_NOPAD;
    let mut sig = b64.decode(sig.as_bytes()).expect("base64url signature");
    sig[17] ^= 0x01;
    let flipped = format!("{head}.{}", b64.encode(&sig));
    let err = shc::read_card(&flipped, &trust, now()).expect_err("a flipped bit must fail");
    assert_eq!(err.code(), "tampered", "{err}");
}
