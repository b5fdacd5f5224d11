//! `carekey doctor scan`: answer a patient's QR, show the check code, wait for the grant,
//! fetch and verify, optionally write the records out and send a note back.

use std::io::Write;
use std::path::{Path, PathBuf};

use carekey_client::doctor::{Doctor, SharedRecord};
use carekey_client::progress::Cancel;
use carekey_client::relay::Relay;
use carekey_core::keys::Role;
use serde_json::Value;

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
fn write_out(dir: &Path, records: &[SharedRecord]) -> Result<usize> {
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
    let (id, card) = identity(
        a.identity.as_deref(),
        &a.name,
        Role::Doctor,
        a.licence.as_deref(),
    )?;
    let mut doctor = Doctor::new(id, card);
    errln!("answering the QR through {}", qr.relay_url);
    probe_relay(&Relay::new(&qr.relay_url)?).await?;
    let session = doctor.scan(payload).await?;
    let check = session.check_code().to_string();
    outln!("CHECK: {check}");
    errln!(
        "compare this code with the patient's screen; waiting up to {} s for the patient to confirm",
        a.wait
    );
    let link = doctor.wait_for_grant(session, a.wait, cancel).await?;
    let patient_name = doctor
        .patient(&link)
        .map(|c| c.body.name.clone())
        .unwrap_or_default();
    outln!("PATIENT: {patient_name}");
    let expires_at = doctor.share_of(&link).map_or(0, |s| s.expires_at);
    let progress = ProgressLine::new();
    let got = doctor.fetch(&link, &progress, cancel).await;
    progress.finish();
    let got = got?;
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
    if let Some(n) = &note {
        doctor.send_note(&link, n).await?;
        let ty = n
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned();
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
                "patient": patient_name,
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
