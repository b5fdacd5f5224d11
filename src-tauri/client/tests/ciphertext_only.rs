//! Ciphertext-only audit: the relay stores and logs nothing readable. The whole flow runs
//! (share with canary strings in records, titles and an attachment; two doctors pair and
//! fetch; a note back; the access log; a revoke) against a relay whose stdout/stderr are
//! captured (at debug log level). Then every file of its data directory (SQLite file, -wal,
//! -shm) and both logs are scanned for: each canary, the patient's and both doctors' card
//! names, every long-term public key (card signing and key-agreement keys), the read tokens,
//! the mailbox tokens and the QR's one-time secrets, as raw bytes and as hex (both cases) and
//! base64/base64url (padded or not, at every alignment). Nothing may be found.
//!
//! The scanner is checked to fail: it must find canaries planted in a file it writes, and the
//! reader keys the relay stores by design in the real files.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use carekey_client::doctor::Doctor;
use carekey_client::patient::{Patient, ShareItem, ShareOptions, summarize};
use carekey_client::progress::{Cancel, NoProgress};
use carekey_client::relay::Relay;
use carekey_core::grant::{Category, Policy};
use carekey_core::keys::{Card, Role};
use carekey_core::pairing::QrPayload;
use common::{RelayOptions, identity, in_a_day, start_relay_with};
use data_encoding::{
    BASE64, BASE64_NOPAD, BASE64URL, BASE64URL_NOPAD, Encoding, HEXLOWER, HEXUPPER,
};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

/// What we look for, with a label that never contains the value itself.
struct Needle {
    label: String,
    bytes: Vec<u8>,
}

fn canary(kind: &str) -> String {
    let mut r = [0u8; 12];
    OsRng.fill_bytes(&mut r);
    format!("CANARY-{kind}-{}", HEXLOWER.encode(&r))
}

/// Raw bytes, hex (both cases) and every base64 flavour at every alignment (the part of the
/// encoding that depends only on `secret`, whatever bytes surround it).
fn encodings(label: &str, secret: &[u8]) -> Vec<Needle> {
    let mut out = vec![
        Needle {
            label: format!("{label} (raw)"),
            bytes: secret.to_vec(),
        },
        Needle {
            label: format!("{label} (hex)"),
            bytes: HEXLOWER.encode(secret).into_bytes(),
        },
        Needle {
            label: format!("{label} (HEX)"),
            bytes: HEXUPPER.encode(secret).into_bytes(),
        },
    ];
    let flavours: [(&str, &Encoding); 4] = [
        ("base64", &BASE64),
        ("base64 nopad", &BASE64_NOPAD),
        ("base64url", &BASE64URL),
        ("base64url nopad", &BASE64URL_NOPAD),
    ];
    for (name, enc) in flavours {
        for shift in 0..3usize {
            let mut buf = vec![0u8; shift];
            buf.extend_from_slice(secret);
            buf.extend_from_slice(&[0, 0]);
            let e = enc.encode(&buf);
            // Character j covers bits [6j, 6j+6); keep those inside the secret's bits.
            let first = (8 * shift).div_ceil(6);
            let last = (8 * shift + 8 * secret.len()) / 6; // exclusive
            out.push(Needle {
                label: format!("{label} ({name}, shift {shift})"),
                bytes: e.as_bytes()[first..last].to_vec(),
            });
        }
    }
    out
}

fn text(label: &str, s: &str) -> Needle {
    Needle {
        label: label.to_owned(),
        bytes: s.as_bytes().to_vec(),
    }
}

