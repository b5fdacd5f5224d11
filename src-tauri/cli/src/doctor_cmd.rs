//! `carekey doctor scan`: the doctor app's own session (`carekey_app::session::DoctorApp`,
//! [`crate::device`]) answers a patient's QR, shows the check code, waits for the grant,
//! fetches, verifies and stores the share in its vault; the tool then optionally writes the
//! records out and sends a note back through the same session.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use carekey_app::ipc;
use carekey_app::session::{DoctorApp, ReceivedFile};
use carekey_client::progress::Cancel;
use carekey_client::relay::Relay;
use serde_json::Value;

use crate::device::{Device, Profile};
use crate::error::{CliError, Result, probe_relay};
use crate::identity::{identity, now};
use crate::term::ProgressLine;

/// The arguments of `doctor scan`.
#[derive(Debug)]
pub struct ScanArgs {
    pub payload: String,
    pub name: String,
    pub licence: Option<String>,
    pub identity: Option<PathBuf>,
    pub wait: u64,
    pub out: Option<PathBuf>,
    pub enrollment_key: Option<String>,
    pub note: Option<PathBuf>,
    pub json: bool,
}

fn read_note(p: &Path) -> Result<Value> {
    let shown = p.display();
    let bytes = std::fs::read(p).map_err(|e| CliError::Input(format!("{shown}: {}", e.kind())))?;
    if bytes.len() > carekey_client::note::MAX_NOTE_BYTES {
        return Err(CliError::Input(format!(
            "{shown}: the note is larger than 1 MiB"
        )));
    }
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
        CliError::Input(format!(
            "{shown}: not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    match v.get("resourceType").and_then(Value::as_str) {
        Some(t) if !t.is_empty() => Ok(v),
        _ => Err(CliError::Input(format!(
            "{shown}: a note must be a FHIR resource with a resourceType"
        ))),
    }
}

/// A file name from a patient-chosen title: letters, digits, `.`, `_`, `-` only.
fn safe_name(title: &str) -> String {
    let s: String = title
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let s = s.trim_start_matches('.').to_owned();
    if s.is_empty() { "record".into() } else { s }
}

pub(crate) fn prepare_dir(dir: &Path) -> Result<()> {
    let shown = dir.display();
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
        .map_err(|e| CliError::Input(format!("{shown}: {}", e.kind())))?;
    if !dir.is_dir() {
        return Err(CliError::Input(format!("{shown}: not a directory")));
    }
    Ok(())
}

pub(crate) fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    let shown = path.display();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| CliError::Input(format!("{shown}: {}", e.kind())))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| CliError::Input(format!("{shown}: {}", e.kind())))
}

/// Writes records as `DIR/NNNN-<title>.json` and attachments as `DIR/attachments/NNNN-<title>`.
fn write_out(dir: &Path, records: &[ReceivedFile]) -> Result<usize> {
    prepare_dir(dir)?;
    let att_dir = dir.join("attachments");
    if records.iter().any(|r| r.attachment) {
        prepare_dir(&att_dir)?;
    }
    for (i, r) in records.iter().enumerate() {
        let name = safe_name(&r.title);
        let path = if r.attachment {
            att_dir.join(format!("{i:04}-{name}"))
        } else if name.ends_with(".json") {
            dir.join(format!("{i:04}-{name}"))
        } else {
            dir.join(format!("{i:04}-{name}.json"))
        };
        write_private(&path, &r.data)?;
    }
    Ok(records.len())
}

/// The longest single wait the session takes; longer `--wait`s are several.
const WAIT_STEP_SECS: u64 = carekey_app::validate::WAIT_MAX_SECS;

