//! `carekey patient share`: load records, create the share, show the QR, wait for the doctor,
//! compare check codes, confirm, optionally read notes.

use std::path::PathBuf;

use carekey_client::patient::{Patient, ShareOptions};
use carekey_client::progress::Cancel;
use carekey_client::relay::Relay;
use carekey_core::grant::Policy;
use carekey_core::keys::Role;

use crate::error::{CliError, Result, probe_relay};
use crate::identity::{identity, now};
use crate::records::{self, Selection};
use crate::term::{ProgressLine, ask_yes_no, qr_art};

/// The arguments of `patient share`, parsed and checked.
#[derive(Debug)]
pub struct ShareArgs {
    pub relay: String,
    pub selection: Selection,
    pub expires_in: u64,
    pub policy: Policy,
    pub depth: u8,
    pub bundle: Option<PathBuf>,
    pub ndjson_dir: Option<PathBuf>,
    pub patient_index: usize,
    pub name: String,
    pub identity: Option<PathBuf>,
    pub yes: bool,
    pub wait: u64,
    pub inbox_wait: u64,
    pub json: bool,
    pub no_qr_art: bool,
    /// `--shl`: publish a SMART Health Link instead of pairing.
    pub shl: Option<crate::link_cmd::PublishArgs>,
}

/// Runs the flow.
pub async fn share(a: ShareArgs, cancel: &Cancel) -> Result<()> {
    let loaded = match (&a.bundle, &a.ndjson_dir) {
        (Some(b), None) => records::from_bundle(b, &a.selection)?,
        (None, Some(d)) => {
            let (l, n) = records::from_ndjson_dir(d, a.patient_index, &a.selection)?;
            errln!(
                "export holds {n} patient(s); sharing patient {}",
                a.patient_index
            );
            l
        }
        _ => {
            return Err(CliError::Usage(
                "give exactly one of --bundle FILE or --ndjson-dir DIR".into(),
            ));
        }
    };
    if loaded.items.is_empty() {
        return Err(CliError::Usage(format!(
            "nothing to share: no record is in the chosen categories ({} left out)",
            loaded.skipped
        )));
    }
    let bytes: u64 = loaded.items.iter().map(|i| i.data.len() as u64).sum();
    let (id, card) = identity(a.identity.as_deref(), &a.name, Role::Patient, None)?;
    let relay = Relay::new(&a.relay)?;
    probe_relay(&relay).await?;
    let mut patient = Patient::new(id, card, relay);
    errln!(
        "sharing {} record(s) and {} attachment(s), {bytes} bytes ({} left out by --records)",
        loaded.records,
        loaded.attachments,
        loaded.skipped
    );
    let progress = ProgressLine::new();
    let expires_at = now().saturating_add(a.expires_in);
    let share = patient
        .create_share(
            loaded.items,
            ShareOptions {
                expires_at,
                policy: a.policy,
                delegation_depth: a.depth,
            },
            &progress,
            cancel,
        )
        .await;
    progress.finish();
    let share = share?;
    if let Some(mut shl) = a.shl {
        shl.wait = a.wait;
        shl.share_expires_at = expires_at;
        let summary = crate::link_cmd::publish(&mut patient, &share, shl, cancel).await?;
        if a.json {
            outln!(
                "{}",
                serde_json::json!({
                    "ok": true,
                    "role": "patient",
                    "records": loaded.records,
                    "attachments": loaded.attachments,
                    "bytes": bytes,
                    "share_expires_at": expires_at,
                    "shl": summary,
                })
            );
        }
        return Ok(());
    }
    let mut session = patient.start_pairing(&share).await?;
    let qr = session.qr_text();
    outln!("QR: {qr}");
    if !a.no_qr_art
        && let Some(art) = qr_art(&qr)
    {
        errln!("{art}");
    }
    errln!(
        "show this QR to the doctor (or give them the QR: line); waiting up to {} s",
        a.wait
    );
    let door = patient
        .wait_for_doctor(&mut session, a.wait, cancel)
        .await?;
    let doctor_name = door.card.body.name.clone();
    outln!("DOCTOR: {doctor_name}");
    match &door.card.attestation {
        Some(att) => errln!("card attested by {}", att.clinic_name),
        None => {
            errln!("self-asserted card: \"the device you paired with\", not a verified doctor")
        }
    }
    let check = door.check_code.to_string();
    outln!("CHECK: {check}");
    if !a.yes && !ask_yes_no("Do the codes match?").await? {
        // Tell the doctor's screen, so it stops waiting; nothing was shared either way.
        if let Err(e) = patient.decline(session).await {
            errln!("the doctor could not be told ({})", e.code());
        }
        return Err(CliError::Declined);
    }
    let rel = patient.confirm(session).await?;
    outln!("CONFIRMED: access for {doctor_name} until {expires_at} (unix time)");

    let mut notes = Vec::new();
    if a.inbox_wait > 0 {
        errln!("waiting up to {} s for notes from the doctor", a.inbox_wait);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(a.inbox_wait);
        loop {
            cancel.check()?;
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let got = patient.inbox(&rel, left.as_secs().clamp(1, 25)).await?;
            for n in &got {
                let ty = n
                    .resource
                    .get("resourceType")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("?")
                    .to_owned();
                let author = n.author.body.name.clone();
                outln!("NOTE: from {author} (signature valid): {ty}");
                notes.push(serde_json::json!({"author": author, "resourceType": ty}));
            }
            if !notes.is_empty() {
                break;
            }
        }
        if notes.is_empty() {
            errln!("no note arrived");
        }
    }
    if a.json {
        outln!(
            "{}",
            serde_json::json!({
                "ok": true,
                "role": "patient",
                "records": loaded.records,
                "attachments": loaded.attachments,
                "bytes": bytes,
                "expires_at": expires_at,
                "doctor": doctor_name,
                "attested": door.attested,
                "check": check,
                "confirmed": true,
                "notes": notes,
            })
        );
    }
    Ok(())
}
