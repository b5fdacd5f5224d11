//! `carekey patient share`: read the records, then run the patient app's own session
//! (`carekey_app::session::PatientApp`, [`crate::device`]): import into its vault, start the
//! share (items built from the vault by the app, docs/protocol.md "Shares"), show the QR, wait
//! for the doctor, compare check codes, confirm, optionally read notes.

use std::path::PathBuf;
use std::sync::Arc;

use carekey_app::ipc::{self, PolicyChoice};
use carekey_app::session::PatientApp;
use carekey_client::progress::Cancel;
use carekey_client::relay::Relay;
use carekey_core::grant::Policy;

use crate::device::{Device, Profile};
use crate::error::{CliError, Result, probe_relay};
use crate::identity::identity;
use crate::records::{self, Selection};
use crate::term::{ProgressLine, ask_yes_no, qr_art};

/// The arguments of `patient share`, parsed and checked.
#[derive(Debug)]
pub struct ShareArgs {
    pub relay: String,
    pub enrollment_key: Option<String>,
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

/// The longest single wait the session takes (`carekey_app::validate::WAIT_MAX_SECS`); longer
/// `--wait`s are several.
const WAIT_STEP_SECS: u64 = carekey_app::validate::WAIT_MAX_SECS;

/// Runs the flow.
pub async fn share(a: ShareArgs, cancel: &Cancel) -> Result<()> {
    let (data, source) = match (&a.bundle, &a.ndjson_dir) {
        (Some(b), None) => (records::from_bundle(b)?, file_name(b)),
        (None, Some(d)) => {
            let (data, n) = records::from_ndjson_dir(d, a.patient_index)?;
            errln!(
                "export holds {n} patient(s); sharing patient {}",
                a.patient_index
            );
            (data, file_name(d))
        }
        _ => {
            return Err(CliError::Usage(
                "give exactly one of --bundle FILE or --ndjson-dir DIR".into(),
            ));
        }
    };
    let id = identity(a.identity.as_deref())?;
    let progress = Arc::new(ProgressLine::new());
    let device = Device::new()?;
    let profile = Profile {
        name: &a.name,
        licence: None,
        relay_url: &a.relay,
        enrollment_key: a.enrollment_key.as_deref(),
    };
    let app = device.patient(&profile, id, progress.clone()).await?;
    let imported = app.import_data(source, data).await;
    progress.finish();
    imported?;
    let total = app.timeline().await?.len();
    if total == 0 {
        return Err(CliError::Usage(
            "nothing to share: the file holds no record".into(),
        ));
    }
    probe_relay(&Relay::new(&a.relay)?).await?;
    let started = app
        .start_share(ipc::StartShare {
            categories: a
                .selection
                .categories()
                .into_iter()
                .map(carekey_app::share::share_category)
                .collect(),
            records: Vec::new(),
            expires_in_secs: a.expires_in,
            policy: match a.policy {
                Policy::Never => PolicyChoice::Never,
                Policy::Ask => PolicyChoice::Ask,
                Policy::Allowed => PolicyChoice::Allowed,
            },
            depth: a.depth,
        })
        .await;
    progress.finish();
    let started = started?;
    errln!(
        "sharing {} record(s) and {} attachment(s) ({} left out by --records)",
        started.records,
        started.attachments,
        total.saturating_sub(started.records)
    );
    let expires_at = started.expires_at;
    if let Some(mut shl) = a.shl {
        shl.wait = a.wait;
        shl.share_expires_at = expires_at;
        let summary = crate::link_cmd::publish(&app, &started.share, shl, cancel).await?;
        if a.json {
            outln!(
                "{}",
                serde_json::json!({
                    "ok": true,
                    "role": "patient",
                    "records": started.records,
                    "attachments": started.attachments,
                    "share_expires_at": expires_at,
                    "shl": summary,
                })
            );
        }
        return Ok(());
    }
    outln!("QR: {}", started.qr_text);
    if !a.no_qr_art
        && let Some(art) = qr_art(&started.qr_text)
    {
        errln!("{art}");
    }
    errln!(
        "show this QR to the doctor (or give them the QR: line); waiting up to {} s",
        a.wait
    );
    let door = wait_for_doctor(&app, &started.pairing, a.wait, cancel).await?;
    outln!("DOCTOR: {}", door.name);
    // The app's honest wording: "attested by" only under a clinic key this device trusts
    // (docs/threat-model.md "Card trust"); the tool's throwaway vault trusts none.
    errln!("{}", door.trust);
    outln!("CHECK: {}", door.check_code);
    let answer = |accept| ipc::AnswerDoctor {
        id: started.pairing.clone(),
        accept,
        categories: None,
    };
    if !a.yes && !ask_yes_no("Do the codes match?").await? {
        // Tell the doctor's screen, so it stops waiting; nothing was shared either way.
        if let Err(e) = app.answer_doctor(answer(false)).await {
            errln!("the doctor could not be told ({})", e.code);
        }
        return Err(CliError::Declined);
    }
    app.answer_doctor(answer(true)).await?;
    outln!(
        "CONFIRMED: access for {} until {expires_at} (unix time)",
        door.name
    );

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
            // Each note is kept sealed in the session's vault before the relay deletes it.
            for n in app.check_inbox(left.as_secs().clamp(1, 25)).await? {
                outln!(
                    "NOTE: from {} (signature valid): {}",
                    n.author,
                    n.resource_type
                );
                notes
                    .push(serde_json::json!({"author": n.author, "resourceType": n.resource_type}));
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
                "records": started.records,
                "attachments": started.attachments,
                "expires_at": expires_at,
                "doctor": door.name,
                "attested": door.attested,
                "check": door.check_code,
                "confirmed": true,
                "notes": notes,
            })
        );
    }
    Ok(())
}

/// Waits for the doctor's scan up to `wait` seconds, in steps the session accepts.
async fn wait_for_doctor(
    app: &PatientApp,
    pairing: &str,
    wait: u64,
    cancel: &Cancel,
) -> Result<carekey_app::session::DoctorAtTheDoorView> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait);
    loop {
        cancel.check()?;
        let left = deadline
            .saturating_duration_since(std::time::Instant::now())
            .as_secs()
            .clamp(1, WAIT_STEP_SECS);
        match app
            .wait_for_doctor(ipc::Wait {
                id: pairing.to_owned(),
                wait_secs: left,
            })
            .await
        {
            // Nobody yet, and time left: the QR stays valid for another wait.
            Err(e) if e.code == "no_answer" && std::time::Instant::now() < deadline => {}
            other => return Ok(other?),
        }
    }
}

/// The file or directory name, as the import's source label.
fn file_name(p: &std::path::Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "import".to_owned())
}
