//! Publishing a share as a SMART Health Link (issue 15; docs/shl.md "Publishing"): the patient
//! publishes the HL7 IPS example through a real relay process; an independent SHL reader
//! (`carekey-shl`'s fetch, what the doctor app uses) opens the `shlink:/` with the passcode and
//! gets the Bundle byte for byte; the share's verified access log says "`<recipient>`
//! downloaded the link"; wrong passcodes count down and then the link is dead; a deleted link
//! answers "no longer active"; the link list survives the vault.

mod common;

use carekey_client::ClientError;
use carekey_client::patient::{
    AccessKind, LinkOptions, LinkPasscode, Patient, ShareItem, ShareOptions,
};
use carekey_client::progress::{Cancel, NoProgress};
use carekey_client::relay::Relay;
use carekey_core::grant::{Category, Policy};
use carekey_core::keys::Role;
use carekey_shl::fetch::ShlClient;
use carekey_shl::{Opened, ShlError, Shlink};
use common::{fixtures_dir, identity, in_a_day, start_relay, test_vault};
use zeroize::Zeroizing;

const RECIPIENT: &str = "Dr. Viewer, Walk-in Clinic";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// The IPS example Bundle (one FHIR file), or a small Bundle without the fixtures.
fn bundle() -> Vec<u8> {
    std::fs::read(fixtures_dir().join("fhir/ips-bundle-01.json")).unwrap_or_else(|_| {
        println!("fixtures not found: using a small Bundle");
        br#"{"resourceType":"Bundle","type":"collection","entry":[]}"#.to_vec()
    })
}

