//! Secrets hygiene (issue 11 item 7; docs/threat-model.md T17): every client type, formatted
//! with `{:?}` at each step of a real share-pair-grant flow against a real relay, shows none
//! of the bearer tokens or key bytes it holds, in any encoding a log could carry them in
//! (hex, base64, base64url, the decimal byte list a derived `Debug` prints).

mod common;

use carekey_client::ShareId;
use carekey_client::patient::Patient;
use carekey_client::progress::{Cancel, NoProgress};
use carekey_client::relay::{OwnerCap, ReaderCap, Relay};
use carekey_core::keys::Role;
use common::{identity, in_a_day, share_items, start_relay};
use data_encoding::{BASE64, BASE64_NOPAD, BASE64URL, BASE64URL_NOPAD, HEXLOWER, HEXUPPER};

/// Every way `secret` could appear in text: whole, and its first 12 bytes (a truncated print).
fn renderings(secret: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for part in [secret, &secret[..12]] {
        for enc in [
            &HEXLOWER,
            &HEXUPPER,
            &BASE64,
            &BASE64_NOPAD,
            &BASE64URL,
            &BASE64URL_NOPAD,
        ] {
            out.push(enc.encode(part));
        }
        let list = format!("{part:?}");
        // A derived Debug of an array prints `[1, 2, 3, …]`; drop the closing bracket so the
        // prefix of a longer list matches too.
        out.push(list.trim_end_matches(']').to_owned());
    }
    out
}

fn assert_clean(what: &str, text: &str, secrets: &[(&str, Vec<u8>)]) {
    for (name, s) in secrets {
        for r in renderings(s) {
            // Base64 of 12 bytes is 16 characters: long enough to be no accident.
            assert!(
                !text.contains(&r),
                "{what} Debug shows the {name} ({r}): {text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_output_of_every_client_type_shows_no_token_or_key() {
    let relay = start_relay();
    let r = Relay::new(&relay.url).expect("URL");
    let cancel = Cancel::new();
    let (pid, pcard) = identity("Pat Debug", Role::Patient);
    let mut patient = Patient::new(pid, pcard, r.clone());
    let share: ShareId = patient
        .create_share(
            share_items(2_000),
            carekey_client::patient::ShareOptions {
                expires_at: in_a_day(),
                policy: carekey_core::grant::Policy::Never,
                delegation_depth: 0,
            },
            &NoProgress,
            &cancel,
        )
        .await
        .expect("share");
    let (did, dcard) = identity("Dr. Debug", Role::Doctor);
    let mut doctor = carekey_client::doctor::Doctor::new(did, dcard);
    let mut session = patient.start_pairing(&share).await.expect("pairing opens");
    // The QR's one-time secret, before the reply makes the session drop it.
    let qr = carekey_core::pairing::QrPayload::parse(&session.qr_text()).expect("QR");
    let scan = doctor.scan(&session.qr_text()).await.expect("doctor scans");
    patient
        .wait_for_doctor(&mut session, 10, &cancel)
        .await
        .expect("reply arrives");
    let session_token = session.mailbox_token_for_test();
    // Formatted now, while each holds its secrets.
    let mut printed = vec![
        ("PairingSession", format!("{session:?}")),
        ("ScanSession", format!("{scan:?}")),
    ];
    patient.confirm(session).await.expect("confirm");
    let link = doctor
        .wait_for_grant(scan, 10, &cancel)
        .await
        .expect("grant arrives");
    let held = doctor.held_secrets_for_test(&link).expect("link");
    let own = r.open_mailbox().await.expect("mailbox");
    let pairing = r.open_pairing().await.expect("pairing mailbox");
    let reader = ReaderCap {
        token: &held.read_token,
        reader: &held.reader,
        share_id: held.share_id,
    };
    printed.extend([
        ("Patient", format!("{patient:?}")),
        ("Doctor", format!("{doctor:?}")),
        ("Relay", format!("{r:?}")),
        ("OwnMailbox", format!("{own:?}")),
        ("MailboxAddress", format!("{:?}", own.address)),
        ("PairingMailbox", format!("{pairing:?}")),
        ("ReaderCap", format!("{reader:?}")),
        ("OwnerCap", format!("{:?}", OwnerCap::generate())),
    ]);
    let peer_write = held.peer_write_token.expect("the patient's mailbox");
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("read token", held.read_token.expose_secret().to_vec()),
        ("reader key", held.reader.expose_secret().to_vec()),
        (
            "doctor's mailbox read token",
            held.inbox_read_token.to_vec(),
        ),
        ("patient's mailbox write token", peer_write.to_vec()),
        ("mailbox read token", own.read_token.to_vec()),
        ("mailbox write token", own.address.write_token.to_vec()),
        ("pairing read token", pairing.token.to_vec()),
        ("pairing session's mailbox token", session_token.to_vec()),
        ("QR one-time secret", qr.secret.expose_secret().to_vec()),
    ];
    for (what, text) in &printed {
        assert_clean(what, text, &secrets);
    }
    // The capabilities are still named, only their secrets are not.
    let own_text = &printed
        .iter()
        .find(|(w, _)| *w == "OwnMailbox")
        .expect("printed")
        .1;
    assert!(own_text.contains("<redacted>"), "{own_text}");
}