/// Runs the flow.
pub async fn scan(a: ScanArgs, cancel: &Cancel) -> Result<()> {
    // Check everything local before answering the QR.
    let payload = a.payload.trim();
    // Not a QR, or an expired one: refused before any network use (the client's own errors).
    let qr = carekey_client::doctor::parse_qr(payload)?;
    let note = a.note.as_deref().map(read_note).transpose()?;
    if let Some(d) = &a.out {
        prepare_dir(d)?;
    }
    let id = identity(a.identity.as_deref())?;
    let progress = Arc::new(ProgressLine::new());
    let device = Device::new()?;
    let profile = Profile {
        name: &a.name,
        licence: a.licence.as_deref(),
        relay_url: &qr.relay_url,
        enrollment_key: a.enrollment_key.as_deref(),
    };
    let app = device.doctor(&profile, id, progress.clone()).await?;
    errln!("answering the QR through {}", qr.relay_url);
    probe_relay(&Relay::new(&qr.relay_url)?).await?;
    let scan = app
        .scan_text(ipc::ScanText {
            text: payload.to_owned(),
        })
        .await?;
    let check = scan.check_code.clone();
    outln!("CHECK: {check}");
    errln!(
        "compare this code with the patient's screen; waiting up to {} s for the patient to confirm",
        a.wait
    );
    let link = wait_for_grant(&app, &scan.scan, a.wait, cancel).await?;
    let patient = app
        .patients()
        .await?
        .into_iter()
        .find(|l| l.id == link)
        .ok_or_else(|| CliError::App(carekey_app::AppError::not_found("that patient")))?;
    outln!("PATIENT: {}", patient.name);
    let expires_at = patient.expires_at;
    // Fetch, verify and store in the session's vault (purged there when access ends).
    let fetched = app.refresh_patient(ipc::IdRef { id: link.clone() }).await;
    progress.finish();
    fetched?;
    let got = app.received_files(ipc::IdRef { id: link.clone() }).await?;
    let attachments = got.iter().filter(|r| r.attachment).count();
    let records = got.len() - attachments;
    let bytes: u64 = got.iter().map(|r| r.data.len() as u64).sum();
    outln!(
        "RECEIVED: {records} records, {attachments} attachments, {bytes} bytes (verified, access until {expires_at})"
    );
    let mut written = 0;
    if let Some(d) = &a.out {
        written = write_out(d, &got)?;
        outln!("WROTE: {written} files to {}", d.display());
        errln!(
            "warning: {} now holds decrypted health records in PLAINTEXT (files mode 0600); \
             delete them when you no longer need them (access ends at {expires_at})",
            d.display()
        );
    }
    drop(got);
    let mut note_type = None;
    if let Some(n) = note {
        let ty = n
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned();
        app.send_note(ipc::SendNote {
            patient: link.clone(),
            resource: n,
        })
        .await?;
        outln!("NOTE SENT: {ty}");
        note_type = Some(ty);
    }
    if a.json {
        outln!(
            "{}",
            serde_json::json!({
                "ok": true,
                "role": "doctor",
                "check": check,
                "patient": patient.name,
                "records": records,
                "attachments": attachments,
                "bytes": bytes,
                "written": written,
                "expires_at": expires_at,
                "note_sent": note_type,
                "at": now(),
            })
        );
    }
    Ok(())
}

/// Waits for the patient's confirmation up to `wait` seconds, in steps the session accepts.
async fn wait_for_grant(app: &DoctorApp, scan: &str, wait: u64, cancel: &Cancel) -> Result<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait);
    loop {
        cancel.check()?;
        let left = deadline
            .saturating_duration_since(std::time::Instant::now())
            .as_secs()
            .clamp(1, WAIT_STEP_SECS);
        match app
            .wait_for_grant(ipc::Wait {
                id: scan.to_owned(),
                wait_secs: left,
            })
            .await
        {
            // Not yet, and time left: the scan stays open for another wait.
            Err(e) if e.code == "no_answer" && std::time::Instant::now() < deadline => {}
            other => return Ok(other?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::safe_name;

    #[test]
    fn titles_become_safe_file_names() {
        assert_eq!(safe_name("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(safe_name("..."), "record");
        assert_eq!(safe_name("Condition"), "Condition");
        assert_eq!(safe_name("a b/c"), "a_b_c");
        assert!(safe_name(&"x".repeat(500)).len() <= 80);
    }
}