/// Labels of the needles found in `hay` (8-byte prefix index, then a full compare).
fn find_all(hay: &[u8], needles: &[Needle]) -> Vec<String> {
    let mut index: HashMap<[u8; 8], Vec<usize>> = HashMap::new();
    for (i, n) in needles.iter().enumerate() {
        assert!(
            n.bytes.len() >= 8,
            "needle {} too short to scan for",
            n.label
        );
        let mut k = [0u8; 8];
        k.copy_from_slice(&n.bytes[..8]);
        index.entry(k).or_default().push(i);
    }
    let mut found = vec![false; needles.len()];
    for (pos, w) in hay.windows(8).enumerate() {
        let mut k = [0u8; 8];
        k.copy_from_slice(w);
        if let Some(ids) = index.get(&k) {
            for &i in ids {
                if hay[pos..].starts_with(&needles[i].bytes) {
                    found[i] = true;
                }
            }
        }
    }
    needles
        .iter()
        .zip(found)
        .filter(|(_, f)| *f)
        .map(|(n, _)| n.label.clone())
        .collect()
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("readable dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// (file name, labels found) for every file with a hit.
fn scan(files: &[PathBuf], needles: &[Needle]) -> Vec<(String, Vec<String>)> {
    files
        .iter()
        .filter_map(|p| {
            let hay = std::fs::read(p).expect("readable file");
            let hits = find_all(&hay, needles);
            (!hits.is_empty()).then(|| (p.display().to_string(), hits))
        })
        .collect()
}

fn card_needles(who: &str, card: &Card) -> Vec<Needle> {
    let mut v = vec![text(&format!("{who} card name"), &card.body.name)];
    v.extend(encodings(
        &format!("{who} signing key"),
        card.body.signing_key.as_bytes(),
    ));
    v.extend(encodings(
        &format!("{who} key-agreement key"),
        &card.body.dh_key.0,
    ));
    v
}

#[test]
fn scanner_finds_planted_canaries() {
    let dir = tempfile::tempdir().expect("temp dir");
    let c = canary("SELF");
    let mut key = [0u8; 32];
    OsRng.fill_bytes(&mut key);
    let mut token = [0u8; 32];
    OsRng.fill_bytes(&mut token);
    let mut other = [0u8; 32];
    OsRng.fill_bytes(&mut other);
    // The key inside a larger base64url string, misaligned by one byte; the token as upper hex.
    let mut wrapped = vec![0x42u8];
    wrapped.extend_from_slice(&key);
    let planted = format!(
        "junk {c} junk {} junk {} junk",
        BASE64URL_NOPAD.encode(&wrapped),
        HEXUPPER.encode(&token)
    );
    let f = dir.path().join("planted.log");
    std::fs::write(&f, planted).expect("write");
    let mut needles = vec![text("canary", &c)];
    needles.extend(encodings("key", &key));
    needles.extend(encodings("token", &token));
    needles.extend(encodings("absent", &other));
    let hits = scan(&[f], &needles);
    assert_eq!(hits.len(), 1);
    let labels = &hits[0].1;
    assert!(labels.iter().any(|l| l == "canary"), "{labels:?}");
    assert!(
        labels.iter().any(|l| l.starts_with("key (base64url")),
        "{labels:?}"
    );
    assert!(labels.iter().any(|l| l == "token (HEX)"), "{labels:?}");
    assert!(
        !labels.iter().any(|l| l.starts_with("absent")),
        "{labels:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_files_and_logs_hold_no_plaintext_names_keys_or_tokens() {
    let logs = tempfile::tempdir().expect("log dir");
    let relay = start_relay_with(&RelayOptions {
        env: vec![("RUST_LOG".into(), "debug".into())],
        log_dir: Some(logs.path().to_owned()),
        ..RelayOptions::default()
    });
    let mut needles = Vec::new();

    let (pid, pcard) = identity("Patience Quokkafield", Role::Patient);
    needles.extend(card_needles("patient", &pcard));
    let mut patient = Patient::new(pid, pcard, Relay::new(&relay.url).expect("url"));

    // Records with canaries in the body and the title, and a chunked attachment with one.
    let mut items = Vec::new();
    for i in 0..4u8 {
        let body = canary("RECORD");
        let title = canary("TITLE");
        needles.push(text("record canary", &body));
        needles.push(text("title canary", &title));
        let r = serde_json::json!({
            "resourceType": "Condition",
            "id": format!("c{i}"),
            "code": {"text": body},
        });
        items.push(ShareItem {
            record_id: [i + 1; 16],
            category: Category::Conditions,
            title,
            data: Zeroizing::new(serde_json::to_vec(&r).expect("json")),
            attachment: false,
        });
    }
    let att = canary("ATTACHMENT");
    needles.push(text("attachment canary", &att));
    let mut pdf: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
    pdf[700_000..700_000 + att.len()].copy_from_slice(att.as_bytes());
    items.push(ShareItem {
        record_id: [0xee; 16],
        category: Category::Documents,
        title: "discharge-letter.pdf".into(),
        data: Zeroizing::new(pdf),
        attachment: true,
    });
    let n = items.len();
    let cancel = Cancel::new();
    let share = patient
        .create_share(
            items,
            ShareOptions {
                expires_at: in_a_day(),
                policy: Policy::Ask,
                delegation_depth: 0,
            },
            &NoProgress,
            &cancel,
        )
        .await
        .expect("share");

    // Two doctors pair and fetch.
    let mut doctors = Vec::new();
    let mut reader_keys = Vec::new();
    for name in ["Dr. Ada Zanzibarova", "Dr. Ben Quetzalcoatl"] {
        let (did, dcard) = identity(name, Role::Doctor);
        needles.extend(card_needles(name, &dcard));
        let mut doctor = Doctor::new(did, dcard);
        let mut session = patient.start_pairing(&share).await.expect("pairing");
        let qr = session.qr_text();
        let secret = QrPayload::parse(&qr).expect("qr").secret;
        needles.extend(encodings("QR one-time secret", secret.expose_secret()));
        let scan = doctor.scan(&qr).await.expect("scan");
        let door = patient
            .wait_for_doctor(&mut session, 10, &cancel)
            .await
            .expect("reply");
        assert_eq!(door.check_code, scan.check_code());
        let rel = patient.confirm(session).await.expect("confirm");
        let link = doctor
            .wait_for_grant(scan, 10, &cancel)
            .await
            .expect("grant");
        assert_eq!(
            doctor
                .fetch(&link, &NoProgress, &cancel)
                .await
                .expect("fetch")
                .len(),
            n
        );
        let held = doctor.held_secrets_for_test(&link).expect("link");
        needles.extend(encodings(
            &format!("{name} read token"),
            held.read_token.expose_secret(),
        ));
        needles.extend(encodings(
            &format!("{name} inbox read token"),
            &held.inbox_read_token,
        ));
        needles.extend(encodings(
            &format!("{name} patient mailbox write token"),
            &held
                .peer_write_token
                .expect("a paired doctor writes to the patient"),
        ));
        reader_keys.extend(encodings(
            &format!("{name} reader key"),
            held.reader.public().as_bytes(),
        ));
        doctors.push((doctor, link, rel));
    }

    // A note back with a canary, the access log, a revoke.
    let note_canary = canary("NOTE");
    needles.push(text("note canary", &note_canary));
    let note = serde_json::json!({"resourceType": "Observation", "status": "final", "valueString": note_canary});
    let (da, link_a, rel_a) = &mut doctors[0];
    da.send_note(link_a, &note).await.expect("note");
    let rel_a = *rel_a;
    let notes = patient.inbox(&rel_a, 5).await.expect("inbox");
    assert_eq!(notes[0].resource, note);
    let per = summarize(&patient.access_log(&share).await.expect("log"));
    assert_eq!(
        per.len(),
        2,
        "both doctors appear by name in the patient's log"
    );
    patient
        .revoke(&share, &rel_a, &NoProgress, &cancel)
        .await
        .expect("revoke");
    let (db, link_b, _) = &mut doctors[1];
    assert_eq!(
        db.fetch(link_b, &NoProgress, &cancel)
            .await
            .expect("B follows")
            .len(),
        n
    );
    // Forwarding (policy ask): B asks for a colleague, with a canary in the reason; the
    // patient approves; the colleague reads.
    let (cid, ccard) = identity("Dr. Cleo Forwardsby", Role::Doctor);
    needles.extend(card_needles("colleague", &ccard));
    let mut cleo = Doctor::new(cid, ccard);
    let carekey_client::doctor::Invitation { id: handle, invite } =
        cleo.invite(&relay.url, 300).await.expect("invite");
    let reason = canary("REASON");
    needles.push(text("forward reason canary", &reason));
    let (db, link_b, rel_b) = &mut doctors[1];
    db.request_forward(link_b, &invite, None, &reason)
        .await
        .expect("request");
    patient.inbox(rel_b, 5).await.expect("inbox");
    let id = patient.forward_requests()[0].id;
    patient
        .answer_forward(&id, true)
        .await
        .expect("approve")
        .expect("colleague relationship");
    let clink = cleo
        .accept_introduction(&handle, 10, &cancel)
        .await
        .expect("introduced");
    assert_eq!(
        cleo.fetch(&clink, &NoProgress, &cancel)
            .await
            .expect("colleague reads")
            .len(),
        n
    );
    let held = cleo.held_secrets_for_test(&clink).expect("link");
    needles.extend(encodings(
        "colleague read token",
        held.read_token.expose_secret(),
    ));
    patient.access_log(&share).await.expect("log after revoke");

    // Scan everything the relay wrote: data dir (incl. -wal/-shm) and its logs.
    let mut files = Vec::new();
    files_under(relay.data.path(), &mut files);
    files_under(logs.path(), &mut files);
    let names: Vec<String> = files
        .iter()
        .filter_map(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
        .collect();
    assert!(names.iter().any(|f| f == "relay.sqlite3"), "{names:?}");
    assert!(names.iter().any(|f| f.ends_with("-wal")), "{names:?}");
    assert!(names.iter().any(|f| f == "relay.stderr"), "{names:?}");
    let logged: u64 = ["relay.stdout", "relay.stderr"]
        .iter()
        .map(|f| std::fs::metadata(logs.path().join(f)).map_or(0, |m| m.len()))
        .sum();
    assert!(logged > 0, "the relay's logs were captured");

    // Control: the relay stores the doctors' reader keys (token registrations) by design, so
    // the same scanner over the same files must find them.
    let control = scan(&files, &reader_keys);
    assert!(
        control
            .iter()
            .flat_map(|(_, l)| l)
            .any(|l| l.ends_with("reader key (raw)")),
        "scanner control: reader keys not found in the relay's files"
    );

    let hits = scan(&files, &needles);
    assert!(
        hits.is_empty(),
        "plaintext or long-term identifiers at the relay: {hits:?}"
    );
}