async fn patient_with_share(relay_url: &str) -> (Patient, carekey_client::ShareId) {
    let (pid, pcard) = identity("Pat Example", Role::Patient);
    let mut p = Patient::new(pid, pcard, Relay::new(relay_url).expect("relay URL"));
    let items = vec![
        ShareItem {
            record_id: [1; 16],
            category: Category::Conditions,
            title: "Patient summary".into(),
            data: Zeroizing::new(bundle()),
            attachment: false,
        },
        ShareItem {
            record_id: [2; 16],
            category: Category::Documents,
            title: "letter.pdf".into(),
            data: Zeroizing::new(vec![0x25; 2000]),
            attachment: true,
        },
    ];
    let share = p
        .create_share(
            items,
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
    (p, share)
}

async fn open(link: &Shlink, passcode: Option<&str>) -> Result<Vec<Vec<u8>>, ShlError> {
    let entries = ShlClient::new(RECIPIENT)?
        .open(link, passcode, now())
        .await?;
    entries
        .into_iter()
        .map(|e| match e.outcome? {
            Opened::File(f) => Ok(f.bytes().to_vec()),
            Opened::Fetch(_) => panic!("open fetches every location itself"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_open_log_delete() {
    let relay = start_relay();
    let (mut p, share) = patient_with_share(&relay.url).await;
    let exp = now() + 3600;
    let published = p
        .publish_link(
            &share,
            LinkOptions {
                passcode: LinkPasscode::Generated,
                expires_at: exp,
                max_attempts: 3,
                label: Some("Summary for the clinic".into()),
                records: Vec::new(),
            },
        )
        .await
        .expect("published");
    assert_eq!(published.files, 1, "the PDF is not an SHL file");
    assert!(
        published
            .warning
            .starts_with("Anyone with this code and passcode")
    );
    let passcode = published.passcode.clone().expect("passcode on by default");
    let link = Shlink::parse(&published.shlink).expect("a valid shlink");
    assert!(link.flags().passcode && !link.flags().direct_file);
    assert_eq!(link.exp(), Some(exp));
    assert!(link.url().starts_with(&format!("{}/shl/", relay.url)));
    assert!(
        link.url().len() <= 128,
        "SHL caps the url at 128 characters"
    );

    // An SHL reader opens it to the same bytes.
    let files = open(&link, Some(&passcode)).await.expect("opens");
    assert_eq!(files, vec![bundle()]);

    // A wrong passcode: the attempts count down.
    match open(&link, Some("00000000")).await {
        Err(ShlError::PasscodeRejected { remaining_attempts }) => {
            assert_eq!(remaining_attempts, Some(2))
        }
        other => panic!("expected a refused passcode, got {other:?}"),
    }

    // The access log: "<recipient> downloaded the link at <time>", then the wrong passcode.
    let log = p.access_log(&share).await.expect("log verifies");
    let link_events: Vec<_> = log
        .iter()
        .filter(|e| matches!(e.what, AccessKind::LinkDownloaded { .. }))
        .collect();
    assert_eq!(link_events.len(), 2);
    assert_eq!(link_events[0].who, RECIPIENT);
    assert_eq!(
        link_events[0].sentence("10:32"),
        format!("{RECIPIENT} downloaded the link at 10:32")
    );
    assert_eq!(
        link_events[1].what,
        AccessKind::LinkDownloaded { served: false }
    );

    // The list, through the vault.
    let dir = tempfile::tempdir().expect("dir");
    let mut vault = test_vault(&dir, "p.vault");
    p.save_links_to(&mut vault).expect("saved");
    let views = p.links(Some(&share));
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].id, published.id);
    let (pid2, pcard2) = identity("Pat Example", Role::Patient);
    let mut q = Patient::new(pid2, pcard2, Relay::new(&relay.url).expect("relay URL"));
    q.load_links_from(&mut vault).expect("loaded");
    assert_eq!(q.links(None), views);

    // Deleted: no new downloads.
    p.delete_link(&published.id).await.expect("deleted");
    assert!(p.links(None).is_empty());
    assert!(matches!(
        open(&link, Some(&passcode)).await,
        Err(ShlError::LinkInactive)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_run_out_and_bad_options_are_refused() {
    let relay = start_relay();
    let (mut p, share) = patient_with_share(&relay.url).await;
    let opts = |passcode, expires_at, max_attempts| LinkOptions {
        passcode,
        expires_at,
        max_attempts,
        label: None,
        records: Vec::new(),
    };
    let published = p
        .publish_link(
            &share,
            opts(LinkPasscode::Chosen("my-code".into()), now() + 600, 2),
        )
        .await
        .expect("published");
    let link = Shlink::parse(&published.shlink).expect("shlink");
    for left in [1, 0] {
        match open(&link, Some("wrong")).await {
            Err(ShlError::PasscodeRejected { remaining_attempts }) => {
                assert_eq!(remaining_attempts, Some(left))
            }
            other => panic!("expected a refused passcode, got {other:?}"),
        }
    }
    assert!(
        matches!(
            open(&link, Some("my-code")).await,
            Err(ShlError::LinkInactive)
        ),
        "dead after the allowed failures"
    );
    // Without a passcode, anyone with the link reads it (no P flag).
    let open_link = p
        .publish_link(&share, opts(LinkPasscode::Off, now() + 600, 1))
        .await
        .expect("published");
    let l = Shlink::parse(&open_link.shlink).expect("shlink");
    assert!(!l.flags().passcode);
    assert_eq!(open(&l, None).await.expect("opens"), vec![bundle()]);
    // Refused before anything is sent.
    let before = p.links(None).len();
    for (o, what) in [
        (opts(LinkPasscode::Generated, now() - 1, 3), "expired"),
        (
            opts(LinkPasscode::Generated, in_a_day() + 3600, 3),
            "past the share",
        ),
        (
            opts(LinkPasscode::Chosen("12".into()), now() + 60, 3),
            "short passcode",
        ),
        (opts(LinkPasscode::Generated, now() + 60, 0), "no attempts"),
    ] {
        assert!(
            matches!(
                p.publish_link(&share, o).await,
                Err(ClientError::InvalidInput(_))
            ),
            "{what}"
        );
    }
    let mut only_pdf = opts(LinkPasscode::Generated, now() + 60, 3);
    only_pdf.records = vec![[2; 16]];
    assert!(matches!(
        p.publish_link(&share, only_pdf).await,
        Err(ClientError::InvalidInput(_))
    ));
    assert_eq!(p.links(None).len(), before, "nothing stored");
}

/// Figures (issue 15): `RESULT shl_open_ips_ms`: the HL7 IPS example link of the fixtures
/// (its own JWE ciphertext and key, uploaded unchanged to a local relay process as a link
/// file) opened with the SHL reader (manifest request, decrypt), checked byte for byte against
/// `fhir/ips-bundle-01.json` and stored in a vault; and `RESULT shl_qr_version_ecc_m`: the QR
/// version of a typical published `shlink:/` (https relay origin, P flag, exp, label) at ECC M.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figure_open_ips_example_link_and_qr_version() {
    use carekey_client::relay::OwnerCap;
    let fx = fixtures_dir();
    let (Ok(jwe), Ok(details), Ok(expected)) = (
        std::fs::read_to_string(fx.join("shl/ips-bundle-01.jwe")),
        std::fs::read(fx.join("shl/ips-bundle-01.shl-details.json")),
        std::fs::read(fx.join("fhir/ips-bundle-01.json")),
    ) else {
        assert!(
            std::env::var_os("CAREKEY_REQUIRE_FIXTURES").is_none(),
            "fixtures required but missing at {}",
            fx.display()
        );
        println!("skipped: SHL fixtures not found at {}", fx.display());
        return;
    };
    let details: serde_json::Value = serde_json::from_slice(&details).expect("details JSON");
    let key = details["shlinkJsonPayload"]["key"].as_str().expect("key");
    let relay_proc = start_relay();
    let relay = Relay::new(&relay_proc.url).expect("relay URL");
    let mut owner = OwnerCap::generate();
    let share = relay
        .create_share(&mut owner, in_a_day())
        .await
        .expect("share");
    let made = relay
        .create_link(
            &mut owner,
            &share,
            &carekey_relay_api::CreateShlRequest {
                files: vec![carekey_relay_api::ShlFileUpload {
                    content_type: "application/fhir+json".into(),
                    jwe: jwe.trim().to_owned(),
                }],
                passcode: None,
                max_attempts: 1,
                expires_at: now() + 600,
            },
        )
        .await
        .expect("link");
    let link = Shlink::new(
        &made.url,
        carekey_shl::ShlKey::from_base64url(key).expect("fixture key"),
        carekey_shl::Flags::default(),
        Some("Demo SHL for IPS_IG-bundle-01"),
        None,
    )
    .expect("link");
    let dir = tempfile::tempdir().expect("dir");
    let mut vault = test_vault(&dir, "doctor.vault");
    let start = std::time::Instant::now();
    let files = open(&link, None).await.expect("opens");
    assert_eq!(files.len(), 1);
    let report = vault
        .import_bundle(
            &files[0],
            &carekey_vault::ImportOptions {
                source: Some("smart:figure".into()),
                share: None,
            },
            &mut carekey_vault::ImportControl::default(),
        )
        .expect("stored");
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(files[0], expected, "byte for byte the HL7 IPS example");
    assert!(report.records > 0, "{report:?}");
    println!("RESULT shl_open_ips_ms {ms:.1}");

    // A typical published link: a 256-bit id under an https relay origin, P, exp, a label.
    let typical = Shlink::new(
        &format!("https://relay.carekey.example/shl/{}", "A".repeat(43)),
        carekey_shl::ShlKey::generate(),
        carekey_shl::Flags {
            passcode: true,
            ..carekey_shl::Flags::default()
        },
        Some("Summary for the clinic"),
        Some(1_800_000_000),
    )
    .expect("typical link");
    let text = typical.to_text();
    let qr = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .expect("fits a QR");
    let qrcode::Version::Normal(v) = qr.version() else {
        panic!("micro QR")
    };
    println!(
        "RESULT shl_qr_version_ecc_m {v} ({} characters)",
        text.len()
    );
    assert!(v <= 15, "a phone camera reads it from a screen");
}

/// A share of more records than a link has files (the relay's `MAX_SHL_FILES`) publishes as
/// Bundles of records, and every record comes out of the link, in order, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_of_more_records_than_files_publishes_as_bundles() {
    let relay = start_relay();
    let (pid, pcard) = identity("Pat Example", Role::Patient);
    let mut p = Patient::new(pid, pcard, Relay::new(&relay.url).expect("relay URL"));
    let n = carekey_relay_api::MAX_SHL_FILES * 3 + 5;
    let record = |i: usize| {
        format!(r#"{{"resourceType":"Condition","id":"c{i}","code":{{"text":"Condition {i}"}}}}"#)
    };
    let items = (0..n)
        .map(|i| ShareItem {
            record_id: u128::try_from(i).expect("small").to_be_bytes(),
            category: Category::Conditions,
            title: format!("Condition {i}"),
            data: Zeroizing::new(record(i).into_bytes()),
            attachment: false,
        })
        .collect();
    let share = p
        .create_share(
            items,
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
    let published = p
        .publish_link(
            &share,
            LinkOptions {
                passcode: LinkPasscode::Off,
                expires_at: now() + 3600,
                max_attempts: 3,
                label: None,
                records: Vec::new(),
            },
        )
        .await
        .expect("published");
    assert!(published.files <= carekey_relay_api::MAX_SHL_FILES);
    let link = Shlink::parse(&published.shlink).expect("a valid shlink");
    let files = open(&link, None).await.expect("opens");
    assert_eq!(files.len(), published.files);
    let mut out = Vec::new();
    for f in &files {
        let b: serde_json::Value = serde_json::from_slice(f).expect("JSON");
        assert_eq!(b["resourceType"], "Bundle");
        assert_eq!(b["type"], "collection");
        for e in b["entry"].as_array().expect("entries") {
            out.push(serde_json::to_string(&e["resource"]).expect("json"));
        }
    }
    let want: Vec<String> = (0..n)
        .map(|i| {
            serde_json::to_string(
                &serde_json::from_str::<serde_json::Value>(&record(i)).expect("json"),
            )
            .expect("json")
        })
        .collect();
    assert_eq!(out, want, "every record, in order");
}
